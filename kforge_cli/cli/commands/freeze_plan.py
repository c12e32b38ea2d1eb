"""`kforge freeze-plan`: which parameters each freeze stage freezes, and the traps in the schedule."""

from __future__ import annotations

from enum import Enum
from typing import Optional

import typer


class PlanFormat(str, Enum):
    text = "text"
    json = "json"
    svg = "svg"


def freeze_plan(
    files: list[str] = typer.Argument(..., metavar="FILE...", help="Job TOML files to plan."),
    model_ckpt: Optional[str] = typer.Option(
        None, "--model-ckpt", metavar="CKPT",
        help="Checkpoint to check the config against (run dir, step_N dir, .pt, .safetensors, HF dir)."),
    step: Optional[int] = typer.Option(None, "--step", help="Show the state at this training step."),
    params: bool = typer.Option(False, "--params", help="List every parameter with its state per stage."),
    output_format: PlanFormat = typer.Option(PlanFormat.text, "--format", "-f", case_sensitive=False,
                                             help="Output format."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write the output to this file."),
    world_size: Optional[int] = typer.Option(None, "--world-size", "-w", min=1,
                                             help="GPUs the job runs on (parallelism checks)."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override a field."),
) -> None:
    """Build the model on the meta device and show what each freeze stage trains."""
    from kforge_cli.cli.exitcodes import ExitCode
    from kforge_cli.cli.freeze_render import PlanReport, plans_document, plans_svg, print_reports
    from kforge_cli.cli.output import stdout_console
    from kforge_cli.cli.options import parse_overrides
    from kforge_cli.lint.engine import check_file

    parsed = parse_overrides(overrides)

    reports = []
    for path in files:
        report = check_file(path, world_size=world_size, overrides=parsed, deep=True, model_ckpt=model_ckpt)
        deep = report.extras.get("deep")
        plan = deep.plan if deep is not None else None
        reports.append(PlanReport(path, plan, report.findings, add_plan_findings=False))

    if output_format is PlanFormat.json:
        import json

        text = json.dumps(plans_document(reports, step=step), indent=2) + "\n"
    elif output_format is PlanFormat.svg:
        text = plans_svg(reports, params=params, step=step)
    else:
        text = None
    if text is None:
        if output:
            from kforge_cli.cli.freeze_render import render_text

            _write(output, render_text(reports, params=params, step=step))
        else:
            print_reports(stdout_console(), reports, params=params, step=step)
    elif output:
        _write(output, text)
    else:
        import sys

        sys.stdout.write(text)
    if any(r.has_errors for r in reports):
        raise typer.Exit(ExitCode.FINDINGS)


def _write(path: str, text: str) -> None:
    from kforge_cli.cli.exitcodes import ExitCode
    from kforge_cli.cli.output import fail

    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")
        raise typer.Exit(ExitCode.FINDINGS) from None


def register(app: typer.Typer) -> None:
    app.command("freeze-plan")(freeze_plan)
