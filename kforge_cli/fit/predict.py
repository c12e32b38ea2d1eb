"""``predict``: memory per GPU, verdict, confidence and throughput for one job."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field
from typing import Any

from kforge_cli.fit.coverage import ACCoverage, activation_checkpointing_coverage
from kforge_cli.fit.gpus import GPU
from kforge_cli.fit.layout import Layout, LayoutError, resolve_layout
from kforge_cli.fit.memory import TERMS, Facts, ParamLike, RankMemory, memory_per_stage
from kforge_cli.fit.throughput import Throughput, estimate_throughput
from kforge_cli.records import record

# Relative half-widths of the band around the point estimate. High confidence
# is for what the derivation covers and was checked against (dense and VLM
# jobs, bf16 AdamW, H200); everything else is wider.
BAND_HIGH_CONFIDENCE = 0.10
BAND_LOW_CONFIDENCE = 0.25
# Below this many parameters the fixed costs the model ignores (CUDA context
# aside, allocator rounding, kernels' workspaces) are a large share of the peak.
TINY_MODEL_PARAMS = 1_000_000_000
VALIDATED_GPUS = ("H200",)


@record
class MemoryPrediction:
    rank0: RankMemory
    worst: RankMemory
    per_stage: list[RankMemory]
    low_gib: float
    high_gib: float

    @property
    def peak_gib(self) -> float:
        return self.worst.peak_gib


@record
class Surprise:
    """A term that dominates the peak where a user would not expect it (KF604 input)."""

    term: str
    gib: float
    share: float  # of the worst rank's peak
    reason: str


@record
class FitPrediction:
    gpu: GPU
    world_size: int
    layout: Layout
    memory: MemoryPrediction
    verdict: str  # fits | tight | oom
    confidence: str  # high | low
    confidence_reasons: list[str]
    throughput: Throughput
    ac_coverage: ACCoverage
    surprises: list[Surprise]
    notes: list[str] = field(default_factory=list)

    def to_json(self, path: str, findings: list[Any] | None = None) -> dict[str, Any]:
        """The ``plans[]`` entry of DESIGN.md's fit JSON (version 1)."""
        tput = self.throughput
        return {
            "path": path,
            "gpu": {"name": self.gpu.name, "capacity_gib": round(self.gpu.capacity_gib, 2),
                    "peak_tflops": self.gpu.peak_tflops},
            "world_size": self.world_size,
            "layout": self.layout.as_dict(),
            "memory": {
                "rank0_peak_gib": round(self.memory.rank0.peak_gib, 2),
                "peak_gib": round(self.memory.worst.peak_gib, 2),
                "peak_rank": self.memory.worst.rank,
                "breakdown": {t: round(v, 2) for t, v in self.memory.worst.breakdown.items()},
                "low_gib": round(self.memory.low_gib, 2),
                "high_gib": round(self.memory.high_gib, 2),
            },
            "verdict": self.verdict,
            "confidence": self.confidence,
            "throughput": {
                "flops_per_token": tput.flops_per_token,
                "tokens_per_second": (None if tput.tokens_per_second is None else
                                      {"low": round(tput.tokens_per_second[0]),
                                       "high": round(tput.tokens_per_second[1])}),
                "mfu_pct": (None if tput.mfu_pct is None else
                            {"low": round(tput.mfu_pct[0], 1), "high": round(tput.mfu_pct[1], 1)}),
            },
            "findings": list(findings or []),
        }


def verdict_for(low_gib: float, high_gib: float, capacity_gib: float) -> str:
    """oom when even the optimistic bound exceeds capacity, tight when the band straddles it."""
    if low_gib > capacity_gib:
        return "oom"
    if high_gib > capacity_gib:
        return "tight"
    return "fits"


def frozen_names(job: Any, params: Sequence[ParamLike], plan: Any = None) -> set[str]:
    """Parameters without gradients or optimizer state when the optimizer is built.

    ``plan``: the job's freeze plan when the caller has it (the engine does); else it is computed.
    """
    frozen = {p.name for p in params if getattr(p, "frozen_at_construction", False)}
    if getattr(job, "vlm", None) is None:
        return frozen
    if plan is None:
        from kforge_cli.freeze.plan import (
            plan_for_job,  # only VLM jobs freeze: keep the import lazy
        )

        plan = plan_for_job(job, params)
    trainable = set(plan.optimizer_param_names)
    return frozen | {p.name for p in params if p.name not in trainable}


def _confidence(job: Any, facts: Facts, gpu: GPU, params: Sequence[ParamLike]) -> list[str]:
    reasons = []
    if facts.is_moe or facts.arch == "moma":
        reasons.append("MoE: routing buffers and grouped-GEMM padding are not modelled")
    if getattr(job.train, "mixed_precision", "bf16") == "fp8":
        reasons.append("FP8: torchao Float8Linear casts and scales are not modelled")
    if facts.optimizer != "adamw":
        reasons.append(f"optimizer {facts.optimizer!r}: only AdamW was checked against measurements")
    if sum(p.numel for p in params) < TINY_MODEL_PARAMS:
        reasons.append("tiny model: fixed per-process costs dominate and are not modelled")
    if gpu.name not in VALIDATED_GPUS:
        reasons.append(f"{gpu.name}: no published measurement on this GPU to check against")
    if facts.masked_attention:
        reasons.append("explicit attention mask (packed sequences / video): memory-efficient kernel path")
    if bool(getattr(job.train, "compile_model", False)) and facts.ac != "full":
        reasons.append("torch.compile without full AC: the compiled graph saves a different set")
    if facts.z_loss or getattr(job.train, "loss_fn", "cross_entropy") not in ("cross_entropy",):
        reasons.append("loss other than plain cross-entropy")
    if facts.arch == "mot":
        reasons.append("MoT: per-modality streams checked only against one published run")
    if facts.notes:
        reasons.extend(facts.notes)
    return reasons


def _surprises(job: Any, memory: MemoryPrediction, layout: Layout, facts: Facts) -> list[Surprise]:
    worst = memory.worst
    total = worst.peak_gib or 1.0
    out = []
    accum = worst.breakdown.get("gradient_accumulation", 0.0)
    if accum and accum / total >= 0.25:
        why = ("a pipeline stage keeps fp32 unsharded gradients of all its parameters through every "
               "backward (torch PipelineStage disables gradient sync per micro-batch)" if layout.pp > 1 else
               f"grad_accum_steps={facts.grad_accum} > 1: FSDP2 keeps every gradient unsharded in fp32 "
               "between micro-batches (divided by TP/EP only, not by dp_shard)")
        out.append(Surprise("gradient_accumulation", accum, accum / total, why))
    logits = worst.breakdown.get("logits_and_loss", 0.0)
    if logits and logits / total >= 0.25:
        why = ("cross-entropy over full-vocabulary logits: logits, log-softmax and two gradients of "
               f"batch x tokens x vocab ({facts.vocab}) are alive at once")
        if layout.tp > 1:
            why += "; every TP rank holds the full vocabulary (no loss_parallel)"
        if layout.pp > 1:
            why += "; the last stage also keeps every micro-batch's logits until the step ends"
        out.append(Surprise("logits_and_loss", logits, logits / total, why))
    if worst.moment == "model construction":
        out.append(Surprise("parameters", worst.breakdown.get("parameters", 0.0), 1.0,
                            "the whole model is materialized on every GPU before FSDP shards it "
                            "(text jobs without TP)"))
    return out


def predict(job: Any, params: Sequence[ParamLike], *, gpu: GPU, world_size: int,
            frozen: set[str] | None = None) -> FitPrediction:
    """Predict the peak memory per GPU, verdict and throughput of ``job`` on ``world_size`` x ``gpu``.

    ``params``: the model's parameters (``name``, ``shape``, ``numel``, optional
    ``frozen_at_construction``) in ``named_parameters()`` order; ``frozen``: their
    ``frozen_names`` when already known (the layout and batch never change it). Raises
    ``LayoutError`` when the parallel degrees do not divide ``world_size``.
    """
    layout = resolve_layout(job, world_size)
    if layout.pp > int(job.model.n_layers):
        raise LayoutError(f"distributed.pp ({layout.pp}) exceeds model.n_layers ({job.model.n_layers})",
                          "distributed.pp")
    if frozen is None:
        frozen = frozen_names(job, params)
    stages, facts = memory_per_stage(job, params, layout, frozen)
    worst = max(stages, key=lambda r: r.peak_gib)
    reasons = _confidence(job, facts, gpu, params)
    confidence = "low" if reasons else "high"
    band = BAND_LOW_CONFIDENCE if reasons else BAND_HIGH_CONFIDENCE
    memory = MemoryPrediction(stages[0], worst, stages, worst.peak_gib * (1 - band), worst.peak_gib * (1 + band))
    verdict = verdict_for(memory.low_gib, memory.high_gib, gpu.capacity_gib)
    return FitPrediction(gpu=gpu, world_size=world_size, layout=layout, memory=memory, verdict=verdict,
                         confidence=confidence, confidence_reasons=reasons,
                         throughput=estimate_throughput(job, layout, gpu.peak_tflops),
                         ac_coverage=activation_checkpointing_coverage(job),
                         surprises=_surprises(job, memory, layout, facts), notes=list(facts.notes))


__all__ = ["TERMS", "FitPrediction", "MemoryPrediction", "Surprise", "frozen_names", "predict", "verdict_for"]
