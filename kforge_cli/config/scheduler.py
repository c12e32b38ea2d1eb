"""[scheduler]: the learning-rate schedule."""

from __future__ import annotations

from typing import Any, ClassVar

from kforge_cli.config.fields import JobCondition, Use, setting
from kforge_cli.config.section import Section
from kforge_cli.records import record
from kforge_cli.rules.rule import LOOP, STARTUP

SCHEDULER_TYPES = ("cosine", "linear", "wsd", "constant", "rex", "none")
WSD_DECAY_TYPES = ("cosine", "linear", "sqrt")


# Schedules whose LR lambda reads decay_steps once the warmup (and WSD's stable phase) is over.
DECAYING = ("cosine", "linear", "wsd", "rex")


def _decay_start(s: Any) -> int | None:
    """The first step whose LR reaches decay_steps (the lambda runs at step 0 when built, then each step)."""
    sched = s.job.scheduler
    if sched.name not in DECAYING or not sched.decay_steps:  # the reference's `or` skips a falsy value
        return None
    stable = sched.stable_steps if sched.name == "wsd" and isinstance(sched.stable_steps, int) else 0
    return sched.warmup_steps + (stable or 0)


def _stable_start(s: Any) -> int | None:
    """When WSD first adds stable_steps: building the scheduler (no decay_steps), else after the warmup."""
    sched = s.job.scheduler
    if sched.name != "wsd" or not sched.stable_steps:
        return None
    return 0 if not sched.decay_steps else sched.warmup_steps


def _reached(start: Any, s: Any, at_build: bool) -> bool:
    if start is None:
        return False
    return start == 0 if at_build else 0 < start <= s.job.train.max_steps


_READS = ("scheduler.name", "scheduler.warmup_steps", "train.max_steps")
DECAY_AT_BUILD = JobCondition("the schedule decays from step 0 (scheduler.warmup_steps = 0)",
                              lambda s: _reached(_decay_start(s), s, True), _READS)
DECAY_IN_LOOP = JobCondition("the warmup ends within train.max_steps",
                             lambda s: _reached(_decay_start(s), s, False), _READS)
STABLE_AT_BUILD = JobCondition('scheduler.name = "wsd" and the decay length is derived from it '
                               "(scheduler.decay_steps unset) or warmup_steps = 0",
                               lambda s: _reached(_stable_start(s), s, True), (*_READS, "scheduler.decay_steps"))
STABLE_IN_LOOP = JobCondition('scheduler.name = "wsd" and the warmup ends within train.max_steps',
                              lambda s: _reached(_stable_start(s), s, False), (*_READS, "scheduler.decay_steps"))


@record
class SchedulerConfig(Section):
    SECTION: ClassVar[str] = "scheduler"

    name: str = setting("cosine", "LR schedule", choices=SCHEDULER_TYPES, enum=True, registry="scheduler")
    warmup_steps: int = setting(2000, "linear warmup length", unit="steps", ge=0, fix="use 0 for no warmup")
    decay_steps: int | None = setting(None, "decay length (unset = the remaining steps)", unit="steps", used=(
        Use(STARTUP, "the LR lambda compares the step with it when build_scheduler evaluates step 0",
            DECAY_AT_BUILD),
        Use(LOOP, "the LR lambda compares the step with it once the warmup is over", DECAY_IN_LOOP)))
    min_lr_ratio: float = setting(0.1, "final LR as a fraction of the peak", interval="[0, 1]", fix="e.g. 0.1")
    stable_steps: int | None = setting(None, "WSD: steps held at the peak LR", unit="steps", used=(
        Use(STARTUP, "build_scheduler does arithmetic with it", STABLE_AT_BUILD),
        Use(LOOP, "the LR lambda adds it to warmup_steps once the warmup is over", STABLE_IN_LOOP)))
    wsd_decay_type: str = setting("cosine", "WSD cooldown shape", choices=WSD_DECAY_TYPES, fix='use "cosine"')
    rex_alpha: float = setting(1.0, "REX exponent in (1 - t/T)^alpha", gt=0, fix="use 1.0")
