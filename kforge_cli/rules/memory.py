"""Memory rules (KF601-KF604): will the job fit on its GPUs, and what the memory goes to.

KF601 and KF602 need a GPU (``--gpu``, or ``gpu`` in ``[tool.kforge]``): the
engine then predicts the peak with ``kforge_cli.fit``. KF603 needs nothing but
the config; KF604 reads the same prediction.
"""

from __future__ import annotations

from kforge_cli.config.vlm import MoMaConfig
from kforge_cli.findings import Finding
from kforge_cli.fit.coverage import activation_checkpointing_coverage
from kforge_cli.rules.rule import (
    ERROR,
    LOOP,
    NEEDS_MANIFEST,
    NEEDS_MEMORY,
    WARNING,
    Rule,
    Subject,
)

OUT_OF_MEMORY = Rule(
    "KF601", "out-of-memory", ERROR,
    "Predicted out of memory on the given GPU: even the optimistic bound of the peak exceeds its capacity.",
    "70B with pure FSDP on 32 x H200")
MEMORY_TIGHT = Rule(
    "KF602", "memory-tight", WARNING,
    "The predicted peak is within its uncertainty band of the GPU's capacity: measure before a long run.",
    "a peak of 132-152 GiB on a 140 GiB H200")
CHECKPOINTING_WITHOUT_EFFECT = Rule(
    "KF603", "checkpointing-without-effect", WARNING,
    "train.activation_checkpointing is set, but the trainer never checkpoints some of this arch's blocks "
    "(it wraps only TransformerBlock / Attention; MoT, MoMa and cross-attention blocks are not).",
    'activation_checkpointing = "full" with vlm.arch = "mot"')
UNEXPECTED_MEMORY_TERM = Rule(
    "KF604", "unexpected-memory-term", WARNING,
    "A memory term dominates the predicted peak where a user would not expect it (e.g. fp32 unsharded "
    "gradient accumulation with grad_accum_steps > 1).", "grad_accum_steps = 8 on a 70B TP4 job")


# A term is only worth a warning when it is large in absolute terms too: on a small
# debug model the logits always dominate and nothing is at stake.
SURPRISE_MIN_GIB = 4.0


def _gib(value: float) -> str:
    return f"{value:.1f} GiB"


def _where(s: Subject) -> str:
    fit = s.memory
    return f"{fit.world_size} x {fit.gpu.name} ({_gib(fit.gpu.capacity_gib)} each)"


@OUT_OF_MEMORY.check(stage=LOOP, reads=("model", "train", "distributed", "vlm", "vision_encoder", "adapter"),
                     needs=(NEEDS_MEMORY,))
def fits_in_memory(s: Subject) -> list[Finding]:
    """The predicted peak (optimistic bound) must fit the GPU."""
    fit = s.memory
    if fit.verdict != "oom":
        return []
    worst = fit.memory.worst
    top = max(worst.breakdown.items(), key=lambda kv: kv[1])
    return [OUT_OF_MEMORY.finding(
        f"predicted peak {_gib(worst.peak_gib)} per GPU (at least {_gib(fit.memory.low_gib)}) on rank "
        f"{worst.rank} ({worst.label}) exceeds the capacity of {_where(s)}; the largest term is {top[0]} "
        f"({_gib(top[1])}). The trainer would run out of memory at the first step.", None,
        "run `kforge fit` on this file for the cheapest changes that fit", stage=LOOP,
        peak_gib=round(worst.peak_gib, 2), low_gib=round(fit.memory.low_gib, 2),
        capacity_gib=round(fit.gpu.capacity_gib, 2))]


@MEMORY_TIGHT.check(stage=None, reads=("model", "train", "distributed", "vlm", "vision_encoder", "adapter"),
                    needs=(NEEDS_MEMORY,))
def memory_has_headroom(s: Subject) -> list[Finding]:
    """A peak whose uncertainty band reaches the GPU's capacity."""
    fit = s.memory
    if fit.verdict != "tight":
        return []
    memory = fit.memory
    return [MEMORY_TIGHT.finding(
        f"predicted peak {_gib(memory.peak_gib)} per GPU ({_gib(memory.low_gib)}-{_gib(memory.high_gib)}, "
        f"{fit.confidence} confidence) is within the uncertainty of the capacity of {_where(s)}", None,
        "measure a few steps first, or run `kforge fit` for changes with more headroom",
        peak_gib=round(memory.peak_gib, 2), high_gib=round(memory.high_gib, 2),
        capacity_gib=round(fit.gpu.capacity_gib, 2))]


def _moma_full_is_logged(s: Subject) -> bool:
    # The reference itself logs AC=full on MoMa as a no-op (KF404 reports it).
    return isinstance(s.job.vlm, MoMaConfig) and s.job.train.activation_checkpointing == "full"


# Needs the manifest: block counts of a model that cannot be built mean nothing.
@CHECKPOINTING_WITHOUT_EFFECT.check(stage=None, reads=("train.activation_checkpointing", "vlm.arch",
                                                       "vlm.cross_attention_every_n_layers", "model.n_layers"),
                                    needs=(NEEDS_MANIFEST,))
def checkpointing_reaches_every_block(s: Subject) -> list[Finding]:
    """apply_ac wraps TransformerBlock / Attention only."""
    coverage = activation_checkpointing_coverage(s.job)
    if coverage.has_effect_everywhere:
        return []
    unwrapped = dict(coverage.unwrapped)
    if _moma_full_is_logged(s):
        unwrapped.pop("MoMaBlock", None)
    if not unwrapped:
        return []
    blocks = ", ".join(f"{count} {name}{'s' if count > 1 else ''}" for name, count in unwrapped.items())
    effect = ("so it saves no memory at all" if coverage.no_effect_at_all else
              "so their activations are kept in full")
    wrapped = ", ".join(f"{count} {name} modules" for name, count in coverage.wrapped.items())
    return [CHECKPOINTING_WITHOUT_EFFECT.finding(
        f'train.activation_checkpointing = "{coverage.mode}" never wraps {blocks} (the trainer\'s apply_ac '
        f"matches TransformerBlock / Attention modules only), {effect}"
        + (f"; it wraps {wrapped}" if wrapped else ""), "train.activation_checkpointing",
        'plan memory as if these blocks were not checkpointed; "selective" still wraps the attention of '
        "TransformerBlocks and MoMa blocks" if not coverage.no_effect_at_all else
        'set activation_checkpointing = "none" and plan memory without it',
        unwrapped=unwrapped, wrapped=dict(coverage.wrapped))]


@UNEXPECTED_MEMORY_TERM.check(stage=None, reads=("train", "distributed", "model"), needs=(NEEDS_MEMORY,))
def no_surprising_term(s: Subject) -> list[Finding]:
    """A term the config's comments or the user would not expect to dominate the peak."""
    out = []
    for surprise in s.memory.surprises:
        if surprise.gib < SURPRISE_MIN_GIB:
            continue
        key = {"gradient_accumulation": "train.grad_accum_steps", "logits_and_loss": "model.vocab_size",
               "parameters": "distributed"}.get(surprise.term)
        out.append(UNEXPECTED_MEMORY_TERM.finding(
            f"{surprise.term} takes {_gib(surprise.gib)} ({surprise.share:.0%} of the predicted peak): "
            f"{surprise.reason}", key, "see `kforge fit` for the breakdown and the changes that shrink it",
            term=surprise.term, gib=round(surprise.gib, 2), share=round(surprise.share, 3)))
    return out
