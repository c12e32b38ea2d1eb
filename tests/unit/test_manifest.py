"""The torch-free parameter manifest: exact values, unknown components, bounds, absurd inputs.

Small models: dim 64, 4 heads (head_dim 16), vocab 100, so the dense SwiGLU
width is 256. Shapes follow the reference's constructors (KempnerForge 5666d0d).
"""

from __future__ import annotations

import math
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from kforge_cli.manifest import (
    LIMITS_FEATURE_DIM,
    LIMITS_NUM_TOKENS,
    LIMITS_PARAMETERS,
    MAX_EXPERTS,
    MAX_LAYERS,
    MAX_PARAMETER_TENSORS,
    ModelBuildError,
    ModelTooLarge,
    ParamInfo,
    build_manifest,
    describe_model,
)
from kforge_cli.manifest.errors import safe_repr, show
from kforge_cli.manifest.tree import Node, Tie, count_tensors, flatten, tensor


def model(**overrides: Any) -> SimpleNamespace:
    base = dict(dim=64, n_layers=1, n_heads=4, n_kv_heads=4, vocab_size=100, max_seq_len=2048,
                norm_type="rmsnorm", activation="silu")
    return SimpleNamespace(**{**base, **overrides})


def job(*, vlm: dict | None = None, vision: dict | None = None, adapter: dict | None = None,
        video: dict | None = None, **overrides: Any) -> SimpleNamespace:
    result = SimpleNamespace(model=model(**overrides), vlm=None, vision_encoder=None, adapter=None,
                             video=None)
    if vlm is not None:
        result.vlm = SimpleNamespace(**{"arch": "joint_decoder", "max_text_len": 64, **vlm})
        result.vision_encoder = SimpleNamespace(**{"type": "random", "path": "", "feature_dim": 32,
                                                   "num_tokens": 16, **(vision or {})})
        result.adapter = SimpleNamespace(**{"type": "mlp_2layer", "hidden_dim": 0,
                                            "activation": "gelu", "pool_window": 2,
                                            "pool_heads": 16, **(adapter or {})})
    if video is not None:
        result.video = SimpleNamespace(**video)
    return result


def failure(job_: Any) -> ModelBuildError:
    with pytest.raises(ModelBuildError) as caught:
        build_manifest(job_)
    return caught.value


# -- exact manifests ---------------------------------------------------------------------


def test_dense_text_model() -> None:
    manifest = build_manifest(job())
    assert manifest.parameters == [
        ParamInfo("token_embedding.embedding.weight", (100, 64), 6400),
        ParamInfo("layers.0.attention_norm.weight", (64,), 64),
        ParamInfo("layers.0.attention.q_proj.weight", (64, 64), 4096),
        ParamInfo("layers.0.attention.k_proj.weight", (64, 64), 4096),
        ParamInfo("layers.0.attention.v_proj.weight", (64, 64), 4096),
        ParamInfo("layers.0.attention.o_proj.weight", (64, 64), 4096),
        ParamInfo("layers.0.mlp_norm.weight", (64,), 64),
        ParamInfo("layers.0.mlp.gate_proj.weight", (256, 64), 16384),
        ParamInfo("layers.0.mlp.up_proj.weight", (256, 64), 16384),
        ParamInfo("layers.0.mlp.down_proj.weight", (64, 256), 16384),
        ParamInfo("norm.weight", (64,), 64),
        ParamInfo("output_head.proj.weight", (100, 64), 6400),
    ]
    assert manifest.buffers == [] and manifest.unknown == [] and manifest.complete
    assert manifest.num_image_tokens == 0 and manifest.frames_per_clip == 1
    assert manifest.total_numel == 2 * 6400 + 4 * 4096 + 3 * 16384 + 3 * 64
    assert manifest.numel_under("layers.0.attention") == 4 * 4096
    assert manifest.numel_under("layers") == 4 * 4096 + 3 * 16384 + 2 * 64
    assert manifest.numel_under("norm") == 64  # not "norm" as a prefix of other names


def test_layers_of_one_kind_share_a_description_but_list_separately() -> None:
    description = describe_model(job(n_layers=3))
    layers = description.root.children["layers"].children
    assert layers["0"] is layers["1"] is layers["2"]
    names = description.manifest().names()
    assert [n for n in names if n.endswith("mlp.down_proj.weight")] == [
        f"layers.{i}.mlp.down_proj.weight" for i in range(3)]
    assert len(names) == len(set(names)) == count_tensors(description.root) == 2 + 3 * 9 + 1


def test_tied_embeddings_are_listed_once_under_the_embedding() -> None:
    manifest = build_manifest(job(tie_embeddings=True, n_layers=2))
    assert manifest.names()[0] == "token_embedding.embedding.weight"
    assert manifest.names()[-1] == "norm.weight"
    assert "output_head.proj.weight" not in manifest.names()
    assert manifest.total_numel == build_manifest(job(n_layers=2)).total_numel - 6400


def test_a_tie_met_before_its_target_is_listed_under_the_tie() -> None:
    # torch lists a shared parameter under the first name it meets it by.
    root = Node("Root", children={
        "head": Node("Linear", {"weight": Tie(1, "body.weight")}),
        "body": Node("Linear", {"weight": tensor(3, 2), "bias": tensor(3)}),
    })
    parameters, _ = flatten(root)
    assert [(p.name, p.shape) for p in parameters] == [("head.weight", (3, 2)), ("body.bias", (3,))]
    assert count_tensors(root) == 2


def test_moe_layer_with_sigmoid_router_packed_experts_and_shared_expert() -> None:
    manifest = build_manifest(job(n_layers=2, num_experts=4, moe_top_k=2, moe_frequency=2,
                                  moe_router="sigmoid_topk", moe_shared_experts=1,
                                  moe_packed_experts=True, moe_expert_ffn_multiplier=0.5))
    layer = [(p.name, p.shape) for p in manifest.parameters if p.name.startswith("layers.1.mlp.")]
    assert layer == [
        ("layers.1.mlp.up_w", (4, 64, 128)),
        ("layers.1.mlp.down_w", (4, 128, 64)),
        ("layers.1.mlp.gate_w", (4, 64, 128)),
        ("layers.1.mlp.router.expert_bias", (4,)),
        ("layers.1.mlp.router.gate.weight", (4, 64)),
        ("layers.1.mlp.shared_expert.gate_proj.weight", (128, 64)),
        ("layers.1.mlp.shared_expert.up_proj.weight", (128, 64)),
        ("layers.1.mlp.shared_expert.down_proj.weight", (64, 128)),
    ]
    assert "layers.0.mlp.gate_proj.weight" in manifest.names()  # layer 0 stays dense
    assert manifest.buffers == [ParamInfo("layers.1.mlp.router.expert_ema", (4,), 4)]


def test_unpacked_experts_in_order() -> None:
    names = build_manifest(job(num_experts=3, moe_top_k=1, activation="gelu")).names()
    assert [n for n in names if n.startswith("layers.0.mlp.")] == [
        "layers.0.mlp.router.gate.weight",
        *(f"layers.0.mlp.experts.{e}.{p}.weight" for e in range(3) for p in ("up_proj", "down_proj")),
    ]


def test_joint_decoder_vlm() -> None:
    manifest = build_manifest(job(vlm={}, adapter=dict(type="avgpool"), video=dict(max_frames=3)))
    assert manifest.names()[:2] == ["adapter.proj.weight", "adapter.proj.bias"]
    assert manifest.shapes()["adapter.proj.weight"] == (64, 32)
    assert manifest.names()[2] == "transformer.token_embedding.embedding.weight"
    assert (manifest.encoder_feature_dim, manifest.encoder_num_tokens) == (32, 16)
    assert manifest.frames_per_clip == 3
    assert manifest.num_image_tokens == 3 * 4  # a 4x4 grid pooled 2x2, per frame
    assert manifest.numel_under("vision_encoder") == 0  # the random stub has no parameters


def test_random_encoder_defaults() -> None:
    manifest = build_manifest(job(vlm={}, vision=dict(feature_dim=0, num_tokens=0)))
    assert manifest.shapes()["adapter.proj1.weight"] == (64, 768)
    assert (manifest.encoder_feature_dim, manifest.encoder_num_tokens) == (768, 16)


def test_cross_attention_blocks_and_positions() -> None:
    manifest = build_manifest(job(n_layers=5, vlm=dict(arch="cross_attention",
                                                       cross_attention_every_n_layers=2,
                                                       cross_attention_n_heads=2,
                                                       cross_attention_n_kv_heads=1)))
    assert manifest.cross_attention_after_layers == [1, 3]
    assert manifest.num_image_tokens == 0
    block = {n.removeprefix("transformer.cross_attention_layers.1."): s
             for n, s in manifest.shapes().items()
             if n.startswith("transformer.cross_attention_layers.1.")}
    assert block == {"attn_norm.weight": (64,), "attn.q_proj.weight": (64, 64),
                     "attn.k_proj.weight": (32, 64), "attn.v_proj.weight": (32, 64),
                     "attn.o_proj.weight": (64, 64), "mlp_norm.weight": (64,),
                     "mlp.gate_proj.weight": (256, 64), "mlp.up_proj.weight": (256, 64),
                     "mlp.down_proj.weight": (64, 256)}
    assert "transformer.cross_attention_layers.2.attn_norm.weight" not in manifest.names()


def test_mot_modalities_and_frozen_shared_norm() -> None:
    manifest = build_manifest(job(norm_type="layernorm", qk_norm=True,
                                  vlm=dict(arch="mot", mot_modalities=["text", "image"])))
    names = manifest.names()
    assert [n for n in names if n.startswith("transformer.layers.0.attn.q_norm.")] == [
        "transformer.layers.0.attn.q_norm.text.weight", "transformer.layers.0.attn.q_norm.image.weight"]
    assert manifest.shapes()["transformer.layers.0.attn.q_norm.text.weight"] == (16,)
    assert manifest.frozen_at_construction() == ["transformer.norm.weight", "transformer.norm.bias"]
    assert names[-5:] == ["transformer.mot_norms.text.weight", "transformer.mot_norms.text.bias",
                          "transformer.mot_norms.image.weight", "transformer.mot_norms.image.bias",
                          "transformer.output_head.proj.weight"]


def test_moma_expert_groups() -> None:
    manifest = build_manifest(job(activation="relu", vlm=dict(
        arch="moma", moma_modalities=["image", "text"], moma_experts_per_modality={"image": 1, "text": 2})))
    layer = [(n.removeprefix("transformer.layers.0.mlp.experts."), s) for n, s in manifest.shapes().items()
             if n.startswith("transformer.layers.0.mlp.")]
    assert layer == [
        ("image.router.gate.weight", (1, 64)),
        ("image.experts.0.up_proj.weight", (256, 64)), ("image.experts.0.down_proj.weight", (64, 256)),
        ("text.router.gate.weight", (2, 64)),
        ("text.experts.0.up_proj.weight", (256, 64)), ("text.experts.0.down_proj.weight", (64, 256)),
        ("text.experts.1.up_proj.weight", (256, 64)), ("text.experts.1.down_proj.weight", (64, 256)),
    ]


# -- unknown components ------------------------------------------------------------------


@pytest.mark.parametrize("encoder", ["siglip2", "clip"])
def test_hf_encoder_is_unknown_without_torch(encoder: str) -> None:
    manifest = build_manifest(job(vlm={}, vision=dict(type=encoder, path="google/some-model",
                                                      feature_dim=0, num_tokens=0)))
    vision, adapter = manifest.unknown
    assert vision.prefix == "vision_encoder"
    assert "torch and transformers" in vision.reason and "google/some-model" in vision.reason
    assert vision.limits == (LIMITS_PARAMETERS, LIMITS_FEATURE_DIM, LIMITS_NUM_TOKENS)
    assert "sequence-length budget" in vision.limits_text()
    assert adapter.prefix == "adapter" and adapter.limits == (LIMITS_PARAMETERS,)
    assert "vision_encoder.feature_dim" in adapter.reason
    assert manifest.num_image_tokens is None and manifest.encoder_feature_dim is None
    assert not any(n.startswith(("vision_encoder.", "adapter.")) for n in manifest.names())
    assert manifest.unknown_under("adapter.proj1.weight") is adapter
    assert manifest.unknown_under("transformer.norm.weight") is None


def test_hf_encoder_dims_from_the_config_make_the_adapter_known() -> None:
    manifest = build_manifest(job(vlm={}, vision=dict(type="clip", path="x", feature_dim=48,
                                                      num_tokens=196), max_seq_len=260))
    [vision] = manifest.unknown
    assert vision.limits == (LIMITS_PARAMETERS,)
    assert manifest.shapes()["adapter.proj1.weight"] == (64, 48)
    assert manifest.num_image_tokens == 196


def test_hf_encoder_without_a_path_fails_as_the_trainer_does() -> None:
    assert failure(job(vlm={}, vision=dict(type="siglip2", path=""))).key == "vision_encoder.path"


def test_description_takes_a_resolver_for_hf_towers() -> None:
    from kforge_cli.manifest import ResolvedEncoder

    tower = object()
    description = describe_model(job(vlm={}, vision=dict(type="clip", path="x", feature_dim=0,
                                                          num_tokens=0)),
                                 resolve_encoder=lambda spec: ResolvedEncoder(tower, 40, 4))
    assert description.unknown == []
    assert description.root.children["vision_encoder"].children["vision_tower"].external is tower
    assert (description.encoder_feature_dim, description.encoder_num_tokens) == (40, 4)
    assert description.manifest().shapes()["adapter.proj1.weight"] == (64, 40)


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "key"), [
    (dict(model_type="llama"), "model.model_type"),
    (dict(dim=60), "model.n_heads"),  # odd head_dim: RoPE
    (dict(num_experts=2, moe_top_k=1, moe_router="topk"), "model.moe_router"),
    (dict(ffn_hidden_dim=-8), "model.ffn_hidden_dim"),
    (dict(vlm=dict(arch="mot", mot_modalities=["image", "text", "keys"])), "vlm.mot_modalities"),
    (dict(vlm=dict(arch="mot", mot_modalities=["image", "text", "au.dio"])), "vlm.mot_modalities"),
    (dict(vlm=dict(arch="moma", moma_modalities=["image", "text", "training"],
                   moma_experts_per_modality={"image": 1, "text": 1, "training": 1})),
     "vlm.moma_modalities"),
    (dict(vlm={}, adapter=dict(type="attentional_pool", pool_heads=5)), "adapter.pool_heads"),
    (dict(max_seq_len=79, vlm={}), "model.max_seq_len"),
])
def test_build_errors(overrides: dict, key: str) -> None:
    error = failure(job(**overrides))
    assert type(error) is ModelBuildError
    assert error.key == key and error.message and error.hint


def test_module_names_torch_refuses() -> None:
    error = failure(job(vlm=dict(arch="mot", mot_modalities=["image", "text", "keys"])))
    assert error.message == ("vlm.mot_modalities: 'keys' cannot name a module "
                             "(it is an attribute of torch's ModuleDict)")


# -- bounds and absurd values ------------------------------------------------------------


def test_layer_bound() -> None:
    manifest = build_manifest(job(n_layers=MAX_LAYERS - 1, dim=8, n_heads=2, n_kv_heads=2))
    assert len(manifest.parameters) == 2 + 9 * (MAX_LAYERS - 1) + 1
    error = failure(job(n_layers=MAX_LAYERS + 1))
    assert type(error) is ModelTooLarge and error.key == "model.n_layers"


def test_expert_bound() -> None:
    manifest = build_manifest(job(num_experts=MAX_EXPERTS, moe_top_k=1, dim=8, n_heads=2,
                                  n_kv_heads=2))
    assert len(manifest.parameters) == 2 + 6 + 1 + 3 * MAX_EXPERTS + 1
    error = failure(job(num_experts=MAX_EXPERTS + 1, moe_top_k=1))
    assert type(error) is ModelTooLarge and error.key == "model.num_experts"
    error = failure(job(vlm=dict(arch="moma", moma_modalities=["image", "text"],
                                 moma_experts_per_modality={"image": 1, "text": MAX_EXPERTS + 1})))
    assert type(error) is ModelTooLarge and error.key == "vlm.moma_experts_per_modality"


def test_unused_expert_count_is_not_bounded() -> None:
    # moe_frequency past n_layers: no MoE layer, so num_experts is never read.
    assert build_manifest(job(num_experts=10**9, moe_top_k=1, moe_frequency=2)).names()


@pytest.mark.parametrize(("overrides", "key"), [
    (dict(n_layers=32, num_experts=MAX_EXPERTS, moe_top_k=1), "model.num_experts"),
    (dict(n_layers=MAX_LAYERS, vlm=dict(arch="mot")), "model.n_layers"),
    (dict(n_layers=40, vlm=dict(arch="moma", moma_modalities=["image", "text"],
                                moma_experts_per_modality={"image": 4000, "text": 4000})),
     "vlm.moma_experts_per_modality"),
])
def test_tensor_bound_names_the_knob_that_multiplies_most(overrides: dict, key: str) -> None:
    error = failure(job(**overrides))
    assert type(error) is ModelTooLarge and error.key == key
    assert f"{MAX_PARAMETER_TENSORS:,}" in error.message


def test_real_errors_are_reported_before_the_tensor_bound() -> None:
    error = failure(job(n_layers=32, num_experts=MAX_EXPERTS, moe_top_k=1, dim=60))
    assert type(error) is ModelBuildError and error.key == "model.n_heads"


HUGE = 10**4300  # one digit past what Python turns into text


@pytest.mark.parametrize(("overrides", "error_type", "key"), [
    (dict(n_layers=HUGE), ModelTooLarge, "model.n_layers"),
    (dict(n_layers=1e300), ModelTooLarge, "model.n_layers"),
    (dict(n_layers=-HUGE), ModelBuildError, "model.n_layers"),
    (dict(dim=HUGE * 4), ModelBuildError, "model.dim"),
    (dict(dim=HUGE * 4, n_heads=3), ModelBuildError, "model.n_heads"),
    (dict(vocab_size=2**62), ModelBuildError, None),
    (dict(num_experts=HUGE, moe_top_k=1), ModelTooLarge, "model.num_experts"),
    (dict(ffn_dim_multiplier=math.inf), ModelBuildError, "model.ffn_dim_multiplier"),
    (dict(ffn_dim_multiplier=math.nan), ModelBuildError, "model.ffn_dim_multiplier"),
    (dict(ffn_dim_multiplier=HUGE), ModelBuildError, "model.ffn_dim_multiplier"),
    (dict(num_experts=2, moe_top_k=1, moe_expert_ffn_multiplier=math.inf), ModelBuildError,
     "model.moe_expert_ffn_multiplier"),
    (dict(num_experts=2, moe_top_k=1, moe_expert_ffn_multiplier=1e300), ModelBuildError, None),
    (dict(ffn_hidden_dim=-HUGE), ModelBuildError, "model.ffn_hidden_dim"),
    (dict(max_seq_len=HUGE, vlm=dict(max_text_len=HUGE * 2)), ModelBuildError, "model.max_seq_len"),
    (dict(vlm={}, vision=dict(num_tokens=HUGE * 10), adapter=dict(type="avgpool")),
     ModelBuildError, "vision_encoder.num_tokens"),
    (dict(vlm={}, video=dict(max_frames=HUGE)), ModelBuildError, "model.max_seq_len"),
    (dict(vlm=dict(arch="moma", moma_modalities=["image", "text"],
                   moma_experts_per_modality={"image": HUGE, "text": 1})),
     ModelTooLarge, "vlm.moma_experts_per_modality"),
    (dict(norm_type=HUGE), ModelBuildError, "model.norm_type"),
    (dict(n_heads=[HUGE]), ModelBuildError, "model.n_heads"),
])
def test_absurd_values_fail_cleanly(overrides: dict, error_type: type, key: str | None) -> None:
    error = failure(job(**overrides))
    assert type(error) is error_type and error.key == key
    assert len(error.message) < 400


def test_show_spells_out_ordinary_numbers_and_summarises_huge_ones() -> None:
    assert show(4096) == "4096"
    assert show((2, 3)) == "(2, 3)" and show((5,)) == "(5,)"
    assert show(HUGE) == "<an integer of about 4,301 digits>"
    assert show(-HUGE).startswith("-<an integer")
    assert safe_repr([HUGE]) == "[<an integer of about 4,301 digits>]"
    assert safe_repr("x" * 200).endswith("\u2026'") and len(safe_repr("x" * 200)) <= 84


def test_importing_the_manifest_does_not_import_torch() -> None:
    code = ("import sys\n"
            "from types import SimpleNamespace as NS\n"
            "import kforge_cli.manifest as m\n"
            "m.build_manifest(NS(model=NS(dim=64, n_layers=2, n_heads=4, vocab_size=100),"
            " vlm=NS(arch='mot'), vision_encoder=NS(type='siglip2', path='x'), adapter=None,"
            " video=None))\n"
            "print(sorted({k.split('.')[0] for k in sys.modules} & {'torch', 'transformers', 'numpy'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("mode, name, runtime", [
    ("full", "transformer.layers.1.attention.q_proj.weight",
     "transformer.layers.1._checkpoint_wrapped_module.attention.q_proj.weight"),
    ("selective", "transformer.layers.1.attention.q_proj.weight",
     "transformer.layers.1.attention._checkpoint_wrapped_module.q_proj.weight"),
    ("selective", "transformer.layers.1.mlp.up_proj.weight", "transformer.layers.1.mlp.up_proj.weight"),
    ("none", "transformer.layers.1.attention.q_proj.weight", "transformer.layers.1.attention.q_proj.weight"),
])
def test_activation_checkpointing_renames_the_wrapped_modules_parameters(mode: str, name: str, runtime: str) -> None:
    from kforge_cli.config.loader import load_job_text

    text = ('[model]\ndim = 64\nn_layers = 2\nn_heads = 4\nn_kv_heads = 4\nvocab_size = 100\nmax_seq_len = 128\n'
            f'[train]\nseq_len = 128\nactivation_checkpointing = "{mode}"\n'
            '[vision_encoder]\ntype = "random"\nfeature_dim = 32\nnum_tokens = 16\n[vlm]\nmax_text_len = 64\n')
    manifest = build_manifest(load_job_text(text).job)
    assert manifest.runtime_name(name) == runtime
