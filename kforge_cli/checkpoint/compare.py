"""Does this config build the model a checkpoint holds? Names and shapes, compared.

Pure Python: works on (name, shape) lists from the meta model and from
``kforge_cli.checkpoint.read_checkpoint``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field

from kforge_cli.records import record


@record
class CheckpointFit:
    missing: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    unexpected: list[tuple[str, tuple[int, ...] | None]] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...] | None]] = field(default_factory=list)
    matched: int = 0
    # Checkpoint entries standing in for a component kforge cannot build.
    stand_ins: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)


def compare(model: Sequence[tuple[str, tuple[int, ...]]], checkpoint: Mapping[str, tuple[int, ...] | None],
            unknown_prefixes: Iterable[str] = ()) -> CheckpointFit:
    prefixes = tuple(p.rstrip(".") + "." for p in unknown_prefixes)
    fit = CheckpointFit()
    model_shapes = dict(model)
    for name, shape in model:
        if name not in checkpoint:
            fit.missing.append((name, shape))
            continue
        saved = checkpoint[name]
        if saved is not None and tuple(saved) != tuple(shape):
            fit.mismatched.append((name, tuple(shape), tuple(saved)))
        else:
            fit.matched += 1
    for name, stored in checkpoint.items():
        if name in model_shapes:
            continue
        if prefixes and name.startswith(prefixes):
            if stored is not None:
                fit.stand_ins.append((name, tuple(stored)))
            continue
        fit.unexpected.append((name, stored))
    return fit
