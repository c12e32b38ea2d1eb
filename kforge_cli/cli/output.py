"""Consoles and the small rendering helpers every subcommand shares.

Text from a user's file (keys, values, file names, tensor and pickle names)
reaches the terminal, CI logs and editors. ``display`` makes it inert: control
characters are shown escaped, so an ANSI sequence cannot repaint the screen and
a newline cannot start a forged ``::error`` workflow command; file names that
are not UTF-8 are shown with their raw bytes escaped.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def display(text: Any) -> str:
    """``text`` with every control character and undecodable byte shown as an escape."""
    return _CONTROL.sub(_escape, str(text))


def display_path(path: str) -> str:
    """A path as output shows it: escaped, and never starting a line with a workflow command."""
    shown = display(path)
    if shown.lstrip().startswith("::"):
        shown = "./" + shown.lstrip()
    return shown


# Tables show this many freeze stages; a schedule of thousands is summarised, not tabulated.
MAX_STAGES_SHOWN = 8
# Rows of one group (aliases, modules) and entries of one cell (a stage's changes) a table shows.
MAX_ROWS_SHOWN = 40
MAX_ENTRIES_SHOWN = 12
# Characters of one name or value a table cell shows: enough to recognise it, never megabytes.
MAX_CELL_CHARS = 200


def clip(text: Any, limit: int = MAX_CELL_CHARS) -> str:
    """``display(text)``, cut to ``limit`` characters with a count of what was left out."""
    raw = str(text)
    # Escapes at most quadruple a character, so this much of the raw text fills the limit.
    shown = display(raw[:limit * 4 + 1] if len(raw) > limit * 4 else raw)
    if len(shown) <= limit and len(raw) <= limit * 4:
        return shown
    return f"{shown[:limit]}… ({len(raw):,} characters)"


def more_text(hidden: int, noun: str) -> str:
    return f"… and {hidden:,} more {noun}"


def _width() -> int | None:
    # COLUMNS pins the width (golden tests, CI logs); otherwise Rich asks the terminal.
    value = os.environ.get("COLUMNS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


# The width of a console whose lines are never wrapped: each renderable is then
# printed at the width it measures, however long its names and paths are.
UNWRAPPED_WIDTH = 1 << 16


def unwrapped(console: Any) -> bool:
    """Output that goes to a pipe or a file with no width asked for: lines are never wrapped."""
    return console.width >= UNWRAPPED_WIDTH


def stdout_console() -> Any:
    from rich.console import Console

    class _Console(Console):
        def print(self, *objects: Any, **kwargs: Any) -> None:
            # Unwrapped: render each line at the width it measures, so nothing is cut or padded.
            if objects and kwargs.get("width") is None and unwrapped(self):
                kwargs["width"] = max(1, max(self.measure(o).maximum for o in objects))
            super().print(*objects, **kwargs)

        def on_broken_pipe(self) -> None:
            # Rich exits 1 here; the verdict, not the reader, decides the exit code.
            self.quiet = True
            stdout_closed()

        def _render_buffer(self, buffer: Any) -> str:
            # Tables pad every cell to its column's width; trailing blanks only get in the
            # way of diffs, greps and golden files, so no line ends with one.
            text: str = super()._render_buffer(buffer)
            return "\n".join(line.rstrip(" ") for line in text.split("\n"))

    width = _width()
    if width is None and not sys.stdout.isatty():
        width = UNWRAPPED_WIDTH
    # Created per invocation so in-process tests that swap sys.stdout are honoured.
    return _Console(file=sys.stdout, width=width, highlight=False, soft_wrap=False, emoji=False)


class NaturalWidth:
    """A renderable printed at the width it needs, even past the terminal's, never wrapped or cut.

    For listings whose lines are looked up by name (``freeze-plan --params``): the terminal
    soft-wraps a long line, but the text keeps every name whole for grep and copy-paste.
    """

    def __init__(self, renderable: Any) -> None:
        self.renderable = renderable


def emit(console: Any, renderable: Any) -> None:
    if isinstance(renderable, NaturalWidth):
        inner = renderable.renderable
        # print(width=...) can only narrow a console, so widen the console itself for this one print.
        from rich.measure import Measurement

        needed = Measurement.get(console, console.options.update_width(UNWRAPPED_WIDTH), inner).maximum
        saved = console.width
        console.width = max(saved, needed)
        try:
            console.print(inner, crop=False)
        finally:
            console.width = saved
        return
    console.print(renderable)


def wrap_words(text: str, width: int | None) -> list[str]:
    """Greedy word wrap that never breaks inside a word (a name, key or path longer than a line stays whole)."""
    if width is None:
        return [text]
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    lines.append(current)
    return lines


def stderr_console() -> Any:
    from rich.console import Console

    return Console(file=sys.stderr, width=_width(), highlight=False, soft_wrap=False, emoji=False)


def print_json(document: Any) -> None:
    import json

    write_stdout(json.dumps(document, indent=2, sort_keys=False) + "\n")


def write_stdout(text: str) -> None:
    """Write to stdout; a reader that stopped early (``| head``) is not a failure of the check."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_closed()


def write_file(path: str, text: str) -> None:
    """Write an output file the user asked for (--output, --svg); a failure is one line and exit 1."""
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        import typer

        from kforge_cli.cli.exitcodes import ExitCode

        fail(f"cannot write {path}: {exc.strerror or exc}")
        raise typer.Exit(ExitCode.FINDINGS) from None


def stdout_closed() -> None:
    """The reader went away: send the rest of the output nowhere, so the verdict still decides the exit code."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def fail(message: str, hint: str | None = None) -> None:
    """One clear line on stderr for problems that are not findings (usage-level)."""
    from rich.markup import escape

    console = stderr_console()
    console.print(f"[bold red]kforge:[/] {escape(display(message))}", markup=True)
    if hint:
        console.print(f"  [dim]hint:[/] {escape(display(hint))}", markup=True)
