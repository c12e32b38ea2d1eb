"""Rules that span sections: what JobConfig checks when it is built and in validate(world_size).

The reference runs the construction checks (``JobConfig.__post_init__``) every
time the loader builds a JobConfig, so the loader runs the ``LOAD`` checks
here; the ``VALIDATE`` ones are ``JobConfig.validate(world_size)``, which the
trainer calls before it sets up distributed training.
"""

from __future__ import annotations

from typing import Any

from kforge_cli.config.fields import divisor_hint
from kforge_cli.config.job import JobConfig, TokenBudget
from kforge_cli.config.vision import (
    HF_VISION_ENCODER_TYPES,
    AdapterConfig,
    PoolingError,
    VisionEncoderConfig,
)
from kforge_cli.config.vlm import MoMaConfig, VLMConfig
from kforge_cli.findings import Finding, shown
from kforge_cli.rules.advice import REFERENCE_WARNING
from kforge_cli.rules.loading import INVALID_VALUE, MISSING_REQUIRED
from kforge_cli.rules.rule import ERROR, LOAD, NEEDS_WORLD_SIZE, VALIDATE, Rule, Subject

WORLD_SIZE = Rule(
    "KF200", "world-size", ERROR,
    "The parallel degrees (dp_replicate x dp_shard x tp x pp x cp x ep) do not match --world-size.",
    "dp_shard = 4, tp = 2 on 6 GPUs")
SEQUENCE_BUDGET = Rule(
    "KF201", "sequence-budget", ERROR,
    "The residual stream (image tokens + vlm.max_text_len) does not fit model.max_seq_len or train.seq_len.",
    "max_seq_len = 576 with 64 image tokens and max_text_len = 600")
SEQ_LEN_EXCEEDS_MODEL = Rule(
    "KF202", "seq-len-exceeds-model", ERROR,
    "train.seq_len is larger than model.max_seq_len.", "train.seq_len = 4096, model.max_seq_len = 2048")
PIPELINE_UNSUPPORTED = Rule(
    "KF203", "pipeline-unsupported", ERROR,
    "Pipeline parallelism that the trainer cannot run: with VLM, MoE or tied embeddings, more stages than "
    "layers, or fewer micro-batches than stages.", "[vlm] with distributed.pp = 2")
TP_DIVISIBILITY = Rule(
    "KF204", "tp-divisibility", ERROR,
    "Attention heads are not divisible by the tensor-parallel degree.", "n_heads = 6, tp = 4")
FP8_WITH_TP = Rule(
    "KF205", "fp8-with-tp", ERROR, "FP8 mixed precision with tensor parallelism.", 'mixed_precision = "fp8", tp = 2')
EXPERT_PARALLEL = Rule(
    "KF206", "expert-parallel", ERROR,
    "Expert parallelism without an MoE model, or not dividing num_experts.", "ep = 4, num_experts = 6")
MOMA_CONSTRAINT = Rule(
    "KF207", "moma-constraint", ERROR,
    "MoMa combined with model.num_experts or expert parallelism.", 'arch = "moma", num_experts = 8')


def budget_text(job: JobConfig, budget: TokenBudget) -> str:
    """How the residual stream adds up, naming every knob that contributes."""
    adapter = job.adapter.type if isinstance(job.adapter, AdapterConfig) else "mlp_2layer"
    parts = [f"vision_encoder.num_tokens {budget.encoder_tokens}"]
    if budget.per_frame != budget.encoder_tokens:
        parts.append(f"-> {budget.per_frame} after adapter.type={adapter!r}")
    if budget.frames != 1:
        parts.append(f"x video.max_frames {budget.frames}")
    image = " ".join(parts)
    if budget.residual_image_tokens == 0 and budget.visual_tokens and job.vlm is not None:
        image += f" (vlm.arch={job.vlm.arch!r} keeps them out of the residual stream: 0)"
    return (f"residual_image_tokens ({budget.residual_image_tokens}) [{image}] + "
            f"vlm.max_text_len ({budget.max_text_len}) = {budget.required}")


# -- at load (JobConfig.__post_init__) -----------------------------------------------------------


@MISSING_REQUIRED.check(stage=LOAD, reads=("vlm", "vision_encoder"))
def vlm_needs_vision_encoder(s: Subject) -> list[Finding]:
    """[vlm] without [vision_encoder]."""
    if s.job.vlm is not None and s.job.vision_encoder is None:
        return [MISSING_REQUIRED.finding(
            "[vlm] is set but [vision_encoder] is missing; a VLM run requires a vision encoder section.",
            "vision_encoder",
            'add a [vision_encoder] section, e.g. type = "random", feature_dim = 384, num_tokens = 64')]
    return []


@MISSING_REQUIRED.check(stage=LOAD, reads=("video", "vlm"))
def video_needs_vlm(s: Subject) -> list[Finding]:
    """[video] without [vlm]."""
    if s.job.video is not None and s.job.vlm is None:
        return [MISSING_REQUIRED.finding(
            "[video] is set but [vlm] is missing; video training runs through the VLM wrapper, so a [vlm] section "
            "(and [vision_encoder]) is required.", "vlm", "add [vlm] and [vision_encoder] sections, or remove [video]")]
    return []


def _vlm_parts(job: JobConfig) -> tuple[VLMConfig, VisionEncoderConfig] | None:
    if isinstance(job.vlm, VLMConfig) and isinstance(job.vision_encoder, VisionEncoderConfig):
        return job.vlm, job.vision_encoder
    return None


@REFERENCE_WARNING.check(stage=None, reads=("vision_encoder",))
def hf_encoder_dims_overridden(s: Subject) -> list[Finding]:
    """An HF encoder whose probed dims are overridden in the file (the reference logs it)."""
    parts = _vlm_parts(s.job)
    if parts is None:
        return []
    encoder = parts[1]
    if not (isinstance(encoder.type, str) and encoder.type in HF_VISION_ENCODER_TYPES):
        return []
    overrides = [f"{n}={getattr(encoder, n)}" for n in ("feature_dim", "num_tokens") if getattr(encoder, n) > 0]
    if not overrides:
        return []
    return [REFERENCE_WARNING.finding(
        f"vision_encoder.type={encoder.type!r} is HF-backed and probes its own dims; setting "
        f"{' and '.join(overrides)} overrides the probe and may desync from the loaded model "
        "(the reference logs this warning)",
        "vision_encoder.num_tokens" if encoder.num_tokens > 0 else "vision_encoder.feature_dim",
        "leave vision_encoder.feature_dim and num_tokens at 0 to use the probed values")]


_BUDGET_READS = ("vision_encoder", "adapter", "vlm", "video", "model.max_seq_len")


@INVALID_VALUE.check(stage=LOAD, reads=_BUDGET_READS)
def adapter_cannot_pool(s: Subject) -> list[Finding]:
    """A pooling adapter given a token count it cannot pool (checked when num_tokens is set)."""
    parts = _vlm_parts(s.job)
    if parts is None or parts[1].num_tokens <= 0:
        return []
    adapter = s.job.adapter if isinstance(s.job.adapter, AdapterConfig) else AdapterConfig()
    try:
        adapter.output_num_tokens(parts[1].num_tokens)
    except PoolingError as exc:
        return [INVALID_VALUE.finding(
            f"adapter.type={adapter.type!r} with adapter.pool_window={adapter.pool_window} cannot pool "
            f"vision_encoder.num_tokens={parts[1].num_tokens}: {exc}", exc.field,
            'use a square, window-divisible token count, or adapter.type = "avgpool"')]
    return []


@SEQUENCE_BUDGET.check(stage=LOAD, reads=_BUDGET_READS)
def model_max_seq_len_budget(s: Subject) -> list[Finding]:
    """Residual image tokens + vlm.max_text_len must fit model.max_seq_len (known token count)."""
    job = s.job
    parts = _vlm_parts(job)
    if parts is None or parts[1].num_tokens <= 0:
        return []
    budget = job.token_budget()
    if budget is None or budget.required is None or job.model.max_seq_len >= budget.required:
        return []
    return [SEQUENCE_BUDGET.finding(
        f"model.max_seq_len ({job.model.max_seq_len}) insufficient for VLM: " + budget_text(job, budget),
        "model.max_seq_len",
        f"raise model.max_seq_len to at least {budget.required}, or lower vlm.max_text_len / "
        "vision_encoder.num_tokens")]


# -- JobConfig.validate(world_size) ----------------------------------------------------------------


def parallel_product(dist: Any, dp_shard: int) -> int:
    return dist.dp_replicate * dp_shard * dist.tp * dist.pp * dist.cp * dist.ep


def resolved_dp_shard(dist: Any, world_size: int) -> int | None:
    """dp_shard as the trainer resolves it (-1: what is left), or None when that does not divide."""
    if dist.dp_shard > 0:
        return dist.dp_shard
    other = dist.other_degrees()
    if other <= 0 or world_size % other:
        return None
    return world_size // other


def _world_size_fix(job: JobConfig, world_size: int) -> str:
    """A change that really makes the degrees multiply to ``world_size`` (checked, not guessed)."""
    dist = job.distributed
    other = dist.other_degrees()
    if other > 0 and world_size % other == 0:
        return (f"set distributed.dp_shard = -1 (it resolves to {world_size // other}), or "
                f"{world_size // other} explicitly")
    fixed = [(name, getattr(dist, name)) for name in ("tp", "pp", "cp", "ep", "dp_replicate")
             if getattr(dist, name) > 1]
    options = []
    for name, value in fixed:
        rest = other // value
        # A degree that fits divides the world size, so it is at most the world size.
        fits = [d for d in range(1, min(value, world_size) + 1) if world_size % (rest * d) == 0]
        if fits and fits[-1] != value:
            options.append(f"distributed.{name} = {fits[-1]}")
    bigger = ((world_size + other - 1) // other) * other
    advice = f"run on a multiple of {shown(other)} GPUs (e.g. --world-size {shown(bigger)})"
    if options:
        return f"{advice}, or lower {' or '.join(options)} so the fixed degrees divide {world_size}"
    return advice


_DEGREES = tuple(f"distributed.{name}" for name in ("dp_replicate", "dp_shard", "tp", "pp", "cp", "ep"))


@WORLD_SIZE.check(stage=VALIDATE, reads=_DEGREES, needs=(NEEDS_WORLD_SIZE,))
def degrees_match_world_size(s: Subject) -> list[Finding]:
    """dp_replicate x dp_shard x tp x pp x cp x ep must equal the world size."""
    dist, world_size = s.job.distributed, s.world_size
    assert world_size is not None  # needs=(NEEDS_WORLD_SIZE,): the engine runs this only with a world size
    other = dist.other_degrees()
    dp_shard = resolved_dp_shard(dist, world_size)
    if dp_shard is None:
        return [WORLD_SIZE.finding(
            f"world_size ({world_size}) not divisible by dp_replicate*tp*pp*cp*ep ({other})", "distributed",
            _world_size_fix(s.job, world_size))]
    expected = parallel_product(dist, dp_shard)
    if expected == world_size:
        return []
    return [WORLD_SIZE.finding(
        f"Parallelism dimensions ({dist.dp_replicate} \u00d7 {dp_shard} \u00d7 {dist.tp} \u00d7 {dist.pp} "
        f"\u00d7 {dist.cp} \u00d7 {dist.ep} = {expected}) do not match world_size ({world_size})",
        "distributed.dp_shard", _world_size_fix(s.job, world_size))]


@SEQ_LEN_EXCEEDS_MODEL.check(stage=VALIDATE, reads=("train.seq_len", "model.max_seq_len"))
def seq_len_within_model(s: Subject) -> list[Finding]:
    """train.seq_len <= model.max_seq_len."""
    train, model = s.job.train, s.job.model
    if train.seq_len <= model.max_seq_len:
        return []
    return [SEQ_LEN_EXCEEDS_MODEL.finding(
        f"train.seq_len ({train.seq_len}) exceeds model.max_seq_len ({model.max_seq_len})", "train.seq_len",
        f"lower train.seq_len to at most {model.max_seq_len}, or raise model.max_seq_len")]


@PIPELINE_UNSUPPORTED.check(stage=VALIDATE, reads=("model.tie_embeddings", "distributed.pp"))
def pipeline_without_tied_embeddings(s: Subject) -> list[Finding]:
    """Tied embeddings cannot be split across pipeline stages."""
    model, dist = s.job.model, s.job.distributed
    if not (model.tie_embeddings and dist.pp > 1):
        return []
    return [PIPELINE_UNSUPPORTED.finding(
        "Tied embeddings are not supported with pipeline parallelism (model.tie_embeddings = true with "
        f"distributed.pp = {dist.pp}): embedding and output head must be on different stages",
        "distributed.pp", "set model.tie_embeddings = false or distributed.pp = 1")]


@MISSING_REQUIRED.check(stage=VALIDATE, reads=("eval",))
def eval_needs_data(s: Subject) -> list[Finding]:
    """eval.enabled without an eval data source."""
    ev = s.job.eval
    if not (ev.enabled and not ev.dataset_path and not ev.hf_dataset_name):
        return []
    return [MISSING_REQUIRED.finding(
        "eval.enabled is True but no eval data source is configured. Set eval.dataset_path or eval.hf_dataset_name.",
        "eval.enabled", "set eval.dataset_path or eval.hf_dataset_name, or eval.enabled = false")]


@REFERENCE_WARNING.check(stage=None, reads=("model.num_experts", "train.compile_model"))
def compile_with_moe(s: Subject) -> list[Finding]:
    """torch.compile on an MoE model (the reference logs a warning)."""
    if not (s.job.model.is_moe and s.job.train.compile_model):
        return []
    return [REFERENCE_WARNING.finding(
        "torch.compile is not yet optimized for MoE dispatch (data-dependent shapes cause graph breaks); the "
        "reference logs this warning", "train.compile_model", "set train.compile_model = false for MoE models")]


@TP_DIVISIBILITY.check(stage=VALIDATE, reads=("distributed.tp", "model.n_heads", "model.n_kv_heads"))
def heads_divisible_by_tp(s: Subject) -> list[Finding]:
    """Query and key/value heads must split evenly over the tensor-parallel ranks."""
    model, tp = s.job.model, s.job.distributed.tp
    if tp <= 1:
        return []
    out = []
    for name, heads in (("n_heads", model.n_heads), ("n_kv_heads", model.n_kv_heads)):
        if heads and heads % tp:
            out.append(TP_DIVISIBILITY.finding(
                f"model.{name} ({heads}) must be divisible by distributed.tp ({tp})", "distributed.tp",
                divisor_hint("distributed.tp", heads, tp)))
    return out


@FP8_WITH_TP.check(stage=VALIDATE, reads=("train.mixed_precision", "distributed.tp"))
def fp8_without_tp(s: Subject) -> list[Finding]:
    """FP8 (torchao Float8Linear) does not compose with DTensor sharding."""
    if not (s.job.train.is_fp8 and s.job.distributed.tp > 1):
        return []
    return [FP8_WITH_TP.finding(
        'FP8 + Tensor Parallelism is not yet supported (train.mixed_precision = "fp8" with '
        f"distributed.tp = {s.job.distributed.tp}): torchao Float8Linear does not compose with DTensor sharding",
        "train.mixed_precision", "use FP8 with FSDP only (distributed.tp = 1), or TP without FP8")]


@PIPELINE_UNSUPPORTED.check(stage=VALIDATE, reads=("model.num_experts", "distributed.pp"))
def pipeline_without_moe(s: Subject) -> list[Finding]:
    """MoE routing is data-dependent: no pipeline parallelism."""
    model, pp = s.job.model, s.job.distributed.pp
    if not (model.is_moe and pp > 1):
        return []
    return [PIPELINE_UNSUPPORTED.finding(
        f"MoE + Pipeline Parallelism is not supported (model.num_experts = {model.num_experts} with "
        f"distributed.pp = {pp}): MoE routing is data-dependent", "distributed.pp",
        "use FSDP, TP or EP instead of PP for MoE models")]


@EXPERT_PARALLEL.check(stage=VALIDATE, reads=("distributed.ep", "model.num_experts"))
def expert_parallel_needs_experts(s: Subject) -> list[Finding]:
    """ep > 1 needs an MoE model whose expert count it divides."""
    model, ep = s.job.model, s.job.distributed.ep
    if ep <= 1:
        return []
    if not model.is_moe:
        return [EXPERT_PARALLEL.finding(f"distributed.ep = {ep} requires an MoE model (model.num_experts > 0)",
                                        "distributed.ep", "set distributed.ep = 1 for a dense model")]
    if model.num_experts % ep:
        return [EXPERT_PARALLEL.finding(
            f"model.num_experts ({model.num_experts}) must be divisible by distributed.ep ({ep})", "distributed.ep",
            divisor_hint("distributed.ep", model.num_experts, ep))]
    return []


@SEQUENCE_BUDGET.check(stage=VALIDATE, reads=("train.seq_len",) + _BUDGET_READS[:-1])
def train_seq_len_budget(s: Subject) -> list[Finding]:
    """Residual image tokens + vlm.max_text_len must fit train.seq_len (known token count)."""
    job = s.job
    if _vlm_parts(job) is None:
        return []
    budget = job.token_budget()
    if budget is None or budget.required is None or job.train.seq_len >= budget.required:
        return []
    return [SEQUENCE_BUDGET.finding(
        f"train.seq_len ({job.train.seq_len}) insufficient for VLM: " + budget_text(job, budget), "train.seq_len",
        f"raise train.seq_len to at least {budget.required} (and model.max_seq_len with it)")]


@PIPELINE_UNSUPPORTED.check(stage=VALIDATE, reads=("vlm", "distributed.pp"))
def pipeline_without_vlm(s: Subject) -> list[Finding]:
    """The VLM wrapper is not pipeline-parallel."""
    pp = s.job.distributed.pp
    if _vlm_parts(s.job) is None or pp <= 1:
        return []
    return [PIPELINE_UNSUPPORTED.finding(
        f"VLM + Pipeline Parallelism is not supported (distributed.pp = {pp}); the reference's JobConfig.validate "
        "rejects it", "distributed.pp", "set distributed.pp = 1 and scale with FSDP (dp_shard) or TP instead")]


def _moma(job: JobConfig) -> MoMaConfig | None:
    return job.vlm if _vlm_parts(job) is not None and isinstance(job.vlm, MoMaConfig) else None


@MOMA_CONSTRAINT.check(stage=VALIDATE, reads=("vlm.arch", "model.num_experts"))
def moma_without_model_experts(s: Subject) -> list[Finding]:
    """MoMa sizes its experts per modality; model.num_experts must stay 0."""
    if _moma(s.job) is None or s.job.model.num_experts <= 0:
        return []
    return [MOMA_CONSTRAINT.finding(
        "MoMa + model.num_experts > 0 is rejected. MoMa derives expert counts per modality from "
        "vlm.moma_experts_per_modality", "model.num_experts",
        'set model.num_experts = 0 (the dense-LLM default) when using arch = "moma"')]


@MOMA_CONSTRAINT.check(stage=VALIDATE, reads=("vlm.arch", "distributed.ep"))
def moma_without_expert_parallel(s: Subject) -> list[Finding]:
    """Per-modality expert groups have no EP-aware dispatch."""
    if _moma(s.job) is None or s.job.distributed.ep <= 1:
        return []
    return [MOMA_CONSTRAINT.finding(
        "MoMa + Expert Parallelism is not supported in v1: per-modality expert groups need EP-aware dispatch",
        "distributed.ep", "set distributed.ep = 1")]


@REFERENCE_WARNING.check(stage=None, reads=("vlm.arch", "train.compile_model"))
def compile_with_moma(s: Subject) -> list[Finding]:
    """torch.compile on MoMa (the reference logs a warning)."""
    if _moma(s.job) is None or not s.job.train.compile_model:
        return []
    return [REFERENCE_WARNING.finding(
        "torch.compile is not yet validated for MoMa dispatch (graph breaks); the reference logs this warning",
        "train.compile_model", "set train.compile_model = false for MoMa models")]


@REFERENCE_WARNING.check(stage=None, reads=("vlm.arch", "train.activation_checkpointing"))
def full_checkpointing_on_moma(s: Subject) -> list[Finding]:
    """activation_checkpointing = "full" on MoMa (the reference's validate logs it as a no-op)."""
    if _moma(s.job) is None or s.job.train.activation_checkpointing != "full":
        return []
    return [REFERENCE_WARNING.finding(
        'activation_checkpointing = "full" is a silent no-op for MoMa (the reference wraps TransformerBlock only; '
        "MoMaBlock is a sibling module), so no memory is saved; the reference logs this warning",
        "train.activation_checkpointing", 'use activation_checkpointing = "selective", which does wrap MoMa attention')]


__all__ = ["EXPERT_PARALLEL", "FP8_WITH_TP", "MOMA_CONSTRAINT", "PIPELINE_UNSUPPORTED", "SEQUENCE_BUDGET",
           "SEQ_LEN_EXCEEDS_MODEL", "TP_DIVISIBILITY", "WORLD_SIZE", "budget_text", "parallel_product",
           "resolved_dp_shard"]
