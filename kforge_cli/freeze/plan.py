"""The freeze plan: what is frozen at every stage boundary, and why it may differ in practice.

``plan_freeze`` takes the parameter list of a model (names, shapes, which ones
the model freezes itself) and the ``vlm`` section, and returns plain data: the
DESIGN frozen set per boundary, what a fresh run and a resume really end with,
which parameters the optimizer holds, and a per-alias / per-module summary.
The freeze rules (``kforge_cli.rules.freeze``) judge it; rendering lives in
``kforge_cli.cli.freeze_render``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

from kforge_cli.freeze.describe import Context
from kforge_cli.freeze.matching import Matcher, bit_selectors, popcount
from kforge_cli.freeze.simulate import Analysis, FreezePolicy, SpecRef, analyse
from kforge_cli.records import record

__all__ = [
    "FreezeMetaMismatch", "FreezePlan", "ParamRecord", "PlanRow", "RowCell", "SpecRef", "StagePlan",
    "StepState", "UnknownPart", "compare_freeze_metadata", "row_cells",
    "effective_freeze_error", "effective_freeze_specs", "expected_freeze_metadata", "plan_for_job",
    "plan_freeze", "records_from",
    "state_at_step",
]

FROZEN, TRAINABLE, PARTIAL, EMPTY, UNKNOWN = "frozen", "trainable", "partial", "empty", "unknown"


@dataclass(frozen=True, slots=True)  # many instances: the generated __init__ is faster
class ParamRecord:
    name: str
    shape: tuple[int, ...]
    numel: int = -1  # computed from shape when not given
    frozen_at_construction: bool = False
    # Taken from a checkpoint to stand in for a component that could not be built.
    stand_in: bool = False

    def __post_init__(self) -> None:
        shape = self.shape
        if type(shape) is not tuple or set(map(type, shape)) - {int}:  # already ints: the usual case
            object.__setattr__(self, "shape", tuple(int(d) for d in shape))
        if self.numel < 0:
            object.__setattr__(self, "numel", math.prod(self.shape))


@record(frozen=True)
class UnknownPart:
    """A subtree whose parameters are not known (e.g. an HF encoder not available offline)."""

    prefix: str
    reason: str = ""


def records_from(params: Iterable[Any], *, stand_in: bool = False) -> list[ParamRecord]:
    """ParamRecords from ParamRecord/ParamInfo-like objects or ``(name, shape)`` pairs."""
    out = []
    for p in params:
        if isinstance(p, ParamRecord):
            out.append(p)
        elif isinstance(p, (tuple, list)):
            out.append(ParamRecord(p[0], tuple(p[1]), stand_in=stand_in))
        else:
            out.append(ParamRecord(p.name, tuple(p.shape), getattr(p, "numel", -1),
                                   bool(getattr(p, "frozen_at_construction", False)),
                                   bool(getattr(p, "stand_in", stand_in))))
    return out


def _unknown_parts(unknown: Iterable[Any]) -> list[UnknownPart]:
    out = []
    for u in unknown:
        if isinstance(u, UnknownPart):
            out.append(u)
        elif isinstance(u, str):
            out.append(UnknownPart(u))
        elif isinstance(u, (tuple, list)):
            out.append(UnknownPart(str(u[0]), str(u[1]) if len(u) > 1 else ""))
        else:
            out.append(UnknownPart(u.prefix, getattr(u, "reason", "") or ""))
    return out


@dataclass(frozen=True, slots=True)  # one per row and stage: the generated __init__ is faster
class RowCell:
    state: str  # frozen | trainable | partial | empty | unknown
    frozen_count: int
    total_count: int
    frozen_numel: int
    total_numel: int
    has_unknown: bool = False  # part of the row could not be built

    @property
    def trainable_count(self) -> int:
        return self.total_count - self.frozen_count

    @property
    def trainable_numel(self) -> int:
        return self.total_numel - self.frozen_numel


@record
class PlanRow:
    label: str
    kind: str  # "alias" or "module"
    patterns: tuple[str, ...]
    count: int
    numel: int
    unknown_prefixes: tuple[str, ...]
    cells: list[RowCell]  # one per stage
    mask: int = field(default=0, repr=False, compare=False)


@record
class StagePlan:
    start_step: int
    end_step: int | None
    specs: list[SpecRef]  # newly applied at this boundary (base specs at the first one)
    frozen: list[str]  # DESIGN semantics, in parameter order
    frozen_count: int
    trainable_count: int
    frozen_numel: int
    trainable_numel: int
    # What the reference ends with at this boundary; None when the run never gets there.
    fresh_run_frozen: list[str] | None
    resume_frozen: list[str] | None
    reached: bool
    unknown_frozen: dict[str, bool | None] = field(default_factory=dict)

    @property
    def step_range(self) -> str:
        if self.end_step is None:
            return f"{self.start_step}+"
        if self.end_step == self.start_step:
            return str(self.start_step)
        return f"{self.start_step}\u2013{self.end_step}"


@record
class FreezePlan:
    arch: str | None  # None for a text-only job
    params: list[ParamRecord]
    stages: list[StagePlan]
    optimizer_param_names: list[str]
    rows: list[PlanRow]
    notes: list[str]
    max_steps: int | None
    analysis: Analysis = field(repr=False, compare=False)
    unknown: list[UnknownPart] = field(default_factory=list)
    saved_step: int | None = None
    dyn_ckpt_covers_step0: bool = False

    @property
    def total_numel(self) -> int:
        return sum(p.numel for p in self.params)

    @property
    def build_frozen(self) -> list[str]:
        trainable = set(self.optimizer_param_names)
        return [p.name for p in self.params if p.name not in trainable]

    @property
    def fresh_run_differs_at(self) -> list[int]:
        return [s.start_step for s in self.stages
                if s.fresh_run_frozen is not None and s.fresh_run_frozen != s.frozen]

    @property
    def resume_differs_at(self) -> list[int]:
        return [s.start_step for s in self.stages
                if s.resume_frozen is not None and s.resume_frozen != s.frozen]

    def stage_index(self, step: int) -> int:
        """The stage whose range contains ``step`` (the first stage for earlier steps)."""
        found = 0
        for i, stage in enumerate(self.stages):
            if stage.start_step <= step:
                found = i
        return found

    @property
    def saved_stage_index(self) -> int | None:
        return None if self.saved_step is None else self.stage_index(self.saved_step)

    def context(self) -> Context:
        """What messages need to describe sets of this plan's parameters."""
        a = self.analysis
        return Context([p.name for p in self.params], [p.numel for p in self.params],
                       a.construction.state.mask, a.boundaries,
                       {alias: a.matcher.select(alias).mask for alias in a.policy.module_patterns},
                       [u.prefix for u in self.unknown])

    def fresh_vs_plan(self) -> dict[int, int]:
        """Per stage with start_step <= 0: the parameters a fresh run leaves unlike the plan."""
        a = self.analysis
        out: dict[int, int] = {}
        for stage in a.policy.stages:
            if stage.start_step > 0:
                continue
            diff = 0
            for boundary in a.boundaries:
                fresh = a.fresh.get(boundary)
                if fresh is not None and boundary >= stage.start_step:
                    diff |= fresh.state.mask ^ a.design[boundary].state.mask
            touched = 0
            for spec in stage.specs:
                touched |= a.matcher.select(spec.module).mask
            out[stage.index] = diff & touched
        return out


@record
class StepState:
    step: int
    stage_index: int
    stage: StagePlan
    frozen: list[str]  # DESIGN semantics
    fresh_run_frozen: list[str] | None  # None: a fresh run never reaches this step
    resume_frozen: list[str]  # a run resumed from a checkpoint saved at this step
    reached: bool
    # Per unbuilt component: True frozen, False trainable, None partly / cannot tell.
    unknown_frozen: dict[str, bool | None] = field(default_factory=dict)
    fresh_run_unknown_frozen: dict[str, bool | None] = field(default_factory=dict)
    resume_unknown_frozen: dict[str, bool | None] = field(default_factory=dict)


def _names(mask: int, names: Sequence[str]) -> list[str]:
    return list(compress(names, bit_selectors(mask)))


def _numel(mask: int, numels: Sequence[int]) -> int:
    return sum(compress(numels, bit_selectors(mask)))


def _cell(mask: int, frozen_mask: int, numels: Sequence[int],
          unknown_states: Sequence[bool | None]) -> RowCell:
    total = popcount(mask)
    frozen = popcount(mask & frozen_mask)
    states: list[Any] = []
    if total:
        states.append(True if frozen == total else False if frozen == 0 else PARTIAL)
    states.extend(unknown_states)
    if not states:
        state = EMPTY
    elif PARTIAL in states or (True in states and False in states):
        state = PARTIAL
    elif None in states:
        state = UNKNOWN
    else:
        state = FROZEN if states[0] is True else TRAINABLE
    return RowCell(state, frozen, total, _numel(mask & frozen_mask, numels), _numel(mask, numels),
                   bool(unknown_states))


def _top_level(name: str) -> str:
    return name.split(".", 1)[0]


def _row_groups(names: Sequence[str], matcher: Matcher, aliases: Iterable[str],
                unknown: Sequence[str]) -> list[tuple[str, str, tuple[str, ...], int, tuple[str, ...]]]:
    """(label, kind, patterns, mask, unknown prefixes) for every alias and top-level module."""
    groups = []
    for alias in aliases:
        selection = matcher.select(alias)
        reach = tuple(p for p in unknown
                      if p in selection.covered_unknown or p in selection.touched_unknown)
        groups.append((alias, "alias", selection.patterns, selection.mask, reach))
    tops: dict[str, int] = {}
    for i, name in enumerate(names):
        top = _top_level(name)
        tops[top] = tops.get(top, 0) | (1 << i)
    for prefix in unknown:
        tops.setdefault(_top_level(prefix), 0)
    for top, mask in tops.items():
        reach = tuple(p for p in unknown if _top_level(p) == top)
        groups.append((top, "module", (), mask, reach))
    return groups


def plan_freeze(params: Iterable[Any], vlm: Any, max_steps: int | None, *,
                unknown_prefixes: Iterable[Any] = (), dyn_ckpt_covers_step0: bool = False,
                saved_step: int | None = None) -> FreezePlan:
    """The freeze plan of one job.

    ``params``: ParamRecords (or ParamInfo-like objects) in ``named_parameters()``
    order, stand-ins for unbuilt components flagged ``stand_in``.
    ``vlm``: the job's VLMConfig, or None for a text-only job.
    ``unknown_prefixes``: components whose parameters are unknown (strings,
    UnknownPart, or objects with ``prefix``/``reason``); a prefix that stand-in
    records cover is treated as known.
    ``max_steps``: ``train.max_steps`` (None: treat every stage as reached).
    """
    records = records_from(params)
    names = [r.name for r in records]
    numels = [r.numel for r in records]
    unknown = [u for u in _unknown_parts(unknown_prefixes)
               if not any(n.startswith(u.prefix + ".") for r, n in zip(records, names) if r.stand_in)]
    notes = _notes(records, unknown)

    if vlm is None:
        policy = FreezePolicy(None, (), (), {}, False)
        notes.insert(0, "text-only job (no [vlm] section): no freeze specs apply; only parameters "
                        "the model freezes itself are frozen")
    else:
        policy = FreezePolicy.from_vlm(vlm)
    matcher = Matcher(names, policy.module_patterns, [u.prefix for u in unknown])
    analysis = analyse(policy, matcher, [r.frozen_at_construction for r in records], max_steps)

    boundaries = analysis.boundaries
    stages: list[StagePlan] = []
    specs_starting: dict[int, list[SpecRef]] = {}
    for stage in policy.ordered_stages:
        specs_starting.setdefault(stage.start_step, []).extend(stage.specs)
    for i, boundary in enumerate(boundaries):
        design = analysis.design[boundary].state
        fresh = analysis.fresh.get(boundary)
        resumed = analysis.resume.get(boundary)
        new_specs = list(specs_starting.get(boundary, ()))
        if i == 0:
            new_specs = [*policy.base, *new_specs]
        stages.append(StagePlan(
            start_step=boundary,
            end_step=boundaries[i + 1] - 1 if i + 1 < len(boundaries) else None,
            specs=new_specs,
            frozen=_names(design.mask, names),
            frozen_count=popcount(design.mask),
            trainable_count=len(names) - popcount(design.mask),
            frozen_numel=_numel(design.mask, numels),
            trainable_numel=sum(numels) - _numel(design.mask, numels),
            fresh_run_frozen=None if fresh is None else _names(fresh.state.mask, names),
            resume_frozen=None if resumed is None else _names(resumed.state.mask, names),
            reached=analysis.reached(boundary),
            unknown_frozen={u.prefix: design.unknown[k] for k, u in enumerate(unknown)},
        ))

    aliases = list(policy.module_patterns)
    groups = _row_groups(names, matcher, aliases, [u.prefix for u in unknown])
    rows = []
    prefix_index = {u.prefix: k for k, u in enumerate(unknown)}
    for label, kind, patterns, mask, reach in groups:
        cells = []
        for boundary in boundaries:
            state = analysis.design[boundary].state
            cells.append(_cell(mask, state.mask, numels, [state.unknown[prefix_index[p]] for p in reach]))
        rows.append(PlanRow(label, kind, patterns, popcount(mask), _numel(mask, numels), reach, cells, mask))

    build = analysis.build.state.mask
    plan = FreezePlan(
        arch=policy.arch if vlm is not None else None,
        params=records,
        stages=stages,
        optimizer_param_names=[n for i, n in enumerate(names) if not build >> i & 1],
        rows=rows,
        notes=notes,
        max_steps=max_steps,
        analysis=analysis,
        unknown=unknown,
        saved_step=saved_step,
        dyn_ckpt_covers_step0=dyn_ckpt_covers_step0,
    )
    if saved_step is not None:
        plan.notes.append(_saved_note(plan, saved_step))
    return plan


def plan_for_job(job: Any, params: Iterable[Any], *, unknown: Iterable[Any] = (),
                 stand_ins: Iterable[Any] = (), saved_step: int | None = None) -> FreezePlan:
    """``plan_freeze`` with the knobs read from a loaded JobConfig.

    ``params`` and ``unknown`` are typically ``MetaModel.parameters`` / ``.unknown``;
    ``stand_ins`` are ``(name, shape)`` records from a checkpoint standing in
    for an unknown component.
    """
    max_steps = getattr(getattr(job, "train", None), "max_steps", None)
    if not isinstance(max_steps, int) or isinstance(max_steps, bool):
        max_steps = None
    checkpoint = getattr(job, "checkpoint", None)
    covers = getattr(checkpoint, "covers_step0", None)
    records = [*records_from(params), *records_from(stand_ins, stand_in=True)]
    return plan_freeze(records, getattr(job, "vlm", None), max_steps, unknown_prefixes=unknown,
                       dyn_ckpt_covers_step0=bool(covers()) if callable(covers) else False,
                       saved_step=saved_step)


def _notes(records: Sequence[ParamRecord], unknown: Sequence[UnknownPart]) -> list[str]:
    notes = []
    for u in unknown:
        notes.append(f"{u.prefix}: not built" + (f" ({u.reason})" if u.reason else ""))
    if unknown:
        notes.append("parameters of unbuilt components are unknown: no finding claims that a spec "
                     "matches nothing there or that nothing is trainable")
    stand_ins = [r for r in records if r.stand_in]
    if stand_ins:
        tops = sorted({_top_level(r.name) for r in stand_ins})
        notes.append(f"{', '.join(tops)}: {len(stand_ins)} parameters taken from the checkpoint "
                     "(stand-ins for a component that could not be built)")
    constructed = [r.name for r in records if r.frozen_at_construction]
    if constructed:
        notes.append(f"frozen by the model at construction: {', '.join(constructed)}")
    return notes


def _saved_note(plan: FreezePlan, step: int) -> str:
    at = state_at_step(plan, step)
    differs = "" if at.resume_frozen == at.frozen else (
        f"; a resume there ends with {len(at.resume_frozen)} frozen parameters instead of "
        f"{len(at.frozen)} (see the resume findings)")
    return f"checkpoint saved at step {step}: stage {at.stage.step_range}{differs}"


def state_at_step(plan: FreezePlan, step: int) -> StepState:
    """The frozen set at ``step``: plan, fresh run (after ``step`` optimizer steps), resume."""
    index = plan.stage_index(step)
    stage = plan.stages[index]
    a = plan.analysis
    names = [p.name for p in plan.params]
    prefixes = [u.prefix for u in plan.unknown]
    reached = a.reached(step)
    fresh: list[str] | None = None
    fresh_unknown: dict[str, bool | None] = {}
    if reached:
        trace = a.build.fork()
        for s in a.policy.ordered_stages:
            if 1 <= s.start_step <= step:
                trace.apply_all(s.specs)
        fresh = _names(trace.state.mask, names)
        fresh_unknown = dict(zip(prefixes, trace.state.unknown))
    resumed = a.build.fork()
    if a.policy.has_schedule:
        resumed.apply_all(a.policy.effective_specs(step))
    return StepState(step, index, stage, stage.frozen, fresh, _names(resumed.state.mask, names), reached,
                     dict(stage.unknown_frozen), fresh_unknown, dict(zip(prefixes, resumed.state.unknown)))


def row_cells(plan: FreezePlan, frozen: Iterable[str],
              unknown_frozen: dict[str, bool | None] | None = None) -> list[RowCell]:
    """Row cells (aliases, then top-level modules) for an arbitrary frozen set."""
    frozen_set = set(frozen)
    mask = 0
    for i, p in enumerate(plan.params):
        if p.name in frozen_set:
            mask |= 1 << i
    numels = [p.numel for p in plan.params]
    unknown_frozen = unknown_frozen or {}
    return [_cell(row.mask, mask, numels, [unknown_frozen.get(p) for p in row.unknown_prefixes])
            for row in plan.rows]


# --- what the trainer evaluates from the config alone ---------------------------------------


def effective_freeze_specs(vlm: Any, step: int) -> list[SpecRef]:
    return FreezePolicy.from_vlm(vlm).effective_specs(step)


def effective_freeze_error(vlm: Any, step: int) -> str | None:
    """The ValueError message ``effective_freeze(step, ..., valid_modules)`` raises, if any."""
    policy = FreezePolicy.from_vlm(vlm)
    valid = sorted(policy.module_patterns)
    for spec in policy.base:
        if not policy.is_alias(spec.module):
            return f"FreezeSpec.module={spec.module!r} (from base) not in known module aliases {valid}"
    for stage in policy.ordered_stages:
        if stage.start_step > step:
            break
        for spec in stage.specs:
            if not policy.is_alias(spec.module):
                return (f"FreezeSpec.module={spec.module!r} (from FreezeStage(start_step="
                        f"{stage.start_step})) not in known module aliases {valid}")
    return None


def expected_freeze_metadata(vlm: Any, step: int) -> list[dict[str, Any]]:
    """``canonical_freeze_meta(effective_freeze(step, ...))``: what a save at ``step`` records."""
    pairs = sorted({(s.module, s.frozen) for s in effective_freeze_specs(vlm, step)})
    return [{"module": m, "frozen": f} for m, f in pairs]


@record(frozen=True)
class FreezeMetaMismatch:
    saved: list[Any]  # saved entries on the shared module keys
    expected: list[Any]  # expected entries on the shared module keys
    saved_only: list[str]
    current_only: list[str]
    message: str


def compare_freeze_metadata(saved: Any, expected: Sequence[dict[str, Any]]) -> FreezeMetaMismatch | None:
    """The checkpoint manager's load-time compare: None when the load would go ahead.

    Both lists are cut down to the module keys they share (so a checkpoint of
    another arch compares only on common aliases), then compared as lists.
    """
    if not isinstance(saved, list) or not all(
            isinstance(e, dict) and isinstance(e.get("module"), str) for e in saved):
        return FreezeMetaMismatch([], list(expected), [], [],
                                  f"saved vlm_freeze metadata is malformed: {saved!r}")
    saved_keys = {e["module"] for e in saved}
    expected_keys = {e["module"] for e in expected}
    shared = saved_keys & expected_keys
    saved_shared = [e for e in saved if e["module"] in shared]
    expected_shared = [e for e in expected if e["module"] in shared]
    if saved_shared == expected_shared:
        return None
    saved_only = sorted(saved_keys - shared)
    current_only = sorted(expected_keys - shared)
    note = (f" (cross-arch keys ignored: saved-only={saved_only}, current-only={current_only})"
            if saved_only or current_only else "")
    return FreezeMetaMismatch(saved_shared, expected_shared, saved_only, current_only,
                              f"VLM freeze mismatch: saved={saved_shared}, current={expected_shared}{note}")

