"""`kforge fit`: will this job fit on these GPUs, and how fast will it run?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    world_size_option,
)

if TYPE_CHECKING:
    from kforge_cli.cli.fit_render import FitReport
    from kforge_cli.cli.inputs import Input
    from kforge_cli.lint.engine import FileReport, Options

FORMATS = ("text", "json")

HELP = ("Predict the peak GPU memory per rank (the figure the trainer logs from torch.cuda.max_memory_allocated) "
        "with its breakdown, the verdict fits / tight / oom against the GPU, FLOPs per token and a tokens/s and "
        "MFU range; when it does not fit, the cheapest changes that do.\n\n"
        "Every term is derived from the trainer's code (see docs/fit.md). Without --world-size the fewest GPUs "
        "the layout takes are assumed; without --gpu or --gpu-memory, an H100 SXM 80GB.")


def fit(
    paths: list[str] | None = paths_argument(required=False),
    gpu: str | None = gpu_option("GPU model, e.g. H100, H200, A100-40GB (--list-gpus lists every one "
                                    "with its sources)."),
    gpu_memory: float | None = typer.Option(None, "--gpu-memory", metavar="GIB",
                                               help="GPU capacity in GiB, for a GPU not in the table."),
    world_size: int | None = world_size_option(),
    output_format: str = format_option(FORMATS),
    overrides: list[str] = overrides_option(),
    select: list[str] = select_option(),
    ignore: list[str] = ignore_option(),
    stdin_filename: str | None = stdin_filename_option(),
    list_gpus: bool = typer.Option(False, "--list-gpus", is_eager=True,
                                   help="List the known GPUs, their capacity and peak, with sources, and exit."),
) -> None:
    from dataclasses import replace

    from kforge_cli.cli.options import (
        check_format,
        check_gpu_name,
        engine_options,
        exit_status,
        gather_inputs,
        run_engine,
        usage_error,
    )
    from kforge_cli.cli.output import print_json, stdout_console

    chosen = check_format(output_format, FORMATS)
    if list_gpus:
        _list_gpus(chosen == "json")
        raise typer.Exit(0)
    if not paths:
        usage_error("nothing to fit: give one or more PATHs", "e.g. kforge fit job.toml --gpu H200 --world-size 32")
    if gpu and gpu_memory:
        usage_error("--gpu and --gpu-memory cannot be combined", "give a GPU name, or its capacity in GiB")
    if gpu_memory is not None and not gpu_memory > 0:
        usage_error(f"--gpu-memory {gpu_memory}: the capacity must be a positive number of GiB")
    check_gpu_name(gpu)
    options = replace(engine_options(world_size=world_size, overrides=overrides, select=select, ignore=ignore,
                                     gpu=gpu), gpu_memory=gpu_memory, predict_memory=True)
    inputs = gather_inputs(paths, stdin_filename)
    reports = run_engine(inputs, options)
    fits = [_fit_report(item, report, options) for item, report in zip(inputs, reports)]
    if chosen == "json":
        from kforge_cli.cli.fit_render import fit_document

        print_json(fit_document(fits))
    else:
        from kforge_cli.cli.fit_render import print_fit

        print_fit(stdout_console(), fits)
    raise typer.Exit(exit_status(reports))


def _fit_report(item: Input, report: FileReport, options: Options) -> FitReport:
    from kforge_cli.cli.fit_render import FitReport

    prediction = report.subject.memory if report.subject is not None else None
    out = FitReport(report.path, prediction, list(report.findings))
    if prediction is None:
        out.reason = _why_no_prediction(report)
    elif prediction.verdict != "fits":
        out.suggestions = _suggestions(item, report, options)
    return out


def _why_no_prediction(report: FileReport) -> str:
    if report.load.job is None:
        return "the file cannot be loaded"
    if report.model_error is not None:
        return f"the model cannot be listed ({report.model_error.message})"
    return "the parallel layout does not fit the world size (see the findings)"


def _suggestions(item: Input, report: FileReport, options: Options) -> list[Any]:
    """The fit module's candidates, each kept only if the changed config still passes validate."""
    from dataclasses import replace

    from kforge_cli.fit import suggest
    from kforge_cli.lint.engine import check_file

    subject = report.subject
    assert subject is not None and subject.memory is not None
    prediction = subject.memory

    def passes_validate(changes: list[str]) -> bool:
        changed = replace(options, overrides=(*options.overrides, *changes), predict_memory=False, gpu=None,
                          gpu_memory=None)
        return check_file(item.path, changed, text=item.text).errors == 0

    from kforge_cli.fit.predict import frozen_names

    params = subject.manifest.parameters
    return list(suggest(subject.job, params, gpu=prediction.gpu, world_size=prediction.world_size,
                        is_valid=passes_validate, frozen=frozen_names(subject.job, params, subject.plan)))


def _list_gpus(as_json: bool) -> None:
    from kforge_cli.fit import KNOWN_GPUS

    if as_json:
        from kforge_cli.cli.output import print_json

        print_json({"version": 1, "gpus": [{"name": g.name, "capacity_gib": round(g.capacity_gib, 2),
                                            "peak_tflops": g.peak_tflops, "aliases": list(g.aliases),
                                            "capacity_source": g.capacity_source, "peak_source": g.peak_source}
                                           for g in KNOWN_GPUS]})
        return
    from rich.table import Table

    from kforge_cli.cli.output import stdout_console

    table = Table(header_style="bold")
    for column in ("GPU", "capacity GiB", "bf16 TFLOPS", "also called", "sources"):
        table.add_column(column)
    for g in KNOWN_GPUS:
        table.add_row(g.name, f"{g.capacity_gib:.1f}", f"{g.peak_tflops:g}" if g.peak_tflops else "-",
                      ", ".join(g.aliases), f"capacity: {g.capacity_source}; peak: {g.peak_source}")
    stdout_console().print(table)


def register(app: typer.Typer) -> None:
    app.command("fit", help=HELP, epilog=EXIT_STATUS, no_args_is_help=True)(fit)
