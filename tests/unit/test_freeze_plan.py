"""The freeze engine: DESIGN plan, trainer replays, KF3xx findings, checkpoint metadata."""

from __future__ import annotations

import json
from typing import Any

import pytest
from recorded import CONFIGS as FIXTURES

from kforge_cli.config.section import collecting
from kforge_cli.config.vlm import FreezeSpec, FreezeStage, resolve_arch_class
from kforge_cli.freeze.matching import Matcher, covers_subtree, may_touch_subtree
from kforge_cli.freeze.plan import (
    ParamRecord,
    UnknownPart,
    compare_freeze_metadata,
    effective_freeze_error,
    expected_freeze_metadata,
    plan_for_job,
    plan_freeze,
    records_from,
    state_at_step,
)
from kforge_cli.freeze.units import human_count
from kforge_cli.lint.engine import check_file
from kforge_cli.rules.freeze import compiled_stage_findings, pattern_failure_findings, plan_findings
from kforge_cli.rules.freeze import config_findings as config_freeze_findings

# --- helpers --------------------------------------------------------------------------


def vlm_from_resolved(section: dict[str, Any] | None) -> Any:
    """The resolved ``vlm`` JSON of a fixture as kforge_cli.config.vlm objects."""
    if section is None:
        return None
    fields = dict(section)
    fields["freeze"] = [FreezeSpec(s["module"], s["frozen"]) for s in fields["freeze"]]
    fields["freeze_schedule"] = [
        FreezeStage(s["start_step"], tuple(FreezeSpec(x["module"], x["frozen"]) for x in s["specs"]))
        for s in fields["freeze_schedule"]]
    with collecting():
        return resolve_arch_class(fields["arch"])(**fields)


def make_vlm(arch: str = "joint_decoder", freeze: Any = None, schedule: Any = (),
             patterns: dict[str, list[str]] | None = None) -> Any:
    fields: dict[str, Any] = {
        "freeze": [FreezeSpec(*s) if isinstance(s, tuple) else s for s in (freeze or [])],
        "freeze_schedule": [
            FreezeStage(step, tuple(FreezeSpec(*s) for s in specs)) if isinstance(specs, (list, tuple))
            else specs for step, specs in schedule] if schedule else [],
    }
    if patterns is not None:
        fields["module_patterns"] = patterns
    with collecting():
        return resolve_arch_class(arch)(**fields)


FREEZE_JOB = """
[model]
dim = 64
n_layers = 4
n_heads = 4
n_kv_heads = 4
vocab_size = 1000
max_seq_len = 128

[train]
seq_len = 128
max_steps = 40
compile_model = true

[vision_encoder]
type = "random"
feature_dim = 32
num_tokens = 16

"""


def ca_model(n_layers: int = 2, n_ca: int = 1) -> list[ParamRecord]:
    """A small cross-attention VLM: adapter, text layers, cross-attention blocks."""
    out = [ParamRecord("adapter.proj.weight", (8, 4)), ParamRecord("adapter.proj.bias", (8,))]
    for i in range(n_layers):
        out += [ParamRecord(f"transformer.layers.{i}.attn.weight", (8, 8)),
                ParamRecord(f"transformer.layers.{i}.mlp.weight", (16, 8))]
    for i in range(n_ca):
        out.append(ParamRecord(f"transformer.cross_attention_layers.{i}.attn.weight", (8, 8)))
    out.append(ParamRecord("transformer.norm.weight", (8,)))
    return out


def codes(plan: Any) -> list[str]:
    return [f.code for f in plan_findings(plan)]


def by_code(plan: Any, code: str) -> list[Any]:
    return [f for f in plan_findings(plan) if f.code == code]


# --- fixtures recorded from the reference ----------------------------------------------


def _fixture_cases() -> list[str]:
    out = []
    for path in sorted(FIXTURES.glob("*.expected.json")):
        expected = json.loads(path.read_text())
        if expected.get("parameters") is not None:
            out.append(path.name[: -len(".expected.json")])
    return out


@pytest.mark.parametrize("case", _fixture_cases())
def test_fixture_plan_matches_reference(case: str) -> None:
    expected = json.loads((FIXTURES / f"{case}.expected.json").read_text())
    resolved = json.loads((FIXTURES / f"{case}.resolved.json").read_text())
    constructed = set(expected.get("frozen_at_construction") or [])
    records = [ParamRecord(n, tuple(s), frozen_at_construction=n in constructed)
               for n, s in expected["parameters"]]
    plan = plan_freeze(records, vlm_from_resolved(resolved.get("vlm")), resolved["train"]["max_steps"])

    assert [[p.name, list(p.shape)] for p in plan.params] == expected["parameters"]
    if "stages" in expected:
        got = {s.start_step: set(s.frozen) for s in plan.stages}
        assert sorted(got) == sorted(s["start_step"] for s in expected["stages"])
        for stage in expected["stages"]:
            assert got[stage["start_step"]] == set(stage["frozen"]), stage["start_step"]
        assert plan.resume_differs_at == expected["resume_differs_at"]
        assert plan.fresh_run_differs_at == expected["fresh_run_differs_at"]
    for code in expected.get("expected_codes") or []:
        if code.startswith("KF3"):
            assert code in codes(plan)
    # Verdict parity for the freeze part: an error finding here means the
    # reference rejects the job in its training loop.
    if any(f.is_error for f in plan_findings(plan)):
        assert expected["verdict"] == "error"


def test_fixture_sweep_is_not_empty() -> None:
    assert len(_fixture_cases()) >= 6


# --- resolution -----------------------------------------------------------------------


def test_alias_resolves_through_module_patterns_and_unknown_name_is_a_raw_pattern() -> None:
    params = ca_model()
    vlm = make_vlm("cross_attention", [("cross_attention", True), ("transformer.layers.1.*", True)])
    plan = plan_freeze(params, vlm, 10)
    assert plan.stages[0].frozen == [
        "transformer.layers.1.attn.weight", "transformer.layers.1.mlp.weight",
        "transformer.cross_attention_layers.0.attn.weight"]


def test_raw_patterns_follow_fnmatch_including_classes_and_case() -> None:
    names = ["a.layers.0.w", "a.layers.1.w", "a.layers.2.w", "A.layers.0.w", "a.layers.10.w"]
    matcher = Matcher(names, {})
    assert matcher.select("a.layers.[01].w").mask == 0b00011
    assert matcher.select("a.layers.?.w").mask == 0b00111
    assert matcher.select("a.layers.*").mask == 0b10111  # case-sensitive, like fnmatch on POSIX
    assert matcher.select("[!a]*").mask == 0b01000


def test_later_writes_win_per_parameter_within_and_across_stages() -> None:
    params = ca_model()
    vlm = make_vlm("cross_attention",
                   [("transformer", True), ("cross_attention", False)],
                   [(5, [("transformer", False), ("adapter", True)]), (8, [("cross_attention", True)])])
    plan = plan_freeze(params, vlm, 10)
    assert [s.start_step for s in plan.stages] == [0, 5, 8]
    assert [s.end_step for s in plan.stages] == [4, 7, None]
    assert plan.stages[0].frozen == [
        "transformer.layers.0.attn.weight", "transformer.layers.0.mlp.weight",
        "transformer.layers.1.attn.weight", "transformer.layers.1.mlp.weight", "transformer.norm.weight"]
    assert plan.stages[1].frozen == ["adapter.proj.weight", "adapter.proj.bias"]
    assert plan.stages[2].frozen == ["adapter.proj.weight", "adapter.proj.bias",
                                     "transformer.cross_attention_layers.0.attn.weight"]
    assert plan.stages[0].frozen_numel == 64 + 128 + 64 + 128 + 8
    assert plan.stages[0].trainable_numel == 32 + 8 + 64


def test_construction_frozen_parameters_start_frozen_and_stay_out_of_the_optimizer() -> None:
    params = [ParamRecord("transformer.layers.0.w", (4, 4)),
              ParamRecord("transformer.norm.weight", (4,), frozen_at_construction=True)]
    plan = plan_freeze(params, make_vlm("mot", []), 10)
    assert plan.stages[0].frozen == ["transformer.norm.weight"]
    assert plan.optimizer_param_names == ["transformer.layers.0.w"]


def test_stages_given_out_of_order_apply_in_start_step_order() -> None:
    vlm = make_vlm("joint_decoder", [], [(9, [("adapter", False)]), (3, [("adapter", True)])])
    plan = plan_freeze(ca_model(), vlm, 20)
    assert [s.start_step for s in plan.stages] == [0, 3, 9]
    assert plan.stages[1].frozen == ["adapter.proj.weight", "adapter.proj.bias"]
    assert plan.stages[2].frozen == []


def test_malformed_entries_are_skipped_but_keys_keep_their_config_index() -> None:
    with collecting():
        vlm = resolve_arch_class("joint_decoder")(
            freeze=["vision_encoder", {"module": "adapter"}, FreezeSpec("adapter.proj.*", True)],
            freeze_schedule=[{"start_step": 2}, FreezeStage(4, (FreezeSpec("nothing.*", True),))])
    plan = plan_freeze(ca_model(), vlm, 10)
    assert plan.stages[0].frozen == ["adapter.proj.weight", "adapter.proj.bias"]
    assert [s.start_step for s in plan.stages] == [0, 4]
    keys = {f.key for f in plan_findings(plan)}
    assert "vlm.freeze[2].module" in keys  # KF301 on the raw pattern
    assert "vlm.freeze_schedule[1].specs[0].module" in keys


def test_text_only_job_gets_one_stage_and_a_note() -> None:
    params = [ParamRecord("token_embedding.weight", (100, 8)), ParamRecord("layers.0.w", (8, 8)),
              ParamRecord("norm.weight", (8,)), ParamRecord("output_head.weight", (100, 8))]
    plan = plan_freeze(params, None, 50)
    assert plan.arch is None
    assert len(plan.stages) == 1 and plan.stages[0].frozen == []
    assert plan.stages[0].trainable_numel == 800 + 64 + 8 + 800
    assert plan_findings(plan) == []
    assert "text-only" in plan.notes[0]
    assert [r.label for r in plan.rows] == ["token_embedding", "layers", "norm", "output_head"]


def test_records_from_accepts_pairs_and_paraminfo_like_objects() -> None:
    class Info:
        def __init__(self, name: str, shape: tuple[int, ...], frozen: bool) -> None:
            self.name, self.shape, self.numel, self.frozen_at_construction = name, shape, 6, frozen

    records = records_from([("a.w", [2, 3]), Info("b.w", (2, 3), True)])
    assert records == [ParamRecord("a.w", (2, 3), 6), ParamRecord("b.w", (2, 3), 6, True)]
    assert ParamRecord("s", ()).numel == 1


# --- trainer replays -------------------------------------------------------------------


def test_fresh_run_never_fires_a_stage_at_or_below_zero_but_resume_applies_it() -> None:
    vlm = make_vlm("joint_decoder", [], [(0, [("adapter", True)]), (5, [("adapter", False)])])
    plan = plan_freeze(ca_model(), vlm, 40)
    zero = plan.stages[0]
    assert zero.frozen == ["adapter.proj.weight", "adapter.proj.bias"]
    assert zero.fresh_run_frozen == []
    assert zero.resume_frozen == zero.frozen
    assert plan.fresh_run_differs_at == [0] and plan.resume_differs_at == []


def test_resume_orders_effective_specs_by_first_appearance_of_each_module_key() -> None:
    vlm = make_vlm("cross_attention", [("transformer", True)],
                   [(10, [("cross_attention", False)]), (20, [("transformer", True)])])
    plan = plan_freeze(ca_model(), vlm, 40)
    last = plan.stages[-1]
    assert "transformer.cross_attention_layers.0.attn.weight" in last.frozen
    assert "transformer.cross_attention_layers.0.attn.weight" not in last.resume_frozen
    assert last.fresh_run_frozen == last.frozen
    assert plan.resume_differs_at == [20]


def test_unreached_boundaries_have_no_fresh_or_resume_state() -> None:
    vlm = make_vlm("joint_decoder", [], [(50, [("adapter", True)])])
    plan = plan_freeze(ca_model(), vlm, 40)
    assert plan.stages[1].reached is False
    assert plan.stages[1].fresh_run_frozen is None and plan.stages[1].resume_frozen is None
    assert plan.fresh_run_differs_at == [] and plan.resume_differs_at == []


def test_resume_without_a_schedule_keeps_the_build_state() -> None:
    plan = plan_freeze(ca_model(), make_vlm("joint_decoder", [("adapter", True)]), 10)
    assert plan.stages[0].resume_frozen == plan.stages[0].frozen == ["adapter.proj.weight", "adapter.proj.bias"]


def test_state_at_step_between_boundaries_and_beyond_max_steps() -> None:
    vlm = make_vlm("joint_decoder", [], [(0, [("adapter", True)]), (5, [("adapter", False)]),
                                         (12, [("transformer", True)])])
    plan = plan_freeze(ca_model(), vlm, 10)
    at3 = state_at_step(plan, 3)
    assert at3.stage.start_step == 0 and at3.stage_index == 0
    assert at3.frozen == ["adapter.proj.weight", "adapter.proj.bias"]
    assert at3.fresh_run_frozen == [] and at3.resume_frozen == at3.frozen and at3.reached
    at7 = state_at_step(plan, 7)
    assert at7.stage.start_step == 5 and at7.frozen == [] and at7.fresh_run_frozen == []
    at15 = state_at_step(plan, 15)
    assert at15.stage.start_step == 12 and not at15.reached and at15.fresh_run_frozen is None
    assert len(at15.resume_frozen) == 6


def test_saved_step_is_kept_and_noted() -> None:
    vlm = make_vlm("joint_decoder", [], [(5, [("adapter", True)])])
    plan = plan_freeze(ca_model(), vlm, 10, saved_step=7)
    assert plan.saved_step == 7 and plan.saved_stage_index == 1
    assert plan.notes[-1] == "checkpoint saved at step 7: stage 5+"


# --- findings ----------------------------------------------------------------------------


def test_kf301_base_raw_pattern_fails_at_step_1_in_the_training_loop() -> None:
    plan = plan_freeze(ca_model(), make_vlm("joint_decoder", [("transformer.layers.0.*", True)]), 40)
    [f] = by_code(plan, "KF301")
    assert f.severity == "error" and f.stage == "training loop"
    assert f.key == "vlm.freeze[0].module"
    assert f.data["step"] == 1 and f.data["count"] == 2 and f.data["numel"] == 64 + 128
    assert "raises ValueError at step 1" in f.message
    assert "REPLACES the default aliases" in f.hint
    assert 'transformer_layers_0 = ["transformer.layers.0.*"]' in f.hint
    assert 'transformer = ["transformer", "transformer.*"]' in f.hint


def test_kf301_stage_pattern_fails_at_its_start_step_and_only_when_reached() -> None:
    vlm = make_vlm("joint_decoder", [], [(7, [("adapter.*", True)]), (60, [("transformer.*", True)])])
    plan = plan_freeze(ca_model(), vlm, 40)
    [f] = by_code(plan, "KF301")
    assert f.key == "vlm.freeze_schedule[0].specs[0].module" and f.data["step"] == 7
    [dead] = by_code(plan, "KF306")
    assert dead.key == "vlm.freeze_schedule[1].start_step"
    assert "would raise" in dead.message


def test_kf301_at_step_0_is_a_trainer_startup_error_with_a_dyn_ckpt_window() -> None:
    vlm = make_vlm("joint_decoder", [("adapter.*", True)], [(0, [("layers.*", True)])])
    plan = plan_freeze(ca_model(), vlm, 40, dyn_ckpt_covers_step0=True)
    found = by_code(plan, "KF301")
    assert [(f.key, f.stage, f.data["step"]) for f in found] == [
        ("vlm.freeze[0].module", "trainer startup", 0),
        ("vlm.freeze_schedule[0].specs[0].module", "trainer startup", 0)]
    without = plan_freeze(ca_model(), vlm, 40)
    assert [f.data["step"] for f in by_code(without, "KF301")] == [1, 1]


def test_config_freeze_findings_match_the_plan_for_config_codes() -> None:
    vlm = make_vlm("joint_decoder", [("transformer.layers.0.*", True)],
                   [(0, [("adapter", True)]), (99, [("adapter", False)])])
    config = config_freeze_findings(vlm, 40)
    plan = plan_freeze(ca_model(), vlm, 40)
    wanted = {"KF301", "KF302", "KF306"}
    assert [(f.code, f.key) for f in config] == [
        ("KF301", "vlm.freeze[0].module"), ("KF302", "vlm.freeze_schedule[0].start_step"),
        ("KF306", "vlm.freeze_schedule[1].start_step")]
    assert sorted((f.code, f.key) for f in config) == sorted(
        (f.code, f.key) for f in plan_findings(plan) if f.code in wanted)
    assert config_freeze_findings(None, 40) == []


def test_kf302_names_the_parameters_a_fresh_run_leaves_different() -> None:
    vlm = make_vlm("joint_decoder", [], [(0, [("adapter", True)])])
    [f] = by_code(plan_freeze(ca_model(), vlm, 40), "KF302")
    assert f.severity == "warning" and f.key == "vlm.freeze_schedule[0].start_step"
    assert f.data["params"] == ["adapter.proj.weight", "adapter.proj.bias"]
    assert "start_step = 1" in f.hint


def test_kf303_explains_the_per_alias_order_and_the_fix() -> None:
    vlm = make_vlm("cross_attention", [("transformer", True)],
                   [(10, [("cross_attention", False)]), (20, [("transformer", True)])])
    [f] = by_code(plan_freeze(ca_model(), vlm, 40), "KF303")
    assert f.key == "vlm.freeze_schedule[1].specs[0].module"
    assert f.data["step"] == 20
    assert f.data["params"] == ["transformer.cross_attention_layers.0.attn.weight"]
    assert "effective_freeze(20)" in f.message and "first appeared" in f.message
    assert '{module = "cross_attention", frozen = true}' in f.hint


def test_kf303_fix_from_the_hint_removes_the_divergence() -> None:
    vlm = make_vlm("cross_attention", [("transformer", True)],
                   [(10, [("cross_attention", False)]),
                    (20, [("transformer", True), ("cross_attention", True)])])
    plan = plan_freeze(ca_model(), vlm, 40)
    assert plan.resume_differs_at == [] and "KF303" not in codes(plan)


def test_kf304_stage_unfreezes_what_the_optimizer_was_built_without() -> None:
    vlm = make_vlm("cross_attention", [("transformer", True)], [(10, [("cross_attention", False)])])
    plan = plan_freeze(ca_model(), vlm, 40)
    [f] = by_code(plan, "KF304")
    assert f.key == "vlm.freeze_schedule[0].specs[0].module"
    assert f.data["params"] == ["transformer.cross_attention_layers.0.attn.weight"]
    assert f.data["step"] == 10 and f.data["fresh_run"] is True
    assert "never updated" in f.message and "vlm.freeze[0]" in f.message
    assert "start_step = 1" in f.hint and 'module = "transformer"' in f.hint
    assert "transformer.cross_attention_layers.0.attn.weight" not in plan.optimizer_param_names


def test_kf304_needs_a_training_step_after_the_unfreeze() -> None:
    vlm = make_vlm("cross_attention", [("transformer", True)], [(40, [("cross_attention", False)])])
    assert "KF304" not in codes(plan_freeze(ca_model(), vlm, 40))
    assert "KF304" in codes(plan_freeze(ca_model(), vlm, 41))


def test_kf304_fix_from_the_hint_keeps_the_parameters_in_the_optimizer() -> None:
    vlm = make_vlm("cross_attention", [], [(1, [("transformer", True)]), (10, [("cross_attention", False)])])
    plan = plan_freeze(ca_model(), vlm, 40)
    assert "KF304" not in codes(plan) and "KF303" not in codes(plan)
    assert "transformer.cross_attention_layers.0.attn.weight" in plan.optimizer_param_names


def test_kf304_seen_only_on_resume_says_so() -> None:
    vlm = make_vlm("joint_decoder", [("adapter", True)], [(0, [("adapter", False)])])
    plan = plan_freeze(ca_model(), vlm, 40)
    [f] = by_code(plan, "KF304")
    assert f.data["fresh_run"] is False and f.data["resume"] is True
    assert "resumed" in f.message
    assert "KF302" in codes(plan)


def test_unfreezing_a_parameter_the_model_froze_itself_is_not_kf304() -> None:
    # MoT's unused final norm gets no gradient either way: nothing is left un-updated.
    params = [ParamRecord("transformer.layers.0.w", (4, 4)),
              ParamRecord("transformer.norm.weight", (4,), frozen_at_construction=True)]
    patterns = {"transformer": ["transformer", "transformer.*"], "norm": ["transformer.norm*"]}
    vlm = make_vlm("mot", [], [(3, [("norm", False)])], patterns)
    assert by_code(plan_freeze(params, vlm, 10), "KF304") == []

def test_kf305_spec_matching_nothing_and_an_unused_custom_alias() -> None:
    patterns = {"adapter": ["adapter", "adapter.*"], "vision_encoder": ["vision_encoder", "vision_encoder.*"],
                "typo": ["transformr.*"]}
    vlm = make_vlm("joint_decoder", [("vision_encoder", True)], [(4, [("adapter", True)])], patterns)
    found = by_code(plan_freeze(ca_model(), vlm, 10), "KF305")
    assert [f.key for f in found] == ["vlm.freeze[0].module", "vlm.module_patterns.typo"]
    assert all(f.severity == "warning" for f in found)


def test_kf305_is_silent_about_an_unbuilt_component_the_spec_may_reach() -> None:
    vlm = make_vlm("joint_decoder", [("vision_encoder", True)])
    plan = plan_freeze(ca_model(), vlm, 10, unknown_prefixes=[UnknownPart("vision_encoder", "siglip2 offline")])
    assert "KF305" not in codes(plan)
    assert plan.stages[0].unknown_frozen == {"vision_encoder": True}
    assert plan.notes[0] == "vision_encoder: not built (siglip2 offline)"


def test_stand_in_records_replace_the_unknown_prefix() -> None:
    params = ca_model() + [ParamRecord("vision_encoder.patch.weight", (8, 3), stand_in=True)]
    plan = plan_freeze(params, make_vlm("joint_decoder", [("vision_encoder", True)]), 10,
                       unknown_prefixes=["vision_encoder"])
    assert plan.unknown == []
    assert plan.stages[0].frozen == ["vision_encoder.patch.weight"]
    assert any("stand-ins" in n for n in plan.notes)


def test_kf306_stage_after_max_steps() -> None:
    vlm = make_vlm("joint_decoder", [], [(41, [("adapter", True)])])
    [f] = by_code(plan_freeze(ca_model(), vlm, 40), "KF306")
    assert f.severity == "warning" and f.key == "vlm.freeze_schedule[0].start_step"
    assert "KF308" not in codes(plan_freeze(ca_model(), vlm, 40))


def test_kf307_everything_frozen_at_build_fails_the_first_backward() -> None:
    vlm = make_vlm("joint_decoder", [("adapter", True), ("transformer", True)])
    [f] = by_code(plan_freeze(ca_model(), vlm, 40), "KF307")
    assert f.severity == "error" and f.stage == "training loop" and f.key == "vlm.freeze"
    assert f.data["step"] == 1


def test_kf307_stage_freezing_everything_fails_the_next_step_unless_it_is_the_last() -> None:
    vlm = make_vlm("joint_decoder", [("adapter", True)], [(5, [("transformer", True)])])
    [f] = by_code(plan_freeze(ca_model(), vlm, 40), "KF307")
    assert f.key == "vlm.freeze_schedule[0]" and f.data["step"] == 6
    assert "KF307" not in codes(plan_freeze(ca_model(), vlm, 5))


def test_kf307_only_under_fresh_run_semantics() -> None:
    # The stage at step 0 never fires in a fresh run, so the run keeps training.
    vlm = make_vlm("joint_decoder", [("adapter", True)], [(0, [("transformer", True)])])
    assert "KF307" not in codes(plan_freeze(ca_model(), vlm, 40))


def test_kf307_needs_the_unbuilt_component_to_be_certainly_frozen() -> None:
    vlm = make_vlm("joint_decoder", [("adapter", True), ("transformer", True)])
    unknown = [UnknownPart("vision_encoder")]
    assert "KF307" not in codes(plan_freeze(ca_model(), vlm, 40, unknown_prefixes=unknown))
    vlm_all = make_vlm("joint_decoder", [("adapter", True), ("transformer", True), ("vision_encoder", True)])
    assert "KF307" in codes(plan_freeze(ca_model(), vlm_all, 40, unknown_prefixes=unknown))


def test_kf308_stage_that_changes_nothing() -> None:
    vlm = make_vlm("cross_attention", [], [(10, [("transformer", False)])])
    [f] = by_code(plan_freeze(ca_model(), vlm, 40), "KF308")
    assert f.key == "vlm.freeze_schedule[0]" and f.data["count"] == 6


def test_kf304_reports_an_unbuilt_encoder_unfrozen_by_a_stage() -> None:
    vlm = make_vlm("joint_decoder", [("vision_encoder", True)], [(10, [("vision_encoder", False)])])
    plan = plan_freeze(ca_model(), vlm, 40, unknown_prefixes=["vision_encoder"])
    [f] = by_code(plan, "KF304")
    assert f.data["unknown"] == ["vision_encoder"] and f.data["count"] == 0


def test_findings_are_sorted_by_code() -> None:
    vlm = make_vlm("cross_attention", [("transformer", True), ("vision_encoder", True)],
                   [(0, [("adapter", True)]), (10, [("cross_attention", False)]), (20, [("transformer", True)])])
    found = codes(plan_freeze(ca_model(), vlm, 40))
    assert found == sorted(found)
    assert {"KF302", "KF303", "KF304", "KF305"} <= set(found)


# --- checkpoint metadata ----------------------------------------------------------------


def test_expected_freeze_metadata_is_canonical_effective_freeze() -> None:
    vlm = make_vlm("cross_attention", [("vision_encoder", True), ("transformer", True)],
                   [(10, [("cross_attention", False)]), (20, [("transformer", False)])])
    assert expected_freeze_metadata(vlm, 0) == [
        {"module": "transformer", "frozen": True}, {"module": "vision_encoder", "frozen": True}]
    assert expected_freeze_metadata(vlm, 25) == [
        {"module": "cross_attention", "frozen": False}, {"module": "transformer", "frozen": False},
        {"module": "vision_encoder", "frozen": True}]


def test_compare_freeze_metadata_intersects_module_keys() -> None:
    saved = [{"module": "vision_encoder", "frozen": True}]
    expected = [{"module": "cross_attention", "frozen": False}, {"module": "vision_encoder", "frozen": True}]
    assert compare_freeze_metadata(saved, expected) is None
    mismatch = compare_freeze_metadata([{"module": "vision_encoder", "frozen": False}], expected)
    assert mismatch is not None
    assert mismatch.saved == [{"module": "vision_encoder", "frozen": False}]
    assert mismatch.expected == [{"module": "vision_encoder", "frozen": True}]
    assert mismatch.current_only == ["cross_attention"] and mismatch.saved_only == []
    assert "current-only=['cross_attention']" in mismatch.message
    assert compare_freeze_metadata("nope", expected) is not None


def test_effective_freeze_error_mirrors_the_reference_message() -> None:
    vlm = make_vlm("joint_decoder", [("vision_encoder", True)], [(5, [("adapter.*", True)])])
    assert effective_freeze_error(vlm, 4) is None
    assert effective_freeze_error(vlm, 5) == (
        "FreezeSpec.module='adapter.*' (from FreezeStage(start_step=5)) not in known module aliases "
        "['adapter', 'transformer', 'vision_encoder']")


# --- matching helpers and units ------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "covers", "touches"), [
    ("vision_encoder.*", True, True), ("vision_encoder*", True, True), ("*", True, True),
    ("vision_encoder", False, False), ("vision_encoder.layers.1.*", False, True),
    ("transformer.*", False, False), ("*.weight", False, True), ("vision_encoder.w", False, True),
])
def test_unknown_subtree_coverage(pattern: str, covers: bool, touches: bool) -> None:
    assert covers_subtree(pattern, "vision_encoder") is covers
    assert may_touch_subtree(pattern, "vision_encoder") is touches


@pytest.mark.parametrize(("n", "text"), [
    (0, "0"), (999, "999"), (1000, "1.0K"), (1234, "1.2K"), (65_664, "65.7K"), (456_000, "456K"),
    (999_960, "1.0M"), (1_200_000, "1.2M"), (6_738_415_616, "6.7B"), (2 * 10**12, "2.0T"),
])
def test_human_count(n: int, text: str) -> None:
    assert human_count(n) == text


def test_plan_of_a_thousand_parameters_and_dozens_of_specs() -> None:
    # Its speed is measured by benchmarks/bench_core.py; here, that it gets every stage right.
    names = [f"transformer.layers.{i}.p{j}.weight" for i in range(100) for j in range(12)]
    params = [ParamRecord(n, (64, 64)) for n in names]
    patterns = {f"l{i}": [f"transformer.layers.{i}.*"] for i in range(100)}
    patterns["transformer"] = ["transformer", "transformer.*"]
    base = [(f"l{i}", i % 3 == 0) for i in range(0, 100, 2)]
    schedule = [(10 * k + 1, [(f"l{(k * 7 + j) % 100}", (k + j) % 2 == 0) for j in range(5)]) for k in range(30)]
    vlm = make_vlm("joint_decoder", base, schedule, patterns)
    plan = plan_freeze(params, vlm, 400)
    assert [s.start_step for s in plan.stages] == [0, *(10 * k + 1 for k in range(30))]
    # Each boundary's frozen set is the previous one with that stage's specs applied, last write winning.
    frozen = {n for i in range(0, 100, 2) if i % 3 == 0 for n in names if n.startswith(f"transformer.layers.{i}.")}
    assert set(plan.stages[0].frozen) == frozen
    for k, stage in enumerate(plan.stages[1:]):
        for j in range(5):
            layer = (k * 7 + j) % 100
            selected = {n for n in names if n.startswith(f"transformer.layers.{layer}.")}
            frozen = frozen | selected if (k + j) % 2 == 0 else frozen - selected
        assert set(stage.frozen) == frozen, stage.start_step


# --- job-level entry point --------------------------------------------------------------


def test_plan_for_job_reads_max_steps_dyn_ckpt_and_stand_ins() -> None:
    from types import SimpleNamespace

    job = SimpleNamespace(
        vlm=make_vlm("joint_decoder", [("vision_encoder", True), ("adapter.*", True)]),
        train=SimpleNamespace(max_steps=40),
        checkpoint=SimpleNamespace(covers_step0=lambda: True))
    plan = plan_for_job(job, ca_model(), unknown=[SimpleNamespace(prefix="vision_encoder", reason="offline")],
                        stand_ins=[("vision_encoder.patch.weight", (8, 3))], saved_step=12)
    assert plan.max_steps == 40 and plan.saved_step == 12 and plan.unknown == []
    assert plan.params[-1] == ParamRecord("vision_encoder.patch.weight", (8, 3), 24, stand_in=True)
    [f] = by_code(plan, "KF301")
    assert f.stage == "trainer startup" and f.data["step"] == 0


def test_plan_for_job_through_the_loader_and_meta_model() -> None:
    pytest.importorskip("torch")
    loader = pytest.importorskip("kforge_cli.config.loader")
    build = pytest.importorskip("kforge_cli.model.build")
    path = FIXTURES / "f_overlap_divergence.toml"
    job = loader.load_job(str(path)).job
    model = build.build_meta_model(job)
    plan = plan_for_job(job, model.parameters, unknown=model.unknown)
    expected = json.loads((FIXTURES / "f_overlap_divergence.expected.json").read_text())
    assert {s.start_step: set(s.frozen) for s in plan.stages} == {
        s["start_step"]: set(s["frozen"]) for s in expected["stages"]}
    assert plan.resume_differs_at == [20] and "KF303" in codes(plan)


# --- what freeze_params really does with module_patterns --------------------------------


def test_a_string_alias_is_one_pattern_per_character() -> None:
    # list("transformer.*") holds "*", which matches every parameter.
    star = make_vlm("joint_decoder", [("transformer", True)],
                    patterns={"transformer": "transformer.*", "adapter": ["adapter", "adapter.*"]})
    plan = plan_freeze(ca_model(), star, 40)
    assert plan.stages[0].frozen == [p.name for p in ca_model()]
    assert by_code(plan, "KF307")[0].stage == "training loop"
    # Without a "*", single characters match no parameter name.
    word = make_vlm("joint_decoder", [("transformer", True)], patterns={"transformer": "transformer"})
    plan = plan_freeze(ca_model(), word, 40)
    assert plan.stages[0].frozen == []
    [kf305] = by_code(plan, "KF305")
    assert "a string: one pattern per character" in kf305.message


def test_a_non_string_pattern_fails_where_its_alias_is_applied() -> None:
    patterns = {"transformer": ["transformer", "transformer.*", 5], "adapter": ["adapter", "adapter.*"]}
    base = make_vlm("joint_decoder", [("transformer", True)], patterns=patterns)
    [failure] = pattern_failure_findings(plan_freeze(ca_model(), base, 40).analysis)
    assert (failure.code, failure.severity, failure.stage) == ("KF102", "error", "model build")
    assert failure.key == "vlm.module_patterns.transformer[2]" and failure.data["step"] == 0
    # any() stops at the first match: the first parameter no earlier entry matches meets the int.
    assert "'adapter.proj.weight'" in failure.message and "not int" in failure.message
    staged = make_vlm("joint_decoder", [], [(10, [("transformer", True)])], patterns=patterns)
    [failure] = pattern_failure_findings(plan_freeze(ca_model(), staged, 40).analysis)
    assert (failure.stage, failure.data["step"]) == ("training loop", 10)
    assert pattern_failure_findings(plan_freeze(ca_model(), staged, 9).analysis) == []  # never reached
    unused = make_vlm("joint_decoder", [("adapter", True)], patterns=patterns)
    assert pattern_failure_findings(plan_freeze(ca_model(), unused, 40).analysis) == []
    covered = make_vlm("joint_decoder", [("everything", True)], patterns={**patterns, "everything": ["*", 5]})
    assert pattern_failure_findings(plan_freeze(ca_model(), covered, 40).analysis) == []


def test_a_boolean_start_step_fires_at_step_one() -> None:
    vlm = make_vlm("joint_decoder", [], [(True, [("adapter", True)])])
    plan = plan_freeze(ca_model(), vlm, 40)
    assert [s.start_step for s in plan.stages] == [0, 1]
    assert plan.stages[1].fresh_run_frozen == ["adapter.proj.weight", "adapter.proj.bias"]


def test_kf309_stages_on_the_compiled_module_see_prefixed_names() -> None:
    vlm = make_vlm("cross_attention", [("transformer", True)], [(10, [("cross_attention", False)])])
    plan = plan_freeze(ca_model(), vlm, 40)
    [finding] = compiled_stage_findings(plan.analysis, plan.context())
    assert (finding.code, finding.severity, finding.key) == ("KF309", "warning", "vlm.freeze_schedule")
    assert "vlm.freeze_schedule[0] (step 10" in finding.message and "uncompiled" in finding.message
    assert '"_orig_mod.transformer.cross_attention_layers.*"' in finding.hint
    # Patterns that also spell the compiled names reach the wrapper's parameters.
    patterns = {"transformer": ["transformer", "transformer.*"],
                "cross_attention": ["*transformer.cross_attention_layers.*"]}
    reaching = make_vlm("cross_attention", [("transformer", True)], [(10, [("cross_attention", False)])],
                        patterns=patterns)
    plan = plan_freeze(ca_model(), reaching, 40)
    assert compiled_stage_findings(plan.analysis, plan.context()) == []
    no_schedule = plan_freeze(ca_model(), make_vlm("cross_attention", [("transformer", True)]), 40)
    assert compiled_stage_findings(no_schedule.analysis, no_schedule.context()) == []


def test_kf309_only_when_the_model_is_compiled() -> None:
    text = (FREEZE_JOB + '[vlm]\narch = "cross_attention"\nmax_text_len = 64\nfreeze = [{module = "transformer"}]\n'
            'freeze_schedule = [{start_step = 10, specs = [{module = "cross_attention", frozen = false}]}]\n')
    compiled = check_file("job.toml", text=text)
    assert "KF309" in [f.code for f in compiled.findings]
    eager = check_file("job.toml", text=text.replace("compile_model = true", "compile_model = false"))
    assert "KF309" not in [f.code for f in eager.findings]


def test_kf310_activation_checkpointing_renames_what_a_pattern_spells_out() -> None:
    patterns = ('[vlm.module_patterns]\nattn0 = ["transformer.layers.0.attention.*"]\n'
                'transformer = ["transformer", "transformer.*"]\nadapter = ["adapter", "adapter.*"]\n'
                'vision_encoder = ["vision_encoder", "vision_encoder.*"]\n')
    text = FREEZE_JOB.replace("compile_model = true", 'compile_model = false\nactivation_checkpointing = "full"')
    text += '[vlm]\nmax_text_len = 64\nfreeze = [{module = "attn0"}]\n' + patterns
    [finding] = [f for f in check_file("job.toml", text=text).findings if f.code == "KF310"]
    assert finding.key == "vlm.freeze[0].module" and finding.severity == "warning"
    assert "'transformer.layers.0._checkpoint_wrapped_module.attention.q_proj.weight'" in finding.message
    assert "'transformer.layers.0.*attention.*'" in finding.hint
    # An alias ending in '.*' matches through the wrapper; without checkpointing nothing is renamed.
    default = FREEZE_JOB.replace("compile_model = true", 'compile_model = false\nactivation_checkpointing = "full"')
    default += '[vlm]\nmax_text_len = 64\nfreeze = [{module = "transformer"}, {module = "adapter", frozen = false}]\n'
    assert "KF310" not in [f.code for f in check_file("job.toml", text=default).findings]
    plain = text.replace('activation_checkpointing = "full"', 'activation_checkpointing = "none"')
    assert "KF310" not in [f.code for f in check_file("job.toml", text=plain).findings]
