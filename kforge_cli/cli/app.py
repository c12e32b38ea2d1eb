"""The Typer application: every subcommand is registered here and nowhere else."""

from __future__ import annotations

import typer

from kforge_cli import __version__

app = typer.Typer(
    name="kforge",
    help="Check KempnerForge training-job TOML files before they reach a cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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


_register_commands()
