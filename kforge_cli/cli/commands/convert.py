"""`kforge convert`: migrate the legacy ``[model.vlm]`` layout to the current one (see ``kforge_cli.convert``)."""

from __future__ import annotations

import typer

from kforge_cli.cli.exitcodes import ExitCode

# Square brackets are escaped because Typer renders help text as Rich markup.
HELP = """Rewrite job configs that still use the legacy \\[model.vlm] table.

The VLM settings move to the top-level \\[vision_encoder] (type, path,
feature_dim, num_tokens), \\[adapter] (hidden_dim, activation) and \\[vlm]
sections. Comments and formatting are kept. Without -o or --in-place the
converted text is printed; files already in the current layout are printed
unchanged. FILE may be - to read stdin (the result goes to stdout).

--in-place locks each FILE, re-reads it, and replaces it atomically, keeping
its owner, group (where permitted), mode and extended attributes; the original
is kept as FILE.bak. A symlink is followed: its target is converted and the
link stays. A FILE with other hard links is refused (the other names would
keep the legacy text) unless --force, which converts this name only. A run
that is killed leaves the old file or the new one; the next run finishes the
job and removes what the killed one left behind.

Exit status: 0 on success; 1 when a file cannot be read or converted, or with
--check when a file still needs converting; 2 on a usage error.
"""


def register(app: typer.Typer) -> None:
    @app.command("convert", help=HELP, no_args_is_help=True)
    def convert(
        files: list[str] = typer.Argument(..., metavar="FILE", show_default=False,
                                          help="Job config TOML file(s) to convert; - reads stdin."),
        output: str | None = typer.Option(None, "-o", "--output", metavar="OUT",
                                          help="Write the converted file to OUT (one FILE only)."),
        in_place: bool = typer.Option(False, "--in-place",
                                      help="Replace each FILE, keeping the original as FILE.bak."),
        no_backup: bool = typer.Option(False, "--no-backup",
                                       help="With --in-place: do not keep FILE.bak."),
        force: bool = typer.Option(False, "--force",
                                   help="Overwrite an existing OUT or FILE.bak; convert a FILE "
                                   "that has other hard links."),
        check: bool = typer.Option(False, "--check",
                                   help="Change nothing; exit 1 if any FILE needs converting."),
        diff: bool = typer.Option(False, "--diff",
                                  help="Print a unified diff instead of the converted text."),
        stdin_filename: str | None = typer.Option(None, "--stdin-filename", metavar="NAME",
                                                  help="The name to show for - (stdin) in messages."),
    ) -> None:
        from kforge_cli.cli.convert_render import run, usage_error

        problem = usage_error(files, output, in_place, no_backup, force, check, stdin_filename)
        if problem:
            from kforge_cli.cli.output import fail

            fail(*problem)
            raise typer.Exit(ExitCode.USAGE)
        failed = run(files, output=output, in_place=in_place, backup=not no_backup,
                     force=force, check=check, diff=diff, stdin_filename=stdin_filename)
        if failed:
            raise typer.Exit(ExitCode.FINDINGS)
