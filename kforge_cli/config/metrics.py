"""[metrics] and [profiling]."""

from __future__ import annotations

from typing import ClassVar

from kforge_cli.config.fields import JobCondition, Use, setting
from kforge_cli.config.section import Section
from kforge_cli.records import record
from kforge_cli.rules.rule import STARTUP


@record
class MetricsConfig(Section):
    SECTION: ClassVar[str] = "metrics"

    log_interval: int = setting(10, "log every N steps", unit="steps", gt=0)
    enable_wandb: bool = setting(False, "log to Weights & Biases")
    enable_tensorboard: bool = setting(False, "log to TensorBoard")
    wandb_project: str = setting("kempnerforge", "W&B project")
    wandb_run_name: str | None = setting(None, "W&B run name (unset = generated)")
    wandb_run_id: str = setting("", "W&B run id, restored from the checkpoint on resume")
    tensorboard_dir: str = setting("tb_logs", "TensorBoard log directory")


@record
class ProfilingConfig(Section):
    SECTION: ClassVar[str] = "profiling"

    enable: bool = setting(False, "run the torch profiler")
    start_step: int = setting(5, "first profiled step", unit="steps")
    end_step: int = setting(8, "step the profiler stops at (exclusive)", unit="steps", gt="start_step")
    trace_dir: str = setting("profiler_traces", "trace output directory", used=(
        Use(STARTUP, "build_profiler builds Path(profiling.trace_dir)",
            JobCondition("profiling.enable = true", lambda s: bool(s.job.profiling.enable), ("profiling.enable",))),))
