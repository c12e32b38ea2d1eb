"""safetensors files: names and shapes from the JSON header; the tensor bytes are never read.

Layout: an 8-byte little-endian header length, the JSON header (name ->
``{"dtype", "shape", "data_offsets": [begin, end]}``, plus an optional
``__metadata__``), then the data section the offsets index into.
"""

from __future__ import annotations

import struct

from kforge_cli.checkpoint import limits
from kforge_cli.checkpoint.allow_list import MalformedPickleError, as_shape
from kforge_cli.checkpoint.errors import (
    CheckpointError,
    CheckpointLimitError,
    clip,
)
from kforge_cli.checkpoint.safe_io import (
    ReadBudget,
    file_size,
    open_regular,
    read_exactly,
    size_text,
)
from kforge_cli.checkpoint.safe_json import load_json
from kforge_cli.findings import shown

_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "C64": 8,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
}
_HINT_CORRUPT = "the file is corrupt or not a safetensors file"
_HINT_CUT = "the copy or the save was cut short"


def looks_like_safetensors(head: bytes) -> bool:
    # 8-byte header length, then the JSON header. Torch zips have a small
    # compression code there, legacy torch pickles part of their magic number.
    return len(head) >= 9 and head[8:9] == b"{"


def safetensors_header(path: str, budget: ReadBudget | None = None
                       ) -> dict[str, tuple[int, ...]]:
    """Name -> shape, in header order; the header's bytes are spent from ``budget``."""
    with open_regular(path, "safetensors file") as handle:
        size = file_size(handle)
        prefix = read_exactly(handle, 8, path, "safetensors file")
        if len(prefix) < 8:
            raise CheckpointError(f"{path} is truncated: {size} bytes, too short for a "
                                  "safetensors header", hint=_HINT_CUT)
        (header_len,) = struct.unpack("<Q", prefix)
        cap = limits.MAX_SAFETENSORS_HEADER_BYTES
        if header_len > cap:
            raise CheckpointLimitError(f"{path}: safetensors header size {header_len} is absurd "
                                       f"(limit {size_text(cap)})", "MAX_SAFETENSORS_HEADER_BYTES",
                                       hint=_HINT_CORRUPT)
        if budget is not None:
            budget.spend(header_len)
        if 8 + header_len > size:
            raise CheckpointError(f"{path} is truncated: the header claims {header_len} bytes "
                                  f"but the file has {size}", hint=_HINT_CUT)
        raw = read_exactly(handle, header_len, path, "safetensors file")
    if len(raw) < header_len:
        raise CheckpointError(f"{path} is truncated: the header claims {header_len} bytes "
                              f"but only {len(raw)} could be read", hint=_HINT_CUT)
    header = load_json(raw, path, "the safetensors header of", unique_keys=True)
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object",
                              hint=_HINT_CORRUPT)
    if len(header) > limits.MAX_ENTRIES:
        raise CheckpointLimitError(f"{path}: the safetensors header lists {len(header):,} "
                                   f"tensors, more than the {limits.MAX_ENTRIES:,} kforge reads",
                                   "MAX_ENTRIES")
    data_len = size - 8 - header_len
    shapes: dict[str, tuple[int, ...]] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        try:
            shape = as_shape(spec["shape"])
            begin, end = spec["data_offsets"]
            dtype = spec["dtype"]
        except (TypeError, KeyError, ValueError, MalformedPickleError):
            raise CheckpointError(f"{path}: malformed safetensors header entry "
                                  f"{shown(name)}") from None
        if type(begin) is not int or type(end) is not int or not 0 <= begin <= end \
                or not isinstance(dtype, str):
            raise CheckpointError(f"{path}: malformed dtype or data offsets for {shown(name)}")
        if end > data_len:
            raise CheckpointError(f"{path} is truncated: {clip(name)} ends at byte "
                                  f"{shown(end)} of a {data_len}-byte data section",
                                  hint=_HINT_CUT)
        itemsize = _ITEMSIZE.get(dtype)
        numel = 1
        for dim in shape:
            numel *= dim
        if itemsize is not None and end - begin != numel * itemsize:
            raise CheckpointError(f"{path}: {clip(name)} has shape {list(shape)} ({clip(dtype, 20)}) but "
                                  f"{end - begin} bytes of data", hint="the file is corrupt")
        shapes[name] = shape
    return shapes
