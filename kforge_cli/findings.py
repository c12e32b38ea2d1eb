"""The one data type every layer reports problems with.

It lives at the package root (not in lint/) because the config loader, the
model builder and the freeze engine all produce findings, and none of them may
import the layers above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)


@dataclass(frozen=True)
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

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def at(self, line: int | None, column: int | None) -> Finding:
        return replace(self, line=line, column=column)

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
        details = {k: v for k, v in self.data.items() if k != "anchor"}
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


def error(code: str, message: str, key: str | None = None, hint: str | None = None,
          stage: str | None = None, **data: Any) -> Finding:
    return Finding(code, ERROR, message, key=key, hint=hint, stage=stage, data=data)


def warning(code: str, message: str, key: str | None = None, hint: str | None = None,
            **data: Any) -> Finding:
    return Finding(code, WARNING, message, key=key, hint=hint, data=data)


def info(code: str, message: str, key: str | None = None, hint: str | None = None,
         **data: Any) -> Finding:
    return Finding(code, INFO, message, key=key, hint=hint, data=data)
