"""Reading a TOML job file: bytes -> (data, key positions), or a KF001 finding.

Values come from ``tomllib`` (what the reference parses with). Positions come
from a separate, tolerant scan of the same text that records where every key,
table header and array element starts, keyed by the dotted path the findings
use (``vlm.freeze_schedule[1].specs[0].module``). The scan is iterative, so
pathological nesting cannot overflow the stack.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from kforge_cli.findings import Finding
from kforge_cli.rules.loading import UNREADABLE_FILE
from kforge_cli.rules.rule import LOAD

MAX_CONFIG_BYTES = 8 * 1024 * 1024  # job configs are kilobytes; anything this big is not one

Path = tuple  # components: str (key) or int (array index)


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class TomlSource:
    path: str
    text: str
    data: dict[str, Any]
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Every comment outside strings: (line, column of "#", text from "#" to the end of the line).
    comments: list[tuple[int, int, str]] = field(default_factory=list)

    def position(self, key: str | None) -> tuple[int | None, int | None]:
        """Line/column of ``key``, else of its nearest written ancestor."""
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
        long_number = re.search(r"[0-9_]{%d,}" % (sys.get_int_max_str_digits() or 4300), text)
        where = _line_column(text, long_number.start()) if long_number else (None, None)
        return None, UNREADABLE_FILE.finding(
            f"invalid TOML: an integer literal is too long to convert ({str(exc).split(';')[0]})", None,
            "write a realistic number; no config value needs thousands of digits", stage=LOAD).at(*where)
    source = TomlSource(path=path, text=text, data=data)
    scan = _Scan(text)
    try:
        source.positions = scan.document()
    except Exception:  # noqa: BLE001 - positions are a convenience; tomllib already accepted the text
        source.positions = scan.positions
    source.comments = scan.comments
    return source, None


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
# Position scan

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_END = set(",]}#\n\r \t")


class _Scan:
    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self.i = 0
        self.line_starts = [0]
        for m in re.finditer("\n", text):
            self.line_starts.append(m.end())
        self.positions: dict[str, tuple[int, int]] = {}
        self.comments: list[tuple[int, int, str]] = []

    def where(self, index: int) -> tuple[int, int]:
        lo, hi = 0, len(self.line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.line_starts[mid] <= index:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1, index - self.line_starts[lo] + 1

    def record(self, key: str, index: int) -> None:
        self.positions.setdefault(key, self.where(index))

    def skip_blank(self, newlines: bool) -> None:
        text, n = self.text, self.n
        while self.i < n:
            ch = text[self.i]
            if ch in " \t" or (newlines and ch in "\r\n"):
                self.i += 1
            elif ch == "#":
                start = self.i
                while self.i < n and text[self.i] != "\n":
                    self.i += 1
                line, column = self.where(start)
                self.comments.append((line, column, text[start:self.i].rstrip("\r")))
            else:
                return

    def read_key(self) -> list[tuple[str, int]]:
        parts: list[tuple[str, int]] = []
        while True:
            self.skip_blank(newlines=False)
            start = self.i
            if self.i < self.n and self.text[self.i] in "\"'":
                name = self.read_string_value()
            else:
                m = _BARE_KEY.match(self.text, self.i)
                if not m:
                    raise ValueError("key expected")
                name = m.group(0)
                self.i = m.end()
            parts.append((name, start))
            self.skip_blank(newlines=False)
            if self.i < self.n and self.text[self.i] == ".":
                self.i += 1
                continue
            return parts

    def read_string_value(self) -> str:
        text = self.text
        quote = text[self.i]
        if text.startswith(quote * 3, self.i):
            end = text.find(quote * 3, self.i + 3)
            if end < 0:
                raise ValueError("unterminated string")
            while text.startswith(quote, end + 3):  # up to two quotes may close the body
                end += 1
            body = text[self.i + 3: end]
            self.i = end + 3
            return body
        j = self.i + 1
        while j < self.n and text[j] != quote and text[j] != "\n":
            if quote == '"' and text[j] == "\\":
                j += 1
            j += 1
        body = text[self.i + 1: j]
        self.i = j + 1
        return body.replace('\\"', '"') if quote == '"' else body

    def skip_scalar(self) -> None:
        if self.text[self.i] in "\"'":
            self.read_string_value()
            return
        while self.i < self.n and self.text[self.i] not in _SCALAR_END:
            self.i += 1
        # Dates/times may contain one space between date and time.
        if (self.i + 1 < self.n and self.text[self.i] == " " and self.text[self.i + 1].isdigit()
                and self.text[self.i - 1].isdigit()):
            self.i += 1
            while self.i < self.n and self.text[self.i] not in _SCALAR_END:
                self.i += 1

    def value(self, path: str) -> None:
        """Scan one value starting at self.i, recording nested positions, without recursion.

        Keys are carried as formatted strings and extended in place, so a
        key with thousands of dotted parts stays linear.
        """
        stack: list[list[Any]] = []  # [kind, key, next_index]

        def open_or_skip(target: str) -> None:
            ch = self.text[self.i] if self.i < self.n else ""
            if ch == "[":
                self.i += 1
                stack.append(["array", target, 0])
            elif ch == "{":
                self.i += 1
                stack.append(["table", target, 0])
            else:
                self.skip_scalar()

        open_or_skip(path)
        while stack:
            frame = stack[-1]
            kind, base = frame[0], frame[1]
            self.skip_blank(newlines=True)
            if self.i >= self.n:
                return
            ch = self.text[self.i]
            if ch == ",":
                self.i += 1
            elif (kind == "array" and ch == "]") or (kind == "table" and ch == "}"):
                self.i += 1
                stack.pop()
            elif kind == "array":
                index = frame[2]
                frame[2] += 1
                element = f"{base}[{index}]"
                self.record(element, self.i)
                open_or_skip(element)
            else:
                target = self.record_key(base, self.read_key())
                self.skip_blank(newlines=False)
                if self.i < self.n and self.text[self.i] == "=":
                    self.i += 1
                self.skip_blank(newlines=False)
                open_or_skip(target)

    def record_key(self, base: str, keys: list[tuple[str, int]]) -> str:
        """Record every dotted prefix of ``base`` + ``keys``; returns the full key."""
        target = base
        for name, start in keys:
            target = f"{target}.{name}" if target else name
            self.record(target, start)
        return target

    def document(self) -> dict[str, tuple[int, int]]:
        table: Path = ()
        array_tables: dict[Path, int] = {}  # header path (no indices) -> current element index

        def resolve(names: list[str]) -> Path:
            out: list[Any] = []
            plain: list[str] = []
            for name in names:
                plain.append(name)
                out.append(name)
                current = array_tables.get(tuple(plain))
                if current is not None:
                    out.append(current)
            return tuple(out)

        while True:
            self.skip_blank(newlines=True)
            if self.i >= self.n:
                return self.positions
            start = self.i
            if self.text[self.i] == "[":
                is_array = self.text.startswith("[[", self.i)
                self.i += 2 if is_array else 1
                keys = self.read_key()
                names = [k for k, _ in keys]
                self.skip_blank(newlines=False)
                while self.i < self.n and self.text[self.i] == "]":
                    self.i += 1
                self.skip_blank(newlines=False)  # records a trailing comment
                self.i = self.text.find("\n", self.i)
                if self.i < 0:
                    self.i = self.n
                if is_array:
                    plain = tuple(names)
                    array_tables[plain] = array_tables.get(plain, -1) + 1
                    # Deeper array tables restart under a new parent element.
                    for other in list(array_tables):
                        if len(other) > len(plain) and other[: len(plain)] == plain:
                            del array_tables[other]
                    table = resolve(names)
                    self.record(format_path(table[:-1]), start)
                else:
                    table = resolve(names)
                self.record(format_path(table), start)
                continue
            target = self.record_key(format_path(table), self.read_key())
            self.skip_blank(newlines=False)
            if self.i < self.n and self.text[self.i] == "=":
                self.i += 1
            self.skip_blank(newlines=False)
            self.value(target)


def scan_positions(text: str) -> dict[str, tuple[int, int]]:
    return _Scan(text).document()
