"""`kforge freeze-plan`: which parameters each freeze stage trains, and the traps in the schedule."""

from __future__ import annotations

import typer

from kforge_cli.cli.options import (
    EXIT_STATUS,
    format_option,
    ignore_option,
    overrides_option,
    paths_argument,
    select_option,
    stdin_filename_option,
    world_size_option,
)
from kforge_cli.cli.output import write_file, write_stdout

FORMATS = ("text", "json", "svg")

HELP = ("Show what each freeze stage trains: every alias and module by stage, the traps in the schedule "
        "(findings), and with --model-ckpt how the config fits a checkpoint.\n\n"
        "With torch installed the model is built on the meta device; without it, from kforge's parameter "
        "manifest (the same names and shapes).")


def freeze_plan(
    paths: list[str] = paths_argument(),
    model_ckpt: str | None = typer.Option(
        None, "--model-ckpt", metavar="PATH",
        help="Checkpoint to check the config against (run dir, step_N dir, .pt, .safetensors, HF dir)."),
    step: int | None = typer.Option(None, "--step", metavar="N", help="Show the state at this training step."),
    params: bool = typer.Option(False, "--params", help="List every parameter with its state per stage."),
    output_format: str = format_option(FORMATS),
    output: str | None = typer.Option(None, "--output", "-o", metavar="PATH", help="Write the output to PATH."),
    world_size: int | None = world_size_option(),
    overrides: list[str] = overrides_option(),
    select: list[str] = select_option(),
    ignore: list[str] = ignore_option(),
    stdin_filename: str | None = stdin_filename_option(),
) -> None:
    from kforge_cli.cli.freeze_render import (
        PlanReport,
        plans_document,
        plans_svg,
        print_reports,
        render_text,
    )
    from kforge_cli.cli.options import (
        check_format,
        engine_options,
        exit_status,
        gather_inputs,
        run_engine,
    )
    from kforge_cli.cli.output import stdout_console
    from kforge_cli.lint.engine import MANIFEST, META

    chosen = check_format(output_format, FORMATS)
    options = engine_options(world_size=world_size, overrides=overrides, select=select, ignore=ignore,
                             model_ckpt=model_ckpt, model_source=META if torch_available() else MANIFEST)
    reports = run_engine(gather_inputs(paths, stdin_filename), options)
    plans = [PlanReport(r.path, r.plan, r.findings) for r in reports]

    if chosen == "json":
        import json

        text: str | None = json.dumps(plans_document(plans, step=step), indent=2) + "\n"
    elif chosen == "svg":
        text = plans_svg(plans, params=params, step=step)
    elif output:
        text = render_text(plans, params=params, step=step)
    else:
        text = None
        print_reports(stdout_console(), plans, params=params, step=step)
    if text is not None:
        if output:
            write_file(output, text)
        else:
            write_stdout(text)
    raise typer.Exit(exit_status(reports))


def torch_available() -> bool:
    from importlib.util import find_spec

    return find_spec("torch") is not None


def register(app: typer.Typer) -> None:
    app.command("freeze-plan", help=HELP, epilog=EXIT_STATUS, no_args_is_help=True)(freeze_plan)
