"""Large configs build without allocating; HF encoders come from local configs or are unknown."""

from __future__ import annotations

import resource
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kforge_cli.model import ModelBuildError, UnknownComponent, build_meta_model

LLAMA_70B = dict(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, vocab_size=128256,
                 ffn_dim_multiplier=1.3, max_seq_len=8192)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def test_70b_text_model_builds_on_meta_without_allocating() -> None:
    import torch  # noqa: F401  (the RSS measured excludes the torch import)

    build_meta_model(SimpleNamespace(model=SimpleNamespace(dim=64, n_layers=1, n_heads=4,
                                                           vocab_size=10)))  # warm imports
    rss_before = _peak_rss_mb()
    meta = build_meta_model(SimpleNamespace(model=SimpleNamespace(**LLAMA_70B)))

    assert all(p.is_meta for p in meta.module.parameters())
    assert len(meta.parameters) == 723
    assert meta.total_numel == 70_050_390_016
    assert meta.shapes()["layers.79.mlp.gate_proj.weight"] == (28416, 8192)
    assert meta.shapes()["layers.0.attention.k_proj.weight"] == (1024, 8192)
    assert _peak_rss_mb() - rss_before < 100  # 70B fp32 weights would be 280 GB (speed: benchmarks/bench_core.py)



def test_past_the_meta_bound_the_manifest_stands_in(monkeypatch) -> None:
    from kforge_cli.manifest import build_manifest
    from kforge_cli.model import build as build_module

    job = SimpleNamespace(model=SimpleNamespace(**{**LLAMA_70B, "n_layers": 4}))
    built = build_meta_model(job)
    monkeypatch.setattr(build_module, "MAX_META_TENSORS", len(built.parameters) - 1)
    stood_in = build_meta_model(job)
    assert built.module is not None and stood_in.module is None
    assert stood_in.parameters == built.parameters == build_manifest(job).parameters
    assert stood_in.buffers == built.buffers

def vlm_job(vision: dict[str, Any], **vlm: Any) -> SimpleNamespace:
    return SimpleNamespace(
        model=SimpleNamespace(dim=64, n_layers=2, n_heads=4, n_kv_heads=4, vocab_size=100,
                              max_seq_len=1024),
        vision_encoder=SimpleNamespace(**{"type": "siglip2", "path": "", "feature_dim": 0,
                                          "num_tokens": 0, **vision}),
        adapter=SimpleNamespace(type="mlp_2layer", hidden_dim=0, activation="gelu",
                                pool_window=2, pool_heads=16),
        vlm=SimpleNamespace(**{"arch": "joint_decoder", "max_text_len": 64, **vlm}),
        video=None,
    )


def test_hf_encoder_without_local_config_is_unknown_but_text_model_is_built(tmp_path: Path) -> None:
    meta = build_meta_model(vlm_job(dict(path=str(tmp_path / "no-such-model"))))
    assert [u.prefix for u in meta.unknown] == ["vision_encoder", "adapter"]
    assert all(isinstance(u, UnknownComponent) and u.reason for u in meta.unknown)
    assert not any(n.startswith(("vision_encoder.", "adapter.")) for n in meta.names())
    assert "transformer.layers.1.mlp.down_proj.weight" in meta.names()
    assert meta.num_image_tokens is None
    assert not meta.complete


def test_hf_encoder_overrides_make_adapter_and_tokens_known(tmp_path: Path) -> None:
    job = vlm_job(dict(type="clip", path=str(tmp_path / "missing"), feature_dim=48,
                       num_tokens=196))
    meta = build_meta_model(job)
    assert [u.prefix for u in meta.unknown] == ["vision_encoder"]
    assert meta.shapes()["adapter.proj1.weight"] == (64, 48)
    assert meta.num_image_tokens == 196

    job.model.max_seq_len = 259
    with pytest.raises(ModelBuildError) as caught:
        build_meta_model(job)
    assert caught.value.key == "model.max_seq_len"


def test_cross_attention_budget_is_checked_even_with_unknown_encoder(tmp_path: Path) -> None:
    job = vlm_job(dict(path=str(tmp_path / "missing")), arch="cross_attention",
                  cross_attention_every_n_layers=1, max_text_len=2048)
    with pytest.raises(ModelBuildError) as caught:
        build_meta_model(job)
    assert caught.value.key == "model.max_seq_len"


def test_hf_clip_encoder_built_from_local_config(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    transformers.CLIPConfig(
        vision_config=dict(hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=64, patch_size=16),
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, vocab_size=100),
    ).save_pretrained(tmp_path)

    meta = build_meta_model(vlm_job(dict(type="clip", path=str(tmp_path))))

    assert meta.unknown == []
    shapes = meta.shapes()
    patch_embedding = "vision_encoder.vision_tower.embeddings.patch_embedding.weight"
    assert shapes[patch_embedding] == (48, 3, 16, 16)
    assert shapes["vision_encoder.vision_tower.embeddings.position_embedding.weight"] == (17, 48)
    assert not any("text_model" in n for n in shapes)
    assert (meta.encoder_feature_dim, meta.encoder_num_tokens) == (48, 16)  # CLS stripped
    assert shapes["adapter.proj1.weight"] == (64, 48)
    assert meta.num_image_tokens == 16
    assert all(p.is_meta for p in meta.module.parameters())
