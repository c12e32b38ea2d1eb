"""`kforge validate`: every error the trainer would hit, and the warnings worth reading."""

from __future__ import annotations

from enum import Enum
from typing import Optional

import typer


# Typer renders help as Rich markup, hence the escaped brackets.
HELP = ("Report every error the KempnerForge trainer would hit, with file, line, key and fix.\n\n"
        "Settings come from the \\[tool.kforge] table (select, ignore, strict, world-size) of the nearest "
        "pyproject.toml above each FILE, up to the repository root; command-line options override them.")


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
    strict: Optional[bool] = typer.Option(
        None, "--strict/--no-strict", show_default=False,
        help="Warnings fail the check too. Default: strict in \\[tool.kforge], else off."),
    select: list[str] = typer.Option(
        [], "--select", metavar="CODES",
        help="Report only these rule codes or prefixes (comma-separated or repeated, e.g. KF3,KF401); "
        "replaces select in \\[tool.kforge]."),
    ignore: list[str] = typer.Option(
        [], "--ignore", metavar="CODES",
        help="Drop these rule codes or prefixes (comma-separated or repeated, e.g. KF4,KF305), on top of "
        "\\[tool.kforge]. Ignored findings are left out of the output AND the verdict: an ignored error no "
        "longer fails the file. KF001 (unreadable file) cannot be ignored."),
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
    from kforge_cli.cli.options import parse_overrides
    from kforge_cli.lint.engine import check_file
    from kforge_cli.settings import RuleSelection, SettingsError, SettingsFinder, cli_layer

    if model_ckpt and not deep:
        fail("--model-ckpt needs --deep (the checkpoint is compared with the built model)")
        raise typer.Exit(ExitCode.USAGE)
    parsed = parse_overrides(overrides)

    try:
        command_line = cli_layer(select, ignore)
        finder = SettingsFinder()
        settings = [finder.for_config(path) for path in files]
    except SettingsError as exc:
        fail(str(exc), exc.hint)
        raise typer.Exit(ExitCode.USAGE) from None

    reports = []
    for path, found in zip(files, settings):
        report = check_file(path, world_size=world_size or found.world_size, overrides=parsed, deep=deep,
                            model_ckpt=model_ckpt)
        selection = RuleSelection((found.selection, command_line))
        report.findings = [f for f in report.findings if selection.enabled(f.code)]
        report.strict = strict is None and bool(found.strict)
        reports.append(report)
    strict_flag = bool(strict)
    if output_format is ValidateFormat.json:
        print_json(validate_document(reports, strict_flag))
    elif output_format is ValidateFormat.github:
        import sys

        sys.stdout.write(render_github(reports))
    elif output_format is ValidateFormat.sarif:
        from kforge_cli.cli.sarif import sarif_document

        print_json(sarif_document(reports))
    else:
        render_text(stdout_console(), reports, strict_flag)
    if not all(r.valid(strict_flag) for r in reports):
        raise typer.Exit(ExitCode.FINDINGS)


def register(app: typer.Typer) -> None:
    app.command("validate", help=HELP)(validate)
