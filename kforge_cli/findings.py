"""The one data type every layer reports problems with.

It lives at the package root (not in lint/) because the config loader, the
model builder and the freeze engine all produce findings, and none of them may
import the layers above it. Findings are made through their rule
(``kforge_cli.rules``), never by spelling a code here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import field, replace
from typing import Any

from kforge_cli.records import record

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)
# Data keys the engine uses for placement and root causes, not part of the JSON contract.
INTERNAL_DATA = frozenset({"anchor", "explains"})


@record(frozen=True)
class Finding:
    code: str
    severity: str
    message: str
    key: str | None = None
    line: int | None = None
    column: int | None = None
    hint: str | None = None
    # Where in the reference's life cycle the problem would surface
    # ("loader", "job validation", "model build", "trainer startup",
    # "training loop", "checkpoint load"); None for pure warnings.
    stage: str | None = None
    # Structured details for machine consumers (counts, parameter names...).
    data: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Messages quote values from the file: whatever a rule wrote, no finding prints a
        # thousand-digit number or runs to megabytes (the key too may be a hostile name).
        for name in ("message", "hint", "key"):
            text = getattr(self, name)
            if text is not None and len(text) > _LONG_DIGITS:
                object.__setattr__(self, name, bounded_text(text))

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def at(self, line: int | None, column: int | None) -> Finding:
        return replace(self, line=line, column=column)

    def with_stage(self, stage: str | None) -> Finding:
        return replace(self, stage=stage)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "key": self.key,
            "line": self.line,
            "column": self.column,
            "hint": self.hint,
        }
        if self.stage:
            out["stage"] = self.stage
        details = {k: v for k, v in self.data.items() if k not in INTERNAL_DATA}
        if details:
            out["data"] = details
        return out


def unique(findings: list[Finding]) -> list[Finding]:
    """Drop repeats of the same (code, key, message), keeping the first."""
    seen: set[tuple[str, str | None, str]] = set()
    out = []
    for f in findings:
        ident = (f.code, f.key, f.message)
        if ident not in seen:
            seen.add(ident)
            out.append(f)
    return out


# Values from a user's file or checkpoint end up in messages; this keeps any of them short.
SHOWN_CHARS = 80
# A message, hint or key longer than this keeps its head and tail.
MAX_FINDING_TEXT = 4000
_LONG_DIGITS = 40
_DIGIT_RUN = re.compile(rf"\d{{{_LONG_DIGITS},}}")


def bounded_text(text: str) -> str:
    """``text`` with runs of digits longer than any real setting summarised, and cut to MAX_FINDING_TEXT."""
    text = _DIGIT_RUN.sub(lambda m: f"<a {len(m.group()):,}-digit number>", text)
    if len(text) > MAX_FINDING_TEXT:
        half = MAX_FINDING_TEXT // 2
        text = f"{text[:half]} \u2026 [{len(text) - 2 * half:,} characters] \u2026 {text[-half:]}"
    return text
# Past this many bits an integer is shown by size: its digits may run to megabytes
# (and Python refuses to convert past 4,300 digits).
_INT_BITS_SHOWN = 64
_NESTING_SHOWN = 6
_BRACKETS: dict[type, tuple[str, str]] = {
    list: ("[", "]"), tuple: ("(", ")"), dict: ("{", "}"), set: ("{", "}"),
    frozenset: ("frozenset({", "})"),
}


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` in at most ``limit`` characters, for values that come from untrusted input.

    Costs no more for a value built to be expensive to print than for a short
    one: containers are walked iteratively and only as far as ``limit`` allows,
    huge integers are described by their size, nothing calls ``repr`` on a
    container, and an object may name itself with a ``describe_label`` string.
    """
    limit = max(limit, 8)
    out: list[str] = []
    used = 0
    # Pending pieces, last first: a str is literal text, a _Pending a value still to render.
    pending: list[Any] = [_Pending(value, 0)]
    while pending and used <= limit:
        item = pending.pop()
        text = item if isinstance(item, str) else _render(item.value, item.depth, pending, limit - used)
        out.append(text)
        used += len(text)
    text = "".join(out)
    if pending or len(text) > limit:
        return text[: limit - 1] + "\u2026"
    return text


class _Pending:
    __slots__ = ("depth", "value")

    def __init__(self, value: Any, depth: int) -> None:
        self.value = value
        self.depth = depth


def _render(value: Any, depth: int, pending: list[Any], room: int) -> str:
    """Text for ``value`` itself; its items, if any, are pushed on ``pending``."""
    kind = type(value)
    if value is None or kind is bool or kind is float:
        return repr(value)
    if kind is int:
        if value.bit_length() > _INT_BITS_SHOWN:
            digits = int(value.bit_length() * 0.30103) + 1
            return f"{'-' if value < 0 else ''}<an integer of about {digits:,} digits>"
        return repr(value)
    if kind is str or kind is bytes or kind is bytearray:
        text = repr(value[: room + 1])
        if len(value) <= room and len(text) <= room:
            return text
        # Cut inside the quotes and keep the closing one, so the value still reads as a string.
        return text[: max(room - 2, 2)] + "\u2026" + text[-1]
    brackets = _BRACKETS.get(kind) or next((b for t, b in _BRACKETS.items() if isinstance(value, t)), None)
    if brackets is not None:
        opener, closer = brackets
        if depth >= _NESTING_SHOWN:
            return opener + "\u2026" + closer
        items = _first_items(value, room)
        if len(value) > len(items):
            pending.append(", \u2026" + closer)
        else:
            pending.append(",)" if kind is tuple and len(value) == 1 else closer)
        is_dict = isinstance(value, dict)
        for index in range(len(items) - 1, -1, -1):
            if is_dict:
                key, item = items[index]
                pending.append(_Pending(item, depth + 1))
                pending.append(": ")
                pending.append(_Pending(key, depth + 1))
            else:
                pending.append(_Pending(items[index], depth + 1))
            if index:
                pending.append(", ")
        return opener
    label = getattr(value, "describe_label", None)
    if isinstance(label, str):
        return label[: room + 1]
    return f"<{kind.__name__[:room]}>"


def _first_items(value: Any, room: int) -> list[Any]:
    # Each shown item takes at least two characters, so this many is enough.
    wanted = max(1, room // 2)
    source = value.items() if isinstance(value, dict) else value
    items = []
    for item in source:
        items.append(item)
        if len(items) >= wanted:
            break
    return items


# No name a suggestion could point to is longer; difflib's cost grows with the word's length.
MAX_SUGGESTED_FROM = 200


def close_matches(word: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """``difflib.get_close_matches``, or nothing for a word too long to be a typo of any candidate."""
    if len(word) > MAX_SUGGESTED_FROM:
        return []
    import difflib

    return difflib.get_close_matches(word, list(candidates), n=n, cutoff=cutoff)
