"""Parse JSON from a checkpoint (safetensors headers, HF indexes, metadata.json) within bounds.

The caller has already bounded the size. Before ``json.loads`` runs, a count
of ``[`` and ``{`` bytes (at C speed; brackets inside strings count too, so it
is an upper bound) keeps a document of millions of ``[]`` from turning 16 MiB
into gigabytes of lists. Nesting is bounded twice: the parser stops at
Python's recursion limit (a RecursionError becomes a CheckpointError), and
the parsed value is walked, without recursion, against MAX_JSON_DEPTH.
"""

from __future__ import annotations

import json
from typing import Any

from kforge_cli.checkpoint import limits
from kforge_cli.checkpoint.errors import CheckpointError, CheckpointLimitError
from kforge_cli.findings import shown

_HINT = "the file is corrupt or not what its name says"


class InvalidJsonError(CheckpointError):
    """The bytes are not UTF-8 JSON (as opposed to JSON over a cap)."""


def load_json(data: bytes, path: str, what: str, *, unique_keys: bool = False) -> Any:
    """The document in ``data``, or a :class:`CheckpointError` naming what is wrong.

    ``unique_keys`` refuses an object that repeats a key (safetensors does).
    """
    brackets = data.count(b"[") + data.count(b"{")
    if brackets > limits.MAX_JSON_CONTAINERS:
        raise CheckpointLimitError(
            f"{what} {path} has {brackets:,} '[' and '{{' characters, more than the "
            f"{limits.MAX_JSON_CONTAINERS:,} JSON arrays and objects kforge reads",
            "MAX_JSON_CONTAINERS")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJsonError(f"{what} {path} is not UTF-8 text (byte {exc.start})",
                               hint=_HINT) from None
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys if unique_keys else None)
    except RecursionError:
        value = None
        depth = limits.MAX_JSON_DEPTH + 1
    except ValueError as exc:
        # Decode errors say where, never what; the int-digits limit says how many.
        raise InvalidJsonError(f"{what} {path} is not valid JSON ({str(exc)[:160]})",
                               hint=_HINT) from None
    else:
        depth = nesting(value, limits.MAX_JSON_DEPTH)
    if depth > limits.MAX_JSON_DEPTH:
        raise CheckpointLimitError(
            f"{what} {path} nests JSON arrays and objects more than "
            f"{limits.MAX_JSON_DEPTH} deep", "MAX_JSON_DEPTH")
    return value


def nesting(value: Any, limit: int) -> int:
    """Depth of arrays and objects in a parsed document, walked level by level
    without recursion; the walk stops as soon as it passes ``limit``."""
    level = [value] if type(value) in _CONTAINERS else []
    depth = 0
    while level and depth <= limit:
        depth += 1
        below = []
        for item in level:
            below += [c for c in (item.values() if type(item) is dict else item)
                      if type(c) in _CONTAINERS]
        level = below
    return depth


_CONTAINERS = (dict, list)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {shown(key)}")
            seen.add(key)
    return result
