"""What `kforge convert` shows: converted text, diffs, status and errors.

The reading, converting and safe writing are ``kforge_cli.convert``'s; this
module loops over the inputs, calls it, and reports.  Data (converted text,
diffs) goes to stdout byte for byte; status and errors go to stderr.  One bad
input never stops the others.  Imported lazily by the command module.
"""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING

from kforge_cli.cli.output import write_stdout

if TYPE_CHECKING:
    from kforge_cli.convert import ConversionResult, Move

STDIN = "-"


def usage_error(
    files: list[str], output: str | None, in_place: bool, no_backup: bool, force: bool, check: bool,
    stdin_filename: str | None,
) -> tuple[str, str | None] | None:
    """The first problem with this combination of arguments, as (message, hint)."""
    reads_stdin = files.count(STDIN)
    if reads_stdin > 1:
        return "stdin (-) can be read only once", None
    if in_place and reads_stdin:
        return "--in-place needs a file; stdin (-) is converted to stdout", None
    if stdin_filename is not None and not reads_stdin:
        return "--stdin-filename only applies when FILE is -", "pass - to read the config from stdin"
    if output is not None and in_place:
        return "-o/--output and --in-place cannot be combined", "pick one way to write the result"
    if output is not None and len(files) > 1:
        return (f"-o/--output takes a single FILE, got {len(files)}",
                "use --in-place to convert several files, or run once per file")
    if check and (output is not None or in_place):
        return ("--check changes nothing; it cannot be combined with -o or --in-place",
                "drop --check to write the converted file")
    if no_backup and not in_place:
        return "--no-backup only applies to --in-place", "add --in-place or drop --no-backup"
    if force and output is None and not in_place:
        return "--force only applies when writing (-o or --in-place)", "drop --force"
    return None


def run(
    files: list[str], *, output: str | None, in_place: bool, backup: bool, force: bool,
    check: bool, diff: bool, stdin_filename: str | None = None,
) -> bool:
    """Process every file; returns True when the exit status should be 1."""
    from kforge_cli.convert import ConversionConflict, ConversionError
    from kforge_cli.convert.files import InputError, WriteFailed, WriteRefused

    job = _Run(output=output, in_place=in_place, backup=backup, force=force, check=check, diff=diff,
               several=len(files) > 1)
    failed = False
    for path in files:
        name = (stdin_filename or "<stdin>") if path == STDIN else path
        try:
            failed |= not job.one(path, name)
        except (InputError, WriteFailed) as exc:
            _complain(f"{name}: {exc.message}")
            failed = True
        except WriteRefused as exc:
            _complain(f"{name}: {exc.message}", hint=exc.hint)
            failed = True
        except ConversionConflict as exc:
            first, *details, advice = exc.message.splitlines()
            _complain(f"{name}: cannot convert: {first}", [d.strip() for d in details], advice)
            failed = True
        except ConversionError as exc:  # TomlSyntaxError's message says what is wrong on its own
            from kforge_cli.convert import TomlSyntaxError

            prefix = "" if isinstance(exc, TomlSyntaxError) else "cannot convert: "
            _complain(f"{name}: {prefix}{exc.message}")
            failed = True

    if check:
        if len(files) > 1 or not job.pending:
            _status(f"{len(job.pending)} file(s) need converting, {job.current} already current")
        if job.pending:
            names = " ".join(shlex.quote(p) for p in job.pending[:3]) + (" ..." if len(job.pending) > 3 else "")
            _status(f"run `kforge convert --in-place {names}` to convert them")
            failed = True
    return failed


class _Run:
    def __init__(self, *, output: str | None, in_place: bool, backup: bool, force: bool, check: bool,
                 diff: bool, several: bool) -> None:
        self.output = output
        self.in_place = in_place
        self.backup = backup
        self.force = force
        self.check = check
        self.diff = diff
        self.several = several
        self.printing = output is None and not in_place and not check and not diff
        self.pending: list[str] = []  # --check: files that need converting
        self.current = 0  # --check: files already current

    def one(self, path: str, name: str) -> bool:
        """Convert one input and show or write the result; raises what went wrong
        with the input, returns False when writing OUT failed (already reported)."""
        if self.in_place:
            self._in_place(path)
            return True
        from kforge_cli.convert import convert_text

        text = _read(path)
        result = convert_text(text)
        if self.diff and result.changed:
            _write_stdout(_unified_diff(name, text, result.text))
        if self.printing:
            if self.several:
                _write_stdout(f"# ==> {name} <==\n")
            _write_stdout(result.text)
            if self.several and result.text and not result.text.endswith("\n"):
                _write_stdout("\n")
        if self.check:
            if result.changed:
                self.pending.append(name)
                _status(f"would convert {name} ({_count(result.moves)})")
            else:
                self.current += 1
        elif self.output is not None:
            return self._write_output(name, None if path == STDIN else path, result)
        return True

    def _in_place(self, path: str) -> None:
        from kforge_cli.convert.files import convert_in_place

        outcome = convert_in_place(path, backup=self.backup, force=self.force)
        result = outcome.conversion
        if not result.changed:
            _status(f"{path} is already in the current layout; left unchanged")
            return
        if self.diff:
            _write_stdout(_unified_diff(path, outcome.original, result.text))
        kept = f"; original kept as {outcome.backup}" if outcome.backup else ""
        _status(f"converted {path} in place ({_count(result.moves)} moved){kept}")
        for note in outcome.notes:
            _status(f"note: {path}: {note}")

    def _write_output(self, name: str, source: str | None, result: ConversionResult) -> bool:
        from kforge_cli.convert.files import WriteFailed, WriteRefused, write_output

        output = self.output
        assert output is not None
        try:
            written = write_output(output, result.text, mode_from=source, force=self.force)
        except WriteRefused as exc:
            _complain(f"{output} {exc.message}", hint=exc.hint)
            return False
        except WriteFailed as exc:
            _complain(f"{output}: {exc.message}")
            return False
        if not written:
            _status(f"{output} already holds the converted text of {name}; left unchanged")
        elif result.changed:
            _status(f"converted {name} -> {output} ({_count(result.moves)} moved)")
        else:
            _status(f"{name} is already in the current layout; copied to {output}")
        return True


def _read(path: str) -> str:
    from kforge_cli.convert.files import read_input, read_stream

    if path == STDIN:
        return read_stream(sys.stdin.buffer)
    return read_input(path)


def _write_stdout(text: str) -> None:
    """Write bytes, not text: the converted file must come out byte for byte
    (no newline translation, no dependence on the locale's encoding)."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        write_stdout(text)
        return
    sys.stdout.flush()
    buffer.write(text.encode("utf-8"))
    buffer.flush()


def _count(moves: list[Move]) -> str:
    return "1 legacy key" if len(moves) == 1 else f"{len(moves)} legacy keys"


def _unified_diff(name: str, old: str, new: str) -> str:
    import difflib

    lines = []
    for line in difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                     fromfile=name, tofile=name):
        lines.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(lines)


# -- messages --------------------------------------------------------------


def _complain(message: str, details: list[str] | None = None, hint: str | None = None) -> None:
    from rich.text import Text

    from kforge_cli.cli.output import stderr_console

    console = stderr_console()
    console.print(Text.assemble(("kforge: ", "bold red"), message), soft_wrap=True)
    for line in details or []:
        console.print(Text(f"  {line}"), soft_wrap=True)
    if hint:
        console.print(Text.assemble(("  hint: ", "dim"), hint), soft_wrap=True)


def _status(message: str) -> None:
    from rich.text import Text

    from kforge_cli.cli.output import stderr_console

    stderr_console().print(Text(message), soft_wrap=True)
