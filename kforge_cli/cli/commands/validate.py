"""`kforge validate`: every error the trainer would hit, and the warnings worth reading."""

from __future__ import annotations

import typer

from kforge_cli.cli.options import (
    EXIT_STATUS,
    format_option,
    gpu_option,
    ignore_option,
    overrides_option,
    paths_argument,
    select_option,
    stdin_filename_option,
    strict_option,
    world_size_option,
)
from kforge_cli.cli.output import write_stdout

FORMATS = ("text", "concise", "json", "github", "sarif")

HELP = ("Report every error the KempnerForge trainer would hit, with file, line, key and fix, and the warnings "
        "worth reading.\n\n"
        "Every rule runs, the parameter-level freeze rules included (no torch needed). Settings come from the "
        "[tool.kforge] table of the nearest pyproject.toml above each file, up to the repository root; "
        "command-line options override them. A trailing `# kforge: ignore[CODES]` comment suppresses a line's "
        "findings.")


def validate(
    paths: list[str] = paths_argument(),
    world_size: int | None = world_size_option(),
    gpu: str | None = gpu_option(),
    model_ckpt: str | None = typer.Option(
        None, "--model-ckpt", metavar="PATH",
        help="Also check the config against this checkpoint (run dir, step_N dir, .pt, .safetensors, HF dir)."),
    strict: bool | None = strict_option(),
    output_format: str = format_option(FORMATS),
    overrides: list[str] = overrides_option(),
    select: list[str] = select_option(),
    ignore: list[str] = ignore_option(),
    stdin_filename: str | None = stdin_filename_option(),
    show_suppressed: bool = typer.Option(False, "--show-suppressed",
                                         help="Also list the findings that suppression comments hide."),
    deep: bool = typer.Option(False, "--deep", hidden=True,
                              help="Accepted for compatibility: every rule now runs by default."),
) -> None:
    from kforge_cli.cli.options import (
        check_format,
        check_gpu_name,
        engine_options,
        exit_status,
        gather_inputs,
        run_engine,
    )
    from kforge_cli.cli.output import print_json, stdout_console
    from kforge_cli.cli.reporters import (
        render_concise,
        render_github,
        render_text,
        validate_document,
    )

    chosen = check_format(output_format, FORMATS)
    check_gpu_name(gpu)
    options = engine_options(world_size=world_size, overrides=overrides, select=select, ignore=ignore,
                             strict=strict, gpu=gpu, model_ckpt=model_ckpt)
    reports = run_engine(gather_inputs(paths, stdin_filename), options)
    if chosen == "json":
        print_json(validate_document(reports, show_suppressed=show_suppressed))
    elif chosen == "concise":
        write_stdout(render_concise(reports, show_suppressed=show_suppressed))
    elif chosen == "github":
        write_stdout(render_github(reports))
    elif chosen == "sarif":
        from kforge_cli.cli.sarif import sarif_document

        print_json(sarif_document(reports))
    else:
        render_text(stdout_console(), reports, show_suppressed=show_suppressed)
    raise typer.Exit(exit_status(reports))


def register(app: typer.Typer) -> None:
    app.command("validate", help=HELP, epilog=EXIT_STATUS, no_args_is_help=True)(validate)
