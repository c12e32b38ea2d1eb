"""Which blocks the trainer's activation checkpointing actually wraps (input of KF603).

``apply_ac`` wraps every module that is a ``TransformerBlock`` (mode "full") or
an ``Attention`` (mode "selective") and nothing else
(kempnerforge/distributed/parallel.py:90-122). By class, at 5666d0d:

* ``MoTBlock`` (model/mot.py) is not a TransformerBlock and ``MoTAttention`` is
  not an Attention: MoT is never checkpointed.
* ``MoMaBlock`` (model/moma.py:383) is not a TransformerBlock, but its shared
  attention is an ``Attention`` (moma.py:427): "selective" wraps it, "full"
  wraps nothing.
* ``CrossAttentionBlock`` and its ``CrossAttention`` (model/cross_attention.py)
  are neither: cross-attention blocks are never checkpointed, while the text
  TransformerBlocks of that arch are.
* The VLM path applies AC to the transformer only (parallel.py:450-456); the
  vision encoder and adapter are never checkpointed. PP stages apply it to the
  stage module (scripts/train.py:131, 142).
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from kforge_cli.config.vlm import built_arch
from kforge_cli.records import record

AC_MODES = ("none", "full", "selective")


@record(frozen=True)
class BlockKinds:
    """The blocks of a job's transformer by class, with their counts."""

    transformer_blocks: int = 0  # TransformerBlock (dense or MoE MLP)
    mot_blocks: int = 0
    moma_blocks: int = 0
    cross_attention_blocks: int = 0


@record
class ACCoverage:
    """What ``train.activation_checkpointing`` wraps for this job's architecture."""

    mode: str
    wrapped: dict[str, int] = field(default_factory=dict)  # module class -> count
    unwrapped: dict[str, int] = field(default_factory=dict)  # block class -> count left as is

    @property
    def has_effect_everywhere(self) -> bool:
        return self.mode == "none" or not self.unwrapped

    @property
    def no_effect_at_all(self) -> bool:
        return self.mode != "none" and not self.wrapped


def ac_mode(job: Any) -> str:
    mode = getattr(getattr(job, "train", None), "activation_checkpointing", "none")
    mode = getattr(mode, "value", mode)
    return mode if mode in AC_MODES else "none"


def block_kinds(job: Any) -> BlockKinds:
    model = getattr(job, "model", None)
    n_layers = int(getattr(model, "n_layers", 0) or 0)
    vlm = getattr(job, "vlm", None)
    # The blocks built follow the config's class, which an --set vlm.arch override keeps.
    arch = built_arch(vlm) if vlm is not None else None
    if arch == "mot":
        return BlockKinds(mot_blocks=n_layers)
    if arch == "moma":
        return BlockKinds(moma_blocks=n_layers)
    ca_blocks = 0
    if arch == "cross_attention":
        cadence = int(getattr(vlm, "cross_attention_every_n_layers", 0) or 0)
        ca_blocks = n_layers // cadence if cadence > 0 else 0
    return BlockKinds(transformer_blocks=n_layers, cross_attention_blocks=ca_blocks)


def activation_checkpointing_coverage(job: Any) -> ACCoverage:
    """Which modules ``apply_ac`` wraps for ``job`` and which blocks it leaves alone."""
    mode = ac_mode(job)
    kinds = block_kinds(job)
    coverage = ACCoverage(mode)
    if mode == "none":
        return coverage
    if mode == "full":
        if kinds.transformer_blocks:
            coverage.wrapped["TransformerBlock"] = kinds.transformer_blocks
        for name, count in (("MoTBlock", kinds.mot_blocks), ("MoMaBlock", kinds.moma_blocks),
                            ("CrossAttentionBlock", kinds.cross_attention_blocks)):
            if count:
                coverage.unwrapped[name] = count
        return coverage
    attention_owners = kinds.transformer_blocks + kinds.moma_blocks
    if attention_owners:
        coverage.wrapped["Attention"] = attention_owners
    for name, count in (("MoTBlock", kinds.mot_blocks), ("CrossAttentionBlock", kinds.cross_attention_blocks)):
        if count:
            coverage.unwrapped[name] = count
    return coverage
