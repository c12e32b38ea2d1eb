"""Behaviour shared by every config section dataclass.

Programmatic construction behaves like the reference: an invalid section
raises ``ValueError`` from ``__post_init__``. The loader instead builds
sections inside ``collecting()``, where nothing raises and every rule's
finding is gathered, so a file's problems are all reported at once.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from kforge_cli.config.fields import Checker
from kforge_cli.findings import Finding

_collecting: contextvars.ContextVar[bool] = contextvars.ContextVar("kforge_collecting", default=False)


@contextmanager
def collecting() -> Iterator[None]:
    token = _collecting.set(True)
    try:
        yield
    finally:
        _collecting.reset(token)


class Section:
    """Mixin: ``rules(checker)`` states the section's own rules, once."""

    SECTION = ""

    def normalize(self) -> None:
        """Value rewrites the reference performs while constructing (before its checks)."""

    def rules(self, c: Checker) -> None:  # pragma: no cover - every section overrides
        raise NotImplementedError

    def check(self, prefix: str | None = None, stage: str = "loader") -> list[Finding]:
        checker = Checker(self.SECTION if prefix is None else prefix, stage=stage)
        try:
            self.rules(checker)
        except TypeError as mistyped:
            # A value of a type the rule cannot compare; the loader has already
            # reported it as KF102, so this only guards programmatic use.
            checker.error("KF102", None, f"wrong value type: {mistyped}")
        return checker.findings

    def __post_init__(self) -> None:
        self.normalize()
        if _collecting.get():
            return
        for finding in self.check():
            if finding.is_error:
                raise ValueError(finding.message)
