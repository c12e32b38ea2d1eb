"""What the subcommands share: their options, the exit-status text, and running the engine over PATHs.

One declaration per option keeps names, metavars and help identical across
commands (``PATH...``, ``N``, ``KEY=VALUE``, ``CODES``, ``FORMAT``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from kforge_cli.cli.inputs import Input
    from kforge_cli.lint.engine import FileReport, Options

# Typer renders help as Rich markup, hence the escaped brackets.
EXIT_STATUS = ("Exit status: 0 no error (warnings allowed unless strict); 1 an error finding or an unreadable "
               "input; 2 a usage error; 3 an internal error (a bug in kforge).")
PATHS_HELP = "Job TOML files, directories (searched for *.toml) or - for standard input."


def paths_argument(required: bool = True) -> Any:
    return typer.Argument(... if required else None, metavar="PATH..." if required else "[PATH]...",
                          help=PATHS_HELP, show_default=False)


def world_size_option() -> Any:
    return typer.Option(None, "--world-size", "-w", metavar="N",
                        help="GPUs the job runs on; enables the parallelism checks. Default: world-size in "
                        "[tool.kforge].")


def overrides_option() -> Any:
    return typer.Option([], "--set", metavar="KEY=VALUE",
                        help="Override a field as the trainer's --KEY=VALUE does (value parsed as a Python "
                        "literal); repeatable.")


def select_option() -> Any:
    return typer.Option([], "--select", metavar="CODES",
                        help="Report only these rule codes or prefixes (comma-separated or repeated, e.g. "
                        "KF3,KF401); replaces select in [tool.kforge].")


def ignore_option() -> Any:
    return typer.Option([], "--ignore", metavar="CODES",
                        help="Drop these rule codes or prefixes, on top of [tool.kforge]. Ignored findings leave "
                        "the output and the verdict: an ignored error no longer fails the file. KF001 (unreadable "
                        "file) cannot be ignored.")


def strict_option() -> Any:
    return typer.Option(None, "--strict/--no-strict", show_default=False,
                        help="Warnings fail the check too. Default: strict in [tool.kforge], else off.")


def stdin_filename_option() -> Any:
    return typer.Option(None, "--stdin-filename", metavar="PATH",
                        help="Name to report (and find [tool.kforge] settings from) for a PATH of -.")


def _gpu_names() -> list[str]:
    from kforge_cli.fit.gpus import completion_names

    return completion_names()


GPU_HELP = ("GPU the job runs on (e.g. H100, H200, A100-40GB; `kforge fit --list-gpus`); adds "
            "the memory rules. Default: gpu in [tool.kforge].")


def gpu_option(help: str = GPU_HELP) -> Any:
    return typer.Option(None, "--gpu", metavar="NAME", autocompletion=offer(_gpu_names), help=help)


def format_option(choices: Sequence[str]) -> Any:
    return typer.Option(choices[0], "--format", "-f", metavar="FORMAT", case_sensitive=False,
                        autocompletion=offer(choices),
                        help=f"Output format: {', '.join(choices[:-1])} or {choices[-1]}.")


def check_gpu_name(name: str | None) -> None:
    """An unknown --gpu is a usage error that lists the GPUs kforge knows."""
    if name is None:
        return
    from kforge_cli.fit import UnknownGPUError, lookup_gpu

    try:
        lookup_gpu(name)
    except UnknownGPUError as exc:
        usage_error(f"--gpu {name!r}: no such GPU in kforge's table",
                    f"use one of: {', '.join(exc.known)}; for another GPU, `kforge fit --gpu-memory GIB`")


def offer(words: Sequence[str] | Callable[[], Sequence[str]]) -> Any:
    """A parameter's completion candidates, declared with it (the completion scripts read them).

    A callable is asked only when completing, so a costly list is not built at every start.
    """

    def complete(incomplete: str) -> list[str]:
        candidates = words() if callable(words) else words
        return [word for word in candidates if word.startswith(incomplete or "")]

    return complete


def check_format(value: str, choices: Sequence[str]) -> str:
    lowered = value.lower()
    if lowered not in choices:
        usage_error(f"--format {value!r} is not one of {', '.join(choices)}")
    return lowered


def usage_error(message: str, hint: str | None = None) -> NoReturn:
    from kforge_cli.cli.exitcodes import ExitCode
    from kforge_cli.cli.output import fail

    fail(message, hint)
    raise typer.Exit(ExitCode.USAGE)


def parse_overrides(values: list[str]) -> list[Any]:
    """``--set KEY=VALUE`` values, parsed as the trainer parses them; a malformed one is a usage error."""
    from kforge_cli.config.loader import OverrideError, parse_override

    try:
        return [parse_override(value) for value in values]
    except OverrideError as exc:
        usage_error(str(exc))
        raise AssertionError("unreachable") from exc


def engine_options(*, world_size: int | None = None, overrides: list[str] | None = None,
                   select: list[str] | None = None, ignore: list[str] | None = None, strict: bool | None = None,
                   gpu: str | None = None, model_ckpt: str | None = None, model_source: str | None = None) -> Options:
    """Engine options from the command line; bad selectors are a usage error."""
    from kforge_cli.lint.engine import MANIFEST, Options
    from kforge_cli.lint.settings import SettingsError, cli_layer

    if world_size is not None and world_size < 1:
        usage_error(f"--world-size {world_size}: the number of GPUs must be at least 1")
    try:
        selection = cli_layer(select or [], ignore or [])
    except SettingsError as exc:
        usage_error(str(exc), exc.hint)
        raise AssertionError("unreachable") from exc
    return Options(world_size=world_size, overrides=tuple(parse_overrides(overrides or [])), selection=selection,
                   strict=strict, gpu=gpu, model_ckpt=model_ckpt, model_source=model_source or MANIFEST)


def gather_inputs(paths: Sequence[str], stdin_filename: str | None) -> list[Input]:
    from kforge_cli.cli.inputs import STDIN, gather

    if stdin_filename is not None and STDIN not in paths:
        usage_error("--stdin-filename only applies when a PATH is -", "pass - to read the file from stdin")
    if list(paths).count(STDIN) > 1:
        usage_error("- (standard input) can be given only once")
    inputs = gather(paths, stdin_filename)
    if not inputs:
        report_nothing_found()
    return inputs


def report_nothing_found() -> None:
    """An empty directory is not an error (like ruff), but saying nothing would hide a wrong path."""
    from kforge_cli.cli.output import fail

    fail("no job config found: the directories given hold no *.toml files that are job configs",
         "pass the files themselves to check a file with another name")


def run_engine(inputs: Sequence[Input], options: Options) -> list[FileReport]:
    """Check every input with the same engine and settings; one file's failure never stops the others."""
    from kforge_cli.cli.main import report_internal_error
    from kforge_cli.lint.engine import check_file, unreadable_report
    from kforge_cli.lint.settings import SettingsFinder

    finder = SettingsFinder()
    reports = []
    for item in inputs:
        if item.problem is not None:
            report = unreadable_report(item.path, item.problem)
        else:
            report = check_file(item.path, options, text=item.text, finder=finder)
        if report.internal_error is not None:
            report_internal_error(item.path, report.internal_error)
        reports.append(report)
    return reports


def exit_status(reports: Sequence[FileReport]) -> int:
    from kforge_cli.cli.exitcodes import ExitCode

    if any(r.internal_error is not None for r in reports):
        return ExitCode.INTERNAL
    if not all(r.valid for r in reports):
        return ExitCode.FINDINGS
    return ExitCode.OK
