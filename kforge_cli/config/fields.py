"""Declaring config fields once: default, one-line doc, allowed values.

Every section is a plain dataclass whose fields carry this metadata, so the
loader (coercion, did-you-mean), `explain` (docs, defaults) and the rule
checks all read the same single declaration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass
from typing import Any

from kforge_cli.findings import Finding, error, info, warning


def setting(default: Any = MISSING, doc: str = "", *, factory: Callable[[], Any] | None = None,
            choices: tuple[Any, ...] | None = None, enum: bool = False, unit: str | None = None,
            registry: str | None = None) -> Any:
    """A dataclass field with kforge metadata.

    ``choices`` documents the allowed values. With ``enum=True`` the field is an
    Enum/Literal in the reference, so the loader itself rejects other values;
    otherwise a section rule checks them (sometimes only conditionally).
    ``registry`` names the registry category the value is looked up in.
    """
    metadata = {"doc": doc, "choices": choices, "enum": enum, "unit": unit, "registry": registry}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return MISSING


@dataclass
class Checker:
    """Collects the findings of one section's rules under a dotted prefix."""

    prefix: str
    stage: str = "loader"
    findings: list[Finding] = dataclasses.field(default_factory=list)

    def key(self, name: str | None) -> str:
        if not name:
            return self.prefix
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, code: str, name: str | None, message: str, hint: str | None = None) -> None:
        self.findings.append(error(code, message, self.key(name), hint, stage=self.stage))

    def warn(self, code: str, name: str | None, message: str, hint: str | None = None, **data: Any) -> None:
        self.findings.append(warning(code, message, self.key(name), hint, **data))

    def info_note(self, name: str | None, message: str, hint: str | None = None, code: str = "KF400") -> None:
        self.findings.append(info(code, message, self.key(name), hint))

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.findings)


def is_number(value: Any) -> bool:
    """A real number as the reference's comparisons see it (bool counts, like Python)."""
    return isinstance(value, (int, float))
