"""[scheduler]: the learning-rate schedule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kforge_cli.config.fields import Checker, is_number, setting
from kforge_cli.config.section import Section

SCHEDULER_TYPES = ("cosine", "linear", "wsd", "constant", "rex", "none")
WSD_DECAY_TYPES = ("cosine", "linear", "sqrt")


@dataclass
class SchedulerConfig(Section):
    SECTION: ClassVar[str] = "scheduler"

    name: str = setting("cosine", "LR schedule", choices=SCHEDULER_TYPES, enum=True, registry="scheduler")
    warmup_steps: int = setting(2000, "linear warmup length", unit="steps")
    decay_steps: int | None = setting(None, "decay length (unset = the remaining steps)", unit="steps")
    min_lr_ratio: float = setting(0.1, "final LR as a fraction of the peak, in [0, 1]")
    stable_steps: int | None = setting(None, "WSD: steps held at the peak LR", unit="steps")
    wsd_decay_type: str = setting("cosine", "WSD cooldown shape", choices=WSD_DECAY_TYPES)
    rex_alpha: float = setting(1.0, "REX exponent in (1 - t/T)^alpha")

    def rules(self, c: Checker) -> None:
        if is_number(self.warmup_steps) and self.warmup_steps < 0:
            c.error("KF103", "warmup_steps", "warmup_steps must be non-negative", "use 0 for no warmup")
        if is_number(self.min_lr_ratio) and not (0 <= self.min_lr_ratio <= 1):
            c.error("KF103", "min_lr_ratio", "min_lr_ratio must be in [0, 1]", "e.g. 0.1")
        if self.wsd_decay_type not in WSD_DECAY_TYPES:
            c.error("KF103", "wsd_decay_type",
                    f"wsd_decay_type must be 'cosine', 'linear', or 'sqrt', got '{self.wsd_decay_type}'",
                    'use "cosine"')
        if is_number(self.rex_alpha) and self.rex_alpha <= 0:
            c.error("KF103", "rex_alpha", "rex_alpha must be positive", "use 1.0")
