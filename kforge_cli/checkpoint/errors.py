"""The errors every checkpoint reader raises, and ``clip`` for names and paths read from a file."""

from __future__ import annotations


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
