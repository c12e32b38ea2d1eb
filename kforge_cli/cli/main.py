"""Process entry point: runs the Typer app and maps every outcome to an exit code.

This is the only place that turns exceptions into exit codes, so no raw
traceback reaches a user unless they ask for it with ``--traceback`` (accepted
anywhere on the command line).
"""

from __future__ import annotations

import os
import sys
import traceback as tb

from kforge_cli.cli.exitcodes import INTERRUPTED, ExitCode

TRACEBACK_FLAG = "--traceback"
# Set while a command runs with --traceback, so per-file internal errors print theirs too.
TRACEBACK_ENV = "KFORGE_TRACEBACK"


def _split_traceback_flag(args: list[str]) -> tuple[list[str], bool]:
    """Remove --traceback wherever it appears before a ``--`` (it is a global switch)."""
    end = args.index("--") if "--" in args else len(args)
    wanted = TRACEBACK_FLAG in args[:end]
    return [a for i, a in enumerate(args) if not (i < end and a == TRACEBACK_FLAG)], wanted


def main(argv: list[str] | None = None) -> int:
    args, show_traceback = _split_traceback_flag(list(sys.argv[1:] if argv is None else argv))
    previous = os.environ.get(TRACEBACK_ENV)
    if show_traceback:
        os.environ[TRACEBACK_ENV] = "1"
    try:
        return _run(args, show_traceback)
    finally:
        if show_traceback:
            if previous is None:
                os.environ.pop(TRACEBACK_ENV, None)
            else:
                os.environ[TRACEBACK_ENV] = previous


def _run(args: list[str], show_traceback: bool) -> int:
    try:
        from typer.main import get_command

        from kforge_cli.cli.app import app

        # Standalone mode lets Typer render usage errors (exit 2) and --help
        # itself; everything it raises as SystemExit is a decided exit code.
        get_command(app).main(args=args, prog_name="kforge", standalone_mode=True)
    except SystemExit as decided:
        code = decided.code
        if code is None:
            return ExitCode.OK
        if isinstance(code, int):
            return code
        sys.stderr.write(f"{code}\n")
        return ExitCode.FINDINGS
    except KeyboardInterrupt:
        say_interrupted()
        return INTERRUPTED
    except BrokenPipeError:
        # Output piped into `head` and friends closed early: not our failure. Point stdout
        # at /dev/null so the interpreter's final flush does not complain either.
        from kforge_cli.cli.output import stdout_closed

        stdout_closed()
        return ExitCode.OK
    except Exception as bug:
        if show_traceback:
            tb.print_exc(file=sys.stderr)
        sys.stderr.write(
            f"kforge: internal error ({type(bug).__name__}: {str(bug)[:300]}). This is a bug in kforge; please "
            "report it with the command you ran (rerun with --traceback for details).\n")
        return ExitCode.INTERNAL
    return ExitCode.OK


def say_interrupted() -> None:
    try:
        sys.stderr.write("kforge: interrupted\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def report_internal_error(path: str, bug: BaseException) -> None:
    """One line on stderr for a file whose check hit a bug (its traceback too, with --traceback)."""
    if os.environ.get(TRACEBACK_ENV):
        tb.print_exception(type(bug), bug, bug.__traceback__, file=sys.stderr)
    sys.stderr.write(f"kforge: internal error while checking {path} ({type(bug).__name__}); this is a bug in "
                     "kforge, the other files were checked\n")


if __name__ == "__main__":
    sys.exit(main())
