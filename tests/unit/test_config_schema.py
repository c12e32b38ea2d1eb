"""The config layer's own API: registry, the VLM union, freeze specs, budgets (exact values)."""

from __future__ import annotations

import pytest

from kforge_cli.config import (
    DEFAULT_MODULE_PATTERNS,
    CrossAttentionConfig,
    FreezeSpec,
    FreezeStage,
    JobConfig,
    JointDecoderConfig,
    MoMaConfig,
    MoTConfig,
    Registry,
    RegistryError,
    VLMConfig,
    registry,
)
from kforge_cli.config.model import ModelConfig
from kforge_cli.config.vision import AdapterConfig, PoolingError, VideoConfig, VisionEncoderConfig, pooled_token_count
from kforge_cli.config.vlm import RESERVED_ARCHS, cross_attention_after_layers, module_patterns_for


def test_registry_refuses_duplicates_and_lists_what_is_registered():
    reg = Registry()
    reg.register("widget", "a", 1)
    with pytest.raises(ValueError, match="widget/a is already registered"):
        reg.register("widget", "a", 2)
    with pytest.raises(RegistryError) as caught:
        reg.get("widget", "b")
    assert str(caught.value) == "Unknown widget: 'b'. Available: ['a']"
    assert reg.list("widget") == ["a"] and reg.list("nothing") == []
    with pytest.raises(RegistryError):
        reg.get("widget", ["unhashable"])


def test_builtin_registry_matches_the_reference_names():
    assert sorted(registry.list_vlm_configs()) == ["cross_attention", "joint_decoder", "moma", "mot"]
    assert sorted(registry.list("optimizer")) == ["adamw", "lion", "muon", "schedule_free_adamw"]
    assert sorted(registry.list("adapter")) == ["attentional_pool", "avgpool", "linear", "mlp_2layer"]
    assert sorted(registry.list("vision_encoder")) == ["clip", "random", "siglip2"]
    assert sorted(registry.list("loss")) == ["chunked_cross_entropy", "cross_entropy"]
    assert sorted(registry.list("router")) == ["sigmoid_topk", "softmax_topk"]
    assert registry.get_vlm_config("mot") is MoTConfig


def test_for_arch_dispatches_and_validates():
    cfg = VLMConfig.for_arch("cross_attention", max_text_len=2048, cross_attention_every_n_layers=2)
    assert isinstance(cfg, CrossAttentionConfig) and cfg.max_text_len == 2048
    with pytest.raises(ValueError, match="Unknown vlm.arch: 'perceiver'"):
        VLMConfig.for_arch("perceiver")
    with pytest.raises(ValueError, match="cross_attention_every_n_layers must be positive"):
        VLMConfig.for_arch("cross_attention", cross_attention_every_n_layers=0)
    with pytest.raises(TypeError):
        VLMConfig.for_arch("joint_decoder", cross_attention_every_n_layers=4)


def test_reserved_arch_raises_not_implemented():
    RESERVED_ARCHS.add("perceiver")
    try:
        with pytest.raises(NotImplementedError, match="reserved; not yet implemented"):
            VLMConfig.for_arch("perceiver")
    finally:
        RESERVED_ARCHS.discard("perceiver")


def test_defaults_and_module_patterns_per_arch():
    assert DEFAULT_MODULE_PATTERNS == {"transformer": ["transformer", "transformer.*"],
                                       "vision_encoder": ["vision_encoder", "vision_encoder.*"],
                                       "adapter": ["adapter", "adapter.*"]}
    assert JointDecoderConfig().module_patterns == DEFAULT_MODULE_PATTERNS
    assert JointDecoderConfig().freeze == [FreezeSpec("vision_encoder", True)]
    assert set(CrossAttentionConfig().module_patterns) == {*DEFAULT_MODULE_PATTERNS, "cross_attention"}
    assert MoTConfig().module_patterns["mot"] == ["transformer.layers", "transformer.layers.*"]
    assert MoMaConfig().module_patterns["moma"] == ["transformer.layers", "transformer.layers.*"]
    # Each instance owns its own lists: mutating one leaves the defaults alone.
    cfg = JointDecoderConfig()
    cfg.module_patterns["transformer"].append("x")
    assert JointDecoderConfig().module_patterns["transformer"] == ["transformer", "transformer.*"]
    assert module_patterns_for("nonexistent") == DEFAULT_MODULE_PATTERNS


def test_residual_stream_image_tokens_per_arch():
    assert JointDecoderConfig().residual_stream_image_tokens(64) == 64
    assert CrossAttentionConfig().residual_stream_image_tokens(64) == 0
    assert MoTConfig().residual_stream_image_tokens(64) == 64
    assert MoMaConfig().residual_stream_image_tokens(64) == 64


def test_resolved_heads():
    assert CrossAttentionConfig().resolved_heads(32) == (32, 32)
    assert CrossAttentionConfig(cross_attention_n_heads=16).resolved_heads(32) == (16, 16)
    assert CrossAttentionConfig(cross_attention_n_kv_heads=4).resolved_heads(32) == (32, 4)
    with pytest.raises(ValueError, match="model_n_heads must be positive"):
        CrossAttentionConfig().resolved_heads(0)


def test_resolved_image_heads():
    assert MoTConfig().resolved_image_heads(32, 8) == (32, 8)
    assert MoTConfig().resolved_image_heads(32) == (32, 32)
    assert MoTConfig(mot_image_n_heads=16).resolved_image_heads(32, 0) == (16, 16)
    assert MoTConfig(mot_image_n_kv_heads=2).resolved_image_heads(32, 8) == (32, 2)


def test_effective_capacity_factor():
    assert MoMaConfig().effective_capacity_factor("image") == 0.25
    cfg = MoMaConfig(moma_experts_per_modality={"image": 8, "text": 2})
    assert cfg.effective_capacity_factor("image") == 0.125 and cfg.effective_capacity_factor("text") == 0.5
    assert MoMaConfig(moma_capacity_factor=1.5).effective_capacity_factor("text") == 1.5


@pytest.mark.parametrize("kwargs, message", [
    ({"mot_modalities": ("image",)}, "at least 2 entries"),
    ({"mot_modalities": ("image", "audio")}, "must include 'text'"),
    ({"mot_modalities": ("text", "text")}, "must include 'image'"),
    ({"mot_modalities": ("image", "text", "text")}, "must not contain duplicates"),
    ({"mot_image_n_heads": -1}, "non-negative"),
    ({"mot_warm_start_from_text": True}, "mot_warm_start_path"),
])
def test_mot_rules(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MoTConfig(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"moma_experts_per_modality": {"image": 4}}, r"missing entries for \['text'\]"),
    ({"moma_experts_per_modality": {"image": 4, "text": 4, "audio": 2}}, "unknown modality keys"),
    ({"moma_experts_per_modality": {"image": 0, "text": 4}}, "must be positive"),
    ({"moma_capacity_factor": -0.1}, "must be non-negative"),
])
def test_moma_rules(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MoMaConfig(**kwargs)


def test_freeze_schedule_must_be_strictly_monotonic():
    stage = FreezeStage(10, (FreezeSpec("adapter"),))
    with pytest.raises(ValueError, match="strictly monotonic"):
        JointDecoderConfig(freeze_schedule=[stage, stage])
    assert JointDecoderConfig(freeze_schedule=[FreezeStage(5, ()), stage]).freeze_schedule[1] is stage


def test_freeze_spec_defaults_to_frozen_and_is_hashable():
    assert FreezeSpec("adapter") == FreezeSpec("adapter", True)
    assert len({FreezeSpec("a"), FreezeSpec("a", True), FreezeSpec("a", False)}) == 2


def test_model_config_resolves_kv_heads_and_ffn_width():
    model = ModelConfig(dim=4096, n_heads=32)
    assert model.n_kv_heads == 32 and model.head_dim == 128
    assert ModelConfig(dim=4096, n_heads=32, n_kv_heads=8, ffn_dim_multiplier=1.3).computed_ffn_hidden_dim == 14336
    assert ModelConfig(dim=256, n_heads=4).computed_ffn_hidden_dim == 768
    assert ModelConfig(dim=64, n_heads=4, moe_expert_ffn_multiplier=0.5, num_experts=4).computed_expert_ffn_hidden_dim \
        == 128
    with pytest.raises(ValueError, match=r"model.n_kv_heads must be a divisor of model.n_heads \(4\) \(got 3\)"):
        ModelConfig(dim=64, n_heads=4, n_kv_heads=3)


@pytest.mark.parametrize("tokens, window, divisible, expected", [
    (256, 2, False, 64), (196, 2, False, 49), (196, 3, False, 25), (16, 4, True, 1), (1024, 2, True, 256)])
def test_pooled_token_count(tokens, window, divisible, expected):
    assert pooled_token_count(tokens, window, require_divisible=divisible) == expected


def test_pooled_token_count_errors_name_the_field():
    with pytest.raises(PoolingError) as not_square:
        pooled_token_count(15, 2)
    assert not_square.value.field == "vision_encoder.num_tokens"
    with pytest.raises(PoolingError) as ragged:
        pooled_token_count(196, 3, require_divisible=True)
    assert ragged.value.field == "adapter.pool_window"


def test_token_budget_with_pooling_and_video():
    job = JobConfig(model=ModelConfig(dim=64, n_heads=4, max_seq_len=4096),
                    vision_encoder=VisionEncoderConfig(num_tokens=256, feature_dim=32),
                    adapter=AdapterConfig(type="avgpool", pool_window=2),
                    vlm=JointDecoderConfig(max_text_len=512), video=VideoConfig(max_frames=8))
    budget = job.token_budget()
    assert (budget.per_frame, budget.frames, budget.visual_tokens, budget.residual_image_tokens, budget.required) \
        == (64, 8, 512, 512, 1024)
    ca = JobConfig(model=ModelConfig(dim=64, n_heads=4, max_seq_len=600),
                   vision_encoder=VisionEncoderConfig(num_tokens=256), vlm=CrossAttentionConfig())
    assert ca.token_budget().required == 512 and ca.adapter.type == "mlp_2layer"


def test_job_config_rejects_what_the_reference_rejects_at_construction():
    with pytest.raises(ValueError, match=r"\[vision_encoder\] is missing"):
        JobConfig(vlm=JointDecoderConfig())
    with pytest.raises(ValueError, match="insufficient for VLM"):
        JobConfig(model=ModelConfig(dim=64, n_heads=4, max_seq_len=100),
                  vision_encoder=VisionEncoderConfig(num_tokens=64), vlm=JointDecoderConfig())
    with pytest.raises(ValueError, match=r"\[video\] is set but \[vlm\] is missing"):
        JobConfig(video=VideoConfig())


def test_cross_attention_placement():
    assert cross_attention_after_layers(32, 4) == [3, 7, 11, 15, 19, 23, 27, 31]
    assert cross_attention_after_layers(4, 3) == [2]
    assert cross_attention_after_layers(4, 8) == []
    assert cross_attention_after_layers(4, 0) == []
