"""`kforge convert`: migrate the legacy ``[model.vlm]`` layout to the current one (see ``kforge_cli.convert``)."""

from __future__ import annotations

import typer

from kforge_cli.cli.exitcodes import ExitCode

# Square brackets are escaped because Typer renders help text as Rich markup.
HELP = """Rewrite job configs that still use the legacy [model.vlm] table.

The VLM settings move to the top-level [vision_encoder] (type, path,
feature_dim, num_tokens), [adapter] (hidden_dim, activation) and [vlm]
sections. Comments and formatting are kept. Without -o or --in-place the
converted text is printed; files already in the current layout are printed
unchanged. PATH may be a directory (its *.toml files are converted) or - to
read stdin (the result goes to stdout).

--in-place locks each FILE, re-reads it, and replaces it atomically, keeping
its owner, group (where permitted), mode and extended attributes; the original
is kept as FILE.bak. A symlink is followed: its target is converted and the
link stays. A FILE with other hard links is refused (the other names would
keep the legacy text) unless --force, which converts this name only. A run
that is killed leaves the old file or the new one; the next run finishes the
job and removes what the killed one left behind.
"""

EXIT = ("Exit status: 0 on success; 1 when a file cannot be read or converted, or with --check when a file still "
        "needs converting; 2 a usage error; 3 an internal error (a bug in kforge).")


def register(app: typer.Typer) -> None:
    @app.command("convert", help=HELP, epilog=EXIT, no_args_is_help=True)
    def convert(
        files: list[str] = typer.Argument(..., metavar="PATH...", show_default=False,
                                          help="Job TOML files, directories (searched for *.toml) or - for "
                                          "standard input."),
        output: str | None = typer.Option(None, "-o", "--output", metavar="PATH",
                                          help="Write the converted file to PATH (one input file only)."),
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
        stdin_filename: str | None = typer.Option(None, "--stdin-filename", metavar="PATH",
                                                  help="The name to show for - (stdin) in messages."),
    ) -> None:
        from kforge_cli.cli.convert_render import run, usage_error
        from kforge_cli.cli.inputs import expand_directories

        given = files
        files = expand_directories(files)
        if given and not files:
            from kforge_cli.cli.options import report_nothing_found

            report_nothing_found()
            return
        problem = usage_error(files, output, in_place, no_backup, force, check, stdin_filename)
        if problem:
            from kforge_cli.cli.output import fail

            fail(*problem)
            raise typer.Exit(ExitCode.USAGE)
        failed = run(files, output=output, in_place=in_place, backup=not no_backup,
                     force=force, check=check, diff=diff, stdin_filename=stdin_filename)
        if failed:
            raise typer.Exit(ExitCode.FINDINGS)
