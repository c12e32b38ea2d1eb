"""Corrupted real checkpoints: the reader answers or raises CheckpointError, nothing else."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest
import torch
from ckpt_factory import save_kf_step, save_safetensors, tensors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kforge_cli.checkpoint import CheckpointError, read_checkpoint

FUZZ = settings(max_examples=int(__import__("os").environ.get("KF_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

# Edits: (position as a fraction of the length, replacement bytes).
edits = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=4)),
                 min_size=1, max_size=6)


def _corrupt(data: bytes, changes: list[tuple[float, bytes]], cut: float | None) -> bytes:
    buf = bytearray(data)
    for where, new in changes:
        at = int(where * len(buf))
        buf[at:at + len(new)] = new
    if cut is not None:
        del buf[int(cut * len(buf)):]
    return bytes(buf)


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("originals")
    torch.save({"model": tensors()}, root / "zip.pt")
    torch.save({"model": tensors()}, root / "legacy.pt", _use_new_zipfile_serialization=False)
    save_safetensors(root / "w.safetensors", tensors())
    step_dir = save_kf_step(root / "run", 3)
    return {"zip.pt": root / "zip.pt", "legacy.pt": root / "legacy.pt",
            "w.safetensors": root / "w.safetensors", "step": step_dir}


def _only_checkpoint_errors(path: Path) -> None:
    try:
        read_checkpoint(path)
    except CheckpointError:
        pass


@pytest.mark.parametrize("name", ["zip.pt", "legacy.pt", "w.safetensors"])
@FUZZ
@given(changes=edits, cut=st.none() | st.floats(0, 1))
def test_corrupted_files(originals, tmp_path: Path, name: str, changes, cut) -> None:
    target = tmp_path / name
    target.write_bytes(_corrupt(originals[name].read_bytes(), changes, cut))
    _only_checkpoint_errors(target)


@FUZZ
@given(changes=edits, cut=st.none() | st.floats(0, 1))
def test_corrupted_dcp_metadata(originals, tmp_path: Path, changes, cut) -> None:
    step_dir = tmp_path / "step_3"
    if not step_dir.exists():
        shutil.copytree(originals["step"], step_dir)
    data = (originals["step"] / ".metadata").read_bytes()
    (step_dir / ".metadata").write_bytes(_corrupt(data, changes, cut))
    _only_checkpoint_errors(step_dir)


@FUZZ
@given(header_len=st.integers(0, 2**64 - 1), body=st.binary(max_size=64))
def test_arbitrary_safetensors_prefixes(tmp_path: Path, header_len: int, body: bytes) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", header_len) + body)
    _only_checkpoint_errors(path)
