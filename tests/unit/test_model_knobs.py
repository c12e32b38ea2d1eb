"""Exact parameter names and shapes for every model knob.

Expected values were derived from the reference (KempnerForge 5666d0d) module
constructors; the base text model is dim 64, 4 heads (head_dim 16), vocab 100,
so the dense SwiGLU width is 256.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from kforge_cli.model import build_meta_model, cross_attention_after_layers

MODEL_DEFAULTS: dict[str, Any] = dict(
    dim=64, n_layers=1, n_heads=4, n_kv_heads=None, vocab_size=100, ffn_dim_multiplier=1.0,
    ffn_hidden_dim=None, norm_type="rmsnorm", norm_eps=1e-5, activation="silu", max_seq_len=2048,
    rope_theta=10000.0, tie_embeddings=False, qk_norm=False, init_std=0.02,
    model_type="transformer", sdpa_backend="auto", num_experts=0, moe_top_k=2, moe_frequency=1,
    moe_router="softmax_topk", moe_shared_experts=0, moe_aux_loss_weight=0.01,
    moe_capacity_factor=0.0, moe_sequence_aux_loss_weight=0.0, moe_gradient_scale=False,
    moe_bias_schedule="constant", moe_packed_experts=False, moe_expert_ffn_multiplier=1.0,
    moe_router_z_loss_weight=0.0,
)
VLM_DEFAULTS: dict[str, dict[str, Any]] = {
    "joint_decoder": {},
    "cross_attention": dict(cross_attention_every_n_layers=4, cross_attention_n_heads=0,
                            cross_attention_n_kv_heads=0),
    "mot": dict(mot_modalities=["image", "text"], mot_image_n_heads=0, mot_image_n_kv_heads=0,
                mot_warm_start_from_text=False, mot_warm_start_path=""),
    "moma": dict(moma_modalities=["image", "text"],
                 moma_experts_per_modality={"image": 4, "text": 4},
                 moma_capacity_factor=0.0, moma_gumbel_noise=True),
}


def make_job(*, vlm: dict | None = None, vision: dict | None = None, adapter: dict | None = None,
             video: dict | None = None, **model: Any) -> SimpleNamespace:
    job = SimpleNamespace(model=SimpleNamespace(**{**MODEL_DEFAULTS, **model}),
                          vision_encoder=None, adapter=None, vlm=None, video=None)
    if vlm is not None:
        arch = vlm.get("arch", "joint_decoder")
        job.vlm = SimpleNamespace(**{"arch": arch, "max_text_len": 64, "freeze": [],
                                     "freeze_schedule": [], **VLM_DEFAULTS[arch], **vlm})
        job.vision_encoder = SimpleNamespace(**{"type": "random", "path": "", "feature_dim": 32,
                                                "num_tokens": 16, **(vision or {})})
        job.adapter = SimpleNamespace(**{"type": "mlp_2layer", "hidden_dim": 0,
                                         "activation": "gelu", "pool_window": 2,
                                         "pool_heads": 16, **(adapter or {})})
    if video is not None:
        job.video = SimpleNamespace(**{"max_frames": 16, "min_frames": 4, **video})
    return job


def params(**kwargs: Any) -> dict[str, tuple[int, ...]]:
    return build_meta_model(make_job(**kwargs)).shapes()


def names(**kwargs: Any) -> list[str]:
    return build_meta_model(make_job(**kwargs)).names()


def under(shapes: dict[str, tuple[int, ...]], prefix: str) -> dict[str, tuple[int, ...]]:
    return {n[len(prefix):]: s for n, s in shapes.items() if n.startswith(prefix)}


# -- text backbone -----------------------------------------------------------------------


def test_dense_text_model_full_manifest() -> None:
    meta = build_meta_model(make_job())
    assert [(p.name, p.shape) for p in meta.parameters] == [
        ("token_embedding.embedding.weight", (100, 64)),
        ("layers.0.attention_norm.weight", (64,)),
        ("layers.0.attention.q_proj.weight", (64, 64)),
        ("layers.0.attention.k_proj.weight", (64, 64)),
        ("layers.0.attention.v_proj.weight", (64, 64)),
        ("layers.0.attention.o_proj.weight", (64, 64)),
        ("layers.0.mlp_norm.weight", (64,)),
        ("layers.0.mlp.gate_proj.weight", (256, 64)),
        ("layers.0.mlp.up_proj.weight", (256, 64)),
        ("layers.0.mlp.down_proj.weight", (64, 256)),
        ("norm.weight", (64,)),
        ("output_head.proj.weight", (100, 64)),
    ]
    assert meta.num_image_tokens == 0
    assert meta.unknown == [] and meta.buffers == []
    assert meta.frozen_at_construction() == []
    assert meta.total_numel == 100 * 64 * 2 + 4 * 64 * 64 + 3 * 256 * 64 + 3 * 64


def test_n_kv_heads_none_means_multi_head() -> None:
    assert params(n_kv_heads=None)["layers.0.attention.k_proj.weight"] == (64, 64)


def test_gqa_kv_projection_shapes() -> None:
    shapes = under(params(n_heads=8, n_kv_heads=2), "layers.0.attention.")
    assert shapes == {"q_proj.weight": (64, 64), "k_proj.weight": (16, 64),
                      "v_proj.weight": (16, 64), "o_proj.weight": (64, 64)}


def test_qk_norm_adds_per_head_rmsnorms() -> None:
    shapes = under(params(qk_norm=True, n_heads=8, n_kv_heads=2), "layers.0.attention.")
    assert shapes["q_norm.weight"] == (8,)
    assert shapes["k_norm.weight"] == (8,)
    assert "q_norm.bias" not in shapes


def test_layernorm_has_weight_and_bias_but_qk_norm_stays_rmsnorm() -> None:
    shapes = params(norm_type="layernorm", qk_norm=True)
    for norm in ("layers.0.attention_norm", "layers.0.mlp_norm", "norm"):
        assert shapes[f"{norm}.weight"] == (64,)
        assert shapes[f"{norm}.bias"] == (64,)
    assert "layers.0.attention.q_norm.bias" not in shapes
    assert shapes["layers.0.attention.q_norm.weight"] == (16,)


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_gelu_and_relu_use_two_projection_mlp(activation: str) -> None:
    shapes = under(params(activation=activation), "layers.0.mlp.")
    assert shapes == {"up_proj.weight": (256, 64), "down_proj.weight": (64, 256)}


def test_tied_embeddings_report_the_shared_weight_once() -> None:
    meta = build_meta_model(make_job(tie_embeddings=True))
    assert "output_head.proj.weight" not in meta.names()
    assert meta.names()[0] == "token_embedding.embedding.weight"
    module = meta.module
    assert module.output_head.proj.weight is module.token_embedding.embedding.weight


@pytest.mark.parametrize(("overrides", "hidden"), [
    (dict(ffn_hidden_dim=100), 100),
    (dict(ffn_hidden_dim=100, ffn_dim_multiplier=3.0), 100),  # the override wins
    (dict(ffn_dim_multiplier=2.0), 512),                      # int(341.3) -> 512
    (dict(ffn_dim_multiplier=0.5), 256),                      # int(85.3) -> 256
    (dict(dim=4096, n_heads=32), 11008),
    (dict(dim=4096, n_heads=32, ffn_dim_multiplier=1.3), 14336),
    (dict(dim=8192, n_heads=64, ffn_dim_multiplier=1.3), 28416),
    (dict(ffn_hidden_dim=0), 0),
])
def test_ffn_hidden_dim_and_multiplier(overrides: dict, hidden: int) -> None:
    shapes = params(**overrides)
    dim = overrides.get("dim", 64)
    assert shapes["layers.0.mlp.gate_proj.weight"] == (hidden, dim)
    assert shapes["layers.0.mlp.down_proj.weight"] == (dim, hidden)


# -- mixture of experts ------------------------------------------------------------------

MOE = dict(num_experts=4, moe_top_k=2)


def test_moe_softmax_router_and_unpacked_experts() -> None:
    layer = [n for n in names(**MOE) if n.startswith("layers.0.mlp.")]
    assert layer == ["layers.0.mlp.router.gate.weight"] + [
        f"layers.0.mlp.experts.{e}.{proj}.weight"
        for e in range(4) for proj in ("gate_proj", "up_proj", "down_proj")
    ]
    shapes = params(**MOE)
    assert shapes["layers.0.mlp.router.gate.weight"] == (4, 64)
    assert shapes["layers.0.mlp.experts.3.up_proj.weight"] == (256, 64)
    assert shapes["layers.0.mlp.experts.3.down_proj.weight"] == (64, 256)


def test_moe_sigmoid_router_has_bias_parameter_and_ema_buffer() -> None:
    meta = build_meta_model(make_job(**MOE, moe_router="sigmoid_topk"))
    layer = [(p.name, p.shape) for p in meta.parameters if p.name.startswith("layers.0.mlp.router")]
    # The bias lives on the router itself, so it precedes the gate's weight.
    assert layer == [("layers.0.mlp.router.expert_bias", (4,)),
                     ("layers.0.mlp.router.gate.weight", (4, 64))]
    assert [(b.name, b.shape) for b in meta.buffers] == [("layers.0.mlp.router.expert_ema", (4,))]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_shared_experts_build_one_shared_mlp_whatever_the_count(count: int) -> None:
    shapes = under(params(**MOE, moe_shared_experts=count, moe_expert_ffn_multiplier=0.5),
                   "layers.0.mlp.shared_expert.")
    assert shapes == {"gate_proj.weight": (128, 64), "up_proj.weight": (128, 64),
                      "down_proj.weight": (64, 128)}


def test_packed_experts_order_and_shapes() -> None:
    layer = [(n, s) for n, s in params(**MOE, moe_packed_experts=True, moe_shared_experts=1).items()
             if n.startswith("layers.0.mlp.")]
    assert layer == [
        ("layers.0.mlp.up_w", (4, 64, 256)),
        ("layers.0.mlp.down_w", (4, 256, 64)),
        ("layers.0.mlp.gate_w", (4, 64, 256)),
        ("layers.0.mlp.router.gate.weight", (4, 64)),
        ("layers.0.mlp.shared_expert.gate_proj.weight", (256, 64)),
        ("layers.0.mlp.shared_expert.up_proj.weight", (256, 64)),
        ("layers.0.mlp.shared_expert.down_proj.weight", (64, 256)),
    ]


def test_packed_gelu_experts_have_no_gate_tensor() -> None:
    shapes = under(params(**MOE, moe_packed_experts=True, activation="gelu"), "layers.0.mlp.")
    assert shapes == {"up_w": (4, 64, 256), "down_w": (4, 256, 64), "router.gate.weight": (4, 64)}


@pytest.mark.parametrize(("multiplier", "hidden"), [
    (1.0, 256), (0.5, 128), (0.3, 80), (0.25, 64), (0.01, 16), (1.7, 432),
])
def test_fine_grained_expert_width(multiplier: float, hidden: int) -> None:
    shapes = params(**MOE, moe_expert_ffn_multiplier=multiplier)
    assert shapes["layers.0.mlp.experts.0.gate_proj.weight"] == (hidden, 64)
    assert shapes["layers.0.mlp.experts.0.down_proj.weight"] == (64, hidden)


@pytest.mark.parametrize(("n_layers", "frequency", "moe_layers"), [
    (4, 1, [0, 1, 2, 3]), (4, 2, [1, 3]), (4, 3, [2]), (4, 7, []), (6, 3, [2, 5]),
])
def test_moe_frequency_placement(n_layers: int, frequency: int, moe_layers: list[int]) -> None:
    shapes = params(**MOE, n_layers=n_layers, moe_frequency=frequency)
    routed = sorted(int(n.split(".")[1]) for n in shapes if n.endswith("router.gate.weight"))
    assert routed == moe_layers
    dense = [i for i in range(n_layers) if i not in moe_layers]
    for i in dense:
        assert shapes[f"layers.{i}.mlp.gate_proj.weight"] == (256, 64)


# -- VLM wrapper and adapters ------------------------------------------------------------

JD = dict(arch="joint_decoder")


def test_joint_decoder_wraps_with_prefixes_in_reference_order() -> None:
    meta = build_meta_model(make_job(vlm=JD))
    assert meta.names()[:5] == [
        "adapter.proj1.weight", "adapter.proj1.bias", "adapter.proj2.weight",
        "adapter.proj2.bias", "transformer.token_embedding.embedding.weight",
    ]
    assert not any(n.startswith("vision_encoder") for n in meta.names())  # random stub
    assert meta.names()[-1] == "transformer.output_head.proj.weight"
    assert meta.num_image_tokens == 16
    assert (meta.encoder_feature_dim, meta.encoder_num_tokens) == (32, 16)


def test_random_encoder_defaults_when_config_leaves_zero() -> None:
    meta = build_meta_model(make_job(vlm=JD, vision=dict(feature_dim=0, num_tokens=0)))
    assert meta.shapes()["adapter.proj1.weight"] == (64, 768)
    assert meta.num_image_tokens == 16


@pytest.mark.parametrize(("adapter", "expected", "tokens"), [
    (dict(type="mlp_2layer"),
     {"proj1.weight": (64, 32), "proj1.bias": (64,), "proj2.weight": (64, 64),
      "proj2.bias": (64,)}, 16),
    (dict(type="mlp_2layer", hidden_dim=20, activation="silu"),
     {"proj1.weight": (20, 32), "proj1.bias": (20,), "proj2.weight": (64, 20),
      "proj2.bias": (64,)}, 16),
    (dict(type="linear"), {"proj.weight": (64, 32), "proj.bias": (64,)}, 16),
    (dict(type="avgpool", pool_window=2), {"proj.weight": (64, 32), "proj.bias": (64,)}, 4),
    (dict(type="avgpool", pool_window=3), {"proj.weight": (64, 32), "proj.bias": (64,)}, 4),
    (dict(type="attentional_pool", pool_window=2, pool_heads=8),
     {"q_proj.weight": (32, 32), "q_proj.bias": (32,), "k_proj.weight": (32, 32),
      "k_proj.bias": (32,), "v_proj.weight": (32, 32), "v_proj.bias": (32,),
      "o_proj.weight": (32, 32), "o_proj.bias": (32,), "out_proj.weight": (64, 32),
      "out_proj.bias": (64,)}, 4),
    (dict(type="attentional_pool", pool_window=4, pool_heads=32),
     {"q_proj.weight": (32, 32), "q_proj.bias": (32,), "k_proj.weight": (32, 32),
      "k_proj.bias": (32,), "v_proj.weight": (32, 32), "v_proj.bias": (32,),
      "o_proj.weight": (32, 32), "o_proj.bias": (32,), "out_proj.weight": (64, 32),
      "out_proj.bias": (64,)}, 1),
])
def test_adapters(adapter: dict, expected: dict, tokens: int) -> None:
    meta = build_meta_model(make_job(vlm=JD, adapter=adapter))
    assert under(meta.shapes(), "adapter.") == expected
    assert meta.num_image_tokens == tokens


@pytest.mark.parametrize("activation", ["gelu", "silu", "relu"])
def test_adapter_activation_adds_no_parameters(activation: str) -> None:
    shapes = params(vlm=JD, adapter=dict(activation=activation))
    assert sorted(under(shapes, "adapter.")) == ["proj1.bias", "proj1.weight", "proj2.bias",
                                                  "proj2.weight"]


def test_avgpool_pools_ragged_grid_with_ceil() -> None:
    meta = build_meta_model(make_job(vlm=JD, vision=dict(num_tokens=25),
                                     adapter=dict(type="avgpool", pool_window=2)))
    assert meta.num_image_tokens == 9  # 5x5 grid -> 3x3


# -- cross-attention ---------------------------------------------------------------------

CA = dict(arch="cross_attention")


def _ca_blocks(shapes: dict) -> list[int]:
    return sorted({int(n.split(".")[2]) for n in shapes
                   if n.startswith("transformer.cross_attention_layers.")})


@pytest.mark.parametrize(("n_layers", "every", "after"), [
    (4, 3, [2]), (4, 4, [3]), (4, 1, [0, 1, 2, 3]), (4, 5, []), (8, 3, [2, 5]),
    (32, 4, [3, 7, 11, 15, 19, 23, 27, 31]),
])
def test_cross_attention_cadence(n_layers: int, every: int, after: list[int]) -> None:
    meta = build_meta_model(make_job(n_layers=n_layers, vlm=dict(
        CA, cross_attention_every_n_layers=every)))
    assert _ca_blocks(meta.shapes()) == list(range(len(after)))
    assert meta.cross_attention_after_layers == after
    assert cross_attention_after_layers(n_layers, every) == after
    assert meta.num_image_tokens == 0  # images are side-channel K/V, not residual tokens


def test_cross_attention_block_layout() -> None:
    shapes = under(params(n_layers=4, vlm=dict(CA, cross_attention_every_n_layers=2)),
                   "transformer.cross_attention_layers.1.")
    assert shapes == {
        "attn_norm.weight": (64,), "attn.q_proj.weight": (64, 64), "attn.k_proj.weight": (64, 64),
        "attn.v_proj.weight": (64, 64), "attn.o_proj.weight": (64, 64), "mlp_norm.weight": (64,),
        "mlp.gate_proj.weight": (256, 64), "mlp.up_proj.weight": (256, 64),
        "mlp.down_proj.weight": (64, 256),
    }


@pytest.mark.parametrize(("heads", "kv_heads", "q", "kv", "o"), [
    (2, 1, (64, 64), (32, 64), (64, 64)),   # head_dim 32, one KV head
    (8, 0, (64, 64), (64, 64), (64, 64)),   # kv inherits the CA head count
    (8, 2, (64, 64), (16, 64), (64, 64)),   # head_dim 8
    (3, 0, (63, 64), (63, 64), (64, 63)),   # head_dim floor(64/3) = 21
    (0, 2, (64, 64), (32, 64), (64, 64)),   # heads inherit model.n_heads (4, head_dim 16)
])
def test_cross_attention_head_overrides(heads: int, kv_heads: int, q: tuple, kv: tuple,
                                        o: tuple) -> None:
    shapes = under(params(n_layers=4, vlm=dict(CA, cross_attention_n_heads=heads,
                                                cross_attention_n_kv_heads=kv_heads)),
                   "transformer.cross_attention_layers.0.attn.")
    assert shapes == {"q_proj.weight": q, "k_proj.weight": kv, "v_proj.weight": kv,
                      "o_proj.weight": o}


def test_cross_attention_blocks_stay_dense_and_follow_norm_type() -> None:
    shapes = under(params(n_layers=4, norm_type="layernorm", activation="gelu", **MOE,
                          vlm=dict(CA, cross_attention_every_n_layers=4)),
                   "transformer.cross_attention_layers.0.")
    assert shapes["attn_norm.bias"] == (64,)
    assert shapes["mlp.up_proj.weight"] == (256, 64)
    assert "mlp.router.gate.weight" not in shapes


# -- MoT and MoMa ------------------------------------------------------------------------


def test_mot_two_modalities_layout_and_frozen_norm() -> None:
    meta = build_meta_model(make_job(vlm=dict(arch="mot")))
    layer = [(n, s) for n, s in meta.shapes().items() if n.startswith("transformer.layers.0.")]
    prefix = "transformer.layers.0."
    expected = []
    for group in ("attn_norm",):
        expected += [(f"{prefix}{group}.{m}.weight", (64,)) for m in ("image", "text")]
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
        expected += [(f"{prefix}attn.{proj}.{m}.weight", (64, 64)) for m in ("image", "text")]
    expected += [(f"{prefix}mlp_norm.{m}.weight", (64,)) for m in ("image", "text")]
    for m in ("image", "text"):
        expected += [(f"{prefix}mlp.{m}.gate_proj.weight", (256, 64)),
                     (f"{prefix}mlp.{m}.up_proj.weight", (256, 64)),
                     (f"{prefix}mlp.{m}.down_proj.weight", (64, 256))]
    assert layer == expected
    tail = meta.names()[-4:]
    assert tail == ["transformer.norm.weight", "transformer.mot_norms.image.weight",
                    "transformer.mot_norms.text.weight", "transformer.output_head.proj.weight"]
    assert meta.frozen_at_construction() == ["transformer.norm.weight"]
    assert meta.num_image_tokens == 16


def test_mot_three_modalities_in_config_order() -> None:
    meta = build_meta_model(make_job(
        norm_type="layernorm", qk_norm=True, n_heads=8, n_kv_heads=2,
        vlm=dict(arch="mot", mot_modalities=["text", "image", "audio"])))
    shapes = meta.shapes()
    assert [n for n in shapes if n.startswith("transformer.layers.0.attn.k_proj.")] == [
        "transformer.layers.0.attn.k_proj.text.weight",
        "transformer.layers.0.attn.k_proj.image.weight",
        "transformer.layers.0.attn.k_proj.audio.weight",
    ]
    assert shapes["transformer.layers.0.attn.k_proj.audio.weight"] == (16, 64)
    assert shapes["transformer.layers.0.attn.q_norm.audio.weight"] == (8,)
    assert shapes["transformer.layers.0.attn_norm.audio.bias"] == (64,)
    assert [n for n in shapes if n.startswith("transformer.mot_norms.")] == [
        f"transformer.mot_norms.{m}.{p}" for m in ("text", "image", "audio")
        for p in ("weight", "bias")]
    assert meta.frozen_at_construction() == ["transformer.norm.weight", "transformer.norm.bias"]


def test_mot_with_moe_layers_gets_one_moe_per_modality() -> None:
    shapes = params(n_layers=2, **MOE, moe_frequency=2, vlm=dict(arch="mot"))
    assert shapes["transformer.layers.0.mlp.image.gate_proj.weight"] == (256, 64)
    assert shapes["transformer.layers.1.mlp.image.router.gate.weight"] == (4, 64)
    assert shapes["transformer.layers.1.mlp.text.experts.3.down_proj.weight"] == (64, 256)


def test_mot_explicit_matching_heads_are_accepted() -> None:
    shapes = params(n_heads=8, n_kv_heads=2, vlm=dict(arch="mot", mot_image_n_heads=8,
                                                     mot_image_n_kv_heads=2))
    assert shapes["transformer.layers.0.attn.v_proj.image.weight"] == (16, 64)


def test_moma_custom_experts_per_modality() -> None:
    meta = build_meta_model(make_job(
        activation="gelu", moe_expert_ffn_multiplier=0.5,
        vlm=dict(arch="moma", moma_modalities=["text", "image"],
                 moma_experts_per_modality={"image": 2, "text": 3})))
    layer = [(n, s) for n, s in meta.shapes().items() if n.startswith("transformer.layers.0.mlp.")]
    prefix = "transformer.layers.0.mlp.experts."
    expected = [(f"{prefix}text.router.gate.weight", (3, 64))]
    for e in range(3):
        expected += [(f"{prefix}text.experts.{e}.up_proj.weight", (128, 64)),
                     (f"{prefix}text.experts.{e}.down_proj.weight", (64, 128))]
    expected += [(f"{prefix}image.router.gate.weight", (2, 64))]
    for e in range(2):
        expected += [(f"{prefix}image.experts.{e}.up_proj.weight", (128, 64)),
                     (f"{prefix}image.experts.{e}.down_proj.weight", (64, 128))]
    assert layer == expected
    attention = under(meta.shapes(), "transformer.layers.0.attention.")
    assert attention["q_proj.weight"] == (64, 64)  # shared, not per modality
    assert meta.frozen_at_construction() == []
    assert "transformer.mot_norms.image.weight" not in meta.names()


def test_moma_third_modality_gets_its_own_group() -> None:
    shapes = params(vlm=dict(arch="moma", moma_modalities=["image", "text", "video"],
                             moma_experts_per_modality={"image": 1, "text": 1, "video": 2}))
    assert shapes["transformer.layers.0.mlp.experts.video.router.gate.weight"] == (2, 64)
    assert "transformer.layers.0.mlp.experts.video.experts.1.gate_proj.weight" in shapes


# -- video -------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["joint_decoder", "mot", "moma", "cross_attention"])
def test_video_frames_change_token_count_not_parameters(arch: str) -> None:
    image = build_meta_model(make_job(max_seq_len=4096, vlm=dict(arch=arch)))
    clip = build_meta_model(make_job(max_seq_len=4096, vlm=dict(arch=arch),
                                     video=dict(max_frames=8, min_frames=1)))
    assert [(p.name, p.shape) for p in clip.parameters] == \
        [(p.name, p.shape) for p in image.parameters]
    assert clip.frames_per_clip == 8
    expected = 0 if arch == "cross_attention" else 8 * 16
    assert clip.num_image_tokens == expected


def test_video_frames_multiply_pooled_tokens() -> None:
    meta = build_meta_model(make_job(max_seq_len=4096, vlm=JD, vision=dict(num_tokens=36),
                                     adapter=dict(type="avgpool", pool_window=3),
                                     video=dict(max_frames=4, min_frames=1)))
    assert meta.num_image_tokens == 4 * 4  # 6x6 grid -> 2x2 per frame


def test_enum_valued_fields_are_accepted() -> None:
    import enum

    class Norm(str, enum.Enum):
        layernorm = "layernorm"

    shapes = params(norm_type=Norm.layernorm)
    assert shapes["norm.bias"] == (64,)
