"""`kforge explain`: what a job config really means, or what one config key does."""

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

FORMATS = ("text", "json")

HELP = ("Show the resolved config and where each value came from, what the arch implies, the token budget and "
        "the parameter counts.\n\n"
        "Each file is checked exactly as `kforge validate` checks it and its findings are listed under the "
        "explanation. `kforge explain --field KEY` documents one config key (no file needed); with files it also "
        "shows the key's value in each.")


def explain(
    paths: list[str] | None = paths_argument(required=False),
    output_format: str = format_option(FORMATS),
    field_key: str | None = typer.Option(None, "--field", metavar="KEY",
                                            help="Document one config key or section (e.g. vlm.freeze, "
                                            "model.n_kv_heads, vlm)."),
    world_size: int | None = world_size_option(),
    overrides: list[str] = overrides_option(),
    select: list[str] = select_option(),
    ignore: list[str] = ignore_option(),
    stdin_filename: str | None = stdin_filename_option(),
    show_all: bool = typer.Option(False, "--all", "-a",
                                  help="List every field of every section, defaults included (JSON always has "
                                  "everything)."),
) -> None:
    from kforge_cli.cli import explain_render
    from kforge_cli.cli.options import (
        check_format,
        engine_options,
        gather_inputs,
        usage_error,
    )

    chosen = check_format(output_format, FORMATS)
    paths = list(paths or [])
    if not paths and not field_key:
        usage_error("nothing to explain: give one or more PATHs, or --field KEY",
                    "e.g. kforge explain job.toml, or kforge explain --field vlm.freeze")
    options = engine_options(world_size=world_size, overrides=overrides, select=select, ignore=ignore)
    inputs = gather_inputs(paths, stdin_filename) if paths else []
    if field_key:
        raise typer.Exit(explain_render.explain_field(field_key, inputs, options, chosen == "json"))
    raise typer.Exit(explain_render.run_explain(inputs, options, chosen == "json", show_all))


def register(app: typer.Typer) -> None:
    app.command("explain", help=HELP, epilog=EXIT_STATUS)(explain)
