"""The torch-free manifest equals what torch lists for the meta-device model, across the knob space.

Jobs go through kforge's own loader, so they hold what a real TOML file
produces (including values the loader flags but keeps). Both builders read one
description; what this holds is that walking the description (own parameters,
then children; ties once, under the first name) is what torch's
``named_parameters()`` and ``state_dict()`` do on the modules built from it,
and that both fail with the same error where the build fails.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kforge_cli.config.loader import load_job_text
from kforge_cli.manifest import ModelBuildError, build_manifest
from kforge_cli.manifest.tree import MODULE_DICT_ATTRIBUTES, Node, Tie, flatten, tensor

# The torch side is imported inside the tests, so collecting this file never needs torch.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                reason="the parity checks build the meta-device model with torch")

# "au.dio" and "keys" cannot name a torch module: the build fails on them.
EXTRA_MODALITIES = ["video", "audio", "video", "audio", "au.dio", "keys"]


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A knob that is either left out of the file (None) or written."""
    return st.one_of(st.none(), strategy)


def _mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a value the build accepts, sometimes one it rejects (one draw in eight).

    The rejected one is the last roll, not the first: hypothesis prefers small
    draws, so the first would dominate the early (derandomized) examples.
    """
    return st.integers(0, 7).flatmap(lambda roll: invalid if roll == 7 else valid)


@st.composite
def model_sections(draw: st.DrawFn) -> dict[str, Any]:
    n_heads = draw(st.sampled_from([1, 2, 4, 8]))
    # dim = n_heads * an even head width, or a width that divides badly / gives an odd head_dim.
    dim = draw(_mostly(st.sampled_from([2, 4, 8, 16]).map(lambda head_dim: n_heads * head_dim),
                       st.sampled_from([60, 30, 6])))
    divisors = [d for d in (1, 2, 4, 8) if n_heads % d == 0]
    section: dict[str, Any] = {
        "dim": dim,
        "n_layers": draw(st.integers(1, 6)),
        "n_heads": n_heads,
        "vocab_size": draw(st.sampled_from([10, 100, 257])),
        "max_seq_len": draw(st.sampled_from([64, 128, 512, 4096, 4096])),
        "norm_type": draw(st.sampled_from(["rmsnorm", "layernorm"])),
        "activation": draw(st.sampled_from(["silu", "gelu", "relu"])),
        "qk_norm": draw(st.booleans()),
        "tie_embeddings": draw(st.booleans()),
        # Left out, it keeps the default's 32 (a loader finding the build then fails on).
        "n_kv_heads": draw(_mostly(st.sampled_from(divisors), st.sampled_from([None, 3]))),
        "ffn_dim_multiplier": draw(_optional(_mostly(st.sampled_from([0.5, 1.0, 1.3, 2.0]),
                                                     st.just(-1.0)))),
        "ffn_hidden_dim": draw(_optional(_mostly(st.sampled_from([0, 24, 96]), st.just(-8)))),
        "model_type": draw(_mostly(st.none(), st.just("llama"))),
    }
    if draw(st.booleans()):
        num_experts = draw(st.integers(1, 6))
        section.update({
            "num_experts": num_experts,
            "moe_top_k": draw(_mostly(st.integers(1, num_experts), st.just(num_experts + 1))),
            "moe_frequency": draw(st.integers(1, 3)),
            "moe_router": draw(_mostly(st.sampled_from(["softmax_topk", "sigmoid_topk"]),
                                       st.just("topk"))),
            "moe_shared_experts": draw(st.integers(0, 2)),
            "moe_packed_experts": draw(st.booleans()),
            "moe_expert_ffn_multiplier": draw(st.sampled_from([0.25, 0.5, 1.0, 1.7])),
        })
    return {k: v for k, v in section.items() if v is not None}


def _modalities(draw: st.DrawFn) -> list[str]:
    extra = draw(st.lists(st.sampled_from(EXTRA_MODALITIES), max_size=2, unique=True))
    names = ["image", "text", *extra]
    return draw(st.permutations(names))


@st.composite
def vlm_sections(draw: st.DrawFn, n_heads: int) -> dict[str, Any]:
    arch = draw(st.sampled_from(["joint_decoder", "cross_attention", "mot", "moma"]))
    section: dict[str, Any] = {"arch": arch, "max_text_len": draw(st.sampled_from([16, 64, 200]))}
    if arch == "cross_attention":
        section["cross_attention_every_n_layers"] = draw(st.integers(1, 5))
        section["cross_attention_n_heads"] = draw(st.sampled_from([0, 1, 2, 3, 8]))
        section["cross_attention_n_kv_heads"] = draw(st.sampled_from([0, 1, 2]))
    elif arch == "mot":
        section["mot_modalities"] = _modalities(draw)
        section["mot_image_n_heads"] = draw(_mostly(st.sampled_from([0, n_heads]),
                                                    st.just(2 * n_heads)))
        section["mot_image_n_kv_heads"] = draw(_mostly(st.just(0), st.just(1)))
    elif arch == "moma":
        modalities = _modalities(draw)
        section["moma_modalities"] = modalities
        experts = {m: draw(st.integers(1, 3)) for m in modalities}
        if draw(st.integers(0, 7)) == 7:
            experts.pop(modalities[-1])  # the loader flags it and keeps it: a build error
        section["moma_experts_per_modality"] = experts
        section["moma_capacity_factor"] = draw(st.sampled_from([0.0, 0.25, 1.5]))
    return section


@st.composite
def job_texts(draw: st.DrawFn) -> str:
    document: dict[str, Any] = {"model": draw(model_sections())}
    if draw(st.integers(0, 7)) == 7:
        document["distributed"] = {"pp": draw(st.integers(2, 8))}
    if draw(st.integers(0, 3)) != 3:
        document["vlm"] = draw(vlm_sections(document["model"]["n_heads"]))
        encoder = draw(st.sampled_from(["random", "random", "random", "siglip2", "clip"]))
        document["vision_encoder"] = {
            "type": encoder,
            "feature_dim": draw(st.sampled_from([0, 16, 30, 32, 48])),
            "num_tokens": draw(_mostly(st.sampled_from([0, 9, 16, 25, 36]), st.just(10))),
        }
        if encoder != "random":
            document["vision_encoder"]["path"] = draw(_mostly(st.just("/nonexistent/encoder"), st.just("")))
        if draw(st.booleans()):
            document["adapter"] = {
                "type": draw(st.sampled_from(["mlp_2layer", "linear", "avgpool", "attentional_pool"])),
                "hidden_dim": draw(st.sampled_from([0, 20])),
                "activation": draw(st.sampled_from(["gelu", "silu", "relu"])),
                "pool_window": draw(st.integers(1, 4)),
                "pool_heads": draw(st.sampled_from([1, 2, 4, 16])),
            }
        if draw(st.booleans()):
            document["video"] = {"max_frames": draw(st.integers(1, 4)), "min_frames": 1}
    return tomli_w.dumps(document)


def _outcome(build: Any, job: Any) -> Any:
    try:
        return build(job)
    except ModelBuildError as exc:
        return exc


def _listing(manifest: Any) -> dict[str, Any]:
    return {
        "parameters": [(p.name, p.shape, p.numel, p.frozen_at_construction) for p in manifest.parameters],
        "buffers": [(b.name, b.shape, b.numel) for b in manifest.buffers],
        # The reasons differ by design (the torch builder tried transformers); what is unknown does not.
        "unknown": [(u.prefix, u.limits) for u in manifest.unknown],
        "num_image_tokens": manifest.num_image_tokens,
        "encoder": (manifest.encoder_feature_dim, manifest.encoder_num_tokens),
        "frames_per_clip": manifest.frames_per_clip,
        "cross_attention_after_layers": manifest.cross_attention_after_layers,
    }


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(job_texts())
def test_manifest_matches_the_meta_model(text: str) -> None:
    from kforge_cli.model import build_meta_model

    job = load_job_text(text).job
    assert job is not None
    manifest = _outcome(build_manifest, job)
    meta = _outcome(build_meta_model, job)
    vlm = getattr(job, "vlm", None)
    event(f"arch: {getattr(vlm, 'arch', 'text-only')}")
    if isinstance(manifest, ModelBuildError) or isinstance(meta, ModelBuildError):
        event(f"fails: {getattr(manifest, 'key', None)}")
        assert type(manifest) is type(meta), (manifest, meta)
        assert (manifest.key, manifest.message, manifest.hint) == (meta.key, meta.message, meta.hint)
        return
    event("builds")
    event(f"unknown: {[u.prefix for u in manifest.unknown]}")
    assert _listing(manifest) == _listing(meta)


def test_a_tie_before_its_target_lists_like_torch() -> None:
    from kforge_cli.model.materialize import materialize

    root = Node("Root", children={
        "head": Node("Linear", {"weight": Tie(1, "body.weight")}),
        "body": Node("Linear", {"weight": tensor(3, 2), "bias": tensor(3)}),
    })
    module = materialize(root)
    parameters, _ = flatten(root)
    assert module.head.weight is module.body.weight
    assert [(p.name, p.shape) for p in parameters] == [
        (name, tuple(p.shape)) for name, p in module.named_parameters()]


def test_module_dict_attribute_names_match_the_installed_torch() -> None:
    from torch import nn

    assert set(dir(nn.ModuleDict())) == MODULE_DICT_ATTRIBUTES
