"""[metrics] and [profiling]."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kforge_cli.config.fields import Checker, is_number, setting
from kforge_cli.config.section import Section


@dataclass
class MetricsConfig(Section):
    SECTION: ClassVar[str] = "metrics"

    log_interval: int = setting(10, "log every N steps", unit="steps")
    enable_wandb: bool = setting(False, "log to Weights & Biases")
    enable_tensorboard: bool = setting(False, "log to TensorBoard")
    wandb_project: str = setting("kempnerforge", "W&B project")
    wandb_run_name: str | None = setting(None, "W&B run name (unset = generated)")
    wandb_run_id: str = setting("", "W&B run id, restored from the checkpoint on resume")
    tensorboard_dir: str = setting("tb_logs", "TensorBoard log directory")

    def rules(self, c: Checker) -> None:
        if is_number(self.log_interval) and self.log_interval <= 0:
            c.error("KF103", "log_interval", "log_interval must be positive", "e.g. metrics.log_interval = 10")


@dataclass
class ProfilingConfig(Section):
    SECTION: ClassVar[str] = "profiling"

    enable: bool = setting(False, "run the torch profiler")
    start_step: int = setting(5, "first profiled step", unit="steps")
    end_step: int = setting(8, "step the profiler stops at (exclusive)", unit="steps")
    trace_dir: str = setting("profiler_traces", "trace output directory")

    def rules(self, c: Checker) -> None:
        if is_number(self.end_step) and is_number(self.start_step) and self.end_step <= self.start_step:
            c.error("KF103", "end_step", f"profiling.end_step ({self.end_step}) must be greater than "
                    f"profiling.start_step ({self.start_step})",
                    f"set profiling.end_step > {self.start_step}")
