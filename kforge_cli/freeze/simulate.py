"""Replays a freeze policy the way the DESIGN plan and the reference trainer do.

Three replays are computed per stage boundary:

- the plan (DESIGN "Freeze semantics"): construction, base specs, then every
  stage with ``start_step <= boundary`` in ascending order, later writes win;
- the fresh run: the trainer applies construction + base at build time and
  fires a stage only when its post-optimizer-step counter equals
  ``start_step`` (so only for ``1 <= start_step <= max_steps``);
- the resume at that boundary: construction + base at build time, then, when
  ``freeze_schedule`` is non-empty, the specs of ``effective_freeze(step)``,
  which keeps one spec per module key in the order the key first appeared.

States are bit masks over the parameter list plus one tri-state per unknown
component (True frozen, False trainable, None partly/uncertain).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from typing import Any

from kforge_cli.config.vlm import (
    FreezeSpec,
    FreezeStage,
    built_arch,
    module_patterns_for,
)
from kforge_cli.freeze.matching import Matcher, Selection
from kforge_cli.records import record

# Writer recorded for parameters the model itself freezes (MoT's unused norm).
CONSTRUCTION = "construction"


@record(frozen=True)
class SpecRef:
    """One freeze spec the trainer can hold, and where it sits in the config.

    ``module`` is normally a string; a number or boolean (kept as is by the
    reference's loader) is replayed too, since applying it is what fails.
    """

    module: Any
    frozen: bool
    key: str  # "vlm.freeze[1]" or "vlm.freeze_schedule[0].specs[2]"
    start_step: int | None = None  # None: a base (build-time) spec

    @property
    def is_base(self) -> bool:
        return self.start_step is None

    @property
    def target(self) -> str:
        return "frozen" if self.frozen else "trainable"

    def label(self) -> str:
        return f"{self.module!r}\u2192{self.target}"


@record(frozen=True)
class StageRef:
    index: int  # position in vlm.freeze_schedule
    start_step: int
    specs: tuple[SpecRef, ...]

    @property
    def key(self) -> str:
        return f"vlm.freeze_schedule[{self.index}]"


def _step(value: Any) -> int | None:
    # The loader keeps a boolean start_step as is; the hook's ``start_step == step``
    # and effective_freeze's sort treat it as 0 or 1.
    return int(value) if isinstance(value, int) else None


def _spec_ref(raw: Any, key: str, start_step: int | None) -> SpecRef | None:
    # Malformed entries (bare strings, dicts, unhashable modules) are the
    # loader's to report; the plan only replays what the trainer could run.
    if not isinstance(raw, FreezeSpec) or not isinstance(raw.frozen, bool):
        return None
    if not isinstance(raw.module, (str, int, float)):
        return None
    return SpecRef(raw.module, raw.frozen, key, start_step)


@record(frozen=True)
class FreezePolicy:
    """The well-formed part of a ``vlm`` section that drives freezing."""

    arch: str | None
    base: tuple[SpecRef, ...]
    stages: tuple[StageRef, ...]  # config order
    module_patterns: Mapping[str, Any]
    # The trainer's gate for the stage hook and the resume re-apply is the
    # truthiness of the raw list, malformed entries included.
    has_schedule: bool

    @classmethod
    def from_vlm(cls, vlm: Any) -> FreezePolicy:
        # The model (and its default aliases) follow the config class, not a --set arch string.
        arch = built_arch(vlm)
        patterns = getattr(vlm, "module_patterns", None)
        if not isinstance(patterns, Mapping):
            patterns = module_patterns_for(arch or "joint_decoder")
        raw_base = getattr(vlm, "freeze", None)
        base: list[SpecRef] = []
        if isinstance(raw_base, (list, tuple)):
            for i, raw in enumerate(raw_base):
                spec = _spec_ref(raw, f"vlm.freeze[{i}]", None)
                if spec is not None:
                    base.append(spec)
        raw_schedule = getattr(vlm, "freeze_schedule", None)
        stages: list[StageRef] = []
        if isinstance(raw_schedule, (list, tuple)):
            for i, raw in enumerate(raw_schedule):
                start = _step(raw.start_step) if isinstance(raw, FreezeStage) else None
                if start is None:
                    continue
                raw_specs = raw.specs if isinstance(raw.specs, (list, tuple)) else ()
                specs = []
                for j, raw_spec in enumerate(raw_specs):
                    spec = _spec_ref(raw_spec, f"vlm.freeze_schedule[{i}].specs[{j}]", start)
                    if spec is not None:
                        specs.append(spec)
                stages.append(StageRef(i, start, tuple(specs)))
        return cls(arch, tuple(base), tuple(stages), patterns, bool(raw_schedule))

    # Cached: asked per boundary, and a schedule may have thousands of stages.
    @functools.cached_property
    def ordered_stages(self) -> list[StageRef]:
        # Stable: equal start_steps (a loader error) keep their config order,
        # as Python's sorted() does in effective_freeze.
        return sorted(self.stages, key=lambda s: s.start_step)

    def boundaries(self) -> list[int]:
        return list(self._boundaries)

    @functools.cached_property
    def _boundaries(self) -> tuple[int, ...]:
        return tuple(sorted({0, *(s.start_step for s in self.stages)}))

    def all_specs(self) -> list[SpecRef]:
        return [*self.base, *(spec for stage in self.stages for spec in stage.specs)]

    def effective_specs(self, step: int) -> list[SpecRef]:
        """``effective_freeze(step, base, schedule)``: one spec per module key."""
        boundaries = self._boundaries
        at = bisect.bisect_right(boundaries, step) - 1
        if at < 0:  # before every stage: only the base specs (one per module)
            return list({spec.module: spec for spec in self.base}.values())
        return list(self._effective_by_boundary[at])

    @functools.cached_property
    def _effective_by_boundary(self) -> list[tuple[SpecRef, ...]]:
        # One pass over the stages, a snapshot per boundary: effective_freeze for every
        # boundary without re-walking the schedule each time (quadratic in its length).
        by_module: dict[str, SpecRef] = {}
        for spec in self.base:
            by_module[spec.module] = spec
        snapshots: list[tuple[SpecRef, ...]] = []
        stages = self.ordered_stages
        next_stage = 0
        for boundary in self._boundaries:
            while next_stage < len(stages) and stages[next_stage].start_step <= boundary:
                for spec in stages[next_stage].specs:
                    # Re-assigning a key keeps its original position: this is
                    # why resume order is per alias rather than per time.
                    by_module[spec.module] = spec
                next_stage += 1
            snapshots.append(tuple(by_module.values()))
        return snapshots

    def is_alias(self, module: str) -> bool:
        return module in self.module_patterns

    def stage_of(self, spec: SpecRef) -> StageRef | None:
        for stage in self.stages:
            if spec in stage.specs:
                return stage
        return None


@record(frozen=True)
class FreezeState:
    mask: int  # bit i set: parameter i is frozen
    unknown: tuple[bool | None, ...] = ()  # per unknown component


class Trace:
    """A state plus, per parameter, the spec that last wrote it."""

    def __init__(self, matcher: Matcher, state: FreezeState,
                 writers: dict[SpecRef | str, int] | None = None,
                 unknown_writers: list[SpecRef | str | None] | None = None) -> None:
        self.matcher = matcher
        self.state = state
        self.writers: dict[SpecRef | str, int] = dict(writers or {})
        self.unknown_writers: list[SpecRef | str | None] = list(
            unknown_writers if unknown_writers is not None else [None] * len(state.unknown))

    def fork(self) -> Trace:
        return Trace(self.matcher, self.state, self.writers, self.unknown_writers)

    def apply(self, spec: SpecRef) -> None:
        selection = self.matcher.select(spec.module)
        mask = self.state.mask | selection.mask if spec.frozen else self.state.mask & ~selection.mask
        if selection.mask:
            keep = ~selection.mask
            # Only the writers this spec overwrites change: no key is hashed for the others
            # (a schedule of thousands of specs would otherwise hash every writer each time).
            for writer, owned in list(self.writers.items()):
                remaining = owned & keep
                if remaining == owned:
                    continue
                if remaining:
                    self.writers[writer] = remaining
                else:
                    del self.writers[writer]
            self.writers[spec] = selection.mask
        self.state = FreezeState(mask, self._apply_unknown(selection, spec))

    def _apply_unknown(self, selection: Selection, spec: SpecRef) -> tuple[bool | None, ...]:
        if not selection.may_reach_unknown:
            return self.state.unknown
        out: list[bool | None] = []
        for i, (prefix, current) in enumerate(zip(self.matcher.unknown_prefixes, self.state.unknown)):
            if prefix in selection.covered_unknown:
                out.append(spec.frozen)
                self.unknown_writers[i] = spec
            elif prefix in selection.touched_unknown:
                # Part of an unseen subtree: the state stays definite only if
                # the spec writes what is already there.
                out.append(current if current is spec.frozen else None)
                if current is not spec.frozen:
                    self.unknown_writers[i] = spec
            else:
                out.append(current)
        return tuple(out)

    def apply_all(self, specs: Iterable[SpecRef]) -> Trace:
        for spec in specs:
            self.apply(spec)
        return self

    def writers_of(self, mask: int) -> list[tuple[SpecRef | str, int]]:
        """Split ``mask`` by the spec that last wrote each parameter."""
        out = []
        for writer, written in self.writers.items():
            part = written & mask
            if part:
                out.append((writer, part))
        return out


@record
class StageEffect:
    stage: StageRef
    before: FreezeState
    after: FreezeState


@record
class Analysis:
    """Every replay the plan, the findings and the renderer draw from."""

    names: list[str]
    policy: FreezePolicy
    matcher: Matcher
    max_steps: int | None
    construction: Trace
    build: Trace
    boundaries: list[int]
    design: dict[int, Trace]
    fresh: dict[int, Trace | None]
    resume: dict[int, Trace | None]
    stage_effects: list[StageEffect] = field(default_factory=list)

    @property
    def full_mask(self) -> int:
        return (1 << len(self.names)) - 1

    def reached(self, step: int) -> bool:
        return step >= 0 and (self.max_steps is None or step <= self.max_steps)


def construction_trace(matcher: Matcher, frozen_at_construction: Sequence[bool]) -> Trace:
    mask = 0
    for i, frozen in enumerate(frozen_at_construction):
        if frozen:
            mask |= 1 << i
    writers: dict[SpecRef | str, int] = {CONSTRUCTION: mask} if mask else {}
    unknown = tuple(False for _ in matcher.unknown_prefixes)
    return Trace(matcher, FreezeState(mask, unknown), writers)


def analyse(policy: FreezePolicy, matcher: Matcher, frozen_at_construction: Sequence[bool],
            max_steps: int | None) -> Analysis:
    construction = construction_trace(matcher, frozen_at_construction)
    build = construction.fork().apply_all(policy.base)
    boundaries = policy.boundaries()
    ordered = policy.ordered_stages

    design: dict[int, Trace] = {}
    effects: list[StageEffect] = []
    running = build.fork()
    next_stage = 0
    for boundary in boundaries:
        while next_stage < len(ordered) and ordered[next_stage].start_step <= boundary:
            stage = ordered[next_stage]
            next_stage += 1
            before = running.state
            running.apply_all(stage.specs)
            effects.append(StageEffect(stage, before, running.state))
        design[boundary] = running.fork()

    analysis = Analysis(list(matcher.names), policy, matcher, max_steps, construction, build,
                        boundaries, design, {}, {}, effects)

    fresh_running = build.fork()
    fired = [s for s in ordered if s.start_step >= 1]
    next_fired = 0
    for boundary in boundaries:
        while next_fired < len(fired) and fired[next_fired].start_step <= boundary:
            fresh_running.apply_all(fired[next_fired].specs)
            next_fired += 1
        analysis.fresh[boundary] = fresh_running.fork() if analysis.reached(boundary) else None

    for boundary in boundaries:
        if not analysis.reached(boundary):
            analysis.resume[boundary] = None
            continue
        resumed = build.fork()
        if policy.has_schedule:
            resumed.apply_all(policy.effective_specs(boundary))
        analysis.resume[boundary] = resumed
    return analysis
