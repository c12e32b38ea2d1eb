"""Errors of the model description, and message formatting that survives absurd values.

A config can hold integers with thousands of digits; Python refuses to turn
those into text (``ValueError`` past 4,300 digits), so every number that goes
into a message passes through :func:`show` first.
"""

from __future__ import annotations

from typing import Any

from kforge_cli.findings import shown


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


class ModelNotDescribed(ModelBuildError):
    """Not a failure of the reference: a plugin's component, whose parameters kforge cannot know."""


def show(value: Any) -> str:
    """``value`` as message text; integers too long to read become their digit count."""
    return shown(value)


def safe_repr(value: Any) -> str:
    """repr() that neither raises on huge integers nor floods a message."""
    return shown(value)
