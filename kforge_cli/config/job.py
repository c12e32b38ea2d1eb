"""The whole job: every section, the rules that span sections, and validate(world_size)."""

from __future__ import annotations

from typing import Any, ClassVar

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
    AdapterConfig,
    PoolingError,
    VideoConfig,
    VisionEncoderConfig,
)
from kforge_cli.config.vlm import VLMConfig
from kforge_cli.records import record


@record
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


@record
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

    def rules(self, c: Checker) -> None:
        # What the reference's JobConfig.__post_init__ checks across sections.
        from kforge_cli.rules.rule import Subject, run_checks

        c.findings.extend(run_checks(construction_checks(), Subject(job=self), bad=()))


def construction_checks() -> list[Any]:
    """The checks JobConfig runs whenever it is constructed (the loader runs them after each overlay)."""
    from kforge_cli.rules import all_checks
    from kforge_cli.rules.rule import LOAD

    return [check for check in all_checks() if check.stage == LOAD]
