"""Errors of the model description, and message formatting that survives absurd values.

A config can hold integers with thousands of digits; Python refuses to turn
those into text (``ValueError`` past 4,300 digits), so every number that goes
into a message passes through :func:`show` first.
"""

from __future__ import annotations

import math
from typing import Any

# Past this many bits (about 30 digits) a number is summarised, not spelled out.
_SPELLED_OUT_BITS = 100
_MAX_REPR_CHARS = 80


class ModelBuildError(Exception):
    """The trainer would fail while constructing the model for this job.

    ``key`` is the dotted config key most responsible (``"vlm.mot_image_n_heads"``),
    ``hint`` a concrete fix.
    """

    def __init__(self, message: str, key: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.hint = hint

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, key={self.key!r}, hint={self.hint!r})"


class ModelTooLarge(ModelBuildError):
    """Not a failure of the reference: the model is too large for kforge to list here."""


def show(value: Any) -> str:
    """``value`` as message text; integers too long to read become their digit count."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _SPELLED_OUT_BITS:
        digits = math.floor(value.bit_length() * math.log10(2)) + 1
        return f"{'-' if value < 0 else ''}<an integer of about {digits:,} digits>"
    if isinstance(value, tuple):
        return "(" + ", ".join(show(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, (int, float)):
        return str(value)
    return safe_repr(value)


def safe_repr(value: Any) -> str:
    """repr() that neither raises on huge integers nor floods a message."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _MAX_REPR_CHARS else text[:_MAX_REPR_CHARS - 3] + "..."
