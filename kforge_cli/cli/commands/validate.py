"""`kforge validate`: every error the trainer would hit, and the warnings worth reading."""

from __future__ import annotations

from enum import Enum
from typing import Optional

import typer


class ValidateFormat(str, Enum):
    text = "text"
    json = "json"
    github = "github"
    sarif = "sarif"


def validate(
    files: list[str] = typer.Argument(..., metavar="FILE...", help="Job TOML files to check."),
    world_size: Optional[int] = typer.Option(
        None, "--world-size", "-w", min=1,
        help="GPUs the job runs on; enables the parallelism arithmetic. Without it, every other rule runs."),
    deep: bool = typer.Option(False, "--deep", help="Also build the model on the meta device and check "
                              "parameter-level freeze rules (imports torch)."),
    model_ckpt: Optional[str] = typer.Option(None, "--model-ckpt", help="With --deep: check the config "
                                             "against this checkpoint."),
    strict: bool = typer.Option(False, "--strict", help="Warnings fail the check too."),
    output_format: ValidateFormat = typer.Option(ValidateFormat.text, "--format", "-f", case_sensitive=False,
                                                 help="Output format."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                        help="Override a field as the trainer's --KEY=VALUE does "
                                        "(value parsed as a Python literal)."),
) -> None:
    """Report every error the KempnerForge trainer would hit, with file, line, key and fix."""
    from kforge_cli.cli.exitcodes import ExitCode
    from kforge_cli.cli.output import fail, print_json, stdout_console
    from kforge_cli.cli.reporters import render_github, render_text, validate_document
    from kforge_cli.config.loader import OverrideError, parse_override
    from kforge_cli.lint.engine import check_file

    if model_ckpt and not deep:
        fail("--model-ckpt needs --deep (the checkpoint is compared with the built model)")
        raise typer.Exit(ExitCode.USAGE)
    try:
        parsed = [parse_override(o) for o in overrides]
    except OverrideError as exc:
        fail(str(exc))
        raise typer.Exit(ExitCode.USAGE) from None

    reports = [check_file(path, world_size=world_size, overrides=parsed, deep=deep, model_ckpt=model_ckpt)
               for path in files]
    if output_format is ValidateFormat.json:
        print_json(validate_document(reports, strict))
    elif output_format is ValidateFormat.github:
        import sys

        sys.stdout.write(render_github(reports))
    elif output_format is ValidateFormat.sarif:
        from kforge_cli.cli.sarif import sarif_document

        print_json(sarif_document(reports))
    else:
        render_text(stdout_console(), reports, strict)
    if not all(r.valid(strict) for r in reports):
        raise typer.Exit(ExitCode.FINDINGS)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
