"""torch.save files: the zip archive (torch >= 1.6) and the legacy stream of pickles.

Only the pickle is read (``<name>/data.pkl`` in the archive; the object pickle
of the legacy stream), through :mod:`kforge_cli.checkpoint.safe_pickle`; the
storages it names are checked for presence and size, never read.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from typing import Any, BinaryIO

from kforge_cli.checkpoint import limits
from kforge_cli.checkpoint.allow_list import StorageRef, TensorStub
from kforge_cli.checkpoint.errors import (
    CheckpointError,
    CheckpointLimitError,
    clip,
)
from kforge_cli.checkpoint.manifest import Entries
from kforge_cli.checkpoint.safe_io import (
    HINT_INPUTS,
    ReadBudget,
    file_size,
    open_regular,
    read_exactly,
    size_text,
)
from kforge_cli.checkpoint.safe_pickle import unpickle
from kforge_cli.findings import shown

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
ZIP_MAGIC = b"PK\x03\x04"

_ITEMSIZE = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "complex128": 16,
    "complex64": 8, "complex32": 4, "int64": 8, "int32": 4, "int16": 2, "int8": 1,
    "uint64": 8, "uint32": 4, "uint16": 2, "uint8": 1, "bool": 1, "qint32": 4,
}
# State dicts nest a few levels ({"model": {...}}, optimizer state by index).
_MAX_STATE_DICT_DEPTH = 32

# What zipfile raises on a damaged archive (RuntimeError: "encrypted",
# NotImplementedError: unknown version or compression).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, LookupError,
               RuntimeError, OverflowError, struct.error)


def torch_file_entries(path: str, head: bytes, notes: list[str],
                       budget: ReadBudget | None = None) -> tuple[Entries, bool] | None:
    """(entries, is a {"model": ...} container) of a torch.save file, or None when
    ``head`` is neither format. The pickle's bytes are spent from ``budget``."""
    if head.startswith(ZIP_MAGIC):
        return _zip_entries(path, budget)
    # Protocol 2+ pickles open with PROTO (0x80); protocols 0/1 with GLOBAL or MARK.
    if head[:1] == b"\x80" or head[:1] in (b"c", b"("):
        found = _legacy_entries(path, budget)
        notes.append("legacy (pre-1.6) torch.save format")
        return found
    return None


# --- the zip archive ---------------------------------------------------------------

def _zip_entries(path: str, budget: ReadBudget | None) -> tuple[Entries, bool]:
    with open_regular(path, "torch checkpoint") as handle:
        _check_zip_directory(handle, path)
        try:
            archive = zipfile.ZipFile(handle)
        except _ZIP_ERRORS as exc:
            raise CheckpointError(f"{path} is a truncated or corrupt zip archive "
                                  f"({_zip_problem(exc)})",
                                  hint="the copy or the save was cut short") from None
        with archive:
            try:
                return _zip_contents(path, archive, budget)
            except _ZIP_ERRORS as exc:
                raise CheckpointError(f"{path} is a truncated or corrupt zip archive "
                                      f"({_zip_problem(exc)})",
                                      hint="the copy or the save was cut short") from None


def _zip_problem(exc: BaseException) -> str:
    return clip(str(exc), 160) or type(exc).__name__


_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")


def _check_zip_directory(handle: BinaryIO, path: str) -> None:
    """Refuse an archive whose central directory lists more members than a state
    dict could have, or is larger than their names need, before zipfile reads it
    whole and builds an object for each member."""
    size = file_size(handle)
    tail_size = min(size, _EOCD.size + 65535)
    try:
        handle.seek(size - tail_size)
    except OSError:
        return
    tail = read_exactly(handle, tail_size, path, "torch checkpoint")
    handle.seek(0)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        return  # zipfile reports the damage
    _, _, _, _, members, directory_size, _, _ = _EOCD.unpack_from(tail, at)
    if members == 0xFFFF or directory_size == 0xFFFFFFFF:
        locator_at = at - _EOCD64_LOCATOR.size
        if locator_at < 0:
            return
        magic, _, eocd64_offset, _ = _EOCD64_LOCATOR.unpack_from(tail, locator_at)
        if magic != b"PK\x06\x07" or eocd64_offset + _EOCD64.size > size:
            return
        handle.seek(eocd64_offset)
        record = read_exactly(handle, _EOCD64.size, path, "torch checkpoint")
        handle.seek(0)
        if len(record) < _EOCD64.size or record[:4] != b"PK\x06\x06":
            return
        # Entries in, and bytes of, the whole central directory.
        members, directory_size = _EOCD64.unpack(record)[7:9]
    if members > limits.MAX_ENTRIES + 16:
        raise CheckpointLimitError(f"{path} is a zip archive of {members:,} members, more than "
                                   f"a state dict of {limits.MAX_ENTRIES:,} entries needs",
                                   "MAX_ENTRIES")
    if directory_size > limits.MAX_ZIP_DIRECTORY_BYTES:
        raise CheckpointLimitError(f"{path} has a {size_text(directory_size)} zip directory, "
                                   f"more than the {size_text(limits.MAX_ZIP_DIRECTORY_BYTES)} "
                                   "kforge reads", "MAX_ZIP_DIRECTORY_BYTES")


def _zip_contents(path: str, archive: zipfile.ZipFile, budget: ReadBudget | None
                  ) -> tuple[Entries, bool]:
    infos = {info.filename: info for info in archive.infolist()}
    pickles = [n for n in infos if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in infos):
            raise CheckpointError(f"{path} is a TorchScript module (torch.jit.save), "
                                  "not a state dict",
                                  hint="save model.state_dict() with torch.save instead")
        raise CheckpointError(f"{path} is a zip archive but not a torch.save file "
                              f"({'no' if not pickles else 'several'} data.pkl)",
                              hint=HINT_INPUTS)
    root = pickles[0][: -len("data.pkl")]
    if f"{root}constants.pkl" in infos:
        raise CheckpointError(f"{path} is a TorchScript module (torch.jit.save), not a state dict",
                              hint="save model.state_dict() with torch.save instead")
    info = infos[pickles[0]]
    cap = limits.MAX_PICKLE_BYTES
    if info.file_size > cap:
        raise CheckpointLimitError(f"{path}: its data.pkl is {size_text(info.file_size)}, over "
                                   f"the {size_text(cap)} limit", "MAX_PICKLE_BYTES")
    with archive.open(info) as member:
        # The size in the directory is a claim; the read is what is bounded.
        data = member.read(cap + 1)
    if len(data) > cap:
        raise CheckpointLimitError(f"{path}: data.pkl inflates past the {size_text(cap)} limit",
                                   "MAX_PICKLE_BYTES")
    if budget is not None:
        budget.spend(len(data))
    obj, storages, _ = unpickle(data, path, allow_storages=True, what="a torch.save file")
    for ref in storages:
        record = infos.get(f"{root}data/{ref.key}")
        needed = ref.numel * _ITEMSIZE.get(ref.dtype, 1)
        if record is None or record.file_size < needed:
            raise CheckpointError(f"{path} is truncated or corrupt: tensor storage "
                                  f"{clip(ref.key, 40)} is "
                                  f"{'missing' if record is None else 'short'}",
                                  hint="the copy or the save was cut short")
    return state_dict_entries(obj, path)


# --- the legacy stream ----------------------------------------------------------------

def _legacy_entries(path: str, budget: ReadBudget | None) -> tuple[Entries, bool]:
    """The pre-1.6 format: magic, protocol, sys_info and the object as consecutive
    pickles, then the storage keys, then the raw storages."""
    cap = limits.MAX_PICKLE_BYTES
    with open_regular(path, "torch checkpoint") as handle:
        size = file_size(handle)
        # The pickles come first and are bounded by the cap together; any
        # storage bytes read along with them are ignored.
        data = read_exactly(handle, min(size, cap), path, "torch checkpoint")
    # When the file is longer than the cap, a pickle running off the end of
    # what was read is over the cap, not truncated.
    cut = len(data) < size

    def load(pos: int, allow_storages: bool = False) -> tuple[Any, list[StorageRef], int]:
        return unpickle(data, path, allow_storages=allow_storages, what="a torch.save file",
                        pos=pos, cut_at_cap=cut)

    magic, _, pos = load(0)
    if type(magic) is not int or magic != _LEGACY_MAGIC:
        raise CheckpointError(f"{path} is a pickle but not a torch.save checkpoint",
                              hint=HINT_INPUTS)
    protocol, _, pos = load(pos)
    if type(protocol) is not int or protocol != _LEGACY_PROTOCOL:
        raise CheckpointError(f"{path}: unsupported torch.save protocol "
                              f"{shown(protocol, 20)}")
    _, _, pos = load(pos)  # sys_info
    obj, storages, pos = load(pos, allow_storages=True)
    keys, _, pos = load(pos)
    if budget is not None:
        budget.spend(pos)
    if type(keys) is not list or not all(type(k) is str for k in keys):
        raise CheckpointError(f"{path} is corrupt: bad storage key list")
    # Each storage follows as an 8-byte element count and its bytes.
    by_key: dict[str, StorageRef] = {}
    for ref in storages:
        by_key.setdefault(ref.key, ref)
    needed = pos
    for key in keys:
        found = by_key.get(key)
        needed += 8 + (found.numel * _ITEMSIZE.get(found.dtype, 1) if found else 0)
    if size < needed:
        raise CheckpointError(f"{path} is truncated ({size} bytes, its storages need "
                              f"{shown(needed)})", hint="the copy or the save was cut short")
    return state_dict_entries(obj, path)


# --- the unpickled object -----------------------------------------------------------------

def state_dict_entries(obj: Any, path: str) -> tuple[Entries, bool]:
    """(dotted name, shape) of every leaf of a (nested) state dict.

    Each dict is walked once per path that reaches it, so a file that shares
    one dict under many keys is cut off at MAX_ENTRIES rather than expanded.
    """
    if isinstance(obj, TensorStub) or not isinstance(obj, dict):
        kind = "tensor" if isinstance(obj, TensorStub) else type(obj).__name__
        raise CheckpointError(f"{path} holds a {kind}, not a state dict",
                              hint="save model.state_dict() (or {'model': model.state_dict()})")
    container = isinstance(obj.get("model"), dict)
    entries: Entries = []
    cap = limits.MAX_ENTRIES
    # Work list of (prefix, mapping's items iterator, ids of the dicts on this path).
    pending: list[tuple[str, Any, frozenset[int]]] = [("", iter(obj.items()), frozenset({id(obj)}))]
    while pending:
        prefix, items, on_path = pending[-1]
        step = next(items, None)
        if step is None:
            pending.pop()
            continue
        key, value = step
        name = f"{prefix}{_key_text(key)}"
        if len(entries) >= cap:
            raise CheckpointLimitError(f"{path} holds more than {cap:,} entries", "MAX_ENTRIES")
        if isinstance(value, TensorStub):
            entries.append((name, value.shape))
        elif isinstance(value, dict) and value and len(pending) < _MAX_STATE_DICT_DEPTH \
                and id(value) not in on_path and len(name) <= limits.MAX_NAME_CHARS:
            pending.append((name + ".", iter(value.items()), on_path | {id(value)}))
        else:
            entries.append((name, None))
    return entries, container


def _key_text(key: Any) -> str:
    # Keys are strings, bytes, numbers, None or stand-ins (check_key); only
    # strings and integers appear in real state dicts.
    if type(key) is str:
        return key
    if type(key) is int:
        return shown(key, 80)
    return shown(key, 40)
