"""The checkpoints recorded from the reference trainer (tests/cases/fixtures/checkpoints)."""

from __future__ import annotations

import json
import time
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


def test_fixtures_read_in_milliseconds(ckpts: Path) -> None:
    for path in (ckpts / "jd_run", ckpts / "jd_model.pt"):
        read_checkpoint(path)
        start = time.perf_counter()
        read_checkpoint(path)
        assert time.perf_counter() - start < 0.05, path


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
