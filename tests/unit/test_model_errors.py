"""Each condition under which the reference's model build fails: ModelBuildError with its key.

Base text model: dim 64, 4 heads, vocab 100; VLM jobs use the random encoder
(feature_dim 32, 16 tokens) and max_text_len 64 unless a test says otherwise.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from kforge_cli.model import ModelBuildError, build_meta_model


def make_job(*, vlm: dict | None = None, vision: dict | None = None, adapter: dict | None = None,
             video: dict | None = None, pp: int | None = None, **model: Any) -> SimpleNamespace:
    base = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=None, vocab_size=100,
                max_seq_len=2048, norm_type="rmsnorm", activation="silu")
    job = SimpleNamespace(model=SimpleNamespace(**{**base, **model}), vision_encoder=None,
                          adapter=None, vlm=None, video=None)
    if vlm is not None:
        job.vlm = SimpleNamespace(**{"arch": "joint_decoder", "max_text_len": 64, **vlm})
        job.vision_encoder = SimpleNamespace(**{"type": "random", "path": "", "feature_dim": 32,
                                                "num_tokens": 16, **(vision or {})})
        job.adapter = SimpleNamespace(**{"type": "mlp_2layer", "hidden_dim": 0,
                                         "activation": "gelu", "pool_window": 2,
                                         "pool_heads": 16, **(adapter or {})})
    if video is not None:
        job.video = SimpleNamespace(**video)
    if pp is not None:
        job.distributed = SimpleNamespace(pp=pp, tp=1, dp_shard=-1)
    return job


def build_error(**kwargs: Any) -> ModelBuildError:
    with pytest.raises(ModelBuildError) as caught:
        build_meta_model(make_job(**kwargs))
    error = caught.value
    assert error.message and error.hint, "every build error carries a message and a fix"
    assert str(error) == error.message
    return error


MOE = dict(num_experts=4, moe_top_k=2)

# -- conditions the reference hits while building ----------------------------------------


def test_unknown_model_type_for_text_job() -> None:
    assert build_error(model_type="llama").key == "model.model_type"


def test_model_type_is_not_looked_up_for_vlm_or_pipeline_jobs() -> None:
    build_meta_model(make_job(model_type="llama", vlm={}))
    build_meta_model(make_job(model_type="llama", pp=2))


def test_more_pipeline_stages_than_layers() -> None:
    error = build_error(pp=3)
    assert error.key == "distributed.pp"
    assert "3" in error.message


def test_unknown_moe_router() -> None:
    assert build_error(**MOE, moe_router="topk").key == "model.moe_router"


def test_unknown_router_is_harmless_when_no_layer_is_moe() -> None:
    meta = build_meta_model(make_job(**MOE, moe_router="topk", moe_frequency=3))
    assert not any("router" in n for n in meta.names())


def test_unknown_router_in_mot_moe_layers() -> None:
    assert build_error(**MOE, moe_router="topk", vlm=dict(arch="mot")).key == "model.moe_router"


def test_mot_image_heads_must_equal_text_heads() -> None:
    error = build_error(vlm=dict(arch="mot", mot_image_n_heads=8))
    assert error.key == "vlm.mot_image_n_heads"
    assert "4" in error.hint


def test_mot_image_kv_heads_must_equal_text_kv_heads() -> None:
    error = build_error(n_kv_heads=2, vlm=dict(arch="mot", mot_image_n_kv_heads=1))
    assert error.key == "vlm.mot_image_n_kv_heads"


def test_mot_image_kv_heads_inherit_the_text_kv_heads() -> None:
    build_meta_model(make_job(n_kv_heads=2, vlm=dict(arch="mot", mot_image_n_heads=4)))


@pytest.mark.parametrize("arch", [None, "joint_decoder", "cross_attention", "mot", "moma"])
def test_odd_head_dim_fails_rope(arch: str | None) -> None:
    # 60 / 4 = 15: the rotary table needs an even head width.
    vlm = None if arch is None else dict(arch=arch)
    assert build_error(dim=60, vlm=vlm).key == "model.n_heads"


@pytest.mark.parametrize(("overrides", "key"), [
    (dict(ffn_hidden_dim=-8), "model.ffn_hidden_dim"),
    # int(4 * 128 * 2/3 * -1) = -341 rounds up to -256 (at dim 64 it would round up to 0).
    (dict(dim=128, ffn_dim_multiplier=-1.0), "model.ffn_dim_multiplier"),
    (dict(ffn_hidden_dim=-8, **MOE, moe_frequency=2), "model.ffn_hidden_dim"),  # dense layer 0
    (dict(ffn_hidden_dim=-8, vlm=dict(arch="cross_attention", cross_attention_every_n_layers=1)),
     "model.ffn_hidden_dim"),
    (dict(ffn_hidden_dim=-8, vlm=dict(arch="mot")), "model.ffn_hidden_dim"),
])
def test_negative_dense_ffn_width(overrides: dict, key: str) -> None:
    assert build_error(**overrides).key == key


def test_negative_dense_width_is_harmless_without_a_dense_ffn() -> None:
    # All-MoE text layers and MoMa expert groups use the expert width (at least 16).
    meta = build_meta_model(make_job(ffn_hidden_dim=-8, **MOE))
    assert meta.shapes()["layers.0.mlp.experts.0.gate_proj.weight"] == (16, 64)
    meta = build_meta_model(make_job(ffn_hidden_dim=-8, vlm=dict(
        arch="moma", moma_modalities=["image", "text"],
        moma_experts_per_modality={"image": 1, "text": 1})))
    assert meta.shapes()["transformer.layers.0.mlp.experts.text.experts.0.up_proj.weight"] == \
        (16, 64)


def test_attentional_pool_heads_must_divide_feature_dim() -> None:
    error = build_error(vlm={}, vision=dict(feature_dim=30),
                        adapter=dict(type="attentional_pool", pool_heads=4))
    assert error.key == "adapter.pool_heads"


def test_attentional_pool_needs_divisible_grid_at_build_time() -> None:
    # num_tokens = 0 takes the random encoder's 16 tokens: a 4x4 grid, ragged for window 3.
    error = build_error(vlm={}, vision=dict(num_tokens=0),
                        adapter=dict(type="attentional_pool", pool_window=3, pool_heads=4))
    assert error.key == "adapter.pool_window"


def test_avgpool_accepts_the_same_ragged_grid() -> None:
    meta = build_meta_model(make_job(vlm={}, vision=dict(num_tokens=0),
                                     adapter=dict(type="avgpool", pool_window=3)))
    assert meta.num_image_tokens == 4


@pytest.mark.parametrize("adapter_type", ["avgpool", "attentional_pool"])
def test_pooling_needs_a_square_token_grid(adapter_type: str) -> None:
    error = build_error(vlm={}, vision=dict(num_tokens=10),
                        adapter=dict(type=adapter_type, pool_heads=4))
    assert error.key == "vision_encoder.num_tokens"


@pytest.mark.parametrize("encoder", ["siglip2", "clip"])
def test_hf_encoder_with_empty_path(encoder: str) -> None:
    error = build_error(vlm={}, vision=dict(type=encoder, path="", feature_dim=0, num_tokens=0))
    assert error.key == "vision_encoder.path"


def test_adapter_rejects_non_positive_input_width() -> None:
    from kforge_cli.manifest.knobs import AdapterSpec
    from kforge_cli.manifest.modules import adapter as build_adapter

    # An HF config without hidden_size probes to -1 in the reference.
    with pytest.raises(ModelBuildError) as caught:
        build_adapter(AdapterSpec(), -1, 64)
    assert caught.value.key == "vision_encoder.feature_dim"


@pytest.mark.parametrize(("kwargs", "required"), [
    (dict(max_seq_len=79, vlm=dict(max_text_len=64)), 80),
    (dict(max_seq_len=79, vlm=dict(arch="mot", max_text_len=64)), 80),
    (dict(max_seq_len=79, vlm=dict(arch="moma", max_text_len=64)), 80),
    (dict(max_seq_len=100, vlm=dict(max_text_len=64), vision=dict(num_tokens=0),
          video=dict(max_frames=4)), 128),
    (dict(max_seq_len=63, vlm=dict(arch="cross_attention", max_text_len=64)), 64),
])
def test_sequence_budget_at_build_time(kwargs: dict, required: int) -> None:
    error = build_error(**kwargs)
    assert error.key == "model.max_seq_len"
    assert str(required) in error.message and str(required) in error.hint


def test_sequence_budget_fits_exactly() -> None:
    build_meta_model(make_job(max_seq_len=80, vlm=dict(max_text_len=64)))
    # Cross-attention keeps images out of the residual stream.
    build_meta_model(make_job(max_seq_len=64, vlm=dict(arch="cross_attention", max_text_len=64),
                              vision=dict(num_tokens=1024)))
    # Pooling shrinks the visual tokens first: 16 -> 4.
    build_meta_model(make_job(max_seq_len=68, vlm=dict(max_text_len=64),
                              adapter=dict(type="avgpool")))


def test_first_failure_follows_reference_order() -> None:
    # With num_tokens = 0 the budget is only checked at build time, after the adapter
    # and the transformer have been constructed.
    error = build_error(dim=60, max_seq_len=8, vlm={}, vision=dict(num_tokens=0),
                        adapter=dict(type="attentional_pool", pool_heads=5))
    assert error.key == "adapter.pool_heads"
    error = build_error(dim=60, max_seq_len=8, vlm={}, vision=dict(num_tokens=0))
    assert error.key == "model.n_heads"


# -- loader-time conditions, guarded so a bad job never crashes the builder --------------


@pytest.mark.parametrize(("kwargs", "key"), [
    (dict(dim=0), "model.dim"),
    (dict(dim=66), "model.n_heads"),
    (dict(n_kv_heads=3), "model.n_kv_heads"),
    (dict(norm_type="batchnorm"), "model.norm_type"),
    (dict(activation="swish"), "model.activation"),
    (dict(dim=64.5), "model.dim"),
    (dict(num_experts=2, moe_top_k=3), "model.moe_top_k"),
    (dict(num_experts=2, moe_top_k=1, moe_frequency=0), "model.moe_frequency"),
    (dict(vlm=dict(arch="perceiver")), "vlm.arch"),
    (dict(vlm=dict(arch="cross_attention", cross_attention_every_n_layers=0)),
     "vlm.cross_attention_every_n_layers"),
    (dict(vlm=dict(arch="mot", mot_modalities=["image"])), "vlm.mot_modalities"),
    (dict(vlm=dict(arch="mot", mot_modalities=["image", "text", "image"])), "vlm.mot_modalities"),
    (dict(vlm=dict(arch="mot", mot_modalities=["image", "text", "au.dio"])), "vlm.mot_modalities"),
    (dict(vlm=dict(arch="moma", moma_modalities=["image", "text"],
                   moma_experts_per_modality={"image": 2})), "vlm.moma_experts_per_modality"),
    (dict(vlm=dict(arch="moma", moma_modalities=["image", "text"],
                   moma_experts_per_modality={"image": 2, "text": 0})),
     "vlm.moma_experts_per_modality"),
    (dict(vlm={}, vision=dict(type="dinov2")), "vision_encoder.type"),
    (dict(vlm={}, adapter=dict(type="qformer")), "adapter.type"),
    (dict(vlm={}, video=dict(max_frames=0)), "video.max_frames"),
])
def test_loader_level_conditions_are_reported_not_crashed(kwargs: dict, key: str) -> None:
    assert build_error(**kwargs).key == key


def test_missing_vision_encoder_section() -> None:
    job = make_job(vlm={})
    job.vision_encoder = None
    with pytest.raises(ModelBuildError) as caught:
        build_meta_model(job)
    assert caught.value.key == "vision_encoder"


def test_missing_adapter_section_uses_the_default_adapter() -> None:
    job = make_job(vlm={})
    job.adapter = None
    assert "adapter.proj2.bias" in build_meta_model(job).names()
