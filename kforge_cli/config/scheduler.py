"""[scheduler]: the learning-rate schedule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kforge_cli.config.fields import setting
from kforge_cli.config.section import Section

SCHEDULER_TYPES = ("cosine", "linear", "wsd", "constant", "rex", "none")
WSD_DECAY_TYPES = ("cosine", "linear", "sqrt")


@dataclass
class SchedulerConfig(Section):
    SECTION: ClassVar[str] = "scheduler"

    name: str = setting("cosine", "LR schedule", choices=SCHEDULER_TYPES, enum=True, registry="scheduler")
    warmup_steps: int = setting(2000, "linear warmup length", unit="steps", ge=0, fix="use 0 for no warmup")
    decay_steps: int | None = setting(None, "decay length (unset = the remaining steps)", unit="steps")
    min_lr_ratio: float = setting(0.1, "final LR as a fraction of the peak", interval="[0, 1]", fix="e.g. 0.1")
    stable_steps: int | None = setting(None, "WSD: steps held at the peak LR", unit="steps")
    wsd_decay_type: str = setting("cosine", "WSD cooldown shape", choices=WSD_DECAY_TYPES, fix='use "cosine"')
    rex_alpha: float = setting(1.0, "REX exponent in (1 - t/T)^alpha", gt=0, fix="use 1.0")
