"""The one data type every layer reports problems with.

It lives at the package root (not in lint/) because the config loader, the
model builder and the freeze engine all produce findings, and none of them may
import the layers above it. Findings are made through their rule
(``kforge_cli.rules``), never by spelling a code here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)
# Data keys the engine uses for placement and root causes, not part of the JSON contract.
INTERNAL_DATA = frozenset({"anchor", "explains"})


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


# Values from a user's file end up in messages; these keep any of them short.
SHOWN_CHARS = 80
SHOWN_ITEMS = 8


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` bounded in time and length, for values that come from untrusted input.

    Huge integers are described by their size (their decimal form may not even
    be printable), long strings and containers are cut, and nothing deeper than
    a few levels is walked.
    """
    return _shown(value, limit, depth=3)


def _shown(value: Any, limit: int, depth: int) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > 64:
            digits = int(value.bit_length() * 0.30103) + 1
            return f"{'-' if value < 0 else ''}<an integer of about {digits:,} digits>"
        return repr(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        text = repr(value[: limit + 1])
        return text if len(value) <= limit else text[:-1] + "\u2026" + text[-1]
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        if depth <= 0:
            return {list: "[\u2026]", tuple: "(\u2026)", dict: "{\u2026}"}.get(type(value), "{\u2026}")
        items = _first(value.items() if isinstance(value, dict) else value, SHOWN_ITEMS + 1)
        parts = []
        for item in items[:SHOWN_ITEMS]:
            if isinstance(value, dict):
                k, v = item
                parts.append(f"{_shown(k, limit // 2, depth - 1)}: {_shown(v, limit // 2, depth - 1)}")
            else:
                parts.append(_shown(item, limit // 2, depth - 1))
        if len(value) > SHOWN_ITEMS:
            parts.append(f"\u2026 {len(value) - SHOWN_ITEMS} more")
        open_, close = {list: "[]", tuple: "()", dict: "{}"}.get(type(value), "{}")
        if isinstance(value, tuple) and len(value) == 1:
            close = ",)"
        text = open_ + ", ".join(parts) + close
        return text if len(text) <= 4 * limit else text[: 4 * limit] + "\u2026" + close
    name = type(value).__name__
    return f"<{name[:limit]}>"


def _first(values: Any, n: int) -> list[Any]:
    out = []
    for item in values:
        if len(out) >= n:
            break
        out.append(item)
    return out
