"""Hostile checkpoints, built at test time: each one once cost kforge minutes, gigabytes or a crash.

Every builder takes a scratch directory and a clean ``step_N`` directory to
tamper with, and returns the path to pass as ``--model-ckpt``. ``ATTACKS``
lists them with what kforge must do: refuse the checkpoint (KF505) or read
it and give its usual verdict. ``row`` ties an attack to the row of the
issue-13 table it reproduces. At least one attack per row (``e2e``) runs end
to end through the CLI under time and memory limits
(test_checkpoint_bounds.py); all but the slow ones also run in-process.
Pickles are written opcode by opcode; nothing here is unpickled by the tests.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# --- pickle opcodes ------------------------------------------------------------------

PROTO2 = b"\x80\x02"
PROTO4 = b"\x80\x04"
STOP = b"."
NONE = b"N"
MARK = b"("
DUP = b"2"
EMPTY_DICT = b"}"
EMPTY_LIST = b"]"
EMPTY_TUPLE = b")"
TUPLE2 = b"\x86"
TUPLE1 = b"\x85"
APPENDS = b"e"
SETITEM = b"s"
SETITEMS = b"u"
BUILD = b"b"
NEWOBJ = b"\x81"
REDUCE = b"R"
LIST = b"l"
POP = b"0"


def long_binput(index: int) -> bytes:
    return b"r" + struct.pack("<I", index)


def binget(index: int) -> bytes:
    return b"h" + bytes([index])


def binput(index: int) -> bytes:
    return b"q" + bytes([index])


def binint1(value: int) -> bytes:
    return b"K" + bytes([value])


def text(value: str) -> bytes:
    raw = value.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def global_(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def long_(value: int) -> bytes:
    """LONG1 (as pickle writes an int under 256 bytes) or LONG4."""
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    if len(raw) < 256:
        return b"\x8a" + bytes([len(raw)]) + raw
    return b"\x8b" + struct.pack("<i", len(raw)) + raw


_DCP = "torch.distributed.checkpoint.metadata"


def record(name: str, state: bytes) -> bytes:
    """A DCP metadata dataclass: cls.__new__(cls), then BUILD with ``state``."""
    return global_(_DCP, name) + EMPTY_TUPLE + NEWOBJ + state + BUILD


def metadata_pickle(entries: bytes) -> bytes:
    """Metadata(state_dict_metadata={<entries>}) where ``entries`` push key, value pairs."""
    return PROTO2 + record("Metadata", EMPTY_DICT + text("state_dict_metadata") + EMPTY_DICT
                           + MARK + entries + SETITEMS + SETITEM) + STOP


def tensor_metadata(shape: tuple[int, ...]) -> bytes:
    dims = b"".join(binint1(d) if d < 256 else long_(d) for d in shape)
    size = global_("torch", "Size") + MARK + dims + b"t" + TUPLE1 + REDUCE
    return record("TensorStorageMetadata", EMPTY_DICT + text("size") + size + SETITEM)


def tensor_entry(name: str, shape: tuple[int, ...]) -> bytes:
    return text(name) + tensor_metadata(shape)


# --- files around a pickle -------------------------------------------------------------

def torch_zip(path: Path, data_pkl: bytes, *, level: int = 9) -> Path:
    """A torch.save-style archive holding only ``archive/data.pkl``."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        archive.writestr("a/data.pkl", data_pkl)
    return path


def legacy_torch(path: Path, *pickles: bytes) -> Path:
    path.write_bytes(b"".join(pickles))
    return path


_MAGIC = long_(0x1950A86A20F9469CFC6C)


def legacy_header(protocol: bytes = b"M" + struct.pack("<H", 1001)) -> bytes:
    """Magic number, protocol 1001 and an empty sys_info: the first three legacy pickles."""
    return (PROTO2 + _MAGIC + STOP) + (PROTO2 + protocol + STOP) + (PROTO2 + EMPTY_DICT + STOP)


def step_dir_from(clean_step: Path, target: Path) -> Path:
    """A copy of a complete step_N directory to tamper with."""
    shutil.copytree(clean_step, target, symlinks=True)
    return target


def safetensors(path: Path, header: bytes, data: bytes = b"") -> Path:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def sparse(path: Path, head: bytes, size: int) -> Path:
    """``head`` then zeros up to ``size`` bytes, without writing them."""
    with open(path, "wb") as out:
        out.write(head)
        out.truncate(size)
    return path


# --- the attacks ------------------------------------------------------------------------

@dataclass(frozen=True)
class Attack:
    name: str
    build: Callable[[Path, Path], Path]  # (scratch dir, clean step_N dir) -> checkpoint path
    refuse: bool  # KF505 expected
    row: int | None = None  # the issue-13 table row it reproduces
    e2e: bool = False  # one of the attacks run end to end through the CLI
    slow: bool = False  # seconds of work by design: only run end to end


def _memo_2e28_zip(d: Path, clean: Path) -> Path:
    # Table row 1: a 9-byte pickle whose LONG_BINPUT index makes the C
    # unpickler grow its memo array to 2**28 slots.
    return torch_zip(d / "memo.pt", PROTO2 + NONE + long_binput(2**28) + STOP)


def _memo_2e29_legacy(d: Path, clean: Path) -> Path:
    return legacy_torch(d / "memo_legacy.pt", PROTO2 + NONE + long_binput(2**29) + STOP)


def _empty_lists_claimed(d: Path, clean: Path) -> Path:
    # Table row 2: 65 KB deflated, 67 MB of EMPTY_LIST opcodes.
    return torch_zip(d / "lists.pt", PROTO2 + EMPTY_LIST * (64 * 2**20) + STOP)


def _empty_lists_under_cap(d: Path, clean: Path) -> Path:
    # The same just under the pickle size cap: the object cap must stop it.
    return torch_zip(d / "lists_small.pt", PROTO2 + EMPTY_LIST * (15 * 2**20) + STOP)


def _tuple_chain(depth: int) -> bytes:
    # t0 = (), t_i = (t_{i-1}, t_{i-1}): hashing t_depth visits 2**depth tuples.
    return EMPTY_TUPLE + (DUP + TUPLE2) * depth


def _tuple_key_legacy(d: Path, clean: Path) -> Path:
    # Table row 3: a dict keyed by a tuple chain of depth 64.
    return legacy_torch(d / "tuple_key.pt",
                        PROTO2 + EMPTY_DICT + _tuple_chain(64) + binint1(1) + SETITEM + STOP)


def _tuple_key_dcp(d: Path, clean: Path) -> Path:
    step = step_dir_from(clean, d / "tuple_key_run" / "step_5")
    (step / ".metadata").write_bytes(
        metadata_pickle(_tuple_chain(64) + tensor_metadata((4,))))
    return step


def _tuple_set_member(d: Path, clean: Path) -> Path:
    return legacy_torch(d / "tuple_set.pt", PROTO2 + global_("builtins", "frozenset") + MARK
                        + _tuple_chain(64) + LIST + TUPLE1 + REDUCE + STOP)


def _list_dag(depth: int) -> bytes:
    # l0 = [], l_i = [l_{i-1}, l_{i-1}]: printing l_depth writes 2**depth brackets.
    level = binput(0) + POP + MARK + binget(0) + binget(0) + LIST
    return EMPTY_LIST + level * depth


def _repr_bomb_dcp(d: Path, clean: Path) -> Path:
    # Table row 4: an error message about an entry whose name is a record
    # holding a list DAG that is exponential to print.
    step = step_dir_from(clean, d / "repr_run" / "step_5")
    key = record("MetadataIndex", EMPTY_DICT + text("fqn") + _list_dag(40) + SETITEM)
    (step / ".metadata").write_bytes(metadata_pickle(key + NONE))
    return step


def _repr_bomb_legacy_protocol(d: Path, clean: Path) -> Path:
    return legacy_torch(d / "repr_protocol.pt",
                        legacy_header(_list_dag(40)))


def _big_dcp_sparse(d: Path, clean: Path) -> Path:
    # Table row 5: a 505 MB .metadata (its size alone is refused).
    step = step_dir_from(clean, d / "big_run" / "step_5")
    os.unlink(step / ".metadata")
    sparse(step / ".metadata", (clean / ".metadata").read_bytes(), 505 * 10**6)
    return step


def _big_safetensors_header(d: Path, clean: Path) -> Path:
    path = d / "big_header.safetensors"
    return sparse(path, struct.pack("<Q", 99 * 2**20) + b'{"a": ', 8 + 99 * 2**20 + 16)


def _large_safetensors_header_under_cap(d: Path, clean: Path) -> Path:
    # A well-formed header just under the 16 MiB cap: read, in bounded time and memory.
    entries = {}
    size = 0
    i = 0
    while size < 15 * 2**20:
        name = f"model.layers.{i}.mlp.experts.{i}.weight"
        entries[name] = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
        size += len(name) + 60
        i += 1
    return safetensors(d / "large_header.safetensors", json.dumps(entries).encode())


def _hf_symlink_loop_spellings(d: Path, clean: Path) -> Path:
    # Table row 6: one shard reached through hundreds of distinct spellings
    # (l -> . makes l/l/l/.../shard the same file).
    hf = d / "hf_loop"
    hf.mkdir()
    os.symlink(".", hf / "l")
    names = [f"model.layers.0.mlp.experts.{i}.weight" for i in range(2000)]
    header = {n: {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for n in names}
    safetensors(hf / "shard.safetensors", json.dumps(header).encode())
    # Up to 110 links deep: within the shard path cap, past the kernel's 40.
    weight_map = {n: "l/" * (i % 111) + "shard.safetensors" for i, n in enumerate(names)}
    (hf / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return hf


def _hf_symlink_loop_long_spellings(d: Path, clean: Path) -> Path:
    # The table's own input: 300 spellings up to 600 characters (past MAX_SHARD_PATH_CHARS).
    hf = d / "hf_loop_long"
    hf.mkdir()
    os.symlink(".", hf / "l")
    names = [f"model.layers.0.mlp.experts.{i}.weight" for i in range(300)]
    header = {n: {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for n in names}
    safetensors(hf / "shard.safetensors", json.dumps(header).encode())
    weight_map = {n: "l/" * i + "shard.safetensors" for i, n in enumerate(names)}
    (hf / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return hf


def _nested_json_header(d: Path, clean: Path) -> Path:
    return safetensors(d / "nested.safetensors", b"[" * 200_000 + b"]" * 200_000)


def _nested_json_index(d: Path, clean: Path) -> Path:
    hf = d / "hf_nested"
    hf.mkdir()
    (hf / "model.safetensors.index.json").write_bytes(b'{"weight_map": ' + b"[" * 100_000)
    return hf


def _nested_metadata_json(d: Path, clean: Path) -> Path:
    step = step_dir_from(clean, d / "nested_meta_run" / "step_5")
    (step / "metadata.json").write_text('{"step": 5, "vlm_freeze": ' + "[" * 20_000 + "]" * 20_000 + "}")
    return step


def _hf_shard_to_proc_mem(d: Path, clean: Path) -> Path:
    hf = d / "hf_proc"
    hf.mkdir()
    os.symlink("/proc/self/mem", hf / "model-1.safetensors")
    (hf / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "model-1.safetensors"}}))
    return hf


def _direct_proc_mem(d: Path, clean: Path) -> Path:
    os.symlink("/proc/self/mem", d / "mem.safetensors")
    return d / "mem.safetensors"


def _huge_int_legacy(d: Path, clean: Path) -> Path:
    # Table row 7: a 6,000-digit protocol number (past Python's 4,300-digit str limit).
    return legacy_torch(d / "huge_int.pt", legacy_header(long_(10**6000)))


def _huge_int_text_legacy(d: Path, clean: Path) -> Path:
    # Protocol 0 spells integers in decimal: int() of 6,000 digits raises ValueError.
    return legacy_torch(d / "huge_int_text.pt", MARK + b"L" + b"7" * 6000 + b"L\n" + b"t" + STOP)


def _huge_int_dcp(d: Path, clean: Path) -> Path:
    step = step_dir_from(clean, d / "huge_int_run" / "step_5")
    (step / ".metadata").write_bytes(metadata_pickle(tensor_entry("model.w", (10**6000,))))
    return step


def _huge_int_json_header(d: Path, clean: Path) -> Path:
    header = b'{"w": {"dtype": "F32", "shape": [' + b"9" * 6000 + b'], "data_offsets": [0, 4]}}'
    return safetensors(d / "huge_int.safetensors", header, b"\0" * 4)


def _huge_int_metadata_json(d: Path, clean: Path) -> Path:
    # The trainer ignores a metadata.json it cannot parse; so does kforge.
    step = step_dir_from(clean, d / "huge_int_meta_run" / "step_5")
    (step / "metadata.json").write_text('{"step": ' + "9" * 6000 + "}")
    return step


def _fifo(d: Path, clean: Path) -> Path:
    os.mkfifo(d / "model.pt")
    return d / "model.pt"


def _fifo_behind_symlink(d: Path, clean: Path) -> Path:
    os.mkfifo(d / "pipe")
    os.symlink(d / "pipe", d / "linked.safetensors")
    return d / "linked.safetensors"


def _fifo_as_metadata_json(d: Path, clean: Path) -> Path:
    step = step_dir_from(clean, d / "fifo_meta_run" / "step_5")
    os.unlink(step / "metadata.json")
    os.mkfifo(step / "metadata.json")
    return step


def _fifo_as_latest(d: Path, clean: Path) -> Path:
    run = d / "fifo_latest_run"
    step_dir_from(clean, run / "step_5")
    os.mkfifo(run / "latest")
    return run


def _fifo_as_hf_shard(d: Path, clean: Path) -> Path:
    hf = d / "hf_fifo"
    hf.mkdir()
    os.mkfifo(hf / "model-1.safetensors")
    (hf / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "model-1.safetensors"}}))
    return hf


def _hf_shard_outside(d: Path, clean: Path) -> Path:
    # Table row 9: a shard that is a symlink out of the model directory.
    outside = d / "elsewhere"
    outside.mkdir()
    safetensors(outside / "secret.safetensors",
                b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4)
    hf = d / "hf_escape"
    hf.mkdir()
    os.symlink(outside / "secret.safetensors", hf / "model-1.safetensors")
    (hf / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "model-1.safetensors"}}))
    return hf


def _vlm_freeze_50mb(d: Path, clean: Path) -> Path:
    # Table row 10: a malformed vlm_freeze in a 50 MB metadata.json.
    step = step_dir_from(clean, d / "freeze_big_run" / "step_5")
    entry = '{"module": 1, "frozen": "' + "x" * 64 + '"}, '
    body = entry * (50 * 10**6 // len(entry))
    (step / "metadata.json").write_text('{"step": 5, "vlm_freeze": [' + body + '{"module": 1}]}')
    return step


def _vlm_freeze_under_cap(d: Path, clean: Path) -> Path:
    # The same just under the metadata.json cap: read, and quoted within bounds.
    step = step_dir_from(clean, d / "freeze_small_run" / "step_5")
    entry = '{"module": 1, "frozen": "' + "x" * 64 + '"}, '
    body = entry * (60 * 1024 // len(entry))
    (step / "metadata.json").write_text('{"step": 5, "vlm_freeze": [' + body + '{"module": 1}]}')
    return step


def _large_dcp_under_cap(d: Path, clean: Path) -> Path:
    # A well-formed .metadata half the 16 MiB pickle cap (900 tensors saved by
    # 56 ranks): read, in bounded time and memory. At the cap it takes twice
    # as long; half keeps the suite quick.
    import pickle

    import torch
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import (
        ChunkStorageMetadata,
        Metadata,
        MetadataIndex,
        TensorProperties,
        TensorStorageMetadata,
    )

    ranks, rows = 56, 56 * 8
    items, storage = {}, {}
    for t in range(900):
        fqn = f"model.layers.{t}.mlp.experts.weight"
        chunks = []
        for r in range(ranks):
            offsets, sizes = torch.Size([r * 8, 0]), torch.Size([8, 64])
            chunks.append(ChunkStorageMetadata(offsets=offsets, sizes=sizes))
            storage[MetadataIndex(fqn, offsets)] = _StorageInfo(
                relative_path=f"__{r}_0.distcp", offset=0, length=0)
        items[fqn] = TensorStorageMetadata(properties=TensorProperties(dtype=torch.float32),
                                           size=torch.Size([rows, 64]), chunks=chunks)
    step = step_dir_from(clean, d / "large_dcp_run" / "step_5")
    with open(step / ".metadata", "wb") as out:
        pickle.dump(Metadata(state_dict_metadata=items, storage_data=storage), out)
    for r in range(ranks):
        (step / f"__{r}_0.distcp").touch()
    assert 6 * 2**20 < (step / ".metadata").stat().st_size < 16 * 2**20
    return step


ATTACKS = [
    Attack("memo index 2**28 in a 127-byte .pt", _memo_2e28_zip, refuse=True, row=1, e2e=True),
    Attack("memo index 2**29 in a legacy .pt", _memo_2e29_legacy, refuse=True, row=1),
    Attack("65 KB deflated .pt of 67 MB of empty lists", _empty_lists_claimed, refuse=True, row=2, e2e=True),
    Attack("15 MB of empty lists, under the pickle cap", _empty_lists_under_cap, refuse=True,
           row=2, slow=True, e2e=True),
    Attack("dict keyed by a depth-64 tuple chain (DCP)", _tuple_key_dcp, refuse=True, row=3, e2e=True),
    Attack("dict keyed by a depth-64 tuple chain (legacy .pt)", _tuple_key_legacy, refuse=True),
    Attack("frozenset of a depth-64 tuple chain", _tuple_set_member, refuse=True),
    Attack("error about an exponential-to-print record (DCP)", _repr_bomb_dcp, refuse=True, row=4, e2e=True),
    Attack("exponential-to-print torch.save protocol", _repr_bomb_legacy_protocol, refuse=True),
    Attack("505 MB DCP .metadata", _big_dcp_sparse, refuse=True, row=5, e2e=True),
    Attack("99 MiB safetensors header", _big_safetensors_header, refuse=True, row=5),
    Attack("15 MiB well-formed safetensors header", _large_safetensors_header_under_cap,
           refuse=False, row=5),
    Attack("8 MiB well-formed DCP .metadata", _large_dcp_under_cap, refuse=False, row=5,
           slow=True, e2e=True),
    Attack("HF index reaching one shard by 111 symlink spellings", _hf_symlink_loop_spellings,
           refuse=False, row=6, e2e=True),
    Attack("HF index of 300 symlink spellings up to 600 characters",
           _hf_symlink_loop_long_spellings, refuse=True, row=6),
    Attack("nested JSON in a safetensors header", _nested_json_header, refuse=True, row=7),
    Attack("nested JSON in metadata.json", _nested_metadata_json, refuse=True, row=7, e2e=True),
    Attack("nested JSON in an HF index", _nested_json_index, refuse=True),
    Attack("HF shard linked to /proc/self/mem", _hf_shard_to_proc_mem, refuse=True, row=7, e2e=True),
    Attack("checkpoint linked to /proc/self/mem", _direct_proc_mem, refuse=True),
    Attack("6,000-digit int in a legacy torch.save", _huge_int_legacy, refuse=True, row=7, e2e=True),
    Attack("6,000-digit int in DCP metadata", _huge_int_dcp, refuse=True, row=7),
    Attack("6,000-digit text int in a protocol-0 pickle", _huge_int_text_legacy, refuse=True),
    Attack("6,000-digit int in a safetensors header", _huge_int_json_header, refuse=True),
    Attack("6,000-digit int in metadata.json", _huge_int_metadata_json, refuse=False),
    Attack("a FIFO as the checkpoint", _fifo, refuse=True, row=8, e2e=True),
    Attack("a symlink to a FIFO as the checkpoint", _fifo_behind_symlink, refuse=True),
    Attack("a FIFO as metadata.json", _fifo_as_metadata_json, refuse=False),
    Attack("a FIFO as `latest`", _fifo_as_latest, refuse=False),
    Attack("a FIFO as an HF shard", _fifo_as_hf_shard, refuse=True),
    Attack("an HF shard linked out of its directory", _hf_shard_outside, refuse=True, row=9, e2e=True),
    Attack("malformed vlm_freeze in a 50 MB metadata.json", _vlm_freeze_50mb, refuse=True,
           row=10, e2e=True),
    Attack("malformed vlm_freeze in a 60 KiB metadata.json", _vlm_freeze_under_cap,
           refuse=False, row=10, e2e=True),
]
