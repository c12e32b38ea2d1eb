"""Process entry point: runs the Typer app and maps every outcome to an exit code.

This is the only place that turns exceptions into exit codes, so no raw
traceback reaches a user unless they ask for it with ``--traceback``.
"""

from __future__ import annotations

import sys
import traceback as tb

from kforge_cli.cli.exitcodes import ExitCode

REPORT_URL = "https://github.com/kforge-dev/kforge/issues"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    show_traceback = "--traceback" in args
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
        sys.stderr.write("Interrupted.\n")
        return 130
    except BrokenPipeError:
        # Output piped into `head` and friends closed early: not our failure.
        return ExitCode.OK
    except Exception as bug:  # noqa: BLE001 - the single place that catches everything
        if show_traceback:
            tb.print_exc(file=sys.stderr)
        sys.stderr.write(
            f"kforge: internal error ({type(bug).__name__}: {bug}). This is a bug in kforge; "
            f"please report it at {REPORT_URL} and rerun with --traceback for details.\n"
        )
        return ExitCode.INTERNAL
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
