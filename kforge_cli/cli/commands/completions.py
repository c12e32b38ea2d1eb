"""`kforge completions SHELL`: print the shell completion script for this kforge."""

from __future__ import annotations

from typing import Annotated

import typer

from kforge_cli.cli.options import offer
from kforge_cli.cli.output import write_stdout

SHELLS = ("bash", "zsh", "fish")

HELP = ("Print the completion script for bash, zsh or fish: subcommands, options, formats, rule codes, config "
        "keys and job files.\n\n"
        "The script is static (nothing runs Python on TAB), generated from this kforge, plugins included. "
        "Install it once, e.g. `kforge completions bash > ~/.local/share/bash-completion/completions/kforge`; "
        "docs/completions.md has the line for each shell.")

EXIT_STATUS = "Exit status: 0 on success; 2 on a usage error (an unknown SHELL)."


def completions(
    shell: Annotated[str, typer.Argument(metavar="SHELL", show_default=False, autocompletion=offer(SHELLS),
                                         help="bash, zsh or fish.")],
) -> None:

    from kforge_cli.cli.completions import render
    from kforge_cli.cli.options import usage_error

    chosen = shell.lower()
    if chosen not in SHELLS:
        usage_error(f"no completion script for {shell!r}", f"use one of {', '.join(SHELLS)}")
    write_stdout(render(chosen))


def register(app: typer.Typer) -> None:
    app.command("completions", help=HELP, epilog=EXIT_STATUS)(completions)
