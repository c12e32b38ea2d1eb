"""Hostile, broken and absurd checkpoints: always a CheckpointError, never code execution."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from ckpt_factory import (
    TINY_PARAMS,
    point_latest,
    save_kf_step,
    save_safetensors,
    tensors,
)

from kforge_cli.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    limits,
    read_checkpoint,
)


class _RunsShell:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _RunsPython:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _expect_unsafe(path: Path, marker: Path, global_name: str) -> UnsafeCheckpointError:
    with pytest.raises(UnsafeCheckpointError) as err:
        read_checkpoint(path)
    assert not marker.exists(), "the checkpoint ran code"
    assert err.value.global_name == global_name
    assert global_name in err.value.message and "nothing was executed" in err.value.message
    assert err.value.hint
    return err.value


def _rezip(source: Path, target: Path, replace: dict[str, bytes | None]) -> Path:
    """Copy a torch.save archive, replacing (or with None dropping) members."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            data = replace.get(info.filename, src.read(info.filename))
            if data is not None:
                dst.writestr(info.filename, data)
    return target


# --- malicious pickles ------------------------------------------------------------

@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_running_a_shell_command(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(_RunsShell(marker), protocol=protocol))
    _expect_unsafe(path, marker, f"{os.system.__module__}.system")


def test_pickle_running_python(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"w": _RunsPython(marker)}, protocol=2))
    _expect_unsafe(path, marker, "__builtin__.exec")  # protocol 2 spelling, as stored


@pytest.mark.parametrize("opcodes", [
    pytest.param(lambda cmd: b"(" + cmd + b"ios\nsystem\n.", id="INST"),
    pytest.param(lambda cmd: b"(cos\nsystem\n" + cmd + b"o.", id="OBJ"),
    pytest.param(lambda cmd: b"\x80\x04cos\nsystem\n(" + cmd + b"t}\x92.", id="NEWOBJ_EX"),
    pytest.param(lambda cmd: b"\x80\x02cos\nsystem\n(" + cmd + b"tR.", id="GLOBAL+REDUCE"),
    pytest.param(lambda cmd: b"\x80\x04\x8c\x02os\x8c\x06system\x93" + cmd + b"\x85R.",
                 id="STACK_GLOBAL+REDUCE"),
])
def test_every_way_a_pickle_names_a_callable_is_refused(tmp_path: Path, opcodes) -> None:
    marker = tmp_path / "pwned"
    command = f"touch {marker}".encode()
    path = tmp_path / "evil.pt"
    path.write_bytes(opcodes(b"X" + struct.pack("<I", len(command)) + command))
    _expect_unsafe(path, marker, "os.system")


def test_torch_zip_with_malicious_data_pkl(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    good = tmp_path / "good.pt"
    torch.save({"model": tensors()}, good)
    evil = pickle.dumps({"model": {"w": _RunsShell(marker)}}, protocol=2)
    path = _rezip(good, tmp_path / "evil.pt", {"good/data.pkl": evil})
    _expect_unsafe(path, marker, f"{os.system.__module__}.system")


def test_legacy_torch_file_with_malicious_payload(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil_legacy.pt"
    with open(path, "wb") as out:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001}):
            pickle.dump(header, out, protocol=2)
        pickle.dump({"w": _RunsPython(marker)}, out, protocol=2)
    _expect_unsafe(path, marker, "__builtin__.exec")  # protocol 2 spelling, as stored


def test_malicious_dcp_metadata_in_run_dir(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    step_dir = save_kf_step(run, 5)
    point_latest(run, "step_5")
    (step_dir / ".metadata").write_bytes(pickle.dumps(_RunsShell(marker)))
    _expect_unsafe(run, marker, f"{os.system.__module__}.system")


def test_plain_pickle_of_tensors_is_refused(tmp_path: Path) -> None:
    # pickle.dump of a tensor embeds torch.save bytes behind _load_from_bytes,
    # which would run a full torch.load: not on the allow-list.
    path = tmp_path / "raw.pkl"
    path.write_bytes(pickle.dumps({"w": torch.zeros(2)}))
    with pytest.raises(UnsafeCheckpointError) as err:
        read_checkpoint(path)
    assert err.value.global_name == "torch.storage._load_from_bytes"


def test_whole_module_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(UnsafeCheckpointError) as err:
        read_checkpoint(path)
    assert err.value.global_name == "torch.nn.modules.linear.Linear"


def test_module_source_persistent_id_is_refused(tmp_path: Path) -> None:
    class _SavesSource(pickle.Pickler):
        def persistent_id(self, obj):
            return ("module", "Linear", "linear.py", "import os") if obj == "m" else None

    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(1)}, good)
    buf = io.BytesIO()
    _SavesSource(buf, protocol=2).dump({"m": "m"})
    path = _rezip(good, tmp_path / "pid.pt", {"good/data.pkl": buf.getvalue()})
    with pytest.raises(UnsafeCheckpointError) as err:
        read_checkpoint(path)
    assert "persistent id of kind 'module'" in err.value.message
    assert err.value.global_name is None


# --- truncated, corrupt and absurd files --------------------------------------------

def test_truncated_torch_zip(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"model": tensors()}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt zip archive") as err:
        read_checkpoint(cut)
    assert not isinstance(err.value, UnsafeCheckpointError)


def test_torch_zip_missing_a_storage_record(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"a": torch.zeros(3), "b": torch.zeros(4)}, good)
    path = _rezip(good, tmp_path / "holed.pt", {"good/data/1": None})
    with pytest.raises(CheckpointError, match="tensor storage 1 is missing"):
        read_checkpoint(path)


def test_truncated_legacy_torch_file(tmp_path: Path) -> None:
    good = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(64)}, good, _use_new_zipfile_serialization=False)
    data = good.read_bytes()
    for keep in (len(data) - 4, 40):
        cut = tmp_path / f"cut{keep}.pt"
        cut.write_bytes(data[:keep])
        with pytest.raises(CheckpointError, match="truncated"):
            read_checkpoint(cut)


def test_truncated_safetensors(tmp_path: Path) -> None:
    good = save_safetensors(tmp_path / "good.safetensors", tensors())
    data = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="is truncated: .* ends at byte"):
        read_checkpoint(cut)
    cut.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="too short for a safetensors header"):
        read_checkpoint(cut)


def test_safetensors_absurd_header_size(tmp_path: Path) -> None:
    path = tmp_path / "absurd.safetensors"
    path.write_bytes(struct.pack("<Q", 2**60) + b"{}")
    with pytest.raises(CheckpointError, match="header size 1152921504606846976 is absurd"):
        read_checkpoint(path)


def test_safetensors_header_larger_than_file(tmp_path: Path) -> None:
    path = tmp_path / "short.safetensors"
    path.write_bytes(struct.pack("<Q", 1000) + b'{"a": 1}')
    with pytest.raises(CheckpointError, match="header claims 1000 bytes but the file has 16"):
        read_checkpoint(path)


@pytest.mark.parametrize("header,message", [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}', "malformed"),
    (b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}', "has shape \\[2\\]"),
    (b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}', "malformed dtype or data offsets"),
    ((b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
      b'"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'), "duplicate key"),
])
def test_malformed_safetensors_headers(tmp_path: Path, header: bytes, message: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


def test_binary_garbage_named_metadata(tmp_path: Path) -> None:
    step_dir = save_kf_step(tmp_path / "run", 5)
    (step_dir / ".metadata").write_bytes(b"\x00\x01\x02\xffgarbage" * 50)
    with pytest.raises(CheckpointError, match="is not a DCP .metadata file") as err:
        read_checkpoint(tmp_path / "run")
    assert not isinstance(err.value, UnsafeCheckpointError)


def test_metadata_that_is_some_other_pickle(tmp_path: Path) -> None:
    step_dir = save_kf_step(tmp_path / "run", 5)
    (step_dir / ".metadata").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CheckpointError, match="no state_dict_metadata"):
        read_checkpoint(step_dir)


def test_truncated_dcp_metadata(tmp_path: Path) -> None:
    step_dir = save_kf_step(tmp_path / "run", 5)
    data = (step_dir / ".metadata").read_bytes()
    (step_dir / ".metadata").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated|not a DCP"):
        read_checkpoint(step_dir)


def test_missing_and_truncated_dcp_shards(tmp_path: Path) -> None:
    step_dir = save_kf_step(tmp_path / "run", 5)
    shard = next(step_dir.glob("*.distcp"))
    size = shard.stat().st_size
    with open(shard, "r+b") as handle:
        handle.truncate(size - 1)
    with pytest.raises(CheckpointError, match=f"is truncated \\({size - 1} bytes"):
        read_checkpoint(step_dir)
    shard.unlink()
    with pytest.raises(CheckpointError, match="is missing: the checkpoint is incomplete"):
        read_checkpoint(step_dir)


def test_step_dir_without_metadata_is_incomplete(tmp_path: Path) -> None:
    run = tmp_path / "run"
    save_kf_step(run, 4)
    save_kf_step(run, 6, complete=False)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(run / "step_6")
    assert err.value.message == f"{run / 'step_6'} has no .metadata: the checkpoint is incomplete"
    assert str(run / "step_4") in err.value.hint


def test_run_with_no_complete_step(tmp_path: Path) -> None:
    run = tmp_path / "run"
    save_kf_step(run, 6, complete=False)
    point_latest(run, "step_6")
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(run)
    assert err.value.message == (f"no complete checkpoint in {run}: latest -> step_6 has no "
                                 ".metadata; step_6 has no .metadata")


def test_symlink_loop(tmp_path: Path) -> None:
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    with pytest.raises(CheckpointError, match="is a symlink loop") as err:
        read_checkpoint(tmp_path / "a")
    assert err.value.hint


def test_latest_symlink_loop(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    os.symlink("latest", run / "latest")
    with pytest.raises(CheckpointError, match="latest -> latest is a symlink loop"):
        read_checkpoint(run)
    save_kf_step(run, 2)
    m = read_checkpoint(run)
    assert m.step == 2
    assert m.notes[0].startswith("picked newest complete step_2; latest -> latest is a symlink loop")


def test_latest_file_with_garbage(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "latest").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(CheckpointError, match="is not a text file naming a step directory"):
        read_checkpoint(run)
    (run / "latest").write_bytes(b"x" * 10_000)
    with pytest.raises(CheckpointError, match="larger than"):
        read_checkpoint(run)


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is an empty directory"):
        read_checkpoint(tmp_path)


def test_directory_of_unrelated_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "config.toml").write_text("[model]\n")
    (tmp_path / "logs").mkdir()
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(tmp_path)
    assert err.value.message == (f"no checkpoint found in {tmp_path} "
                                 "(it holds: config.toml, logs, notes.txt)")


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (b"hello world, not a checkpoint at all" * 10, "not a checkpoint kforge recognizes"),
    (pickle.dumps({"a": 1}, protocol=2), "is a pickle but not a torch.save checkpoint"),
])
def test_files_that_are_not_checkpoints(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "thing.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


def test_zip_that_is_not_a_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "archive.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(CheckpointError, match="zip archive but not a torch.save file"):
        read_checkpoint(path)


def test_torchscript_archive(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(CheckpointError, match="TorchScript"):
        read_checkpoint(path)


def test_bare_tensor_and_optimizer_only_files(tmp_path: Path) -> None:
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="holds a tensor, not a state dict"):
        read_checkpoint(tmp_path / "tensor.pt")
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    torch.save(optimizer.state_dict(), tmp_path / "optim.pt")
    with pytest.raises(CheckpointError, match="has no model parameters \\(only optimizer state"):
        read_checkpoint(tmp_path / "optim.pt")


def test_self_referencing_state_dict(tmp_path: Path) -> None:
    state: dict = {"w": torch.zeros(2)}
    state["again"] = state
    torch.save(state, tmp_path / "loop.pt")
    m = read_checkpoint(tmp_path / "loop.pt")
    assert m.tensors == {"w": (2,)}
    assert m.ignored == ["again"]


def test_fifo_is_not_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="neither a regular file nor a directory"):
        read_checkpoint(tmp_path / "model.pt")
    hf = tmp_path / "hf"
    hf.mkdir()
    os.mkfifo(hf / "model-1.safetensors")
    (hf / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "model-1.safetensors"}}))
    with pytest.raises(CheckpointError, match="is not a regular file"):
        read_checkpoint(hf)


def test_pickle_size_limit(tmp_path: Path, monkeypatch) -> None:
    torch.save({"model": tensors()}, tmp_path / "ck.pt")
    torch.save({"model": tensors()}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    step_dir = save_kf_step(tmp_path / "run", 1)
    monkeypatch.setattr(limits, "MAX_PICKLE_BYTES", 256)
    for path in (tmp_path / "ck.pt", tmp_path / "legacy.pt", step_dir):
        with pytest.raises(CheckpointError, match="limit|larger than"):
            read_checkpoint(path)


def test_hf_index_pointing_outside_its_directory(tmp_path: Path) -> None:
    save_safetensors(tmp_path / "outside.safetensors", {"w": torch.zeros(1)})
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "../outside.safetensors"}}))
    with pytest.raises(CheckpointError, match="outside its directory"):
        read_checkpoint(hf)


def test_hf_index_listing_a_tensor_its_shard_lacks(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    hf.mkdir()
    save_safetensors(hf / "a.safetensors", {"w": torch.zeros(1)})
    (hf / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "a.safetensors", "v": "a.safetensors"}}))
    with pytest.raises(CheckpointError, match="lists v in a.safetensors, which does not hold it"):
        read_checkpoint(hf)


def test_pipeline_stages_that_disagree(tmp_path: Path) -> None:
    step_dir = tmp_path / "step_3"
    from ckpt_factory import save_dcp

    save_dcp(step_dir / "pp0", {"model": tensors({"w": (2, 2)})})
    save_dcp(step_dir / "pp1", {"model": tensors({"w": (3, 3)})})
    with pytest.raises(CheckpointError, match="pipeline stages disagree on model.w"):
        read_checkpoint(step_dir)


def test_permission_denied(tmp_path: Path, monkeypatch) -> None:
    step_dir = save_kf_step(tmp_path / "run", 5)
    real_listdir = os.listdir

    def deny(path="."):
        if os.fspath(path) == str(step_dir):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", deny)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(step_dir)
    assert err.value.message == f"permission denied reading directory {step_dir}"
    assert "permissions" in err.value.hint


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of mode")
def test_permission_denied_for_real(tmp_path: Path) -> None:
    path = tmp_path / "locked.pt"
    torch.save({"w": torch.zeros(1)}, path)
    path.chmod(0)
    with pytest.raises(CheckpointError, match="permission denied"):
        read_checkpoint(path)


def test_stand_ins_survive_a_failed_load(tmp_path: Path) -> None:
    """BUILD on an allowed global must not alter it for later loads."""
    attacks = [
        b"\x80\x02ctorch\nSize\n}X\x04\x00\x00\x00evilK\x01sb.",
        b"\x80\x02ctorch\nfloat32\n}X\x04\x00\x00\x00evilK\x01sb.",
        b"\x80\x02ctorch.distributed.checkpoint.metadata\nMetadata\n}X\x04\x00\x00\x00evilK\x01sb.",
        b"\x80\x02ctorch.distributed.checkpoint.metadata\nMetadata\nN}X\x04\x00\x00\x00evilK\x01s\x86b.",
        b"\x80\x02c__builtin__\nbytes\nJ\x00\xca\x9a\x3b\x85R.",  # bytes(10**9)
        b"\x80\x02ctorch\nSize\n]J\xff\xff\xff\xff\x85\x85R.",  # torch.Size([-1])
    ]
    step_dir = save_kf_step(tmp_path / "run", 5)
    good = (step_dir / ".metadata").read_bytes()
    for attack in attacks:
        (step_dir / ".metadata").write_bytes(attack)
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(step_dir)
        assert not isinstance(err.value, UnsafeCheckpointError)
    (step_dir / ".metadata").write_bytes(good)
    assert read_checkpoint(step_dir).tensors == TINY_PARAMS


def test_pointers_and_indexes_cannot_recurse(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "latest").write_text("latest")
    with pytest.raises(CheckpointError, match="another pointer"):
        read_checkpoint(run)
    with pytest.raises(CheckpointError, match="another pointer"):
        read_checkpoint(run / "latest")
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "model.safetensors.index.json"}}))
    with pytest.raises(CheckpointError, match="is neither safetensors nor a torch.save file"):
        read_checkpoint(hf)
