"""What the training script resolves or uses after loading, from the field declarations.

Registry names declared ``looked_up=STARTUP`` are looked up when the trainer
starts; values the loader keeps as is (fields declaring ``used``) fail where
the trainer first uses them.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator
from typing import Any

from kforge_cli.config.fields import (
    Use,
    close_match,
    field_default,
    spec_of,
    value_kind,
)
from kforge_cli.config.job import JobConfig
from kforge_cli.config.registry import registry
from kforge_cli.findings import Finding, shown
from kforge_cli.records import record
from kforge_cli.rules.job import PIPELINE_UNSUPPORTED
from kforge_cli.rules.loading import INVALID_VALUE, WRONG_TYPE
from kforge_cli.rules.rule import STAGE_WORDS, STARTUP, WARNING, Subject


def startup_lookups() -> Iterator[tuple[str, str, str]]:
    """(section, field, registry category) of every field the trainer looks up at start-up."""
    hints = typing.get_type_hints(JobConfig)
    for section in dataclasses.fields(JobConfig):
        cls = hints[section.name]
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            continue
        for f in dataclasses.fields(cls):
            spec = spec_of(f)
            if spec.looked_up == STARTUP and spec.registry:
                yield section.name, f.name, spec.registry


def _lookup_check(section: str, name: str, category: str) -> Callable[[Subject], list[Finding]]:
    key = f"{section}.{name}"

    def check(s: Subject) -> list[Finding]:
        value = getattr(getattr(s.job, section), name)
        if (category, value) in registry:
            return []
        names = sorted(registry.list(category))
        close = close_match(value, names)
        return [INVALID_VALUE.finding(f"Unknown {category}: {shown(value)}. Available: {names}", key,
                                      f"did you mean {close!r}?" if close else f"use one of {names}")]

    check.__name__ = f"{category}_registered"
    check.__doc__ = f"{key} names a registered {category} (resolved when the trainer starts)."
    return check


for _section, _name, _category in startup_lookups():
    INVALID_VALUE.check(stage=STARTUP, reads=(f"{_section}.{_name}",))(_lookup_check(_section, _name, _category))


# -- values the loader keeps as is ------------------------------------------------------------------
#
# The reference's loader stores a value it does not convert (a list for a number, a number for a path)
# unchanged, and fails only where the trainer uses it. Fields declare those uses (``config.fields.Use``);
# each field gets one check per use that has a stage (an error there) and one warning check for a value
# no stage of this job uses. The value's own key is not among the reads: the loader marks it rejected so
# that checks which compare it skip it, while these are the checks that speak for it.


@record(frozen=True)
class HeldAsIs:
    """A field whose value of another type the loader keeps."""

    section: str
    name: str
    kinds: tuple[type, ...]
    kind: str  # "an integer"
    uses: tuple[Use, ...]
    default: Any

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    def reads(self, upto: Use | None = None) -> tuple[str, ...]:
        """The keys deciding whether ``upto`` (default: any use) is the use that happens."""
        keys: list[str] = []
        for use in self.uses:
            if use.when is not None:
                keys.extend(k for k in use.when.reads if k not in keys and k != self.key)
            if use is upto:
                break
        return tuple(keys)

    def value(self, s: Subject) -> Any:
        """The field's value when it is not of its declared type (else the sentinel _FITS)."""
        section = getattr(s.job, self.section, None)
        if section is None:
            return _FITS
        value = getattr(section, self.name, None)
        return _FITS if isinstance(value, self.kinds) else value

    def deciding_use(self, s: Subject) -> Use | None:
        """The first use that happens in this job (None: none does)."""
        for use in self.uses:
            try:
                if use.holds(s):
                    return use
            except (TypeError, ValueError, AttributeError):
                continue  # a condition over other mistyped values: that use cannot be judged
        return None


_FITS = object()


def held_as_is_fields() -> Iterator[HeldAsIs]:
    hints = typing.get_type_hints(JobConfig)
    for section in dataclasses.fields(JobConfig):
        cls = hints[section.name]
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            continue
        field_hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            spec = spec_of(f)
            if spec.used:
                kinds, kind = value_kind(field_hints[f.name])
                yield HeldAsIs(section.name, f.name, kinds, kind, spec.used, field_default(f))


def _shown_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else shown(value)


def _fix(field: HeldAsIs) -> str:
    fix = f"write {field.key} as {field.kind}"
    default = field.default
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        fix += f", e.g. {field.name} = {default!r}"
    elif isinstance(default, str):
        fix += f', e.g. {field.name} = "{default}"'
    return fix


def _used_check(field: HeldAsIs, use: Use) -> Callable[[Subject], list[Finding]]:
    def check(s: Subject) -> list[Finding]:
        value = field.value(s)
        if value is _FITS or field.deciding_use(s) is not use:
            return []
        where = f" ({use.when.text})" if use.when is not None else ""
        assert use.stage is not None
        return [WRONG_TYPE.finding(
            f"{field.key} = {_shown_value(value)} is not {field.kind}. The reference's loader keeps it as is, and "
            f"the trainer fails {STAGE_WORDS[use.stage]}: {use.does}{where}.", field.key, _fix(field),
            stage=use.stage)]

    check.__name__ = f"{field.section}_{field.name}_used_{use.stage or 'never'}".replace(" ", "_")
    check.__doc__ = f"{field.key} kept as is fails {STAGE_WORDS.get(use.stage or '', '')}: {use.does}."
    return check


def _unused_check(field: HeldAsIs) -> Callable[[Subject], list[Finding]]:
    def check(s: Subject) -> list[Finding]:
        value = field.value(s)
        if value is _FITS:
            return []
        deciding = field.deciding_use(s)
        if deciding is not None and deciding.stage is not None:
            return []
        if deciding is not None:
            why = deciding.does
        else:
            why = "; ".join(f"the trainer uses it only when {use.when.text} ({use.does})"
                            for use in field.uses if use.when is not None)
            why += ", which is not the case in this job"
        return [WRONG_TYPE.finding(
            f"{field.key} = {_shown_value(value)} is not {field.kind}; the reference's loader keeps it as is, and "
            f"no stage of this run uses it: {why}.", field.key, _fix(field), severity=WARNING)]

    check.__name__ = f"{field.section}_{field.name}_unused"
    check.__doc__ = f"{field.key} kept as is but never used in this job."
    return check


for _field in held_as_is_fields():
    for _use in _field.uses:
        if _use.stage is not None:
            WRONG_TYPE.check(stage=_use.stage, reads=_field.reads(_use))(_used_check(_field, _use))
    WRONG_TYPE.check(stage=None, reads=_field.reads())(_unused_check(_field))


# -- values the trainer's start-up refuses ------------------------------------------------------------

# np.random.seed (and with it _set_seed) accepts only this range.
SEED_LIMIT = 2**32


@INVALID_VALUE.check(stage=STARTUP, reads=("train.seed", "distributed.pp"))
def seed_within_numpy_range(s: Subject) -> list[Finding]:
    """init_distributed seeds NumPy with seed + pipeline rank, which must lie in [0, 2**32)."""
    seed, pp = s.job.train.seed, s.job.distributed.pp
    if not isinstance(seed, int) or not isinstance(pp, int):
        return []
    # Every rank of a multi-GPU job seeds with its pipeline rank added; a single GPU uses rank 0.
    last_rank = pp - 1 if (s.world_size or 1) > 1 and pp > 1 else 0
    if 0 <= seed and seed + last_rank < SEED_LIMIT:
        return []
    ranks = f" (pipeline ranks add up to {last_rank})" if last_rank else ""
    return [INVALID_VALUE.finding(
        f"train.seed = {shown(seed)}: init_distributed seeds torch, random and NumPy with train.seed + pipeline "
        f"rank{ranks}, and NumPy accepts only 0 <= seed < 2**32 (ValueError: Seed must be between 0 and "
        "2**32 - 1; past 2**64 torch.manual_seed already overflows)", "train.seed",
        f"use a seed between 0 and {SEED_LIMIT - 1 - last_rank}, e.g. train.seed = 42")]


def _adamw_role(name: Any) -> str | None:
    """How the optimizer reaches torch.optim.AdamW's checks (None: it does not)."""
    if name == "adamw":
        return "torch.optim.AdamW"
    if name == "muon":
        return "Muon's internal torch.optim.AdamW (for the 1-D parameters)"
    return None


@INVALID_VALUE.check(stage=STARTUP, reads=("optimizer.name", "optimizer.lr", "optimizer.muon_adam_lr"))
def adamw_accepts_lr(s: Subject) -> list[Finding]:
    """torch.optim.AdamW refuses a learning rate that is not >= 0 (NaN)."""
    opt = s.job.optimizer
    role = _adamw_role(opt.name)
    if role is None:
        return []
    key, lr = "optimizer.lr", opt.lr
    if opt.name == "muon" and opt.muon_adam_lr is not None:
        key, lr = "optimizer.muon_adam_lr", opt.muon_adam_lr
    if not isinstance(lr, (int, float)) or 0.0 <= lr:
        return []
    return [INVALID_VALUE.finding(
        f"{key} = {shown(lr)}: {role} is built with it as its learning rate and raises ValueError: Invalid "
        f"learning rate: {lr} (it needs lr >= 0)", key, f"set {key} to a positive number, e.g. 3e-4")]


@INVALID_VALUE.check(stage=STARTUP, reads=("optimizer.name", "optimizer.eps"))
def adamw_accepts_eps(s: Subject) -> list[Finding]:
    """torch.optim.AdamW refuses an epsilon that is not >= 0 (negative, -inf, NaN)."""
    opt = s.job.optimizer
    role = _adamw_role(opt.name)
    if role is None or not isinstance(opt.eps, (int, float)) or 0.0 <= opt.eps:
        return []
    return [INVALID_VALUE.finding(
        f"optimizer.eps = {shown(opt.eps)}: {role} raises ValueError: Invalid epsilon value: {opt.eps} (it needs "
        "eps >= 0; the config itself does not check it)", "optimizer.eps",
        "use a small positive epsilon, e.g. optimizer.eps = 1e-8")]


@WRONG_TYPE.check(stage=STARTUP, reads=("optimizer.name", "optimizer.betas"))
def adamw_betas_are_floats(s: Subject) -> list[Finding]:
    """torch.optim.AdamW wants both betas as floats; the loader keeps integers as written."""
    opt = s.job.optimizer
    role = _adamw_role(opt.name)
    betas = opt.betas
    if role is None or not isinstance(betas, (tuple, list)) or len(betas) != 2:
        return []
    if all(isinstance(b, float) for b in betas):
        return []
    written = "[" + ", ".join(_shown_value(b) for b in betas) + "]"
    fixed = "[" + ", ".join(repr(float(b)) for b in betas) + "]"
    return [WRONG_TYPE.finding(
        f"optimizer.betas = {written} holds an integer: the loader converts the array to a tuple without "
        f"converting its elements, and {role} raises ValueError: betas must be either both floats or both Tensors",
        "optimizer.betas", f"write the betas as floats: optimizer.betas = {fixed}")]


@PIPELINE_UNSUPPORTED.check(stage=STARTUP, reads=("distributed.pp", "distributed.pp_schedule",
                                                  "train.grad_accum_steps", "vlm.arch"))
def pipeline_schedule_builds(s: Subject) -> list[Finding]:
    """build_pipeline_schedule: one stage per rank, and 1F1B needs a micro-batch per stage."""
    job = s.job
    pp, schedule, micro = job.distributed.pp, job.distributed.pp_schedule, job.train.grad_accum_steps
    if job.vlm is not None or not isinstance(pp, int) or pp <= 1:
        return []
    if schedule == "interleaved_1f1b":
        return [PIPELINE_UNSUPPORTED.finding(
            f'distributed.pp_schedule = "interleaved_1f1b" with distributed.pp = {pp}: the trainer builds one '
            "PipelineStage per rank, and build_pipeline_schedule raises ValueError: interleaved_1f1b schedule "
            "requires a list of PipelineStage objects (multiple stages per rank for virtual pipeline stages)",
            "distributed.pp_schedule", 'use pp_schedule = "1f1b" or "gpipe"')]
    if schedule == "1f1b" and isinstance(micro, int) and micro < pp:
        return [PIPELINE_UNSUPPORTED.finding(
            f"train.grad_accum_steps = {micro} micro-batches for distributed.pp = {pp} stages: the pipeline "
            "schedule splits each step's batch into grad_accum_steps micro-batches, and torch's Schedule1F1B "
            f"raises ValueError: Number of microbatches ({micro}) must be greater than or equal to the number "
            f"of stages ({pp})", "train.grad_accum_steps",
            f"set train.grad_accum_steps to at least {pp} (lower train.batch_size to keep the global batch), "
            'or use distributed.pp_schedule = "gpipe"')]
    return []
