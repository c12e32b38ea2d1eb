"""Every cap in kforge_cli.checkpoint.limits, tripped in-process with the cap lowered.

Each test lowers one cap so a small file reaches it, and checks that the
reader refuses with a CheckpointLimitError naming that cap. Also: the one
helper that puts a file's values into messages (``findings.shown``) and the rule
for what may be hashed (``check_key``).
"""

from __future__ import annotations

import io
import json
import os
import struct
import time
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")  # builds the real checkpoints some tests tamper with

from ckpt_attacks import (
    EMPTY_DICT,
    EMPTY_LIST,
    MARK,
    NONE,
    PROTO2,
    SETITEM,
    STOP,
    binget,
    binput,
    global_,
    legacy_header,
    legacy_torch,
    long_binput,
    metadata_pickle,
    safetensors,
    tensor_entry,
    text,
    torch_zip,
)
from ckpt_factory import save_kf_step, save_safetensors, tensors

from kforge_cli.checkpoint import (
    CheckpointLimitError,
    limits,
    read_checkpoint,
)
from kforge_cli.checkpoint.allow_list import (
    MalformedPickleError,
    PickleLimitError,
    Record,
    check_key,
    find_class,
)
from kforge_cli.checkpoint.safe_pickle import load_pickle
from kforge_cli.findings import shown


def _refused(path: Path, cap: str) -> CheckpointLimitError:
    with pytest.raises(CheckpointLimitError) as err:
        read_checkpoint(path)
    assert err.value.cap == cap
    assert cap in err.value.message
    return err.value


def _state_dict_pickle(entries: bytes) -> bytes:
    return PROTO2 + EMPTY_DICT + MARK + entries + b"u" + STOP


# --- the pickle machine --------------------------------------------------------------

def test_opcode_budget(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(limits, "MAX_PICKLE_OPCODES", 1000)
    path = torch_zip(tmp_path / "spin.pt", PROTO2 + NONE + b"0N" * 2000 + STOP)
    _refused(path, "MAX_PICKLE_OPCODES")


def test_object_cap(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(limits, "MAX_PICKLE_OBJECTS", 1000)
    _refused(torch_zip(tmp_path / "lists.pt", PROTO2 + EMPTY_LIST * 2000 + STOP),
             "MAX_PICKLE_OBJECTS")


@pytest.mark.parametrize("memo_ops", [
    pytest.param(b"".join(long_binput(2**31 + i) for i in range(2000)), id="sparse indices"),
    pytest.param(b"\x94" * 2000, id="MEMOIZE"),
    pytest.param(b"".join(long_binput(i) for i in range(2000)), id="indices in order"),
])
def test_memo_cap(tmp_path: Path, monkeypatch, memo_ops: bytes) -> None:
    monkeypatch.setattr(limits, "MAX_PICKLE_MEMO", 1000)
    _refused(torch_zip(tmp_path / "memo.pt", PROTO2 + NONE + memo_ops + STOP), "MAX_PICKLE_MEMO")


def test_a_huge_memo_index_costs_one_entry() -> None:
    # The C unpickler sizes its memo array by the index: 2**32 - 1 slots here.
    obj, _, _ = load_pickle(PROTO2 + EMPTY_LIST + long_binput(2**32 - 1) + b"0"
                            + b"j" + struct.pack("<I", 2**32 - 1) + STOP)
    assert obj == []


@pytest.mark.parametrize("body", [
    pytest.param(EMPTY_LIST * 200 + b"a" * 199, id="lists built inside out"),
    pytest.param(MARK * 200, id="MARKs"),
    pytest.param(b")" + b"\x85" * 200, id="tuples"),
])
def test_nesting_cap(tmp_path: Path, body: bytes) -> None:
    _refused(legacy_torch(tmp_path / "deep.pt", PROTO2 + body + STOP), "MAX_NESTING")


def test_integer_size_cap(tmp_path: Path) -> None:
    _refused(legacy_torch(tmp_path / "long.pt", PROTO2 + b"\x8a\x21" + b"\x01" * 33 + STOP),
             "MAX_INT_BYTES")


def test_copy_cap(tmp_path: Path, monkeypatch) -> None:
    # One memoized MiB turned into bytes again and again.
    monkeypatch.setattr(limits, "MAX_PICKLE_COPIED_BYTES", 4 * 2**20)
    encode = global_("_codecs", "encode") + binput(1)
    call = binget(1) + binget(0) + text("latin1") + b"\x86R0"
    body = PROTO2 + text("x" * 2**20) + binput(0) + b"0" + encode + b"0" + call * 8 + NONE + STOP
    _refused(legacy_torch(tmp_path / "copies.pt", body), "MAX_PICKLE_COPIED_BYTES")


def test_state_merges_are_charged(tmp_path: Path, monkeypatch) -> None:
    # A record given the same 1000-entry state dict again and again.
    monkeypatch.setattr(limits, "MAX_PICKLE_OPCODES", 50_000)
    state = EMPTY_DICT + binput(0) + MARK + b"".join(text(f"k{i}") + NONE for i in range(1000)) + b"u"
    new = global_("torch.distributed.checkpoint.metadata", "Metadata") + b")\x81" + binput(1)
    again = binget(0) + b"b"
    body = PROTO2 + state + b"0" + new + again * 100 + STOP
    _refused(legacy_torch(tmp_path / "merges.pt", body), "MAX_PICKLE_OPCODES")


def test_a_shared_dict_is_not_expanded_exponentially(tmp_path: Path, monkeypatch) -> None:
    # d0 = {"w": tensor}; d_i = {"a": d_{i-1}, "b": d_{i-1}}: 2**30 paths to a leaf.
    monkeypatch.setattr(limits, "MAX_ENTRIES", 1000)
    state = {"w": torch.zeros(1)}
    for _ in range(30):
        state = {"a": state, "b": state}
    torch.save(state, tmp_path / "dag.pt")
    _refused(tmp_path / "dag.pt", "MAX_ENTRIES")


# --- what a checkpoint lists ----------------------------------------------------------------

def test_entry_cap_in_every_format(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(limits, "MAX_ENTRIES", 10)
    many = tensors({f"layers.{i}.w": (1,) for i in range(20)})
    torch.save(many, tmp_path / "many.pt")
    save_safetensors(tmp_path / "many.safetensors", many)
    step = save_kf_step(tmp_path / "run", 1, shapes={f"layers.{i}.w": (1,) for i in range(20)})
    for path in (tmp_path / "many.pt", tmp_path / "many.safetensors", step):
        _refused(path, "MAX_ENTRIES")


def test_zip_member_cap(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(limits, "MAX_ENTRIES", 10)
    with zipfile.ZipFile(tmp_path / "members.pt", "w") as archive:
        for i in range(40):
            archive.writestr(f"a/data/{i}", b"")
        archive.writestr("a/data.pkl", PROTO2 + EMPTY_DICT + STOP)
    _refused(tmp_path / "members.pt", "MAX_ENTRIES")


def test_zip_directory_cap(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(limits, "MAX_ZIP_DIRECTORY_BYTES", 4096)
    with zipfile.ZipFile(tmp_path / "names.pt", "w") as archive:
        archive.writestr("a/data/" + "x" * 5000, b"")
        archive.writestr("a/data.pkl", PROTO2 + EMPTY_DICT + STOP)
    _refused(tmp_path / "names.pt", "MAX_ZIP_DIRECTORY_BYTES")


def test_name_length_cap(tmp_path: Path) -> None:
    torch.save({"w" * 2000: torch.zeros(1)}, tmp_path / "long_name.pt")
    err = _refused(tmp_path / "long_name.pt", "MAX_NAME_CHARS")
    assert len(err.message) < 600


# --- JSON ------------------------------------------------------------------------------------

def test_json_container_cap(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(limits, "MAX_JSON_CONTAINERS", 100)
    path = safetensors(tmp_path / "lists.safetensors", b'{"__metadata__": [' + b"[]," * 200 + b"[]]}")
    _refused(path, "MAX_JSON_CONTAINERS")


@pytest.mark.parametrize("depth", [65, 2000, 200_000])
def test_json_depth_cap(tmp_path: Path, depth: int) -> None:
    # Past the cap and past Python's own recursion limit alike.
    path = safetensors(tmp_path / "deep.safetensors",
                       b'{"__metadata__": ' + b"[" * depth + b"]" * depth + b"}")
    _refused(path, "MAX_JSON_DEPTH")


def test_metadata_json_cap(tmp_path: Path) -> None:
    step = save_kf_step(tmp_path / "run", 1)
    (step / "metadata.json").write_text(json.dumps({"step": 1, "pad": "x" * 100_000}))
    _refused(step, "MAX_RUN_METADATA_BYTES")


# --- Hugging Face indexes -------------------------------------------------------------------

def _index(directory: Path, weight_map: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return directory


def test_shard_count_cap(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(limits, "MAX_SHARDS", 4)
    _refused(_index(tmp_path / "hf", {f"w{i}": f"s{i}.safetensors" for i in range(8)}),
             "MAX_SHARDS")


def test_shard_path_cap(tmp_path: Path) -> None:
    _refused(_index(tmp_path / "hf", {"w": "d/" * 200 + "s.safetensors"}), "MAX_SHARD_PATH_CHARS")


def test_shard_header_budget(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(limits, "MAX_INDEX_SHARD_BYTES", 150)
    hf = tmp_path / "hf"
    hf.mkdir()
    for i in range(4):
        save_safetensors(hf / f"s{i}.safetensors", {f"w{i}": torch.zeros(1)})
    _refused(_index(hf, {f"w{i}": f"s{i}.safetensors" for i in range(4)}), "MAX_INDEX_SHARD_BYTES")


def test_each_shard_is_read_once_however_it_is_spelled(tmp_path: Path, monkeypatch) -> None:
    hf = tmp_path / "hf"
    hf.mkdir()
    os.symlink(".", hf / "l")
    names = [f"w{i}" for i in range(50)]
    save_safetensors(hf / "s.safetensors", {n: torch.zeros(1) for n in names})
    _index(hf, {n: "l/" * i + "s.safetensors" for i, n in enumerate(names)})
    from kforge_cli.checkpoint import hf as hf_module

    reads: list[str] = []
    real_header = hf_module.safetensors_header
    monkeypatch.setattr(hf_module, "safetensors_header",
                        lambda path, budget=None: reads.append(path) or real_header(path, budget))
    manifest = read_checkpoint(hf)
    assert reads == [os.path.realpath(hf / "s.safetensors")]
    assert set(manifest.tensors) == set(names)


def test_hub_cache_snapshots_may_link_to_blobs(tmp_path: Path) -> None:
    # models--org--name/snapshots/<rev>/file -> ../../blobs/<sha>, as huggingface_hub lays it out.
    repo = tmp_path / "models--org--name"
    (repo / "blobs").mkdir(parents=True)
    save_safetensors(repo / "blobs" / "abc123", {"lm_head.weight": torch.zeros(4, 2)})
    snapshot = repo / "snapshots" / "rev1"
    snapshot.mkdir(parents=True)
    os.symlink("../../blobs/abc123", snapshot / "model-1.safetensors")
    _index(snapshot, {"lm_head.weight": "model-1.safetensors"})
    assert read_checkpoint(snapshot).tensors == {"output_head.proj.weight": (4, 2)}


# --- messages ------------------------------------------------------------------------------------

def _list_dag(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value, value]
    return value


@pytest.mark.parametrize("value", [
    pytest.param(_list_dag(60), id="exponential list DAG"),
    pytest.param(10**20000, id="20,000-digit int"),
    pytest.param("x" * 10**7, id="10 MB string"),
    pytest.param(b"\x00" * 10**7, id="10 MB bytes"),
    pytest.param({i: list(range(1000)) for i in range(1000)}, id="wide dict"),
    pytest.param(tuple(range(10**6)), id="million-item tuple"),
])
def test_shown_is_bounded(value) -> None:
    start = time.process_time()
    for limit in (8, 80, 400):
        assert len(shown(value, limit)) <= limit
    assert time.process_time() - start < 2.0  # CPU time: linear work is milliseconds, quadratic is minutes


def test_shown_shows_small_values_whole() -> None:
    assert shown([1, "a", None, 2.5, b"x"]) == "[1, 'a', None, 2.5, b'x']"
    assert shown({"k": (1, 2)}) == "{'k': (1, 2)}"
    assert shown(2**300) == "<an integer of about 91 digits>"
    assert shown("x" * 100, 20) == "'" + "x" * 17 + "\u2026'"
    record = find_class("torch.distributed.checkpoint.metadata", "MetadataIndex")()
    assert shown([record]) == "[<MetadataIndex>]"


# --- what may be hashed ------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["name", b"raw", 7, -3, 2**61 - 2, 1.5, None, True])
def test_atoms_may_be_keys(key) -> None:
    check_key(key)


def test_stand_ins_may_be_keys() -> None:
    check_key(find_class("torch.distributed.checkpoint.metadata", "MetadataIndex")())
    check_key(find_class("torch", "float32"))


@pytest.mark.parametrize("key", [(1, 2), (), frozenset(), 2**61 - 1, -(2**61) - 5, 2**100],
                         ids=repr)
def test_tuples_and_colliding_integers_may_not(key) -> None:
    with pytest.raises(MalformedPickleError):
        check_key(key)


def test_dict_key_refusal_in_every_container_opcode() -> None:
    pair = b")" + b"K\x01"
    for body in (EMPTY_DICT + b")" + NONE + SETITEM,  # SETITEM
                 MARK + b")" + NONE + b"d",  # DICT
                 b"\x8f" + MARK + b")" + b"\x90",  # ADDITEMS
                 MARK + b")" + b"\x91",  # FROZENSET
                 global_("builtins", "set") + MARK + b")" + b"l\x85R",  # set([...])
                 global_("collections", "OrderedDict") + MARK + pair + b"\x86" + b"l\x85R"):
        with pytest.raises(MalformedPickleError, match="dict key or set member"):
            load_pickle(b"\x80\x04" + body + STOP)


def test_limit_errors_are_malformed_pickles_with_a_cap() -> None:
    with pytest.raises(PickleLimitError) as err:
        load_pickle(PROTO2 + b"\x8a\x40" + b"\x01" * 64 + STOP)
    assert err.value.cap == "MAX_INT_BYTES"


def test_legacy_header_helper_is_what_torch_writes() -> None:
    buf = io.BytesIO()
    torch.save({}, buf, _use_new_zipfile_serialization=False)
    assert buf.getvalue().startswith(legacy_header()[:-len(PROTO2 + EMPTY_DICT + STOP)])


def test_dcp_entry_helpers_make_readable_metadata(tmp_path: Path) -> None:
    step = save_kf_step(tmp_path / "run", 1)
    (step / ".metadata").write_bytes(metadata_pickle(tensor_entry("model.w", (4, 300))))
    assert read_checkpoint(step).tensors == {"w": (4, 300)}


def test_record_is_not_hashed_by_value() -> None:
    first, second = Record(), Record()
    assert first != second and len({first, second}) == 2
