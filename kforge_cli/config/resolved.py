"""A JobConfig as plain JSON data, shaped like the reference's resolved config."""

from __future__ import annotations

import dataclasses
from typing import Any

from kforge_cli.config.job import JobConfig


def to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    return value


def resolved_dict(job: JobConfig) -> dict[str, Any]:
    """Every section and field after loading; enums as strings, tuples as lists, unset sections as null."""
    return {f.name: to_plain(getattr(job, f.name)) for f in dataclasses.fields(job)}
