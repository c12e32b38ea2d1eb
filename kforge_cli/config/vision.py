"""[vision_encoder], [adapter] and [video]: the VLM's input side."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from kforge_cli.config.fields import setting
from kforge_cli.config.section import Section
from kforge_cli.records import record
from kforge_cli.rules.rule import LOAD

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


@record
class VisionEncoderConfig(Section):
    SECTION: ClassVar[str] = "vision_encoder"

    type: str = setting("random", "vision encoder registry key", registry="vision_encoder", looked_up=LOAD)
    path: str = setting("", "Hugging Face id or local path of the encoder (empty for random)")
    feature_dim: int = setting(0, "encoder output feature size (0 = probe the encoder at build)", ge=0,
                              fix="use 0 to take it from the encoder")
    num_tokens: int = setting(0, "patch tokens per image (0 = probe the encoder at build)", unit="tokens", ge=0,
                             fix="use 0 to take it from the encoder")


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


@record
class AdapterConfig(Section):
    SECTION: ClassVar[str] = "adapter"

    type: str = setting("mlp_2layer", "adapter (connector) registry key", registry="adapter", looked_up=LOAD)
    hidden_dim: int = setting(0, "hidden width of mlp_2layer (0 = model.dim)", ge=0, fix="use 0 to match model.dim")
    activation: str = setting("gelu", "activation between the mlp_2layer projections",
                              choices=ADAPTER_ACTIVATIONS, fix='use "gelu"')
    pool_window: int = setting(2, "pooling window side of avgpool / attentional_pool", gt=0,
                              fix="use 2 for 2x2 pooling")
    pool_heads: int = setting(16, "attention heads of attentional_pool (must divide the feature dim)", gt=0,
                             fix="use a divisor of the vision feature dim, e.g. 16")

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


@record
class VideoConfig(Section):
    SECTION: ClassVar[str] = "video"

    data_root: str = setting("", "root directory of the on-disk video dataset")
    dataset_type: str = setting("webvid", "video dataset registry key", registry="video_dataset", looked_up=LOAD)
    dataset_name: str = setting("webvid-10M", "corpus name within the dataset style")
    sampling_policy: str = setting("uniform", "frame sampling policy registry key", registry="sampling_policy",
                                  looked_up=LOAD)
    split: str = setting("train", "split to read", choices=VIDEO_SPLITS)
    max_samples: int = setting(0, "cap on manifest entries (0 = all)", ge=0, fix="use 0 for all samples")
    max_frames: int = setting(16, "frames sampled per clip at most (the per-clip budget)", unit="frames", ge=1,
                             fix="use 16")
    min_frames: int = setting(4, "frames per clip at least (short clips are padded)", unit="frames", ge=1,
                             le="max_frames")
    fps: float = setting(2.0, "target sampling rate", unit="frames/s", gt=0, fix="use 2.0")
    frame_size: int = setting(224, "square frame size after resizing", unit="px", gt=0, fix="use 224")
    prompt: str = setting("", "instruction prepended to the target text, masked from the loss")
