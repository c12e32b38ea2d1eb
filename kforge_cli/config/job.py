"""The whole job: every section, the rules that span sections, and validate(world_size)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import ClassVar

from kforge_cli.config.checkpoint import CheckpointConfig
from kforge_cli.config.data import DataConfig
from kforge_cli.config.distributed import DistributedConfig
from kforge_cli.config.eval import EvalConfig
from kforge_cli.config.fields import Checker, setting
from kforge_cli.config.metrics import MetricsConfig, ProfilingConfig
from kforge_cli.config.model import ModelConfig
from kforge_cli.config.optimizer import OptimizerConfig
from kforge_cli.config.scheduler import SchedulerConfig
from kforge_cli.config.section import Section
from kforge_cli.config.training import TrainConfig
from kforge_cli.config.vision import (
    HF_VISION_ENCODER_TYPES,
    AdapterConfig,
    PoolingError,
    VideoConfig,
    VisionEncoderConfig,
)
from kforge_cli.config.vlm import MoMaConfig, VLMConfig


@dataclass
class TokenBudget:
    """How the residual stream is spent, as the reference computes it at config time."""

    encoder_tokens: int  # vision_encoder.num_tokens (0 = unknown until build)
    per_frame: int | None  # after the adapter (None: the adapter cannot pool this count)
    frames: int
    visual_tokens: int | None
    residual_image_tokens: int | None
    max_text_len: int
    required: int | None

    @property
    def known(self) -> bool:
        return self.required is not None and self.encoder_tokens > 0


@dataclass
class JobConfig(Section):
    """A KempnerForge training job. ``vision_encoder``/``adapter``/``vlm``/``video`` are None for text runs."""

    SECTION: ClassVar[str] = ""

    model: ModelConfig = setting(factory=ModelConfig, doc="text backbone architecture")
    train: TrainConfig = setting(factory=TrainConfig, doc="training loop")
    optimizer: OptimizerConfig = setting(factory=OptimizerConfig, doc="optimizer")
    scheduler: SchedulerConfig = setting(factory=SchedulerConfig, doc="learning-rate schedule")
    data: DataConfig = setting(factory=DataConfig, doc="data pipeline")
    eval: EvalConfig = setting(factory=EvalConfig, doc="periodic evaluation")
    distributed: DistributedConfig = setting(factory=DistributedConfig, doc="parallelism")
    checkpoint: CheckpointConfig = setting(factory=CheckpointConfig, doc="checkpointing")
    metrics: MetricsConfig = setting(factory=MetricsConfig, doc="logging")
    profiling: ProfilingConfig = setting(factory=ProfilingConfig, doc="profiler")
    vision_encoder: VisionEncoderConfig | None = setting(None, "vision encoder (VLM jobs)")
    adapter: AdapterConfig | None = setting(None, "vision-to-text adapter (VLM jobs; default mlp_2layer)")
    vlm: VLMConfig | None = setting(None, "VLM architecture and freeze policy; absent = text-only job")
    video: VideoConfig | None = setting(None, "video input (a VLM sub-mode)")

    def normalize(self) -> None:
        # The reference materializes the default adapter once [vlm] is present.
        if self.vlm is not None and self.vision_encoder is not None and self.adapter is None:
            self.adapter = AdapterConfig()

    @property
    def is_vlm(self) -> bool:
        return self.vlm is not None

    @property
    def is_video(self) -> bool:
        return self.video is not None

    def token_budget(self) -> TokenBudget | None:
        """The residual-stream arithmetic of the reference's config-time checks (None for text jobs)."""
        if not isinstance(self.vlm, VLMConfig) or not isinstance(self.vision_encoder, VisionEncoderConfig):
            return None
        adapter = self.adapter if isinstance(self.adapter, AdapterConfig) else AdapterConfig()
        encoder_tokens = self.vision_encoder.num_tokens
        frames = self.video.max_frames if isinstance(self.video, VideoConfig) else 1
        max_text = self.vlm.max_text_len
        if encoder_tokens <= 0:
            return TokenBudget(encoder_tokens, None, frames, None, None, max_text, None)
        try:
            per_frame = adapter.output_num_tokens(encoder_tokens)
        except PoolingError:
            return TokenBudget(encoder_tokens, None, frames, None, None, max_text, None)
        visual = frames * per_frame
        residual = self.vlm.residual_stream_image_tokens(visual)
        return TokenBudget(encoder_tokens, per_frame, frames, visual, residual, max_text, residual + max_text)

    # -- rules ---------------------------------------------------------------

    def rules(self, c: Checker) -> None:
        construction_rules(self, c, bad=())


def _budget_text(job: JobConfig, budget: TokenBudget) -> str:
    adapter = job.adapter.type if isinstance(job.adapter, AdapterConfig) else "mlp_2layer"
    parts = [f"vision_encoder.num_tokens {budget.encoder_tokens}"]
    if budget.per_frame != budget.encoder_tokens:
        parts.append(f"-> {budget.per_frame} after adapter.type={adapter!r}")
    if budget.frames != 1:
        parts.append(f"x video.max_frames {budget.frames}")
    image = " ".join(parts)
    if budget.residual_image_tokens == 0 and budget.visual_tokens:
        image += f" (vlm.arch={job.vlm.arch!r} keeps them out of the residual stream: 0)"
    return (f"residual_image_tokens ({budget.residual_image_tokens}) [{image}] + "
            f"vlm.max_text_len ({budget.max_text_len}) = {budget.required}")


def construction_rules(job: JobConfig, c: Checker, bad: Collection[str]) -> None:
    """JobConfig.__post_init__ in the reference: runs at load time."""

    def clean(*keys: str) -> bool:
        return not any(k in bad or any(b.startswith(k + ".") for b in bad) for k in keys)

    vlm, encoder = job.vlm, job.vision_encoder
    if vlm is not None:
        if encoder is None:
            c.error("KF104", "vision_encoder",
                    "[vlm] is set but [vision_encoder] is missing; a VLM run requires a vision encoder section.",
                    'add a [vision_encoder] section, e.g. type = "random", feature_dim = 384, num_tokens = 64')
        elif isinstance(encoder, VisionEncoderConfig) and isinstance(vlm, VLMConfig):
            if (isinstance(encoder.type, str) and encoder.type in HF_VISION_ENCODER_TYPES
                    and (encoder.feature_dim > 0 or encoder.num_tokens > 0)):
                overrides = [f"{n}={getattr(encoder, n)}" for n in ("feature_dim", "num_tokens")
                             if getattr(encoder, n) > 0]
                c.warn("KF404", "vision_encoder.num_tokens" if encoder.num_tokens > 0 else "vision_encoder.feature_dim",
                       f"vision_encoder.type={encoder.type!r} is HF-backed and probes its own dims; setting "
                       f"{' and '.join(overrides)} overrides the probe and may desync from the loaded model "
                       "(the reference logs this warning)",
                       "leave vision_encoder.feature_dim and num_tokens at 0 to use the probed values")
            adapter = job.adapter if isinstance(job.adapter, AdapterConfig) else AdapterConfig()
            if encoder.num_tokens > 0 and clean("vision_encoder", "adapter", "vlm", "video", "model.max_seq_len"):
                try:
                    adapter.output_num_tokens(encoder.num_tokens)
                except PoolingError as exc:
                    c.error("KF103", exc.field, f"adapter.type={adapter.type!r} with adapter.pool_window="
                            f"{adapter.pool_window} cannot pool vision_encoder.num_tokens={encoder.num_tokens}: {exc}",
                            "use a square, window-divisible token count, or adapter.type = \"avgpool\"")
                else:
                    budget = job.token_budget()
                    if budget and budget.required is not None and job.model.max_seq_len < budget.required:
                        c.error("KF201", "model.max_seq_len",
                                f"model.max_seq_len ({job.model.max_seq_len}) insufficient for VLM: "
                                + _budget_text(job, budget),
                                f"raise model.max_seq_len to at least {budget.required}, or lower "
                                "vlm.max_text_len / vision_encoder.num_tokens")
    if job.video is not None and vlm is None:
        c.error("KF104", "vlm",
                "[video] is set but [vlm] is missing; video training runs through the VLM wrapper, so a "
                "[vlm] section (and [vision_encoder]) is required.",
                "add [vlm] and [vision_encoder] sections, or remove [video]")


def validate_rules(job: JobConfig, c: Checker, world_size: int | None, bad: Collection[str]) -> None:
    """JobConfig.validate(world_size): cross-section rules checked at distributed setup."""

    def clean(*keys: str) -> bool:
        return not any(k in bad or any(b.startswith(k + ".") for b in bad) for k in keys)

    model, train, dist = job.model, job.train, job.distributed
    if world_size is not None and clean("distributed"):
        dist.world_size_findings(world_size, Checker("distributed", stage=c.stage, findings=c.findings))
    if clean("train.seq_len", "model.max_seq_len") and train.seq_len > model.max_seq_len:
        c.error("KF202", "train.seq_len",
                f"train.seq_len ({train.seq_len}) exceeds model.max_seq_len ({model.max_seq_len})",
                f"lower train.seq_len to at most {model.max_seq_len}, or raise model.max_seq_len")
    if clean("model.tie_embeddings", "distributed.pp") and model.tie_embeddings and dist.pp > 1:
        c.error("KF203", "distributed.pp",
                "Tied embeddings are not supported with pipeline parallelism (model.tie_embeddings = true with "
                f"distributed.pp = {dist.pp}): embedding and output head must be on different stages",
                "set model.tie_embeddings = false or distributed.pp = 1")
    ev = job.eval
    if clean("eval") and ev.enabled and not ev.dataset_path and not ev.hf_dataset_name:
        c.error("KF104", "eval.enabled",
                "eval.enabled is True but no eval data source is configured. "
                "Set eval.dataset_path or eval.hf_dataset_name.",
                "set eval.dataset_path or eval.hf_dataset_name, or eval.enabled = false")
    if clean("model", "train") and model.is_moe and train.compile_model:
        c.warn("KF404", "train.compile_model",
               "torch.compile is not yet optimized for MoE dispatch (data-dependent shapes cause graph breaks); "
               "the reference logs this warning", "set train.compile_model = false for MoE models")
    if clean("distributed.tp", "model.n_heads", "model.n_kv_heads") and dist.tp > 1:
        if model.n_heads % dist.tp != 0:
            c.error("KF204", "distributed.tp",
                    f"model.n_heads ({model.n_heads}) must be divisible by distributed.tp ({dist.tp})",
                    "pick a tensor-parallel degree that divides the head counts")
        if model.n_kv_heads and model.n_kv_heads % dist.tp != 0:
            c.error("KF204", "distributed.tp",
                    f"model.n_kv_heads ({model.n_kv_heads}) must be divisible by distributed.tp ({dist.tp})",
                    "pick a tensor-parallel degree that divides the head counts")
    if clean("train.mixed_precision", "distributed.tp") and train.is_fp8 and dist.tp > 1:
        c.error("KF205", "train.mixed_precision",
                "FP8 + Tensor Parallelism is not yet supported (train.mixed_precision = \"fp8\" with "
                f"distributed.tp = {dist.tp}): torchao Float8Linear does not compose with DTensor sharding",
                "use FP8 with FSDP only (distributed.tp = 1), or TP without FP8")
    if clean("model.num_experts", "distributed.pp") and model.is_moe and dist.pp > 1:
        c.error("KF203", "distributed.pp",
                f"MoE + Pipeline Parallelism is not supported (model.num_experts = {model.num_experts} with "
                f"distributed.pp = {dist.pp}): MoE routing is data-dependent",
                "use FSDP, TP or EP instead of PP for MoE models")
    if clean("distributed.ep", "model.num_experts") and dist.ep > 1:
        if not model.is_moe:
            c.error("KF206", "distributed.ep",
                    f"distributed.ep = {dist.ep} requires an MoE model (model.num_experts > 0)",
                    "set distributed.ep = 1 for a dense model")
        elif model.num_experts % dist.ep != 0:
            c.error("KF206", "distributed.ep",
                    f"model.num_experts ({model.num_experts}) must be divisible by distributed.ep ({dist.ep})",
                    "pick an expert-parallel degree that divides num_experts")
    vlm, encoder = job.vlm, job.vision_encoder
    if isinstance(vlm, VLMConfig) and isinstance(encoder, VisionEncoderConfig):
        budget = job.token_budget()
        if (budget and budget.required is not None and clean("train.seq_len", "vlm", "vision_encoder", "adapter")
                and train.seq_len < budget.required):
            c.error("KF201", "train.seq_len",
                    f"train.seq_len ({train.seq_len}) insufficient for VLM: " + _budget_text(job, budget),
                    f"raise train.seq_len to at least {budget.required} (and model.max_seq_len with it)")
        if clean("distributed.pp") and dist.pp > 1:
            c.error("KF203", "distributed.pp",
                    f"VLM + Pipeline Parallelism is not supported (distributed.pp = {dist.pp}); the reference's "
                    "JobConfig.validate rejects it",
                    "set distributed.pp = 1 and scale with FSDP (dp_shard) or TP instead")
        if isinstance(vlm, MoMaConfig):
            if clean("model.num_experts") and model.num_experts > 0:
                c.error("KF207", "model.num_experts",
                        "MoMa + model.num_experts > 0 is rejected. MoMa derives expert counts per modality from "
                        "vlm.moma_experts_per_modality",
                        "set model.num_experts = 0 (the dense-LLM default) when using arch = \"moma\"")
            if clean("distributed.ep") and dist.ep > 1:
                c.error("KF207", "distributed.ep",
                        "MoMa + Expert Parallelism is not supported in v1: per-modality expert groups need "
                        "EP-aware dispatch", "set distributed.ep = 1")
            if train.compile_model:
                c.warn("KF404", "train.compile_model",
                       "torch.compile is not yet validated for MoMa dispatch (graph breaks); the reference logs "
                       "this warning", "set train.compile_model = false for MoMa models")
            if train.activation_checkpointing == "full":
                c.warn("KF404", "train.activation_checkpointing",
                       "activation_checkpointing = \"full\" is a silent no-op for MoMa (the reference wraps "
                       "TransformerBlock only; MoMaBlock is a sibling module), so no memory is saved",
                       'use activation_checkpointing = "selective", which does wrap MoMa attention')
