"""Reading a TOML job file: bytes -> (data, key positions), or a KF001 finding.

Values come from ``tomllib`` (what the reference parses with). Positions come
from a separate, tolerant scan of the same text that records where every key,
table header and array element starts, keyed by the dotted path the findings
use (``vlm.freeze_schedule[1].specs[0].module``). The scan is iterative, so
pathological nesting cannot overflow the stack.
"""

from __future__ import annotations

import bisect
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kforge_cli.records import record

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from kforge_cli.findings import Finding
from kforge_cli.rules.loading import UNREADABLE_FILE
from kforge_cli.rules.rule import LOAD

MAX_CONFIG_BYTES = 8 * 1024 * 1024  # job configs are kilobytes; anything this big is not one
# Real keys have a handful of parts (vlm.module_patterns.vision_encoder); positions stop here.
MAX_KEY_PARTS = 64
# Elements of an array that get a position of their own; later ones (a schedule of 30,000
# stages) are placed at the array, so a hostile file cannot make the scan record millions.
MAX_ARRAY_POSITIONS = 1000

Path = tuple  # components: str (key) or int (array index)


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@record
class TomlSource:
    """A parsed file. Key positions and comments come from a second, slower scan of the text,
    made only when a finding needs a line or the file may hold a suppression comment."""

    path: str
    text: str
    data: dict[str, Any]
    _positions: dict[str, tuple[int, int]] | None = field(default=None, repr=False, compare=False)
    _comments: list[tuple[int, int, str]] | None = field(default=None, repr=False, compare=False)

    @property
    def positions(self) -> dict[str, tuple[int, int]]:
        if self._positions is None:
            try:
                self._positions = scan_positions(self.text)
            except Exception:
                self._positions = {}
        return self._positions

    @property
    def comments(self) -> list[tuple[int, int, str]]:
        """Every comment outside strings: (line, column of "#", text from "#" to the end of the line)."""
        if self._comments is None:
            self._comments = scan_comments(self.text)
        return self._comments

    def may_hold_suppressions(self) -> bool:
        return "kforge" in self.text.lower()

    def position(self, key: str | None) -> tuple[int | None, int | None]:
        """Line/column of ``key``, else of its nearest written ancestor."""
        if key and key.count(".") >= MAX_KEY_PARTS:
            key = ".".join(key.split(".", MAX_KEY_PARTS)[:MAX_KEY_PARTS])  # deeper parts are never recorded
        while key:
            found = self.positions.get(key)
            if found:
                return found
            key = _parent_key(key)
        return None, None


def _parent_key(key: str) -> str:
    if key.endswith("]"):
        return key[: key.rindex("[")]
    return key.rpartition(".")[0]


def read_toml(path: str) -> tuple[TomlSource | None, Finding | None]:
    """Read and parse ``path``; every way it can fail becomes one KF001 finding."""
    from kforge_cli.safe_io import UnreadableFile, read_capped

    try:
        raw = read_capped(path, MAX_CONFIG_BYTES, what="job config")
    except UnreadableFile as exc:
        return None, _unreadable(path, exc.reason, exc.hint or "pass the training-job TOML file")
    return parse_toml_bytes(path, raw)


def parse_toml_bytes(path: str, raw: bytes) -> tuple[TomlSource | None, Finding | None]:
    if b"\x00" in raw[:8192]:
        return None, _unreadable(path, "is a binary file, not TOML", "pass the training-job TOML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, UNREADABLE_FILE.finding(f"{path} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at line {line}, "
                           f"column {col}); TOML files must be UTF-8", None,
                           "re-save the file as UTF-8", stage=LOAD).at(line, col)
    if text.startswith("\ufeff"):
        return None, UNREADABLE_FILE.finding(f"{path} starts with a UTF-8 byte-order mark, which the reference's "
                           "TOML parser rejects", None, "re-save the file as UTF-8 without BOM",
                           stage=LOAD).at(1, 1)
    return parse_toml_text(path, text)


_LOCATION = re.compile(r"\(at line (\d+), column (\d+)\)")


def parse_toml_text(path: str, text: str) -> tuple[TomlSource | None, Finding | None]:
    deep = too_deep_key(text)
    if deep is not None:
        return None, UNREADABLE_FILE.finding(
            f"{path} has a key of more than {MAX_KEY_PARTS} dotted parts; no job config has one, and TOML "
            "parsers take time and memory quadratic in its length", None,
            "remove the key (a job config's keys have at most a few parts, e.g. vlm.module_patterns.adapter)",
            stage=LOAD).at(*_line_column(text, deep))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line = col = None
        match = _LOCATION.search(message)
        if match:
            line, col = int(match.group(1)), int(match.group(2))
            message = _LOCATION.sub("", message).strip()
        elif "end of document" in message:
            line, col = text.count("\n") + 1, 1
        line_text = text.splitlines()[line - 1] if line and line <= len(text.splitlines()) else ""
        return None, UNREADABLE_FILE.finding(f"invalid TOML: {message}", None, _syntax_hint(message, line_text),
                           stage=LOAD).at(line, col)
    except RecursionError:
        return None, UNREADABLE_FILE.finding("invalid TOML: arrays or inline tables are nested too deeply to parse",
                                             None, "flatten the nested values", stage=LOAD)
    except ValueError as exc:
        # tomllib converts decimal integers with int(), which refuses more than
        # sys.get_int_max_str_digits() digits; the reference fails the same way.
        long_number = re.search(rf"[0-9_]{{{sys.get_int_max_str_digits() or 4300},}}", text)
        where = _line_column(text, long_number.start()) if long_number else (None, None)
        return None, UNREADABLE_FILE.finding(
            f"invalid TOML: an integer literal is too long to convert ({str(exc).split(';')[0]})", None,
            "write a realistic number; no config value needs thousands of digits", stage=LOAD).at(*where)
    return TomlSource(path=path, text=text, data=data), None


def _line_column(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _syntax_hint(message: str, line_text: str = "") -> str:
    lowered = message.lower()
    code = line_text.split("#", 1)[0]
    if "unterminated string" in lowered or (
            "illegal character" in lowered and (code.count('"') % 2 or code.count("'") % 2)):
        return "a string on this line is not closed: add the matching quote before the end of the line"
    if "cannot overwrite a value" in lowered or "cannot declare" in lowered:
        return "each key and table may be defined only once"
    if "expected '=' after a key" in lowered:
        return "write key = value; quote keys that contain spaces or dots"
    if "invalid value" in lowered:
        return 'strings need quotes: key = "value"'
    return "fix the TOML syntax at the position shown"


def _unreadable(path: str, what: str, hint: str | None) -> Finding:
    return UNREADABLE_FILE.finding(f"{path} {what}", None, hint, stage=LOAD)


# ---------------------------------------------------------------------------
# The TOML scanner.
#
# The one place in kforge that knows TOML's lexical shapes: keys (bare, quoted,
# dotted), strings in all four forms with every escape, nested arrays and inline
# tables, comments.  It runs only on text tomllib has accepted, so it reports no
# errors; it says where things are.  Two users: the positions above, and the
# legacy-layout conversion (kforge_cli.convert), which rewrites whole statements.
# Every loop is iterative, so pathological nesting cannot overflow the stack.

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_END = frozenset(",]}#\n\r \t")
_COMMENT_OR_STRING = re.compile("[#\"']")


@dataclass(slots=True)  # many instances: the generated __init__ is faster
class KeyPart:
    """One part of a dotted key: its decoded name and where its text sits."""

    name: str
    start: int
    end: int


@dataclass(slots=True)  # many instances: the generated __init__ is faster
class Statement:
    """One top-level line of a document, or several when a value spans lines.

    ``kind`` is "blank", "comment", "header" or "entry"; ``start``/``end``
    cover whole lines (``end`` is just past the last newline).
    """

    kind: str
    start: int
    end: int
    line: int  # 1-based line of ``start``
    first: int = 0  # first character that is not a space or tab
    table: tuple[str, ...] = ()  # entries: the header names of the table they are written in
    keys: list[KeyPart] = field(default_factory=list)
    is_array: bool = False  # headers: [[array of tables]]
    key_end: int = 0
    value_start: int = 0  # entries
    value_end: int = 0
    syntax_end: int = 0  # just past the closing bracket(s) of a header, or the value of an entry
    comment_start: int = -1  # a trailing comment on the last line, -1 if none

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(part.name for part in self.keys)

    @property
    def key_start(self) -> int:
        return self.keys[0].start

    @property
    def full_path(self) -> tuple[str, ...]:
        """A header's table, or the table plus the key of an entry."""
        return self.names if self.kind == "header" else self.table + self.names


@record
class InlinePair:
    """One ``key = value`` of an inline table."""

    keys: list[KeyPart]
    key_end: int
    value_end: int


def _quoted_key_name(raw: str) -> str:
    """The name a quoted key spells.  Escapes are decoded by tomllib itself,
    so the scanner can never disagree with the parser about a name."""
    if raw.startswith("'") or "\\" not in raw:
        return raw[1:-1]
    return next(iter(tomllib.loads(f"{raw} = 0")))


class TomlScanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)

    # -- lexical pieces ------------------------------------------------------

    def skip_blank(self, i: int, newlines: bool = False) -> int:
        """Past spaces and tabs; with ``newlines``, past line breaks and comments too."""
        text, n = self.text, self.n
        while i < n:
            ch = text[i]
            if ch in " \t" or (newlines and ch in "\r\n"):
                i += 1
            elif newlines and ch == "#":
                i = self.line_end(i)
            else:
                break
        return i

    def comments(self) -> Iterator[tuple[int, int, int, int]]:
        """(start, end, line, column) of every comment: a "#" outside any string, to the end of its line."""
        text, n = self.text, self.n
        interesting = _COMMENT_OR_STRING.search
        i, line, line_start = 0, 1, 0
        while True:
            match = interesting(text, i)
            if match is None:
                return
            i = match.start()
            if text[i] == "#":
                end = text.find("\n", i)
                end = n if end < 0 else end
                line += text.count("\n", line_start, i)
                line_start = text.rfind("\n", 0, i) + 1
                yield i, end, line, i - line_start + 1
                i = end
            else:
                i = self.string_end(i)

    def line_end(self, i: int) -> int:
        """Just past the newline that ends the line holding ``i``."""
        found = self.text.find("\n", i)
        return self.n if found < 0 else found + 1

    def string_end(self, i: int) -> int:
        """Just past the string literal opening at ``i`` (any of the four forms).

        In basic strings a backslash always takes the next character with it,
        which covers every escape (``\\"``, ``\\\\``, ``\\u...``, a line-ending
        backslash); a closing triple quote may be preceded by up to two quotes
        that belong to the content.
        """
        text, n = self.text, self.n
        quote = text[i]
        escapes = quote == '"'
        if text.startswith(quote * 3, i):
            j = i + 3
            while True:
                close = text.find(quote, j)
                if close < 0:
                    return n
                if escapes:
                    backslash = text.find("\\", j, close)
                    if backslash >= 0:
                        j = backslash + 2
                        continue
                if text.startswith(quote * 3, close):
                    end = close + 3
                    extra = 0
                    while extra < 2 and end < n and text[end] == quote:
                        end += 1
                        extra += 1
                    return end
                j = close + 1
        j = i + 1
        while True:
            close = text.find(quote, j)
            newline = text.find("\n", j, n if close < 0 else close)
            if newline >= 0:
                return newline  # unterminated; cannot happen in text tomllib accepted
            if close < 0:
                return n
            if escapes:
                backslash = text.find("\\", j, close)
                if backslash >= 0:
                    j = backslash + 2
                    continue
            return close + 1

    def scalar_end(self, i: int) -> int:
        """Just past a string, number, boolean or date-time starting at ``i``."""
        text, n = self.text, self.n
        if i < n and text[i] in "\"'":
            return self.string_end(i)
        start = i
        while i < n and text[i] not in _SCALAR_END:
            i += 1
        # A date and a time may be separated by one space.
        if i + 1 < n and text[i] == " " and text[i + 1].isdigit() and i > start and text[i - 1].isdigit():
            i += 1
            while i < n and text[i] not in _SCALAR_END:
                i += 1
        return i

    def read_key(self, i: int) -> tuple[list[KeyPart], int]:
        """The (dotted) key starting at ``i``: its parts, and the end of the last one."""
        text, n = self.text, self.n
        parts: list[KeyPart] = []
        while True:
            start = self.skip_blank(i)
            if start < n and text[start] in "\"'":
                end = self.string_end(start)
                name = _quoted_key_name(text[start:end])
            else:
                match = _BARE_KEY.match(text, start)
                if not match:
                    raise ValueError(f"key expected at offset {start}")
                end = match.end()
                name = match.group(0)
            parts.append(KeyPart(name, start, end))
            after = self.skip_blank(end)
            if after < n and text[after] == ".":
                i = after + 1
                continue
            return parts, end

    def _past_equals(self, key_end: int) -> int:
        i = self.skip_blank(key_end)
        if i < self.n and self.text[i] == "=":
            i += 1
        return self.skip_blank(i)

    def value_end(self, i: int, path: str | None = None,
                  record: Callable[[str, int], None] | None = None,
                  on_keys: Callable[[list[KeyPart]], None] | None = None) -> int:
        """Just past the value starting at ``i``.  With ``record``, every array
        element and inline-table key inside it is reported under ``path``
        (``path[0]``, ``path.key``) as it is met; ``on_keys`` gets the parts of
        every inline-table key."""
        text, n = self.text, self.n
        stack: list[list[Any]] = []  # [closing bracket, path, next array index]

        def open_or_skip(at: int, target: str | None) -> int:
            ch = text[at] if at < n else ""
            if ch == "[":
                stack.append(["]", target, 0])
                return at + 1
            if ch == "{":
                stack.append(["}", target, 0])
                return at + 1
            return max(self.scalar_end(at), at + 1)  # always make progress

        i = open_or_skip(i, path)
        while stack:
            frame = stack[-1]
            i = self.skip_blank(i, newlines=True)
            if i >= n:
                return n
            ch = text[i]
            if ch == ",":
                i += 1
            elif ch == frame[0]:
                i += 1
                stack.pop()
            elif frame[0] == "]":
                element = None
                if record is not None and frame[1] is not None and frame[2] < MAX_ARRAY_POSITIONS:
                    element = f"{frame[1]}[{frame[2]}]"
                    record(element, i)
                frame[2] += 1
                i = open_or_skip(i, element)
            else:
                keys, key_end = self.read_key(i)
                if on_keys is not None:
                    on_keys(keys)
                target = (_record_key(frame[1], keys, record)
                          if record is not None and frame[1] is not None else None)
                i = open_or_skip(self._past_equals(key_end), target)
        return i

    def inline_pairs(self, open_brace: int) -> list[InlinePair]:
        """The top-level pairs of the inline table whose ``{`` is at ``open_brace``."""
        pairs: list[InlinePair] = []
        i = open_brace + 1
        while True:
            i = self.skip_blank(i, newlines=True)
            if i >= self.n or self.text[i] == "}":
                return pairs
            if self.text[i] == ",":
                i += 1
                continue
            keys, key_end = self.read_key(i)
            i = self.value_end(self._past_equals(key_end))
            pairs.append(InlinePair(keys, key_end, i))

    # -- statements ------------------------------------------------------------

    def _trailing_comment(self, i: int) -> int:
        i = self.skip_blank(i)
        return i if i < self.n and self.text[i] == "#" else -1

    def statements(self) -> Iterator[Statement]:
        """Every top-level statement, in order; together they cover the text."""
        text, n = self.text, self.n
        table: tuple[str, ...] = ()
        pos, line = 0, 1
        while pos < n:
            first = self.skip_blank(pos)
            if first >= n or text[first] in "\r\n":
                statement = Statement("blank", pos, self.line_end(pos), line, first)
            elif text[first] == "#":
                statement = Statement("comment", pos, self.line_end(pos), line, first)
            elif text[first] == "[":
                is_array = text.startswith("[[", first)
                keys, key_end = self.read_key(first + (2 if is_array else 1))
                close = self.skip_blank(key_end) + (2 if is_array else 1)
                statement = Statement(
                    "header", pos, self.line_end(close), line, first, keys=keys,
                    is_array=is_array, key_end=key_end, syntax_end=close,
                    comment_start=self._trailing_comment(close))
                table = statement.names
            else:
                keys, key_end = self.read_key(first)
                value_start = self._past_equals(key_end)
                value_end = self.value_end(value_start)
                statement = Statement(
                    "entry", pos, self.line_end(value_end), line, first, table=table, keys=keys,
                    key_end=key_end, value_start=value_start, value_end=value_end,
                    syntax_end=value_end, comment_start=self._trailing_comment(value_end))
            yield statement
            line += text.count("\n", pos, statement.end)
            pos = statement.end


# Some run of MAX_KEY_PARTS dotted parts: cheap to search for (no nested repetition to
# backtrack through), and absent from every real config.
_DOTTED_RUN = re.compile(r"""(?:\.[ \t]*(?:[\w-]+|"[^"\n]*"|'[^'\n]*')[ \t]*)""" + f"{{{MAX_KEY_PARTS}}}")


def too_deep_key(text: str) -> int | None:
    """Offset of a key with more than MAX_KEY_PARTS dotted parts, if any.

    tomllib spends quadratic time and memory on such a key (30,000 parts: 15 s and 5 GB),
    so it is found before parsing: a regex finds candidates, the scanner confirms them
    (the run may sit inside a string value)."""
    if text.count(".") < MAX_KEY_PARTS or _DOTTED_RUN.search(text) is None:
        return None
    scanner = TomlScanner(text)
    found: list[int] = []

    def check(keys: list[KeyPart]) -> None:
        if len(keys) > MAX_KEY_PARTS and not found:
            found.append(keys[0].start)

    try:
        for statement in scanner.statements():
            if statement.keys:
                check(statement.keys)
            if statement.kind == "entry":
                scanner.value_end(statement.value_start, on_keys=check)
            if found:
                return found[0]
    except ValueError:
        return None  # not TOML the scanner follows: tomllib will say why
    return None


def scan_statements(text: str) -> list[Statement]:
    return list(TomlScanner(text).statements())


# ---------------------------------------------------------------------------
# Positions, from the scanner's statements.


def _record_key(base: str, keys: list[KeyPart], record: Callable[[str, int], None]) -> str:
    """Report the dotted prefixes of ``base`` + ``keys``, up to MAX_KEY_PARTS parts; returns the
    longest one recorded. A hostile key of thousands of parts would otherwise store a quadratic
    amount of text (30,000 parts: gigabytes); anything deeper is placed at its recorded prefix."""
    target = base
    depth = base.count(".") + 1 if base else 0
    for part in keys:
        if depth >= MAX_KEY_PARTS:
            break
        target = f"{target}.{part.name}" if target else part.name
        depth += 1
        record(target, part.start)
    return target


class _Positions:
    def __init__(self, text: str) -> None:
        self.scanner = TomlScanner(text)
        self.line_starts = [0]
        for m in re.finditer("\n", text):
            self.line_starts.append(m.end())
        self.positions: dict[str, tuple[int, int]] = {}

    def where(self, index: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.line_starts, index) - 1
        return line + 1, index - self.line_starts[line] + 1

    def record(self, key: str, index: int) -> None:
        if key not in self.positions:  # the first place a key is written wins
            self.positions[key] = self.where(index)

    def document(self) -> dict[str, tuple[int, int]]:
        table: Path = ()
        array_tables: dict[Path, int] = {}  # header path (no indices) -> current element index

        def resolve(names: tuple[str, ...]) -> Path:
            out: list[Any] = []
            for depth, name in enumerate(names, 1):
                out.append(name)
                current = array_tables.get(names[:depth])
                if current is not None:
                    out.append(current)
            return tuple(out)

        for statement in self.scanner.statements():
            if statement.kind == "header":
                names = statement.names
                if statement.is_array:
                    array_tables[names] = array_tables.get(names, -1) + 1
                    # Deeper array tables restart under a new parent element.
                    for other in list(array_tables):
                        if len(other) > len(names) and other[: len(names)] == names:
                            del array_tables[other]
                    table = resolve(names)
                    self.record(format_path(table[:-1]), statement.first)
                else:
                    table = resolve(names)
                self.record(format_path(table), statement.first)
            elif statement.kind == "entry":
                target = _record_key(format_path(table), statement.keys, self.record)
                self.scanner.value_end(statement.value_start, target, self.record)
        return self.positions


def scan_positions(text: str) -> dict[str, tuple[int, int]]:
    return _Positions(text).document()


def scan_comments(text: str) -> list[tuple[int, int, str]]:
    """Every comment as (line, column of "#", its text), wherever it sits, strings skipped."""
    return [(line, column, text[start:end].rstrip("\r"))
            for start, end, line, column in TomlScanner(text).comments()]
