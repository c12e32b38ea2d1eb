"""The checkpoints recorded from the reference trainer (tests/cases/fixtures/checkpoints)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
from ckpt_factory import pickle_globals

from kforge_cli.checkpoint import CheckpointError, read_checkpoint
from kforge_cli.checkpoint.allow_list import ALLOWED_GLOBALS


@pytest.fixture
def ckpts(shared_fixtures: Path) -> Path:
    return shared_fixtures / "checkpoints"


@pytest.fixture
def expected(shared_fixtures: Path) -> dict[str, tuple[int, ...]]:
    data = json.loads((shared_fixtures / "configs" / "p_joint_decoder_base.expected.json").read_text())
    return {name: tuple(shape) for name, shape in data["parameters"]}


def test_jd_run_matches_the_reference_model(ckpts: Path, expected: dict) -> None:
    m = read_checkpoint(ckpts / "jd_run")
    assert m.format == "dcp"
    assert m.resolved_path == str(ckpts / "jd_run" / "step_5")
    assert m.tensors == expected
    assert list(m.tensors) == list(expected)  # same order as named_parameters()
    assert m.step == 5
    assert m.metadata == {"step": 5, "tokens_seen": 5000,
                          "vlm_freeze": [{"module": "vision_encoder", "frozen": True}]}
    assert m.vlm_freeze == [{"module": "vision_encoder", "frozen": True}]
    assert m.notes[0] == "followed latest -> step_5 (`latest` is a file naming it)"
    assert m.ignored and all(name.startswith("optimizer.") for name in m.ignored)


def test_jd_model_pt_matches_the_reference_model(ckpts: Path, expected: dict) -> None:
    m = read_checkpoint(ckpts / "jd_model.pt")
    assert (m.format, m.step, m.metadata, m.vlm_freeze, m.ignored) == ("torch", None, None, None, [])
    assert m.tensors == expected
    assert m.original_names == {name: f"model.{name}" for name in expected}


def _bytes_read() -> int:
    with open("/proc/self/io") as stats:
        return next(int(line.split()[1]) for line in stats if line.startswith("rchar:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="counts bytes read through Linux's /proc/self/io")
@pytest.mark.parametrize(("name", "payload"), [("jd_run", "jd_run/step_5/__0_0.distcp"),
                                               ("jd_model.pt", "jd_model.pt")])
def test_fixtures_are_read_without_their_tensor_data(ckpts: Path, name: str, payload: str) -> None:
    # What makes reading a checkpoint cheap whatever its size: the index and the metadata are read,
    # the tensor bytes never are (the speed itself is measured by benchmarks/bench_core.py).
    before = _bytes_read()
    read_checkpoint(ckpts / name)
    assert _bytes_read() - before < (ckpts / payload).stat().st_size / 10


def test_fixture_pickles_name_only_allowed_globals(ckpts: Path) -> None:
    used = pickle_globals((ckpts / "jd_run" / "step_5" / ".metadata").read_bytes())
    with zipfile.ZipFile(ckpts / "jd_model.pt") as archive:
        used |= pickle_globals(archive.read("jd_model/data.pkl"))
    assert used <= ALLOWED_GLOBALS
    assert "pathlib.PosixPath" in used and "collections.OrderedDict" in used


def test_cases_missing_checkpoint(ckpts: Path) -> None:
    cases = json.loads((ckpts / "cases.json").read_text())
    missing = next(c for c in cases if "KF505" in c.get("expect", []))
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(ckpts.parent / missing["checkpoint"])
