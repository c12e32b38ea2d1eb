"""The Typer application: every subcommand is registered here and nowhere else."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand

from kforge_cli import __version__
from kforge_cli.cli.exitcodes import INTERRUPTED


class KforgeCommand(TyperCommand):
    """Every command's usage line in one style: `kforge validate [OPTIONS] PATH...`."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        # Typer wraps required arguments in braces ({PATH...}); click's style has none.
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in super().collect_usage_pieces(ctx)]

    def invoke(self, ctx: Any) -> Any:
        # Typer turns Ctrl-C into a silent exit 130 (click into "Aborted!" and 1); both
        # happen outside main(), so the one line is said here.
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            from kforge_cli.cli.main import say_interrupted

            say_interrupted()
            raise SystemExit(INTERRUPTED) from None

app = typer.Typer(
    name="kforge",
    help="Check KempnerForge training-job TOML files before they reach a cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: one usage style (PATH..., N, KEY=VALUE, CODES, FORMAT), no boxes that cut words at
    # 80 columns, and text a pipe or grep reads as it is.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"kforge {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
    traceback: bool = typer.Option(False, "--traceback",
                                   help="Show the Python traceback of an internal error (accepted anywhere)."),
) -> None:
    """kforge: validate, explain, plan freezing and migrate KempnerForge job configs."""


def _register_commands() -> None:
    # Imported here so that `kforge --help` stays cheap and each module stays
    # the single owner of its subcommand.
    from kforge_cli.cli.commands import COMMANDS

    for register in COMMANDS:
        register(app)
    for info in app.registered_commands:
        info.cls = KforgeCommand


_register_commands()
