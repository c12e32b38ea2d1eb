"""The loader: the reference's layering and coercions, with every finding located."""

from __future__ import annotations

import textwrap

import pytest

from kforge_cli.config.loader import OverrideError, load_job_text, parse_override
from kforge_cli.config.resolved import resolved_dict
from kforge_cli.config.vlm import CrossAttentionConfig, FreezeSpec, FreezeStage, JointDecoderConfig

VLM_BASE = """
[model]
dim = 64
n_layers = 4
n_heads = 4
n_kv_heads = 4
vocab_size = 1000
max_seq_len = 600

[train]
seq_len = 600
max_steps = 40

[vision_encoder]
type = "random"
feature_dim = 32
num_tokens = 16

[vlm]
arch = "joint_decoder"
"""


def load(text: str, overrides=()):
    return load_job_text(textwrap.dedent(text), path="job.toml", overrides=overrides)


def codes(result):
    return [(f.code, f.severity, f.key) for f in result.findings]


def only(result, code):
    found = [f for f in result.findings if f.code == code]
    assert len(found) == 1, codes(result)
    return found[0]


def test_empty_file_resolves_to_the_reference_defaults():
    result = load("")
    assert result.findings == []
    job = result.job
    assert (job.model.dim, job.model.n_layers, job.model.n_heads, job.model.n_kv_heads) == (4096, 32, 32, 32)
    assert job.vlm is None and job.vision_encoder is None and job.adapter is None and job.video is None
    assert resolved_dict(job)["optimizer"]["betas"] == [0.9, 0.95]


def test_vlm_section_materializes_default_adapter_and_dispatches_on_arch():
    job = load(VLM_BASE.replace('"joint_decoder"', '"cross_attention"')).job
    assert isinstance(job.vlm, CrossAttentionConfig)
    assert job.adapter.type == "mlp_2layer"
    assert job.vlm.module_patterns["cross_attention"] == [
        "transformer.cross_attention_layers", "transformer.cross_attention_layers.*"]


def test_missing_arch_defaults_to_joint_decoder():
    job = load(VLM_BASE.replace('arch = "joint_decoder"', "max_text_len = 500")).job
    assert isinstance(job.vlm, JointDecoderConfig) and job.vlm.max_text_len == 500


def test_unset_kv_heads_keeps_the_default_models_32():
    result = load("[model]\ndim = 256\nn_heads = 4\n")
    finding = only(result, "KF103")
    assert finding.key == "model.n_kv_heads"
    assert "model.n_kv_heads must be a divisor of model.n_heads (4) (got 32)" in finding.message
    assert "not set in the file" in finding.message
    assert "model.n_kv_heads = 4" in finding.hint
    assert (finding.line, finding.column) == (1, 1)  # points at [model]


def test_float_for_int_is_a_lossy_coercion_warning():
    result = load("[model]\ndim = 256.0\nn_heads = 4\nn_kv_heads = 4\n")
    finding = only(result, "KF401")
    assert (finding.severity, finding.key, finding.line, finding.column) == ("warning", "model.dim", 2, 1)
    assert result.job.model.dim == 256 and isinstance(result.job.model.dim, int)


def test_fractional_float_for_int_is_truncated_like_the_reference():
    result = load("[train]\nmax_steps = 99.9\n")
    assert result.job.train.max_steps == 99
    assert "truncates it to 99" in only(result, "KF401").message


@pytest.mark.parametrize("raw, value", [('"yes"', True), ('"no"', False), ('"1"', True), ('"ture"', False),
                                        ("1", True), ("0", False)])
def test_bool_coercion_matches_the_reference(raw, value):
    result = load(f"[train]\ncompile_model = {raw}\n")
    assert result.job.train.compile_model is value
    assert only(result, "KF401").key == "train.compile_model"


def test_string_numbers_coerce_with_a_warning_and_garbage_is_an_error():
    result = load('[optimizer]\nlr = "1e-4"\n[train]\nbatch_size = "8"\nseq_len = "abc"\n')
    assert result.job.optimizer.lr == 1e-4 and result.job.train.batch_size == 8
    assert {(c, k) for c, _, k in codes(result)} == {
        ("KF401", "optimizer.lr"), ("KF401", "train.batch_size"), ("KF102", "train.seq_len")}
    assert result.job.train.seq_len == 2048  # the rejected value does not replace the default


def test_int_for_float_is_silent():
    result = load("[optimizer]\nlr = 1\n")
    assert result.findings == [] and result.job.optimizer.lr == 1.0


def test_enum_value_outside_choices_is_rejected_with_did_you_mean():
    finding = only(load('[model]\nnorm_type = "rmsnrom"\n'), "KF103")
    assert finding.key == "model.norm_type" and finding.hint == "did you mean 'rmsnorm'?"


def test_unknown_key_gets_did_you_mean_and_position():
    finding = only(load("[model]\ndim = 64\ndimm = 64\n"), "KF101")
    assert (finding.key, finding.line, finding.column, finding.hint) == (
        "model.dimm", 3, 1, "did you mean model.dim?")


def test_key_in_the_wrong_section_points_to_its_section():
    finding = only(load("[model]\nseq_len = 64\n"), "KF101")
    assert finding.hint == "seq_len belongs to [train]: move it there"


def test_unknown_section_is_reported():
    finding = only(load("[modle]\ndim = 64\n"), "KF101")
    assert (finding.key, finding.hint) == ("modle", "did you mean [model]?")


def test_arch_field_on_the_wrong_arch_names_the_arch():
    result = load(VLM_BASE.replace('arch = "joint_decoder"',
                                   'arch = "joint_decoder"\ncross_attention_every_n_layers = 4'))
    finding = only(result, "KF101")
    assert finding.key == "vlm.cross_attention_every_n_layers"
    assert "belongs to vlm.arch = 'cross_attention'" in finding.hint


def test_unknown_arch_is_one_error_not_a_cascade():
    result = load(VLM_BASE.replace('"joint_decoder"', '"cross_atention"') + "cross_attention_n_heads = 2\n")
    assert codes(result) == [("KF103", "error", "vlm.arch")]
    assert result.findings[0].hint == "did you mean 'cross_attention'?"


def test_legacy_model_vlm_table_is_kf105():
    result = load('[model]\ndim = 64\n\n[model.vlm]\narch = "joint_decoder"\nvision_encoder = "random"\n')
    finding = only(result, "KF105")
    assert (finding.key, finding.line) == ("model.vlm", 4)
    assert "kforge convert" in finding.hint


def test_vlm_without_vision_encoder_points_at_the_key():
    result = load('[vlm]\narch = "mot"\n')
    finding = only(result, "KF104")
    assert finding.key == "vision_encoder"


def test_freeze_specs_and_stages_are_built_from_tables():
    job = load(VLM_BASE + '''freeze = [{module = "adapter", frozen = "no"}]
[[vlm.freeze_schedule]]
start_step = 10
specs = [{module = "transformer"}]
''').job
    assert job.vlm.freeze == [FreezeSpec("adapter", False)]
    assert job.vlm.freeze_schedule == [FreezeStage(10, (FreezeSpec("transformer", True),))]


def test_malformed_freeze_entries_are_each_reported():
    text = VLM_BASE + '''freeze = ["vision_encoder", {frozen = true}, {module = "x", froze = true}]
freeze_schedule = [{specs = []}]
'''
    result = load(text)
    assert {(c, k) for c, _, k in codes(result)} >= {
        ("KF102", "vlm.freeze[0]"), ("KF104", "vlm.freeze[1]"), ("KF101", "vlm.freeze[2].froze"),
        ("KF104", "vlm.freeze_schedule[0]")}
    bare = next(f for f in result.findings if f.key == "vlm.freeze[0]")
    assert bare.hint == 'write {module = "vision_encoder", frozen = true}'
    assert bare.line == textwrap.dedent(text).splitlines().index(
        'freeze = ["vision_encoder", {frozen = true}, {module = "x", froze = true}]') + 1


def test_nonmonotonic_schedule_is_rejected_at_the_schedule():
    result = load(VLM_BASE + "freeze_schedule = [{start_step = 20, specs = []}, {start_step = 10, specs = []}]\n")
    finding = only(result, "KF103")
    assert finding.key == "vlm.freeze_schedule" and "[20, 10]" in finding.message


def test_max_seq_len_budget_names_every_contributor():
    result = load(VLM_BASE.replace("max_seq_len = 600", "max_seq_len = 500"))
    finding = only(result, "KF201")
    assert finding.key == "model.max_seq_len" and finding.stage == "loader"
    for part in ("vision_encoder.num_tokens 16", "vlm.max_text_len (512)", "= 528"):
        assert part in finding.message


def test_pooling_adapter_shrinks_the_budget():
    text = VLM_BASE.replace("max_seq_len = 600", "max_seq_len = 516") + '[adapter]\ntype = "avgpool"\n'
    result = load(text)
    assert not [f for f in result.findings if f.is_error]
    assert result.job.token_budget().required == 4 + 512


def test_pooling_adapter_rejects_a_non_square_grid_at_load():
    text = VLM_BASE.replace("num_tokens = 16", "num_tokens = 15") + '[adapter]\ntype = "avgpool"\n'
    finding = only(load(text), "KF103")
    assert finding.key == "vision_encoder.num_tokens" and "perfect square" in finding.message


def test_module_patterns_table_replaces_the_defaults():
    job = load(VLM_BASE + '[vlm.module_patterns]\nlayer0 = ["transformer.layers.0.*"]\n').job
    assert job.vlm.module_patterns == {"layer0": ["transformer.layers.0.*"]}


def test_single_value_for_a_list_is_wrapped_like_the_reference():
    result = load('[checkpoint]\nexclude_from_loading = "optimizer"\n')
    assert result.job.checkpoint.exclude_from_loading == ["optimizer"]
    assert only(result, "KF401").key == "checkpoint.exclude_from_loading"


def test_betas_must_be_two_numbers():
    result = load('[optimizer]\nbetas = ["0.9", "0.95"]\n')
    assert only(result, "KF102").key == "optimizer.betas"
    assert result.job.optimizer.betas == (0.9, 0.95)


def test_section_that_is_not_a_table():
    finding = only(load("train = 5\n"), "KF102")
    assert finding.key == "train" and "must be a table" in finding.message


def test_sources_record_file_default_and_override():
    result = load("[model]\ndim = 64\nn_heads = 4\nn_kv_heads = 4\n", overrides=["model.n_layers=2"])
    assert result.sources["model.dim"] == "file"
    assert result.sources["model.n_layers"] == "override"
    assert "model.vocab_size" not in result.sources  # default
    assert result.job.model.n_layers == 2


@pytest.mark.parametrize("text, key, value", [
    ("model.dim=512", "model.dim", 512),
    ("--model.dim=512", "model.dim", 512),
    ("optimizer.betas=[0.9,0.99]", "optimizer.betas", [0.9, 0.99]),
    ("data.tokenizer_path=gpt2", "data.tokenizer_path", "gpt2"),
    ("train.compile_model", "train.compile_model", "true"),
    ("vlm.arch='mot'", "vlm.arch", "mot"),
])
def test_override_values_parse_as_python_literals(text, key, value):
    parsed = parse_override(text)
    assert (parsed.key, parsed.value) == (key, value)


@pytest.mark.parametrize("bad", ["=5", "model..dim=1", ".x=1"])
def test_malformed_override_key_is_a_usage_error(bad):
    with pytest.raises(OverrideError):
        parse_override(bad)


def test_override_cannot_rescue_an_invalid_file():
    result = load("[model]\ndim = 64\nn_heads = 4\n", overrides=["model.n_kv_heads=4"])
    finding = only(result, "KF103")
    assert finding.key == "model.n_kv_heads"
    assert result.job.model.n_kv_heads == 4  # the override itself applies...
    assert "--set cannot rescue it" in finding.hint  # ...but the reference already failed on the file


def test_override_findings_have_no_file_position():
    result = load(VLM_BASE, overrides=["model.dim=0"])
    finding = only(result, "KF103")
    assert finding.key == "model.dim" and finding.line is None


def test_override_of_the_arch_rewrites_only_the_string():
    # The reference merges overrides into the file's JointDecoderConfig: the arch
    # string changes, the class (and with it the model built) does not.
    result = load(VLM_BASE, overrides=["vlm.arch=cross_attention"])
    finding = only(result, "KF408")
    assert finding.key == "vlm.arch" and finding.severity == "warning"
    assert "JointDecoderConfig" in finding.message and "joint_decoder model" in finding.message
    assert type(result.job.vlm) is JointDecoderConfig and result.job.vlm.arch == "cross_attention"
    assert not result.has_errors


def test_override_naming_the_files_arch_says_nothing():
    assert load(VLM_BASE, overrides=["vlm.arch=joint_decoder"]).findings == []


def test_override_can_add_a_vlm_section():
    result = load("[vision_encoder]\nnum_tokens = 4\nfeature_dim = 8\n", overrides=["vlm.arch=mot"])
    assert result.job.vlm.arch == "mot" and result.job.adapter is not None


def test_string_module_patterns_value_is_iterated_per_character():
    result = load(VLM_BASE + '[vlm.module_patterns]\ntransformer = "transformer.*"\n')
    assert only(result, "KF406").key == "vlm.module_patterns.transformer"


def test_moe_only_fields_are_validated_only_for_moe():
    assert load("[model]\nmoe_top_k = 0\n").findings == []
    finding = only(load("[model]\nnum_experts = 4\nmoe_top_k = 8\n"), "KF103")
    assert finding.key == "model.moe_top_k"


def test_a_value_the_reference_keeps_as_is_is_stored_without_a_load_finding():
    # moe_aux_loss_weight has no construction check: the reference stores the list and the
    # rules say where the trainer uses it (see test_parity_cases).
    result = load("[model]\nmoe_aux_loss_weight = [0.1]\n")
    assert result.findings == [] and result.job.model.moe_aux_loss_weight == [0.1]
    assert result.as_is == {"model.moe_aux_loss_weight": [0.1]} and "model.moe_aux_loss_weight" in result.bad_keys


def test_a_kept_value_that_construction_compares_fails_the_load():
    # moe_top_k is compared with 0 when the model is MoE: the reference's loader raises TypeError.
    assert load("[model]\nmoe_top_k = [2]\n").findings == []
    finding = only(load("[model]\nnum_experts = 4\nmoe_top_k = [2]\n"), "KF102")
    assert finding.severity == "error" and finding.stage == "loader"


def test_an_override_replaces_a_value_kept_as_is():
    result = load("[train]\nseed = [7]\n", overrides=["train.seed=3"])
    assert result.job.train.seed == 3 and result.as_is == {} and "train.seed" not in result.bad_keys


def test_an_uncoercible_moe_knob_fails_the_load_even_on_a_dense_model():
    # float("relu") raises inside the reference's loader, whatever the knob is used for.
    finding = only(load('[model]\nmoe_expert_ffn_multiplier = "relu"\n'), "KF102")
    assert finding.severity == "error"


VALID_TEXT_JOB = "[model]\ndim = 64\nn_heads = 4\nn_kv_heads = 4\n"


@pytest.mark.parametrize("spelling", ["true", "false", "TRUE", "yes", "no"])
def test_a_boolean_spelled_on_the_command_line_is_no_warning(spelling):
    result = load(VALID_TEXT_JOB, overrides=[f"train.compile_model={spelling}"])
    assert result.job.train.compile_model is (spelling.lower() in ("true", "yes"))
    assert [f.code for f in result.findings] == []


def test_a_boolean_override_that_is_no_boolean_is_fixed_on_the_command_line():
    result = load(VALID_TEXT_JOB, overrides=["train.compile_model=maybe"])
    (finding,) = result.findings
    assert (finding.code, finding.hint) == ("KF401", "write --set train.compile_model=False")
    in_file = load(VALID_TEXT_JOB + '[train]\ncompile_model = "true"\n')
    assert [(f.code, f.hint) for f in in_file.findings] == [("KF401", "write compile_model = true (a TOML boolean)")]


def test_a_number_spelled_on_the_command_line_is_judged_as_the_number():
    inf = load(VALID_TEXT_JOB, overrides=["model.norm_eps=inf"])
    assert [(f.code, f.message) for f in inf.findings] == [
        ("KF102", "model.norm_eps = inf is not a finite number; the reference accepts it")]
    bad = load(VALID_TEXT_JOB, overrides=["model.n_layers=abc"])
    assert [(f.code, f.hint) for f in bad.findings] == [("KF102", "write --set model.n_layers=<integer>")]
