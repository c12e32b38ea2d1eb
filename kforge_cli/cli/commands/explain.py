"""`kforge explain`: what a job config really means, or what one config key does."""

from __future__ import annotations

from enum import Enum
from typing import Optional

import typer


class ExplainFormat(str, Enum):
    text = "text"
    json = "json"


def explain(
    files: Optional[list[str]] = typer.Argument(None, metavar="[FILE]...", help="Job TOML files to explain."),
    output_format: ExplainFormat = typer.Option(ExplainFormat.text, "--format", "-f", case_sensitive=False,
                                                help="Output format."),
    field_key: Optional[str] = typer.Option(None, "--field", metavar="KEY",
                                            help="Document one config key or section (e.g. vlm.freeze, "
                                            "model.n_kv_heads, vlm); with FILEs, also show its value there."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                        help="Override a field as the trainer's --KEY=VALUE does "
                                        "(value parsed as a Python literal)."),
    show_all: bool = typer.Option(False, "--all", "-a",
                                  help="List every field of every section, defaults included "
                                  "(JSON always has everything)."),
) -> None:
    """Show the resolved config, what its arch implies, its token budget and parameter counts.

    Each FILE is checked like `kforge validate` and its findings are listed under
    the explanation. Exit 1 when a file has an error or cannot be read.
    """
    from kforge_cli.cli.exitcodes import ExitCode
    from kforge_cli.cli.output import fail
    from kforge_cli.cli.options import parse_overrides

    files = list(files or [])
    if not files and not field_key:
        fail("nothing to explain: give one or more FILEs, or --field KEY", "e.g. kforge explain job.toml, "
             "or kforge explain --field vlm.freeze")
        raise typer.Exit(ExitCode.USAGE)
    parsed = parse_overrides(overrides)
    as_json = output_format is ExplainFormat.json
    from kforge_cli.cli import explain_render

    if field_key:
        raise typer.Exit(explain_render.explain_field(field_key, files, parsed, as_json))
    if not explain_render.run_explain(files, parsed, as_json, show_all):
        raise typer.Exit(ExitCode.FINDINGS)


def register(app: typer.Typer) -> None:
    app.command("explain")(explain)
