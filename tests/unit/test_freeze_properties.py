"""Property tests of the freeze engine against a naive, obviously-correct replay."""

from __future__ import annotations

import fnmatch
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kforge_cli.config.section import collecting
from kforge_cli.config.vlm import FreezeSpec, FreezeStage, resolve_arch_class
from kforge_cli.freeze.matching import Matcher, covers_subtree, may_touch_subtree
from kforge_cli.freeze.plan import ParamRecord, plan_freeze
from kforge_cli.freeze.units import human_count
from kforge_cli.rules.freeze import plan_findings

NAME_POOL = [
    "vision_encoder.patch.weight", "vision_encoder.blocks.0.attn.weight", "adapter.proj1.weight",
    "adapter.proj1.bias", "adapter.proj2.weight", "transformer.token_embedding.weight",
    "transformer.layers.0.attention.q_proj.weight", "transformer.layers.0.mlp.up_proj.weight",
    "transformer.layers.0.attention_norm.weight", "transformer.layers.1.attention.q_proj.weight",
    "transformer.layers.1.mlp.up_proj.weight", "transformer.cross_attention_layers.0.attn.q_proj.weight",
    "transformer.cross_attention_layers.0.mlp_norm.weight", "transformer.norm.weight",
    "transformer.output_head.weight",
]
PATTERN_POOL = [
    "transformer", "transformer.*", "adapter", "adapter.*", "vision_encoder.*", "transformer.layers.*",
    "transformer.layers.0.*", "transformer.cross_attention_layers.*", "*norm*", "*.weight", "*.bias",
    "transformer.layers.[01].mlp.*", "transformer.layers.?.attention.*", "nothing.*",
]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- a naive replay, written straight from the DESIGN text and the trainer ------------------


def naive_apply(state: dict[str, bool], specs: list[tuple[str, bool]], patterns: dict[str, list[str]]) -> None:
    for module, frozen in specs:
        pats = patterns.get(module, [module])
        for name in state:
            if any(fnmatch.fnmatchcase(name, p) for p in pats):
                state[name] = frozen


def naive_states(job: dict[str, Any]) -> dict[str, dict[int, set[str] | None]]:
    names, patterns = job["names"], job["patterns"]
    base, stages, max_steps = job["base"], sorted(job["stages"], key=lambda s: s[0]), job["max_steps"]

    def build() -> dict[str, bool]:
        state = {n: n in job["constructed"] for n in names}
        naive_apply(state, base, patterns)
        return state

    boundaries = sorted({0, *(s for s, _ in stages)})
    out: dict[str, dict[int, set[str] | None]] = {"design": {}, "fresh": {}, "resume": {}}
    for b in boundaries:
        design = build()
        for start, specs in stages:
            if start <= b:
                naive_apply(design, specs, patterns)
        out["design"][b] = {n for n, f in design.items() if f}
        reached = 0 <= b <= max_steps
        fresh = build()
        for step in range(1, b + 1):
            for start, specs in job["stages"]:
                if start == step:
                    naive_apply(fresh, specs, patterns)
        out["fresh"][b] = {n for n, f in fresh.items() if f} if reached else None
        resumed = build()
        if stages:
            effective: dict[str, bool] = {}
            for module, frozen in base:
                effective[module] = frozen
            for start, specs in stages:
                if start <= b:
                    for module, frozen in specs:
                        effective[module] = frozen
            naive_apply(resumed, list(effective.items()), patterns)
        out["resume"][b] = {n for n, f in resumed.items() if f} if reached else None
    return out


def to_vlm(job: dict[str, Any]) -> Any:
    with collecting():
        return resolve_arch_class("cross_attention")(
            freeze=[FreezeSpec(m, f) for m, f in job["base"]],
            freeze_schedule=[FreezeStage(s, tuple(FreezeSpec(m, f) for m, f in specs)) for s, specs in job["stages"]],
            module_patterns=job["patterns"])


def to_params(job: dict[str, Any]) -> list[ParamRecord]:
    return [ParamRecord(n, (2, 3), frozen_at_construction=n in job["constructed"]) for n in job["names"]]


# --- strategies ------------------------------------------------------------------------------


@st.composite
def jobs(draw: Any, aliases_only: bool = False, max_stages: int = 4) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(NAME_POOL), min_size=1, max_size=len(NAME_POOL), unique=True))
    alias_names = draw(st.lists(st.sampled_from(["transformer", "adapter", "vision_encoder", "text", "ca", "early"]),
                                min_size=1, max_size=5, unique=True))
    patterns = {a: draw(st.lists(st.sampled_from(PATTERN_POOL), min_size=0, max_size=3)) for a in alias_names}
    module = st.sampled_from(alias_names) if aliases_only else st.one_of(
        st.sampled_from(alias_names), st.sampled_from(PATTERN_POOL))
    spec = st.tuples(module, st.booleans())
    base = draw(st.lists(spec, max_size=3))
    starts = draw(st.lists(st.integers(-2, 30), max_size=max_stages, unique=True))
    stages = [(s, draw(st.lists(spec, max_size=3))) for s in starts]
    constructed = set(draw(st.lists(st.sampled_from(names), max_size=2)))
    return {"names": names, "patterns": patterns, "base": base, "stages": stages,
            "max_steps": draw(st.integers(0, 30)), "constructed": constructed}


@st.composite
def disjoint_jobs(draw: Any) -> dict[str, Any]:
    """Aliases partition the parameters, and specs use aliases only."""
    names = draw(st.lists(st.sampled_from(NAME_POOL), min_size=1, max_size=len(NAME_POOL), unique=True))
    n_aliases = draw(st.integers(1, 4))
    owner = {n: draw(st.integers(0, n_aliases - 1)) for n in names}
    patterns = {f"a{k}": [n for n in names if owner[n] == k] for k in range(n_aliases)}
    spec = st.tuples(st.sampled_from(sorted(patterns)), st.booleans())
    starts = draw(st.lists(st.integers(-2, 30), max_size=4, unique=True))
    return {"names": names, "patterns": patterns, "base": draw(st.lists(spec, max_size=3)),
            "stages": [(s, draw(st.lists(spec, max_size=3))) for s in starts],
            "max_steps": draw(st.integers(0, 30)), "constructed": set()}


# --- properties ------------------------------------------------------------------------------


@SETTINGS
@given(jobs())
def test_engine_matches_the_naive_replay(job: dict[str, Any]) -> None:
    plan = plan_freeze(to_params(job), to_vlm(job), job["max_steps"])
    naive = naive_states(job)
    for stage in plan.stages:
        b = stage.start_step
        assert set(stage.frozen) == naive["design"][b]
        assert (None if stage.fresh_run_frozen is None else set(stage.fresh_run_frozen)) == naive["fresh"][b]
        assert (None if stage.resume_frozen is None else set(stage.resume_frozen)) == naive["resume"][b]
        assert stage.frozen == [n for n in job["names"] if n in set(stage.frozen)]  # parameter order
    assert [s.start_step for s in plan.stages] == sorted(naive["design"])


@SETTINGS
@given(jobs())
def test_without_stages_boundary_zero_is_construction_plus_base(job: dict[str, Any]) -> None:
    job = {**job, "stages": []}
    plan = plan_freeze(to_params(job), to_vlm(job), job["max_steps"])
    state = {n: n in job["constructed"] for n in job["names"]}
    naive_apply(state, job["base"], job["patterns"])
    assert len(plan.stages) == 1
    assert set(plan.stages[0].frozen) == {n for n, f in state.items() if f}
    assert set(plan.optimizer_param_names) == {n for n, f in state.items() if not f}


@SETTINGS
@given(jobs(max_stages=3))
def test_repeating_the_last_stage_changes_nothing(job: dict[str, Any]) -> None:
    assume(job["stages"])
    last_start, last_specs = max(job["stages"], key=lambda s: s[0])
    extended = {**job, "stages": [*job["stages"], (last_start + 1, list(last_specs))],
                "max_steps": max(job["max_steps"], last_start + 2)}
    plan = plan_freeze(to_params(extended), to_vlm(extended), extended["max_steps"])
    assert plan.stages[-1].frozen == plan.stages[-2].frozen
    assert any(f.code == "KF308" and f.data["start_step"] == last_start + 1 for f in plan_findings(plan))


@SETTINGS
@given(jobs(max_stages=3))
def test_a_stage_restating_the_current_state_changes_nothing(job: dict[str, Any]) -> None:
    plan = plan_freeze(to_params(job), to_vlm(job), job["max_steps"])
    previous = plan.stages[-1]
    frozen = set(previous.frozen)
    restate = [(n, n in frozen) for n in job["names"]]  # exact names: raw patterns matching one parameter
    start = previous.start_step + 1
    extended = {**job, "stages": [*job["stages"], (start, restate)], "max_steps": max(job["max_steps"], start)}
    plan2 = plan_freeze(to_params(extended), to_vlm(extended), extended["max_steps"])
    assert plan2.stages[-1].frozen == previous.frozen
    assert any(f.code == "KF308" and f.data["start_step"] == start for f in plan_findings(plan2))


@SETTINGS
@given(disjoint_jobs())
def test_resume_equals_plan_when_no_two_aliases_overlap(job: dict[str, Any]) -> None:
    plan = plan_freeze(to_params(job), to_vlm(job), job["max_steps"])
    assert plan.resume_differs_at == []
    assert not any(f.code == "KF303" for f in plan_findings(plan))


@SETTINGS
@given(jobs())
def test_fresh_run_differs_only_through_stages_at_or_below_zero(job: dict[str, Any]) -> None:
    plan = plan_freeze(to_params(job), to_vlm(job), job["max_steps"])
    if not any(s <= 0 for s, _ in job["stages"]):
        assert plan.fresh_run_differs_at == []
    if plan.fresh_run_differs_at:
        assert any(f.code == "KF302" for f in plan_findings(plan))


@SETTINGS
@given(jobs())
def test_numel_totals_add_up_and_rows_cover_every_parameter(job: dict[str, Any]) -> None:
    plan = plan_freeze(to_params(job), to_vlm(job), job["max_steps"])
    for i, stage in enumerate(plan.stages):
        assert stage.trainable_numel + stage.frozen_numel == plan.total_numel
        modules = [r.cells[i] for r in plan.rows if r.kind == "module"]
        assert sum(c.total_count for c in modules) == len(plan.params)
        assert sum(c.frozen_count for c in modules) == len(stage.frozen)


@SETTINGS
@given(jobs())
def test_only_raw_modules_reached_by_the_run_are_kf301_errors(job: dict[str, Any]) -> None:
    plan = plan_freeze(to_params(job), to_vlm(job), job["max_steps"])
    flagged = {f.data["module"] for f in plan_findings(plan) if f.code == "KF301"}
    assert all(m not in job["patterns"] for m in flagged)
    if job["max_steps"] >= 1:
        assert {m for m, _ in job["base"] if m not in job["patterns"]} <= flagged


_GLOB_CHARS = st.sampled_from(list("ab.*?[]!0"))


@SETTINGS
@given(st.text(_GLOB_CHARS, min_size=1, max_size=8),
       st.lists(st.text(st.sampled_from(list("ab.0[]")), max_size=8), min_size=1, max_size=8, unique=True))
def test_matcher_agrees_with_fnmatchcase(pattern: str, names: list[str]) -> None:
    mask = Matcher(names, {}).select(pattern).mask
    assert [bool(mask >> i & 1) for i in range(len(names))] == [fnmatch.fnmatchcase(n, pattern) for n in names]


@SETTINGS
@given(st.sampled_from(PATTERN_POOL + ["vision_encoder*", "*", "vision_encoder.blocks.*", "*.*.attn*"]),
       st.lists(st.text(st.sampled_from(list("abw.0_")), min_size=1, max_size=10), min_size=1, max_size=10))
def test_unknown_subtree_predicates_are_sound(pattern: str, suffixes: list[str]) -> None:
    names = [f"vision_encoder.{s}" for s in suffixes]
    hits = [fnmatch.fnmatchcase(n, pattern) for n in names]
    if covers_subtree(pattern, "vision_encoder"):
        assert all(hits)
    if not may_touch_subtree(pattern, "vision_encoder"):
        assert not any(hits)


@given(st.integers(0, 10**15))
def test_human_count_is_close(n: int) -> None:
    text = human_count(n)
    scale = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
    value = float(text[:-1]) * scale[text[-1]] if text[-1] in scale else float(text)
    assert abs(value - n) <= max(0.051 * n, 0)
    assert len(text) <= 6
