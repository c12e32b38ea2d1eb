"""The two errors every checkpoint reader raises, and the one way a file's value enters a message."""

from __future__ import annotations

from typing import Any


class CheckpointError(Exception):
    """A checkpoint that cannot be read: missing, truncated, malformed, absurd or over a cap."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class CheckpointLimitError(CheckpointError):
    """A checkpoint past one of kforge's caps (``cap`` names it in ``limits``)."""

    def __init__(self, message: str, cap: str, hint: str | None = None) -> None:
        super().__init__(f"{message} ({cap})", hint or "the checkpoint is corrupt or hostile; "
                         "kforge's caps are in kforge_cli/checkpoint/limits.py")
        self.cap = cap


class UnsafeCheckpointError(CheckpointError):
    """A pickle in the checkpoint asked for a global outside the allow-list."""

    def __init__(self, message: str, hint: str | None = None,
                 global_name: str | None = None) -> None:
        super().__init__(message, hint)
        self.global_name = global_name


def clip(text: str, limit: int = 200) -> str:
    """A name or path from a file, as text: at most ``limit`` characters, control
    characters escaped so a message cannot rewrite the terminal."""
    shown = text[:limit]
    if not shown.isprintable():
        shown = repr(shown)[1:-1]
    return shown if len(text) <= limit and len(shown) <= limit else shown[: limit - 1] + "\u2026"


# Past this many bits an integer is shown by size: turning it into digits is
# quadratic, and Python refuses to past 4,300 digits.
_INT_BITS_SHOWN = 256
_NESTING_SHOWN = 6


def describe(value: Any, limit: int = 80) -> str:
    """At most ``limit`` characters saying what ``value`` is, whatever a file made it.

    Never calls ``repr`` or ``str`` on a container, never converts a huge
    integer to digits and never follows more than ``limit`` items, so a
    value built to be expensive to print costs no more than a short one.
    """
    limit = max(limit, 8)
    out: list[str] = []
    used = 0
    # Work list of pending pieces: a str is literal text, anything else a value.
    pending: list[Any] = [_Value(value, 0)]
    while pending and used <= limit:
        item = pending.pop()
        if isinstance(item, str):
            text = item
        else:
            text = _render(item.value, item.depth, pending, limit - used)
        out.append(text)
        used += len(text)
    text = "".join(out)
    if pending or len(text) > limit:
        return text[: limit - 1] + "\u2026"
    return text


class _Value:
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
            return f"<{value.bit_length()}-bit integer>"
        return repr(value)
    if kind is str or kind is bytes or kind is bytearray:
        shown = repr(value[: room + 1])
        return shown if len(value) <= room else shown[: room] + "\u2026"
    opener_closer = _BRACKETS.get(kind) or next(
        (b for t, b in _BRACKETS.items() if isinstance(value, t)), None)
    if opener_closer is not None:
        opener, closer = opener_closer
        if depth >= _NESTING_SHOWN:
            return opener + "\u2026" + closer
        items = list(_first_items(value, room))
        pending.append(closer if len(value) <= len(items) else ", \u2026" + closer)
        is_dict = isinstance(value, dict)
        for index in range(len(items) - 1, -1, -1):
            if is_dict:
                key, item = items[index]
                pending.append(_Value(item, depth + 1))
                pending.append(": ")
                pending.append(_Value(key, depth + 1))
            else:
                pending.append(_Value(items[index], depth + 1))
            if index:
                pending.append(", ")
        return opener
    label = getattr(value, "describe_label", None)
    if isinstance(label, str):
        return label[: room + 1]
    return f"<{kind.__name__}>"


_BRACKETS: dict[type, tuple[str, str]] = {
    list: ("[", "]"), tuple: ("(", ")"), dict: ("{", "}"), set: ("{", "}"),
    frozenset: ("frozenset({", "})"),
}


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
