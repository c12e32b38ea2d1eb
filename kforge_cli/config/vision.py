"""[vision_encoder], [adapter] and [video]: the VLM's input side."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from kforge_cli.config.fields import Checker, is_number, setting
from kforge_cli.config.registry import registry
from kforge_cli.config.section import Section

# Encoders that probe feature_dim / num_tokens from a Hugging Face model.
HF_VISION_ENCODER_TYPES = frozenset({"siglip2", "clip"})
# What the parameter-free "random" encoder produces when its dims are left at 0.
RANDOM_ENCODER_TOKENS = 16
RANDOM_ENCODER_FEATURE_DIM = 768

POOLING_ADAPTER_TYPES = ("avgpool", "attentional_pool")
# Pooling adapters that cannot pool a ragged edge window.
DIVISIBLE_ONLY_POOL_TYPES = ("attentional_pool",)
ADAPTER_ACTIVATIONS = ("gelu", "silu", "relu")
VIDEO_SPLITS = ("train", "validation")


@dataclass
class VisionEncoderConfig(Section):
    SECTION: ClassVar[str] = "vision_encoder"

    type: str = setting("random", "vision encoder registry key", registry="vision_encoder")
    path: str = setting("", "Hugging Face id or local path of the encoder (empty for random)")
    feature_dim: int = setting(0, "encoder output feature size (0 = probe the encoder at build)")
    num_tokens: int = setting(0, "patch tokens per image (0 = probe the encoder at build)", unit="tokens")

    def rules(self, c: Checker) -> None:
        known = registry.list("vision_encoder")
        if self.type not in known:
            c.error("KF103", "type", f"Unknown vision_encoder.type: {self.type!r}. Registered: {sorted(known)}.",
                    f"use one of {sorted(known)}")
        if is_number(self.feature_dim) and self.feature_dim < 0:
            c.error("KF103", "feature_dim",
                    f"vision_encoder.feature_dim must be non-negative (got {self.feature_dim})",
                    "use 0 to take it from the encoder")
        if is_number(self.num_tokens) and self.num_tokens < 0:
            c.error("KF103", "num_tokens",
                    f"vision_encoder.num_tokens must be non-negative (got {self.num_tokens})",
                    "use 0 to take it from the encoder")


class PoolingError(ValueError):
    """A token count the pooling adapter cannot pool; ``field`` is the adapter or encoder knob at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def pooled_token_count(num_input_tokens: int, window: int, *, require_divisible: bool = False) -> int:
    """ceil(grid / window)^2 for a square grid of patch tokens."""
    if window <= 0:
        raise PoolingError(f"pool window must be positive (got {window})", "adapter.pool_window")
    if num_input_tokens <= 0:
        raise PoolingError(f"num_input_tokens must be positive (got {num_input_tokens})",
                           "vision_encoder.num_tokens")
    grid = math.isqrt(num_input_tokens)
    if grid * grid != num_input_tokens:
        raise PoolingError(
            f"pooling requires a square patch grid, but num_tokens={num_input_tokens} is not a perfect "
            "square. Use a vision encoder that strips any CLS token so the patch tokens form a square grid.",
            "vision_encoder.num_tokens")
    if require_divisible and grid % window != 0:
        raise PoolingError(
            f"this pooling connector requires the patch grid ({grid}x{grid}) be divisible by the pool "
            f"window ({window}); got a ragged grid (num_tokens={num_input_tokens}). Use avgpool for ragged "
            "grids, or pick a divisible window.", "adapter.pool_window")
    per_side = -(-grid // window)
    return per_side * per_side


@dataclass
class AdapterConfig(Section):
    SECTION: ClassVar[str] = "adapter"

    type: str = setting("mlp_2layer", "adapter (connector) registry key", registry="adapter")
    hidden_dim: int = setting(0, "hidden width of mlp_2layer (0 = model.dim)")
    activation: str = setting("gelu", "activation between the mlp_2layer projections",
                              choices=ADAPTER_ACTIVATIONS)
    pool_window: int = setting(2, "pooling window side of avgpool / attentional_pool")
    pool_heads: int = setting(16, "attention heads of attentional_pool (must divide the feature dim)")

    @property
    def is_pooling(self) -> bool:
        return self.type in POOLING_ADAPTER_TYPES

    def output_num_tokens(self, num_input_tokens: int) -> int:
        """Visual tokens per image after the adapter; raises PoolingError when it cannot pool."""
        if num_input_tokens <= 0 or not self.is_pooling:
            return num_input_tokens
        return pooled_token_count(num_input_tokens, self.pool_window,
                                  require_divisible=self.type in DIVISIBLE_ONLY_POOL_TYPES)

    def extra_kwargs(self) -> dict[str, Any]:
        return {"hidden_dim": self.hidden_dim or None, "activation": self.activation,
                "pool_window": self.pool_window, "pool_heads": self.pool_heads}

    def rules(self, c: Checker) -> None:
        known = registry.list("adapter")
        if self.type not in known:
            c.error("KF103", "type", f"Unknown adapter.type: {self.type!r}. Registered: {sorted(known)}.",
                    f"use one of {sorted(known)}")
        if is_number(self.hidden_dim) and self.hidden_dim < 0:
            c.error("KF103", "hidden_dim", f"adapter.hidden_dim must be non-negative (got {self.hidden_dim})",
                    "use 0 to match model.dim")
        if self.activation not in ADAPTER_ACTIVATIONS:
            c.error("KF103", "activation",
                    f"Unknown adapter.activation: {self.activation!r}. Options: 'gelu', 'silu', 'relu'.",
                    'use "gelu"')
        if is_number(self.pool_window) and self.pool_window <= 0:
            c.error("KF103", "pool_window", f"adapter.pool_window must be positive (got {self.pool_window})",
                    "use 2 for 2x2 pooling")
        if is_number(self.pool_heads) and self.pool_heads <= 0:
            c.error("KF103", "pool_heads", f"adapter.pool_heads must be positive (got {self.pool_heads})",
                    "use a divisor of the vision feature dim, e.g. 16")


@dataclass
class VideoConfig(Section):
    SECTION: ClassVar[str] = "video"

    data_root: str = setting("", "root directory of the on-disk video dataset")
    dataset_type: str = setting("webvid", "video dataset registry key", registry="video_dataset")
    dataset_name: str = setting("webvid-10M", "corpus name within the dataset style")
    sampling_policy: str = setting("uniform", "frame sampling policy registry key", registry="sampling_policy")
    split: str = setting("train", "split to read", choices=VIDEO_SPLITS)
    max_samples: int = setting(0, "cap on manifest entries (0 = all)")
    max_frames: int = setting(16, "frames sampled per clip at most (the per-clip budget)", unit="frames")
    min_frames: int = setting(4, "frames per clip at least (short clips are padded)", unit="frames")
    fps: float = setting(2.0, "target sampling rate", unit="frames/s")
    frame_size: int = setting(224, "square frame size after resizing", unit="px")
    prompt: str = setting("", "instruction prepended to the target text, masked from the loss")

    def rules(self, c: Checker) -> None:
        datasets = registry.list("video_dataset")
        if self.dataset_type not in datasets:
            c.error("KF103", "dataset_type",
                    f"video.dataset_type must be one of {sorted(datasets)} (got {self.dataset_type!r})",
                    f"use one of {sorted(datasets)}")
        policies = registry.list("sampling_policy")
        if self.sampling_policy not in policies:
            c.error("KF103", "sampling_policy",
                    f"video.sampling_policy must be one of {sorted(policies)} (got {self.sampling_policy!r})",
                    f"use one of {sorted(policies)}")
        if self.split not in VIDEO_SPLITS:
            c.error("KF103", "split", f"video.split must be one of {VIDEO_SPLITS} (got {self.split!r})",
                    'use "train" or "validation"')
        if is_number(self.max_samples) and self.max_samples < 0:
            c.error("KF103", "max_samples", f"video.max_samples must be non-negative (got {self.max_samples})",
                    "use 0 for all samples")
        if is_number(self.min_frames) and self.min_frames < 1:
            c.error("KF103", "min_frames", f"video.min_frames must be >= 1 (got {self.min_frames})", "use 1")
        if is_number(self.max_frames) and self.max_frames < 1:
            c.error("KF103", "max_frames", f"video.max_frames must be >= 1 (got {self.max_frames})", "use 16")
        if (is_number(self.min_frames) and is_number(self.max_frames) and self.min_frames > self.max_frames):
            c.error("KF103", "min_frames",
                    f"video.min_frames ({self.min_frames}) must be <= video.max_frames ({self.max_frames})",
                    f"lower video.min_frames to at most {self.max_frames}")
        if is_number(self.fps) and self.fps <= 0:
            c.error("KF103", "fps", f"video.fps must be positive (got {self.fps})", "use 2.0")
        if is_number(self.frame_size) and self.frame_size <= 0:
            c.error("KF103", "frame_size", f"video.frame_size must be positive (got {self.frame_size})",
                    "use 224")
