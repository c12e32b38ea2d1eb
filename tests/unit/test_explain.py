"""kforge_cli.explain: resolved config and sources, arch facts, token budget, parameter counts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from kforge_cli.explain import explain_file
from kforge_cli.lint.engine import Options

REFERENCE_CASES = Path(__file__).resolve().parents[1] / "cases" / "reference"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "vlm_cross_attention_freeze_schedule.toml"

SMALL_MODEL = """
[model]
dim = 64
n_layers = {n_layers}
n_heads = 4
n_kv_heads = 4
vocab_size = 1000
max_seq_len = {max_seq_len}

[train]
seq_len = {seq_len}
max_steps = 40
"""


def write(tmp_path: Path, text: str, name: str = "job.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def vlm_job(tmp_path: Path, sections: str, *, n_layers: int = 4, max_seq_len: int = 1024,
            seq_len: int = 1024) -> str:
    return write(tmp_path, SMALL_MODEL.format(n_layers=n_layers, max_seq_len=max_seq_len, seq_len=seq_len)
                 + sections)


def fixture(shared_fixtures: Path, name: str) -> str:
    return str(shared_fixtures / "configs" / f"{name}.toml")


def fixture_counts(shared_fixtures: Path, name: str) -> dict[str, int]:
    """Parameter counts per component, straight from the reference-recorded parameter list."""
    expected = json.loads((shared_fixtures / "configs" / f"{name}.expected.json").read_text())
    counts = {"vision_encoder": 0, "adapter": 0, "transformer": 0, "cross_attention": 0, "total": 0}
    for param_name, shape in expected["parameters"]:
        numel = math.prod(shape)
        counts["total"] += numel
        counts[param_name.split(".", 1)[0]] += numel
        if param_name.startswith("transformer.cross_attention_layers."):
            counts["cross_attention"] += numel
    return counts


# -- token budget -------------------------------------------------------------------------


def test_joint_decoder_budget_puts_image_tokens_in_the_stream(shared_fixtures):
    budget = explain_file(fixture(shared_fixtures, "p_joint_decoder_base")).token_budget
    assert budget.to_json() == {
        "known": True, "unknown_reason": None, "encoder_tokens": 16,
        "encoder_tokens_from": "vision_encoder.num_tokens", "adapter": "mlp_2layer", "tokens_per_frame": 16,
        "frames": 1, "visual_tokens": 16, "residual_image_tokens": 16, "max_text_len": 512,
        "required_seq_len": 528, "model_max_seq_len": 600, "train_seq_len": 600,
        "model_max_seq_len_slack": 72, "train_seq_len_slack": 72}


def test_cross_attention_budget_is_text_only(shared_fixtures):
    budget = explain_file(fixture(shared_fixtures, "r_vlm_7b_cross_attn")).token_budget
    assert (budget.encoder_tokens, budget.visual_tokens, budget.residual_image_tokens) == (256, 256, 0)
    assert (budget.required, budget.model_slack, budget.train_slack) == (512, 512, 0)
    assert not budget.image_tokens_in_residual


def test_mot_budget_matches_joint_decoder(shared_fixtures):
    budget = explain_file(fixture(shared_fixtures, "p_mot_base")).token_budget
    assert (budget.residual_image_tokens, budget.required, budget.model_slack) == (16, 528, 72)


def test_shortfall_is_negative_slack(shared_fixtures):
    budget = explain_file(fixture(shared_fixtures, "m_seq_len_too_small")).token_budget
    assert (budget.required, budget.model_slack, budget.train_slack) == (576, 0, -64)


@pytest.mark.parametrize("adapter, tokens, per_frame", [
    ('type = "avgpool"\npool_window = 2', 64, 16),  # 8x8 grid -> 4x4
    ('type = "avgpool"\npool_window = 3', 576, 64),  # 24x24 -> 8x8
    ('type = "avgpool"\npool_window = 2', 25, 9),  # 5x5 -> ragged edge kept: 3x3
    ('type = "attentional_pool"\npool_window = 4\npool_heads = 8', 256, 16),  # 16x16 -> 4x4
    ('type = "linear"', 64, 64),
])
def test_pooling_adapters(tmp_path, adapter, tokens, per_frame):
    path = vlm_job(tmp_path, f'[vision_encoder]\ntype = "random"\nfeature_dim = 32\nnum_tokens = {tokens}\n'
                             f'[adapter]\n{adapter}\n[vlm]\narch = "joint_decoder"\nmax_text_len = 100\n')
    budget = explain_file(path).token_budget
    assert (budget.tokens_per_frame, budget.residual_image_tokens, budget.required) == (
        per_frame, per_frame, per_frame + 100)


def test_video_multiplies_tokens_per_frame(tmp_path):
    path = vlm_job(tmp_path, '[vision_encoder]\ntype = "random"\nfeature_dim = 32\nnum_tokens = 64\n'
                             '[adapter]\ntype = "avgpool"\npool_window = 2\n'
                             '[vlm]\narch = "joint_decoder"\nmax_text_len = 128\n'
                             '[video]\nmax_frames = 8\nmin_frames = 2\n')
    budget = explain_file(path).token_budget
    assert (budget.tokens_per_frame, budget.frames, budget.visual_tokens) == (16, 8, 128)
    assert (budget.residual_image_tokens, budget.required, budget.model_slack) == (128, 256, 768)


def test_random_encoder_default_token_count(tmp_path):
    path = vlm_job(tmp_path, '[vision_encoder]\ntype = "random"\nfeature_dim = 32\n[vlm]\nmax_text_len = 100\n')
    budget = explain_file(path).token_budget
    assert (budget.encoder_tokens, budget.encoder_tokens_from, budget.required) == (
        16, "the random encoder's default", 116)


def test_hf_encoder_budget_is_unknown_until_built(shared_fixtures):
    budget = explain_file(fixture(shared_fixtures, "r_vlm_7b_siglip2")).token_budget
    assert not budget.known and budget.required is None and budget.model_slack is None
    assert budget.unknown_reason.startswith("unknown until the HF encoder is built")


def test_cross_attention_budget_is_known_even_for_an_hf_encoder(tmp_path):
    path = vlm_job(tmp_path, '[vision_encoder]\ntype = "siglip2"\npath = "google/siglip2-base-patch16-224"\n'
                             '[vlm]\narch = "cross_attention"\nmax_text_len = 300\n', max_seq_len=400, seq_len=300)
    budget = explain_file(path).token_budget
    assert budget.encoder_tokens is None and "HF encoder" in budget.unknown_reason
    assert (budget.residual_image_tokens, budget.required, budget.model_slack, budget.train_slack) == (
        0, 300, 100, 0)


def test_unpoolable_grid_leaves_the_budget_unknown(tmp_path):
    path = vlm_job(tmp_path, '[vision_encoder]\ntype = "random"\nfeature_dim = 32\n'
                             '[adapter]\ntype = "attentional_pool"\npool_window = 3\npool_heads = 8\n'
                             '[vlm]\nmax_text_len = 100\n')  # 16 default tokens: a 4x4 grid, not divisible by 3
    explanation = explain_file(path)
    assert explanation.token_budget.required is None
    assert "cannot pool 16 tokens" in explanation.token_budget.unknown_reason


def test_text_only_job_has_no_budget_and_no_arch(shared_fixtures):
    explanation = explain_file(fixture(shared_fixtures, "r_debug"))
    assert explanation.token_budget is None and explanation.arch is None
    assert explanation.to_json()["arch"] is None


# -- arch ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_layers, every, after", [
    (32, 4, [3, 7, 11, 15, 19, 23, 27, 31]),
    (10, 3, [2, 5, 8]),
    (4, 4, [3]),
    (4, 1, [0, 1, 2, 3]),
    (3, 4, []),
])
def test_cross_attention_block_positions(tmp_path, n_layers, every, after):
    path = vlm_job(tmp_path, '[vision_encoder]\ntype = "random"\nfeature_dim = 32\nnum_tokens = 16\n'
                             f'[vlm]\narch = "cross_attention"\ncross_attention_every_n_layers = {every}\n',
                   n_layers=n_layers)
    explanation = explain_file(path)
    layout = explanation.arch.cross_attention
    assert (layout.after_layers, layout.blocks) == (after, len(after))
    # The builder places its blocks at the same text layers.
    meta_count = explanation.params.cross_attention
    assert (meta_count > 0) == bool(after)
    assert ("KF402" in {f.code for f in explanation.findings}) == (not after)


def test_cross_attention_heads_resolve_against_the_backbone(tmp_path):
    path = vlm_job(tmp_path, '[vision_encoder]\ntype = "random"\nfeature_dim = 32\nnum_tokens = 16\n'
                             '[vlm]\narch = "cross_attention"\ncross_attention_n_kv_heads = 2\n')
    layout = explain_file(path).arch.cross_attention
    assert (layout.n_heads, layout.n_kv_heads, layout.head_dim) == (4, 2, 16)


def test_7b_cross_attention_arch(shared_fixtures):
    arch = explain_file(fixture(shared_fixtures, "r_vlm_7b_cross_attn")).arch
    assert arch.arch == "cross_attention" and arch.residual_stream == "text"
    assert arch.cross_attention.to_json() == {"every_n_layers": 4, "blocks": 8,
                                              "after_layers": [3, 7, 11, 15, 19, 23, 27, 31],
                                              "n_heads": 32, "n_kv_heads": 32, "head_dim": 128}
    assert list(arch.module_aliases) == ["transformer", "vision_encoder", "adapter", "cross_attention"]


def test_mot_modalities_and_image_heads(shared_fixtures):
    arch = explain_file(fixture(shared_fixtures, "p_mot_base")).arch
    assert (arch.modalities, arch.image_heads, arch.residual_stream) == (["image", "text"], (4, 4), "image+text")
    assert arch.module_aliases["mot"] == ["transformer.layers", "transformer.layers.*"]


def test_moma_experts_and_effective_capacity(tmp_path):
    path = vlm_job(tmp_path, '[vision_encoder]\ntype = "random"\nfeature_dim = 32\nnum_tokens = 16\n'
                             '[vlm]\narch = "moma"\nmoma_experts_per_modality = {image = 2, text = 8}\n')
    arch = explain_file(path).arch
    assert arch.moma_experts == {"image": 2, "text": 8}
    assert arch.moma_capacity == {"image": 0.5, "text": 0.125}
    path = vlm_job(tmp_path, '[vision_encoder]\ntype = "random"\nfeature_dim = 32\nnum_tokens = 16\n'
                             '[vlm]\narch = "moma"\nmoma_capacity_factor = 0.3\n')
    assert explain_file(path).arch.moma_capacity == {"image": 0.3, "text": 0.3}


def test_custom_module_patterns_report_dropped_aliases(tmp_path):
    path = vlm_job(tmp_path, '[vision_encoder]\ntype = "random"\nfeature_dim = 32\nnum_tokens = 16\n'
                             '[vlm]\narch = "cross_attention"\nfreeze = []\n'
                             '[vlm.module_patterns]\nblocks = ["transformer.layers.*"]\n')
    arch = explain_file(path).arch
    assert arch.module_aliases == {"blocks": ["transformer.layers.*"]}
    assert arch.dropped_aliases == ["transformer", "vision_encoder", "adapter", "cross_attention"]


# -- parameter counts ---------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("p_joint_decoder_base", {"vision_encoder": 0, "adapter": 6272, "transformer": 390720,
                              "cross_attention": None, "total": 396992}),
    ("p_cross_attention_base", {"vision_encoder": 0, "adapter": 6272, "transformer": 456384,
                                "cross_attention": 65664, "total": 462656}),
    ("r_vlm_7b_cross_attn", {"vision_encoder": 0, "adapter": 20979712, "transformer": 9337516032,
                             "cross_attention": 1946222592, "total": 9358495744}),
])
def test_parameter_counts_per_component(shared_fixtures, name, expected):
    params = explain_file(fixture(shared_fixtures, name)).params
    got = {k: params.to_json()[k] for k in expected}
    assert got == expected
    # The same numbers summed from the reference-recorded parameter list.
    recorded = fixture_counts(shared_fixtures, name)
    assert got == {k: (recorded[k] if v is not None else None) for k, v in expected.items()}
    assert params.complete and params.trainable_at_step_0 == expected["total"]


def test_construction_freeze_is_not_trainable(shared_fixtures):
    params = explain_file(fixture(shared_fixtures, "p_mot_base")).params
    # MoT freezes its unused transformer.norm (dim 64) itself.
    assert (params.total, params.frozen_at_construction, params.frozen_at_step_0, params.trainable_at_step_0) == (
        659776, 64, 64, 659712)


def test_freeze_schedule_example_counts():
    params = explain_file(str(EXAMPLE)).params
    total, adapter, cross_attention = 1773230080, 6295552, 268451840
    # Step 0 trains everything (the vision encoder is a parameter-free stub); the stage at step 1 freezes the
    # backbone but not its cross-attention blocks; the stage at step 3000 unfreezes the backbone again.
    assert params.to_json() | {"unknown": None} == {
        "vision_encoder": 0, "adapter": adapter, "transformer": 1766934528, "cross_attention": cross_attention,
        "total": total, "trainable_at_step_0": total, "frozen_at_step_0": 0, "frozen_at_construction": 0,
        "later_stages": [
            {"start_step": 1, "trainable": adapter + cross_attention, "frozen": total - adapter - cross_attention},
            {"start_step": 3000, "trainable": total, "frozen": 0}],
        "complete": True, "unknown": None, "error": None}


def test_base_freeze_counts_at_step_0(tmp_path):
    # Llama-3.2-Vision style: backbone frozen at build, its cross-attention blocks unfrozen after it.
    path = vlm_job(tmp_path, '[vision_encoder]\ntype = "random"\nfeature_dim = 32\nnum_tokens = 16\n'
                             '[vlm]\narch = "cross_attention"\nfreeze = [{module = "transformer"}, '
                             '{module = "cross_attention", frozen = false}]\n')
    params = explain_file(path).params
    assert (params.adapter, params.transformer, params.cross_attention) == (6272, 456384, 65664)
    assert (params.trainable_at_step_0, params.frozen_at_step_0) == (6272 + 65664, 456384 - 65664)


def test_hf_encoder_parameters_are_unknown_not_guessed(shared_fixtures):
    params = explain_file(fixture(shared_fixtures, "r_vlm_7b_siglip2")).params
    if params.vision_encoder is not None:
        pytest.skip("a local copy of the HF encoder is available here")
    assert params.vision_encoder is None and params.adapter is None and not params.complete
    assert params.transformer == params.total == 8030261248
    assert [u.prefix for u in params.unknown] == ["vision_encoder", "adapter"]
    assert params.unknown[0].frozen_at_step_0 is True  # the default vlm.freeze spec


def test_model_build_failure_is_reported_not_raised(tmp_path):
    path = write(tmp_path, SMALL_MODEL.format(n_layers=2, max_seq_len=64, seq_len=64)
                 .replace("dim = 64", "dim = 96").replace("n_heads = 4", "n_heads = 32")
                 .replace("n_kv_heads = 4", "n_kv_heads = 32"))
    explanation = explain_file(path)
    assert explanation.accepted and explanation.resolved is not None
    assert explanation.params.error.key == "model.n_heads" and explanation.params.total is None
    assert not explanation.valid


# -- resolved and sources -----------------------------------------------------------------


def test_resolved_equals_the_reference_for_every_loadable_fixture(shared_fixtures):
    checked = 0
    for resolved_path in sorted((shared_fixtures / "configs").glob("*.resolved.json")):
        reference = json.loads(resolved_path.read_text())
        toml = str(resolved_path).replace(".resolved.json", ".toml")
        explanation = explain_file(toml)
        if "error" in reference:
            assert explanation.resolved is None and not explanation.accepted, toml
        else:
            assert json.loads(json.dumps(explanation.resolved)) == reference, toml
            checked += 1
    assert checked >= 20


@pytest.mark.parametrize("case", sorted(REFERENCE_CASES.glob("ref_*.toml")), ids=lambda p: p.stem)
def test_resolved_equals_the_reference_recorded_cases(case):
    expected = json.loads(case.with_suffix(".expected.json").read_text())
    explanation = explain_file(str(case))
    if expected["load"] == "ok":
        assert json.loads(json.dumps(explanation.resolved)) == expected["resolved"]
    else:
        assert explanation.resolved is None and explanation.sources is None


def test_sources_cover_every_field_and_name_their_origin(shared_fixtures):
    explanation = explain_file(fixture(shared_fixtures, "p_cross_attention_base"),
                               Options(overrides=("train.max_steps=99",)))
    resolved, sources = explanation.resolved, explanation.sources
    assert set(sources) == {f"{s}.{k}" for s, v in resolved.items() if isinstance(v, dict) for k in v}
    assert set(sources.values()) == {"file", "default", "override"}
    assert sources["model.dim"] == "file" and sources["vlm.arch"] == "file"
    assert sources["model.rope_theta"] == "default" and sources["adapter.type"] == "default"
    assert sources["train.max_steps"] == "override" and resolved["train"]["max_steps"] == 99
    assert sources["vlm.cross_attention_every_n_layers"] == "default"
    assert resolved["video"] is None and not any(k.startswith("video.") for k in sources)


def test_section_rows_show_what_the_file_sets(shared_fixtures):
    sections = {s.name: s for s in explain_file(fixture(shared_fixtures, "p_cross_attention_base")).sections}
    assert [r.name for r in sections["model"].set_rows] == [
        "dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "max_seq_len"]
    assert sections["adapter"].set_rows == [] and len(sections["adapter"].rows) == 5
    assert sections["video"].rows is None
    assert list(sections)[:5] == ["model", "vision_encoder", "adapter", "vlm", "video"]


def test_inherited_kv_heads_row_is_shown_as_a_default_that_differs(tmp_path):
    path = write(tmp_path, "[model]\ndim = 256\nn_heads = 32\n")
    rows = {r.name: r for s in explain_file(path).sections if s.name == "model"
            for r in s.rows}
    assert (rows["n_kv_heads"].value, rows["n_kv_heads"].source, rows["n_kv_heads"].is_set) == (32, "default", True)


def test_unreadable_and_rejected_files_have_only_findings(tmp_path, shared_fixtures):
    missing = explain_file(str(tmp_path / "missing.toml"))
    assert not missing.readable and [f.code for f in missing.findings] == ["KF001"]
    rejected = explain_file(fixture(shared_fixtures, "m_unknown_model_key"))
    assert rejected.readable and not rejected.accepted
    assert rejected.to_json() | {"findings": None} == {
        "path": rejected.path, "valid": False, "resolved": None, "sources": None, "arch": None,
        "architecture": None, "token_budget": None, "param_counts": None, "findings": None}
