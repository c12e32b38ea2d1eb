"""Words for freeze findings: parameter sets, stages, specs, and the fixes that name them.

Pure helpers over the plan's data; the KF3xx rules (``kforge_cli.rules.freeze``)
build their messages with them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from kforge_cli.findings import close_matches
from kforge_cli.freeze.matching import alias_patterns, indices, popcount
from kforge_cli.freeze.simulate import CONSTRUCTION, FreezePolicy, SpecRef, StageRef
from kforge_cli.freeze.units import human_count, listed, plural
from kforge_cli.records import record

_EXAMPLES = 3


@record
class Context:
    """What the rules need to describe parameters: names, sizes, step ranges."""

    names: Sequence[str]
    numels: Sequence[int]
    construction_frozen: int
    boundaries: Sequence[int]
    alias_masks: dict[str, int]
    unknown_prefixes: Sequence[str]

    def numel(self, mask: int) -> int:
        return sum(self.numels[i] for i in indices(mask))

    def size(self, mask: int) -> str:
        return f"{plural(popcount(mask), 'parameter')} ({human_count(self.numel(mask))} elements)"

    def examples(self, mask: int) -> str:
        picked = indices(mask)
        shown = ", ".join(self.names[i] for i in picked[:_EXAMPLES])
        return shown + (", \u2026" if len(picked) > _EXAMPLES else "")

    def describe(self, mask: int) -> str:
        """'the 9 parameters of alias 'x' (37.1K elements)', or a count with examples."""
        whole = [alias for alias, m in self.alias_masks.items() if m == mask]
        n, numel = popcount(mask), human_count(self.numel(mask))
        if whole:
            count = "the one parameter" if n == 1 else f"the {n} parameters"
            return f"{count} of alias {whole[0]!r} ({numel} elements)"
        return f"{plural(n, 'parameter')} ({numel} elements, e.g. {self.examples(mask)})"

    def data(self, mask: int) -> dict[str, Any]:
        return {"count": popcount(mask), "numel": self.numel(mask),
                "params": [self.names[i] for i in indices(mask)]}

    def step_range(self, start: int) -> str:
        later = [b for b in self.boundaries if b > start]
        return f"{start}+" if not later else f"{start}\u2013{later[0] - 1}"


def stage_label(start_step: int | None, ctx: Context | None = None) -> str:
    """'build-time freeze', 'stage 10\u201319' (its step range) or 'stage at step 10'."""
    if start_step is None:
        return "build-time freeze"
    if ctx is not None:
        return f"stage {ctx.step_range(start_step)}"
    return f"stage at step {start_step}"


def patterns_text(policy: FreezePolicy, module: str) -> str:
    if policy.is_alias(module):
        value = policy.module_patterns[module]
        if isinstance(value, str):
            return f"alias {module!r} = {value!r}, a string: one pattern per character"
        return f"alias {module!r} = {list(alias_patterns(value))}"
    return f"raw pattern {module!r}"


def first_raising_step(spec: SpecRef, max_steps: int | None, dyn_ckpt_covers_step0: bool) -> int | None:
    """The first step at which ``effective_freeze(step, ..., valid_modules)`` meets ``spec``.

    The loop evaluates it after every optimizer step (steps 1..max_steps) for
    the checkpoint metadata, and at step 0 when a dyn_ckpt_window covers it.
    Base specs and stages with ``start_step <= step`` are included.
    """
    start = spec.start_step if spec.start_step is not None else 0
    if dyn_ckpt_covers_step0 and start <= 0:
        return 0
    first = max(start, 1)
    if max_steps is not None and first > max_steps:
        return None
    return first


def application_step(spec: SpecRef, max_steps: int | None) -> int | None:
    """When a fresh run applies ``spec``: 0 at build (vlm.freeze), a stage's start_step when the
    loop's hook fires it (1..max_steps), None when it never does."""
    if spec.start_step is None:
        return 0
    if spec.start_step < 1 or (max_steps is not None and spec.start_step > max_steps):
        return None
    return spec.start_step


def applied_in_fresh_run(spec: SpecRef, max_steps: int | None) -> bool:
    return application_step(spec, max_steps) is not None


def alias_name_for(pattern: str, taken: Sequence[str]) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", pattern) if w]
    name = "_".join(words) or "custom"
    if name[0].isdigit():
        name = "m_" + name
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    return candidate


def toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(p) for p in items) + "]"


def specs_text(stage: StageRef) -> str:
    return listed([spec.label() for spec in stage.specs], ", ", limit=8, noun="more specs") or "no specs"


def writer_text(writer: SpecRef | str | None, ctx: Context, *, with_stage: bool = True) -> str:
    if writer is None:
        return "nothing (its default state)"
    if writer == CONSTRUCTION:
        return "the model itself at construction (the parameter is unused in the forward pass)"
    assert isinstance(writer, SpecRef)
    text = f"{writer.key} {writer.label()}"
    return f"{text} ({stage_label(writer.start_step, ctx)})" if with_stage else text


def suggest_module(module: str, ctx: Context, policy: FreezePolicy) -> str:
    candidates = set(policy.module_patterns)
    for name in ctx.names:
        parts = name.split(".")
        candidates.update(".".join(parts[:k]) for k in range(1, min(len(parts), 4)))
    candidates.discard(module)
    close = close_matches(module.rstrip(".*"), sorted(candidates), n=1, cutoff=0.75)
    return f"did you mean {close[0]!r}? " if close else ""
