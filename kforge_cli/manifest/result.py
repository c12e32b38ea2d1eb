"""What the parameter manifest of a job's model says: plain data, no torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kforge_cli.records import record

# What an unknown component leaves unchecked. ``UnknownComponent.limits`` holds
# these tags so callers can tell which of their checks lost their input; the
# phrases say it to a person.
LIMITS_PARAMETERS = "parameters"
LIMITS_FEATURE_DIM = "feature_dim"
LIMITS_NUM_TOKENS = "num_tokens"
# The attribute torch's CheckpointWrapper holds the wrapped module under.
CHECKPOINT_WRAPPED = "_checkpoint_wrapped_module"

LIMIT_PHRASES = {
    LIMITS_PARAMETERS: "its parameter names and shapes (freeze coverage, parameter counts and the "
                       "checkpoint fit skip it)",
    LIMITS_FEATURE_DIM: "the vision feature width (the adapter's input size)",
    LIMITS_NUM_TOKENS: "the visual token count (the sequence-length budget and activation sizes)",
}


@dataclass(slots=True)
class ParamInfo:
    name: str
    shape: tuple[int, ...]
    numel: int
    frozen_at_construction: bool = False


@record
class UnknownComponent:
    """A subtree whose parameters cannot be known here (never guessed)."""

    prefix: str
    reason: str
    limits: tuple[str, ...] = (LIMITS_PARAMETERS,)

    def limits_text(self) -> str:
        return "; ".join(LIMIT_PHRASES.get(tag, tag) for tag in self.limits)


@record
class Manifest:
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
    # Modules train.activation_checkpointing wraps in a CheckpointWrapper: at run time the
    # names of their parameters read "<path>._checkpoint_wrapped_module.<rest>".
    checkpoint_wrapped: list[str] = field(default_factory=list)

    def runtime_name(self, name: str) -> str:
        """A parameter's name on the trainer's model once activation checkpointing has wrapped it."""
        return self.renamer()(name)

    def renamer(self) -> Callable[[str], str]:
        """``runtime_name`` for many names: the wrapped paths are indexed once, not scanned per name."""
        wrapped = frozenset(self.checkpoint_wrapped)

        def rename(name: str) -> str:
            # The outermost wrapped module owns the name; a name has few dots, a model many blocks.
            cut = name.find(".")
            while cut != -1:
                if name[:cut] in wrapped:
                    return f"{name[:cut]}.{CHECKPOINT_WRAPPED}.{name[cut + 1:]}"
                cut = name.find(".", cut + 1)
            return name

        return rename

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

    def unknown_under(self, name: str) -> UnknownComponent | None:
        """The unknown component that would hold parameter ``name``, if any."""
        for component in self.unknown:
            if name == component.prefix or name.startswith(component.prefix + "."):
                return component
        return None
