"""What the training script resolves before the first step: registry names declared ``looked_up=STARTUP``."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator

from kforge_cli.config.fields import close_match, spec_of
from kforge_cli.config.job import JobConfig
from kforge_cli.config.registry import registry
from kforge_cli.findings import Finding, shown
from kforge_cli.rules.loading import INVALID_VALUE
from kforge_cli.rules.rule import STARTUP, Subject


def startup_lookups() -> Iterator[tuple[str, str, str]]:
    """(section, field, registry category) of every field the trainer looks up at start-up."""
    hints = typing.get_type_hints(JobConfig)
    for section in dataclasses.fields(JobConfig):
        cls = hints[section.name]
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            continue
        for f in dataclasses.fields(cls):
            spec = spec_of(f)
            if spec.looked_up == STARTUP and spec.registry:
                yield section.name, f.name, spec.registry


def _lookup_check(section: str, name: str, category: str) -> Callable[[Subject], list[Finding]]:
    key = f"{section}.{name}"

    def check(s: Subject) -> list[Finding]:
        value = getattr(getattr(s.job, section), name)
        if (category, value) in registry:
            return []
        names = sorted(registry.list(category))
        close = close_match(value, names)
        return [INVALID_VALUE.finding(f"Unknown {category}: {shown(value)}. Available: {names}", key,
                                      f"did you mean {close!r}?" if close else f"use one of {names}")]

    check.__name__ = f"{category}_registered"
    check.__doc__ = f"{key} names a registered {category} (resolved when the trainer starts)."
    return check


for _section, _name, _category in startup_lookups():
    INVALID_VALUE.check(stage=STARTUP, reads=(f"{_section}.{_name}",))(_lookup_check(_section, _name, _category))
