"""Vision encoders and adapters (connectors) of the VLM wrapper, on the meta device.

The ``random`` stub encoder has no parameters. HuggingFace encoders are
rebuilt from a *local* copy of their config only (``local_files_only=True``,
never the network); without one their parameters are unknown, not guessed.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from kforge_cli.config.vision import RANDOM_ENCODER_FEATURE_DIM, RANDOM_ENCODER_TOKENS
from kforge_cli.model.knobs import (
    DIVISIBLE_ONLY_POOLING_ADAPTERS,
    AdapterSpec,
    VisionSpec,
    pooled_token_count,
)
from kforge_cli.model.layers import META, Linear
from kforge_cli.model.manifest import ModelBuildError

# HF vision configs that omit these fields get the reference's fallbacks.
_HF_DEFAULT_IMAGE_SIZE = 224
_HF_DEFAULT_PATCH_SIZE = 16


class RandomVisionEncoder(nn.Module):
    """The reference's deterministic stub: no parameters at all."""


class UnresolvedVisionEncoder(nn.Module):
    """Placeholder for an HF encoder whose config is not available offline."""


class HFVisionEncoder(nn.Module):
    def __init__(self, vision_tower: nn.Module) -> None:
        super().__init__()
        self.vision_tower = vision_tower


@dataclass
class EncoderBuild:
    module: nn.Module
    # None when unknown (HF encoder without a local config and no override).
    feature_dim: int | None
    num_tokens: int | None
    unknown_reason: str | None = None


def build_encoder(spec: VisionSpec) -> EncoderBuild:
    if spec.type == "random":
        return EncoderBuild(
            RandomVisionEncoder(),
            spec.feature_dim or RANDOM_ENCODER_FEATURE_DIM,
            spec.num_tokens or RANDOM_ENCODER_TOKENS,
        )
    if not spec.path:
        # The reference fails here whether or not the cluster has transformers
        # (ImportError without it, ValueError on the empty path with it).
        raise ModelBuildError(
            f"vision_encoder.type = {spec.type!r} loads a HuggingFace model, but "
            "vision_encoder.path is empty", "vision_encoder.path",
            "set vision_encoder.path to a HF hub id or a local model directory")
    loaded = _load_hf_tower(spec.path)
    if isinstance(loaded, str):
        return EncoderBuild(UnresolvedVisionEncoder(), spec.feature_dim or None,
                            spec.num_tokens or None, unknown_reason=loaded)
    tower, probed_dim, probed_tokens = loaded
    # Positive config values override the probe, exactly like the reference.
    return EncoderBuild(HFVisionEncoder(tower), spec.feature_dim or probed_dim,
                        spec.num_tokens or probed_tokens)


def _load_hf_tower(path: str) -> tuple[nn.Module, int, int] | str:
    """The vision tower on meta plus its (feature_dim, num_tokens), or why it is unknown."""
    try:
        import transformers
    except ImportError:
        return ("transformers is not installed here, so the HuggingFace encoder's parameters "
                "cannot be listed")
    with _quiet_transformers(transformers):
        try:
            config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
        except Exception as exc:  # any failure means: no usable local copy
            return (f"no local copy of the model config for {path!r} (not a directory with "
                    f"config.json, not in the HF cache): {type(exc).__name__}")
        try:
            with torch.device(META), _skip_hf_init(transformers):
                full_model = transformers.AutoModel.from_config(config)
        except Exception as exc:
            return f"transformers could not build {path!r} from its config: {exc}"
    # CLIP / SigLIP models expose the vision tower as .vision_model; otherwise
    # the whole model is the tower.
    tower = getattr(full_model, "vision_model", full_model)
    tower_config = getattr(tower, "config", None)
    image_size = getattr(tower_config, "image_size", _HF_DEFAULT_IMAGE_SIZE)
    patch_size = getattr(tower_config, "patch_size", _HF_DEFAULT_PATCH_SIZE)
    hidden_size = getattr(tower_config, "hidden_size", None)
    # CLIP's CLS token is stripped and SigLIP has none: patches only, either way.
    num_tokens = (image_size // patch_size) ** 2
    # The reference marks a missing width as -1 and lets the adapter reject it.
    feature_dim = int(hidden_size) if hidden_size else -1
    return tower, feature_dim, num_tokens


@contextlib.contextmanager
def _quiet_transformers(transformers_module: object) -> Iterator[None]:
    """Keep transformers' config chatter out of kforge's output; restore its verbosity after."""
    hf_logging = getattr(transformers_module, "logging", None)
    previous = hf_logging.get_verbosity() if hf_logging is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hf_logging is not None:
            hf_logging.set_verbosity_error()
        try:
            yield
        finally:
            if hf_logging is not None and previous is not None:
                hf_logging.set_verbosity(previous)


def _skip_hf_init(transformers_module: object) -> contextlib.AbstractContextManager[object]:
    no_init = getattr(getattr(transformers_module, "modeling_utils", None), "no_init_weights", None)
    if no_init is None:
        return contextlib.nullcontext()
    try:
        return no_init()
    except TypeError:
        return contextlib.nullcontext()


class MLP2LayerAdapter(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int) -> None:
        super().__init__()
        width = hidden_dim if hidden_dim > 0 else out_dim
        self.proj1 = Linear(in_dim, width, bias=True)
        self.proj2 = Linear(width, out_dim, bias=True)


class LinearAdapter(nn.Module):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = Linear(in_dim, out_dim, bias=True)


class AvgPoolAdapter(LinearAdapter):
    """Window-average the patch grid, then the same single projection."""


class AttentionalPoolAdapter(nn.Module):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.q_proj = Linear(in_dim, in_dim, bias=True)
        self.k_proj = Linear(in_dim, in_dim, bias=True)
        self.v_proj = Linear(in_dim, in_dim, bias=True)
        self.o_proj = Linear(in_dim, in_dim, bias=True)
        self.out_proj = Linear(in_dim, out_dim, bias=True)


class UnresolvedAdapter(nn.Module):
    """Placeholder when the adapter's input width (the encoder's) is unknown."""


def build_adapter(spec: AdapterSpec, in_dim: int, out_dim: int) -> nn.Module:
    if in_dim <= 0:
        raise ModelBuildError(
            f"the adapter's input width (the vision feature dim) resolves to {in_dim}",
            "vision_encoder.feature_dim",
            "set vision_encoder.feature_dim to the encoder's hidden size")
    if spec.type == "mlp_2layer":
        return MLP2LayerAdapter(in_dim, out_dim, spec.hidden_dim)
    if spec.type == "linear":
        return LinearAdapter(in_dim, out_dim)
    if spec.type == "avgpool":
        return AvgPoolAdapter(in_dim, out_dim)
    if spec.type == "attentional_pool":
        if in_dim % spec.pool_heads:
            raise ModelBuildError(
                f"attentional_pool splits the vision feature dim ({in_dim}) over "
                f"adapter.pool_heads ({spec.pool_heads}), which does not divide it",
                "adapter.pool_heads", f"pick pool_heads that divides {in_dim}")
        return AttentionalPoolAdapter(in_dim, out_dim)
    raise ModelBuildError(f"unknown adapter.type {spec.type!r}", "adapter.type",
                          "use mlp_2layer, linear, avgpool or attentional_pool")


def adapter_output_tokens(spec: AdapterSpec, encoder_tokens: int) -> int:
    """Tokens per image after the adapter: projections keep them, pooling shrinks them."""
    if not spec.is_pooling:
        return encoder_tokens
    return pooled_token_count(encoder_tokens, spec.pool_window,
                              require_divisible=spec.type in DIVISIBLE_ONLY_POOLING_ADAPTERS)
