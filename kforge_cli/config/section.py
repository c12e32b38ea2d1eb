"""Behaviour shared by every config section dataclass.

Programmatic construction behaves like the reference: an invalid section
raises ``ValueError`` from ``__post_init__``. The loader instead builds
sections inside ``collecting()``, where nothing raises and every finding is
gathered, so a file's problems are all reported at once.

A section's checks are its fields' declared constraints (``config.fields``)
followed by ``rules()``, the few that a declaration cannot state.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

from kforge_cli.config.fields import Checker, field_findings
from kforge_cli.findings import Finding
from kforge_cli.rules.loading import WRONG_TYPE
from kforge_cli.rules.rule import LOAD

_collecting: contextvars.ContextVar[bool] = contextvars.ContextVar("kforge_collecting", default=False)


@contextmanager
def collecting() -> Iterator[None]:
    token = _collecting.set(True)
    try:
        yield
    finally:
        _collecting.reset(token)


class Section:
    """Mixin for the section dataclasses."""

    SECTION: ClassVar[str] = ""

    def normalize(self) -> None:
        """Value rewrites the reference performs while constructing (before its checks)."""

    def rules(self, c: Checker) -> None:
        """Checks of this section that its field declarations cannot express."""

    def check(self, prefix: str | None = None, stage: str = LOAD) -> list[Finding]:
        prefix = self.SECTION if prefix is None else prefix
        checker = Checker(prefix, stage=stage)
        try:
            findings, _ = field_findings(self, prefix)
            checker.findings.extend(findings)
            self.rules(checker)
        except TypeError as mistyped:
            # A value of a type the rule cannot compare; the loader has already
            # reported it as a wrong type, so this only guards programmatic use.
            checker.report(WRONG_TYPE, None, f"wrong value type: {mistyped}")
        return checker.findings

    def __post_init__(self) -> None:
        self.normalize()
        if _collecting.get():
            return
        for finding in self.check():
            if finding.is_error:
                raise ValueError(finding.message)
