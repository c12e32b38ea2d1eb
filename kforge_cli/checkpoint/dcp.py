"""torch.distributed.checkpoint (DCP) directories: names and shapes from ``.metadata``.

The ``.metadata`` pickle maps each saved name to a ``TensorStorageMetadata``
(global size, chunks) or ``BytesStorageMetadata`` (a non-tensor), and each
chunk to a byte range of a ``.distcp`` shard. The shards are never opened:
their sizes are checked against those ranges to catch truncated copies.
"""

from __future__ import annotations

import os
from typing import Any

from kforge_cli.checkpoint import limits
from kforge_cli.checkpoint.allow_list import MalformedPickleError, Record, as_shape
from kforge_cli.checkpoint.errors import (
    CheckpointError,
    CheckpointLimitError,
    clip,
)
from kforge_cli.checkpoint.manifest import Entries
from kforge_cli.checkpoint.safe_io import (
    base_name,
    is_safe_relative,
    os_error,
    read_bounded,
)
from kforge_cli.checkpoint.safe_pickle import unpickle
from kforge_cli.findings import shown

DCP_METADATA_FILE = ".metadata"


def dcp_entries(dcp_dir: str) -> Entries:
    """(name, shape) of everything one DCP save holds; shape None for non-tensors."""
    path = os.path.join(dcp_dir, DCP_METADATA_FILE)
    data = read_bounded(path, limits.MAX_PICKLE_BYTES, "DCP metadata", "MAX_PICKLE_BYTES")
    metadata = unpickle(data, path, allow_storages=False, what="a DCP .metadata file")[0]
    items = metadata.fields.get("state_dict_metadata") if is_record(metadata, "Metadata") \
        else None
    if type(items) is not dict:
        raise CheckpointError(f"{path} is not a DCP .metadata file (no state_dict_metadata)",
                              hint="the file may be from an unsupported DCP storage plugin")
    entries: Entries = []
    for name, item in items.items():
        if type(name) is not str:
            raise CheckpointError(f"{path} is malformed: entry name {shown(name, 60)}")
        if is_record(item, "TensorStorageMetadata"):
            try:
                entries.append((name, as_shape(item.fields.get("size"))))
            except MalformedPickleError as exc:
                raise CheckpointError(f"{path} is malformed: {clip(name)}: "
                                      f"{exc.message}") from None
        elif is_record(item, "BytesStorageMetadata"):
            entries.append((name, None))
        else:
            raise CheckpointError(f"{path} is malformed: {clip(name)} has no storage "
                                  "metadata")
    _check_shards(dcp_dir, metadata.fields.get("storage_data"))
    return entries


def merge_stages(stages: list[str]) -> tuple[Entries, list[str]]:
    """Entries of every pipeline stage (``ppK`` directories), each name once; and notes."""
    merged: Entries = []
    seen: dict[str, tuple[str, tuple[int, ...] | None]] = {}
    for stage in stages:
        for name, shape in dcp_entries(stage):
            if name in seen:
                first_stage, first_shape = seen[name]
                if shape is not None and first_shape is not None and shape != first_shape:
                    raise CheckpointError(
                        f"pipeline stages disagree on {clip(name)}: "
                        f"{list(first_shape)} in {first_stage}, {list(shape)} in "
                        f"{base_name(stage)}",
                        hint="the stages come from different runs; re-save the checkpoint")
                continue
            seen[name] = (base_name(stage), shape)
            merged.append((name, shape))
    notes = []
    numbers = [int(base_name(s)[len("pp"):]) for s in stages]
    if numbers != list(range(len(numbers))):
        notes.append(f"pipeline stages {', '.join(base_name(s) for s in stages)} are not "
                     "numbered 0..K-1; a stage may be missing")
    notes.append(f"merged {len(stages)} pipeline stages "
                 f"({', '.join(base_name(s) for s in stages)})")
    return merged, notes


def _check_shards(dcp_dir: str, storage_data: Any) -> None:
    """Every byte range the metadata points at must exist: catches truncated shards."""
    if type(storage_data) is not dict:
        return
    needed: dict[str, int] = {}
    for info in storage_data.values():
        if not is_record(info, "_StorageInfo"):
            return  # a storage plugin we do not know; nothing to check against
        rel, offset, length = (info.fields.get(k) for k in ("relative_path", "offset", "length"))
        if type(rel) is not str or type(offset) is not int or type(length) is not int \
                or offset < 0 or length < 0 or len(rel) > limits.MAX_SHARD_PATH_CHARS \
                or not is_safe_relative(rel):
            raise CheckpointError(f"{dcp_dir}/{DCP_METADATA_FILE} is malformed: bad shard "
                                  f"record {shown(rel)}")
        end = offset + length
        if end > needed.get(rel, 0):
            needed[rel] = end
    if len(needed) > limits.MAX_SHARDS:
        raise CheckpointLimitError(f"{dcp_dir}/{DCP_METADATA_FILE} names {len(needed):,} shard "
                                   f"files, more than the {limits.MAX_SHARDS:,} kforge checks",
                                   "MAX_SHARDS")
    for rel, end in sorted(needed.items()):
        shard = os.path.join(dcp_dir, rel)
        try:
            size = os.stat(shard).st_size
        except FileNotFoundError:
            raise CheckpointError(f"{shard} is missing: the checkpoint is incomplete",
                                  hint="the save was interrupted or files were deleted") from None
        except OSError as exc:
            raise os_error(exc, shard, "DCP shard") from None
        if size < end:
            raise CheckpointError(f"{shard} is truncated ({size} bytes, the metadata needs "
                                  f"{shown(end)})", hint="the copy or the save was cut short")


def is_record(value: Any, kind: str) -> bool:
    return isinstance(value, Record) and value.kind == kind
