"""``suggest``: the cheapest config changes that make a job fit.

Candidates are the knobs that trade speed for memory without changing the
model: activation checkpointing, micro-batch size (keeping the global batch
by raising grad_accum_steps), tensor and pipeline parallel degrees (dp_shard
re-resolved). Each candidate is predicted with the same model as the job;
those that fit and that the caller's ``is_valid`` accepts are returned,
fastest first by the model-FLOPs speed estimate of ``throughput.relative_speed``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from kforge_cli.fit.gpus import GPU
from kforge_cli.fit.layout import LayoutError, resolve_layout
from kforge_cli.fit.memory import ParamLike
from kforge_cli.fit.predict import frozen_names, predict
from kforge_cli.fit.throughput import relative_speed
from kforge_cli.records import record

Overrides = list[str]


@record
class Suggestion:
    overrides: Overrides  # dotted KEY=VALUE, the trainer's --set form
    peak_gib: float
    high_gib: float
    verdict: str
    relative_speed: float  # vs the job as written (1.0 = as fast)
    world_size: int | None = None  # set when the change is more GPUs, not a config edit


def apply_overrides(job: Any, overrides: Sequence[str]) -> Any:
    """A copy of ``job`` with dotted ``section.field=value`` overrides set (values already typed).

    Only the sections an override touches are copied; the job's other sections are shared, read-only.
    """
    changed = copy.copy(job)
    copied: set[str] = set()
    for item in overrides:
        key, _, text = item.partition("=")
        section_name, _, field_name = key.partition(".")
        if section_name not in copied:
            object.__setattr__(changed, section_name, copy.copy(getattr(job, section_name)))
            copied.add(section_name)
        section = getattr(changed, section_name)
        current = getattr(section, field_name)
        value: Any = text
        if isinstance(current, bool):
            value = text.lower() == "true"
        elif isinstance(current, int):
            value = int(text)
        setattr(section, field_name, value)
    return changed


def _candidates(job: Any, world_size: int) -> list[Overrides]:
    train, dist, model = job.train, job.distributed, job.model
    out: list[Overrides] = []
    mode = getattr(train.activation_checkpointing, "value", train.activation_checkpointing)
    ac_options = [m for m in ("selective", "full") if m != mode and not (mode == "full" and m == "selective")]
    batch_options: list[Overrides] = []
    batch, accum = int(train.batch_size), int(train.grad_accum_steps)
    while batch > 1:
        batch //= 2
        accum *= 2
        batch_options.append([f"train.batch_size={batch}", f"train.grad_accum_steps={accum}"])
    # The other way, same tokens per step: with grad_accum_steps > 1 FSDP2 keeps an unsharded
    # fp32 copy of every gradient between micro-batches, which one larger micro-batch avoids.
    batch, accum = int(train.batch_size), int(train.grad_accum_steps)
    if accum > 1:
        batch_options.append([f"train.batch_size={batch * accum}", "train.grad_accum_steps=1"])
    tp_options: list[Overrides] = []
    heads, kv = int(model.n_heads), int(model.n_kv_heads if model.n_kv_heads is not None else model.n_heads)
    for tp in (2, 4, 8):
        if tp > int(dist.tp) and heads % tp == 0 and kv % tp == 0 and world_size % tp == 0:
            tp_options.append([f"distributed.tp={tp}", "distributed.dp_shard=-1"])
    pp_options: list[Overrides] = []
    if getattr(job, "vlm", None) is None and not int(model.num_experts or 0) and not model.tie_embeddings:
        for pp in (2, 4, 8):
            if pp > int(dist.pp) and pp <= int(model.n_layers) and world_size % pp == 0:
                extra = [] if int(train.grad_accum_steps) >= pp else [f"train.grad_accum_steps={pp}"]
                pp_options.append([f"distributed.pp={pp}", "distributed.dp_shard=-1", *extra])
    singles = [[f"train.activation_checkpointing={m}"] for m in ac_options] + batch_options + tp_options + pp_options
    out.extend(singles)
    for ac in ac_options:
        for other in batch_options + tp_options + pp_options:
            out.append([f"train.activation_checkpointing={ac}", *other])
    for tp_change in tp_options:
        for other in batch_options:
            out.append([*tp_change, *other])
    return out


def suggest(job: Any, params: Sequence[ParamLike], *, gpu: GPU, world_size: int,
            is_valid: Callable[[Overrides], bool] = lambda overrides: True, limit: int = 5,
            frozen: set[str] | None = None) -> list[Suggestion]:
    """Changes after which the job is predicted to fit (optimistic bound included), fastest first.

    No candidate touches the model or its freeze specs, so the frozen set is computed once.
    """
    if frozen is None:
        frozen = frozen_names(job, params)
    base_layout = resolve_layout(job, world_size)
    base_speed = relative_speed(job, base_layout)
    fitting: list[Suggestion] = []
    for overrides in _candidates(job, world_size):
        try:
            changed = apply_overrides(job, overrides)
            result = predict(changed, params, gpu=gpu, world_size=world_size, frozen=frozen)
        except (LayoutError, ValueError, AttributeError):
            continue
        if result.verdict != "fits":
            continue
        speed = relative_speed(changed, result.layout) / base_speed
        fitting.append(Suggestion(overrides, result.memory.peak_gib, result.memory.high_gib, result.verdict, speed))
    fitting.sort(key=lambda s: (-round(s.relative_speed, 3), len(s.overrides), s.peak_gib))
    # is_valid runs the whole of validate: ask it only about the candidates that would be shown.
    found: list[Suggestion] = []
    for candidate in fitting:
        if len(found) == limit:
            break
        if is_valid(candidate.overrides):
            found.append(candidate)
    if not found:
        more = _more_gpus(job, params, gpu=gpu, world_size=world_size, frozen=frozen)
        if more is not None:
            found.append(more)
    return found[:limit]


def _more_gpus(job: Any, params: Sequence[ParamLike], *, gpu: GPU, world_size: int,
               frozen: set[str]) -> Suggestion | None:
    """The smallest multiple of the world size (up to 16x) on which the job as written fits."""
    if int(job.distributed.dp_shard) != -1:
        return None  # an explicit dp_shard pins the world size
    for factor in (2, 4, 8, 16):
        try:
            result = predict(job, params, gpu=gpu, world_size=world_size * factor, frozen=frozen)
        except (LayoutError, ValueError):
            continue
        if result.verdict == "fits":
            return Suggestion([], result.memory.peak_gib, result.memory.high_gib, result.verdict, 1.0,
                              world_size=world_size * factor)
    return None
