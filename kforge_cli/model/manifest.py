"""Result and error types of the meta-device model builder.

Kept free of torch so callers can catch ``ModelBuildError`` or read a
``MetaModel`` without paying for the torch import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ModelBuildError(Exception):
    """The trainer would fail while constructing the model for this job.

    ``key`` is the dotted config key most responsible (``"vlm.mot_image_n_heads"``),
    ``hint`` a concrete fix.
    """

    def __init__(self, message: str, key: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.hint = hint

    def __repr__(self) -> str:
        return f"ModelBuildError({self.message!r}, key={self.key!r}, hint={self.hint!r})"


class ModelTooLarge(ModelBuildError):
    """Not a failure of the reference: the model is too large for kforge to simulate here."""


@dataclass
class ParamInfo:
    name: str
    shape: tuple[int, ...]
    numel: int
    frozen_at_construction: bool = False


@dataclass
class UnknownComponent:
    """A subtree whose parameters cannot be known offline (never guessed)."""

    prefix: str
    reason: str


@dataclass
class MetaModel:
    # The torch.nn.Module on the meta device (typed loosely to keep this module torch-free).
    module: Any
    # In named_parameters() order; tied weights appear once, under their first name.
    parameters: list[ParamInfo]
    unknown: list[UnknownComponent] = field(default_factory=list)
    # Visual tokens the reference places in the residual stream: 0 for text-only
    # and cross-attention jobs, None when the encoder's token count is unknown.
    num_image_tokens: int | None = 0
    # Persistent buffers (state_dict entries that are not parameters, e.g. the
    # sigmoid router's ``expert_ema``), in state_dict order.
    buffers: list[ParamInfo] = field(default_factory=list)
    # What the vision encoder resolves to (None for text-only or when unknown).
    encoder_num_tokens: int | None = None
    encoder_feature_dim: int | None = None
    frames_per_clip: int = 1
    # Text-layer index each cross-attention block runs after, in block order.
    cross_attention_after_layers: list[int] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unknown

    @property
    def total_numel(self) -> int:
        return sum(p.numel for p in self.parameters)

    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {p.name: p.shape for p in self.parameters}

    def frozen_at_construction(self) -> list[str]:
        return [p.name for p in self.parameters if p.frozen_at_construction]

    def numel_under(self, prefix: str) -> int:
        """Parameter count of the subtree ``prefix`` (exact name or dotted children)."""
        dotted = prefix + "."
        return sum(p.numel for p in self.parameters
                   if p.name == prefix or p.name.startswith(dotted))
