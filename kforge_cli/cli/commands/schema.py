"""`kforge schema`: the JSON Schema of the job file, for editors that validate TOML against one."""

from __future__ import annotations

from typing import Annotated

import typer

from kforge_cli.cli.output import write_file, write_stdout

HELP = ("Print the JSON Schema (draft 2020-12) of a job config: every section and field with its type, "
        "allowed values, range, default and description.\n\n"
        "Editors that read JSON Schema (Even Better TOML / Taplo) then flag unknown keys, wrong types and values "
        "outside an enum as you type; see docs/editors.md. It is generated from the same declarations validate "
        "reads, for the arches and registry names known now (plugins included). By default it accepts what "
        "validate accepts, values the loader coerces with a warning included; --strict rejects those too.")

EXIT_STATUS = "Exit status: 0 on success; 1 when PATH cannot be written; 2 on a usage error."


def schema(
    output: Annotated[str | None, typer.Option(
        "--output", "-o", metavar="PATH", help="Write the schema to PATH instead of standard output.")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Also reject values the loader only converts with a warning (256.0 or \"256\" for an "
        "integer, \"yes\" for a boolean).")] = False,
) -> None:
    import json

    from kforge_cli.config.json_schema import job_schema

    text = json.dumps(job_schema(strict=strict), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    if output is None:
        write_stdout(text)
    else:
        write_file(output, text)


def register(app: typer.Typer) -> None:
    app.command("schema", help=HELP, epilog=EXIT_STATUS)(schema)
