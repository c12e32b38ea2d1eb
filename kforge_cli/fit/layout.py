"""How the trainer lays a job out over ``world_size`` GPUs (mesh, FSDP, TP flavour, PP stages).

Every fact cites the reference (KempnerForge 5666d0d) or the torch sources it
runs on (uv.lock pins torch 2.11; line numbers are from torch 2.13's files).
"""

from __future__ import annotations

from typing import Any

from kforge_cli.records import record


class LayoutError(ValueError):
    """The job's parallel degrees cannot be laid out on this many GPUs (the trainer refuses it)."""

    def __init__(self, message: str, key: str = "distributed") -> None:
        super().__init__(message)
        self.key = key


@record(frozen=True)
class Layout:
    world_size: int
    dp_replicate: int
    dp_shard: int
    tp: int
    pp: int
    ep: int
    cp: int
    # Facts derived from the mesh the trainer builds (filled by resolve_layout).
    mesh_dims: tuple[str, ...]
    fsdp: bool
    fsdp_shard: int
    sequence_parallel: bool

    @property
    def dp_size(self) -> int:
        """Data-parallel ranks: each sees its own batch (scripts/train.py:880 tokens_in_step)."""
        return self.dp_replicate * self.dp_shard

    def as_dict(self) -> dict[str, int]:
        return {"dp_replicate": self.dp_replicate, "dp_shard": self.dp_shard, "tp": self.tp,
                "pp": self.pp, "ep": self.ep, "cp": self.cp}


def _int(section: Any, name: str, default: int) -> int:
    value = getattr(section, name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise LayoutError(f"distributed.{name} must be an integer (got {value!r})", f"distributed.{name}")
    return value


def resolve_layout(job: Any, world_size: int) -> Layout:
    """The trainer's layout for ``job`` on ``world_size`` GPUs, or ``LayoutError``.

    dp_shard=-1 resolves to world_size / (dp_replicate*tp*pp*cp*ep) and the
    product must equal world_size (kempnerforge/config/distributed.py:29-49).
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise LayoutError(f"world size must be a positive integer (got {world_size!r})", "world_size")
    dist = getattr(job, "distributed", None)
    dp_replicate = _int(dist, "dp_replicate", 1)
    tp = _int(dist, "tp", 1)
    pp = _int(dist, "pp", 1)
    cp = _int(dist, "cp", 1)
    ep = _int(dist, "ep", 1)
    dp_shard = _int(dist, "dp_shard", -1)
    for name, value in (("dp_replicate", dp_replicate), ("tp", tp), ("pp", pp), ("cp", cp), ("ep", ep)):
        if value < 1:
            raise LayoutError(f"distributed.{name} must be >= 1 (got {value})", f"distributed.{name}")
    other = dp_replicate * tp * pp * cp * ep
    if dp_shard == -1:
        if world_size % other:
            raise LayoutError(
                f"world size {world_size} is not divisible by dp_replicate*tp*pp*cp*ep = {other}",
                "distributed.dp_shard")
        dp_shard = world_size // other
    elif dp_shard < 1:
        raise LayoutError(f"distributed.dp_shard must be -1 or positive (got {dp_shard})", "distributed.dp_shard")
    if other * dp_shard != world_size:
        raise LayoutError(
            f"dp_replicate*dp_shard*tp*pp*cp*ep = {other * dp_shard} does not match world size {world_size}",
            "distributed.dp_shard")

    # Mesh: only degrees > 1, in the order pp, dp_replicate, dp_shard, ep, tp; dp_shard
    # is forced in (size 1) whenever TP or EP is on, so FSDP2 still wraps every
    # parameter as a DTensor; an all-ones mesh on >1 GPU becomes a flat dp_shard;
    # one GPU builds no mesh at all (kempnerforge/distributed/setup.py:154-158, 211-245).
    dims: list[str] = []
    if world_size > 1:
        for name, size in (("pp", pp), ("dp_replicate", dp_replicate), ("dp_shard", dp_shard),
                           ("ep", ep), ("tp", tp)):
            if size > 1:
                dims.append(name)
        if (tp > 1 or ep > 1) and "dp_shard" not in dims:
            dims.insert(next((dims.index(d) for d in ("ep", "tp") if d in dims), len(dims)), "dp_shard")
        if not dims:
            dims = ["dp_shard"]
    # FSDP2 is applied whenever the mesh has a dp dimension (parallel.py:281-283,
    # 326-327); a replicate-only mesh is 1-D, so fully_shard shards over it
    # (parallel.py:61-64 returns device_mesh["dp_replicate"]).
    fsdp = "dp_shard" in dims or "dp_replicate" in dims
    if "dp_shard" in dims:
        fsdp_shard = dp_shard
    elif "dp_replicate" in dims:
        fsdp_shard = dp_replicate
    else:
        fsdp_shard = 1
    # SequenceParallel only outside pipeline stages, without tied embeddings and
    # without MoE (kempnerforge/distributed/tensor_parallel.py:122-129).
    model = getattr(job, "model", None)
    tie = bool(getattr(model, "tie_embeddings", False))
    is_moe = (getattr(model, "num_experts", 0) or 0) > 0
    sequence_parallel = tp > 1 and pp == 1 and not tie and not is_moe
    return Layout(world_size, dp_replicate, dp_shard, tp, pp, ep, cp, tuple(dims), fsdp, fsdp_shard,
                  sequence_parallel)


def smallest_world_size(job: Any) -> int | None:
    """The fewest GPUs the job's degrees take: their product, with dp_shard = -1 resolving to 1."""
    dist = getattr(job, "distributed", None)
    try:
        degrees = [_int(dist, name, 1) for name in ("dp_replicate", "tp", "pp", "cp", "ep")]
        dp_shard = _int(dist, "dp_shard", -1)
    except LayoutError:
        return None
    if any(d < 1 for d in degrees):
        return None
    product = 1
    for degree in degrees:
        product *= degree
    return product * (dp_shard if dp_shard > 0 else 1)


def stage_layer_ranges(n_layers: int, pp: int) -> list[tuple[int, int]]:
    """Layers per pipeline stage: even split, earlier stages take the remainder
    (kempnerforge/distributed/pipeline_parallel.py:255-288)."""
    if pp > n_layers:
        raise LayoutError(f"distributed.pp ({pp}) exceeds model.n_layers ({n_layers})", "distributed.pp")
    base, remainder = divmod(n_layers, pp)
    ranges, start = [], 0
    for stage in range(pp):
        count = base + (1 if stage < remainder else 0)
        ranges.append((start, start + count))
        start += count
    return ranges
