"""kforge against the behaviour recorded from the reference trainer, through the CLI.

The data is tests/cases/fixtures (see its README). For every recorded config: the validate
verdict, the key a rejection names, the codes that must and must not be reported (by plain
`validate`, the parameter-level ones included), the model's parameters and the frozen set at
each stage boundary (`freeze-plan`), and the resolved values (`explain`). For every legacy
config: `convert` keeps its comments, `--check` tells the layouts apart, and the converted file
resolves to what the hand-migrated one does. For every checkpoint pairing: the codes and exit
code `freeze-plan --model-ckpt` must give.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from recorded import CHECKPOINTS, CONFIGS, LEGACY, RECORDED


def _expectations() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name.removesuffix(".expected.json"), json.loads(path.read_text()))
            for path in sorted(CONFIGS.glob("*.expected.json"))]


EXPECTATIONS = _expectations()
WITH_PARAMETERS = [(name, e) for name, e in EXPECTATIONS if e.get("parameters") is not None]
RESOLVED = [(name, json.loads((CONFIGS / f"{name}.resolved.json").read_text())) for name, _ in EXPECTATIONS
            if (CONFIGS / f"{name}.resolved.json").is_file()]
LOADABLE = [(name, resolved) for name, resolved in RESOLVED if "error" not in resolved]
LEGACY_NAMES = sorted(p.name.removesuffix(".legacy.toml") for p in LEGACY.glob("*.legacy.toml"))
CHECKPOINT_CASES = json.loads((CHECKPOINTS / "cases.json").read_text())


def _ids(cases: list[tuple[str, Any]]) -> list[str]:
    return [name for name, _ in cases]


def test_the_recorded_set_is_all_here():
    # A partial copy would let every parametrized test below pass on nothing.
    assert len(EXPECTATIONS) >= 35 and len(WITH_PARAMETERS) >= 23 and len(LOADABLE) >= 24
    assert len(LEGACY_NAMES) >= 3 and len(CHECKPOINT_CASES) >= 3
    assert all((CONFIGS / f"{name}.toml").is_file() for name, _ in EXPECTATIONS)


def _exit_for(expected: dict[str, Any]) -> int:
    return 0 if expected["verdict"] == "ok" else 1


def _world_size(expected: dict[str, Any]) -> str:
    return str(expected.get("world_size", 1))


def _names(offending: str, finding: dict[str, Any]) -> bool:
    """Whether a finding names ``offending``: as its key (or a field or item under it), or in its message.

    The message counts because the reference itself may report one side of a relation: for a text
    budget too long, its error is about model.max_seq_len and quotes vlm.max_text_len.
    """
    key = finding.get("key") or ""
    return key == offending or key.startswith((offending + ".", offending + "[")) or offending in finding["message"]


# -- validate -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), EXPECTATIONS, ids=_ids(EXPECTATIONS))
def test_validate_verdict_key_and_codes(kforge, name, expected):
    path = CONFIGS / f"{name}.toml"
    run = kforge("validate", "--format", "json", "--world-size", _world_size(expected), path,
                 expect=_exit_for(expected))
    assert "Traceback" not in run.stderr
    (report,) = run.json()["files"]
    assert report["valid"] is (expected["verdict"] == "ok")
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    if expected["verdict"] == "error" and expected.get("offending_key"):
        assert any(_names(expected["offending_key"], f) for f in errors), (
            f"the reference rejects it at {expected['rejected_by']} over {expected['offending_key']}; "
            f"kforge's errors: {[(f['code'], f['key']) for f in errors]}")
    codes = {f["code"] for f in report["findings"]}
    # Plain validate, no --deep: the parameter-level codes (KF303-KF308) are required too.
    assert set(expected.get("expected_codes") or []) <= codes
    assert not set(expected.get("forbidden_codes") or []) & codes


# -- freeze-plan: the model and the freeze stages --------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), WITH_PARAMETERS, ids=_ids(WITH_PARAMETERS))
def test_freeze_plan_parameters_and_stages(kforge, name, expected):
    run = kforge("freeze-plan", "--format", "json", "--world-size", _world_size(expected), CONFIGS / f"{name}.toml",
                 expect=_exit_for(expected))
    (plan,) = run.json()["plans"]
    # Names, shapes and named_parameters() order.
    assert [[p["name"], p["shape"]] for p in plan["parameters"]] == expected["parameters"]
    if "stages" in expected:
        frozen = {stage["start_step"]: set(stage["frozen"]) for stage in plan["stages"]}
        assert sorted(frozen) == sorted(s["start_step"] for s in expected["stages"])
        for stage in expected["stages"]:
            assert frozen[stage["start_step"]] == set(stage["frozen"]), f"stage at {stage['start_step']}"
    codes = {f["code"] for f in plan["findings"]}
    assert {c for c in expected.get("expected_codes") or [] if c.startswith("KF3")} <= codes
    assert not set(expected.get("forbidden_codes") or []) & codes


# -- explain: the resolved values ------------------------------------------------------------------


def first_difference(reference: Any, ours: Any, where: str = "resolved") -> str | None:
    """The first place two JSON values differ (floats compared to 1e-9 relative), or None."""
    if isinstance(reference, dict) and isinstance(ours, dict):
        for key in sorted(set(reference) | set(ours)):
            if key not in ours or key not in reference:
                return f"{where}.{key}: only in {'the reference' if key in reference else 'kforge'}"
            found = first_difference(reference[key], ours[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(reference, list) and isinstance(ours, list):
        if len(reference) != len(ours):
            return f"{where}: {len(reference)} items in the reference, {len(ours)} in kforge"
        for i, (a, b) in enumerate(zip(reference, ours)):
            found = first_difference(a, b, f"{where}[{i}]")
            if found:
                return found
        return None
    numbers = (int, float)
    if (isinstance(reference, numbers) and isinstance(ours, numbers)
            and not isinstance(reference, bool) and not isinstance(ours, bool)):
        same = math.isclose(reference, ours, rel_tol=1e-9, abs_tol=1e-12)
    else:
        same = type(reference) is type(ours) and reference == ours
    return None if same else f"{where}: reference {reference!r}, kforge {ours!r}"


def test_first_difference_finds_what_differs():
    assert first_difference({"a": [1, 2.0]}, {"a": [1, 2.0 + 1e-12]}) is None
    assert first_difference({"a": 1}, {"a": 1, "b": 2}) == "resolved.b: only in kforge"
    assert first_difference({"a": [1, 2]}, {"a": [1]}) == "resolved.a: 2 items in the reference, 1 in kforge"
    assert first_difference({"a": True}, {"a": 1}) == "resolved.a: reference True, kforge 1"
    assert first_difference({"a": "1"}, {"a": 1}) == "resolved.a: reference '1', kforge 1"


@pytest.mark.parametrize(("name", "resolved"), LOADABLE, ids=_ids(LOADABLE))
def test_explain_resolves_what_the_reference_loader_resolves(kforge, name, resolved):
    expected = json.loads((CONFIGS / f"{name}.expected.json").read_text())
    run = kforge("explain", "--format", "json", "--world-size", _world_size(expected), CONFIGS / f"{name}.toml",
                 expect=_exit_for(expected))
    (config,) = run.json()["configs"]
    assert first_difference(resolved, config["resolved"]) is None


# -- convert ---------------------------------------------------------------------------------------


def _comment_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip().startswith("#")]


@pytest.mark.parametrize("name", LEGACY_NAMES)
def test_convert_matches_the_hand_migration(kforge, tmp_path, name):
    legacy = LEGACY / f"{name}.legacy.toml"
    converted = tmp_path / f"{name}.toml"
    kforge("convert", legacy, "-o", converted, expect=0)
    kept = set(_comment_lines(converted))
    assert [c for c in _comment_lines(legacy) if c not in kept] == []
    kforge("convert", "--check", legacy, expect=1)
    kforge("convert", "--check", converted, expect=0)
    (config,) = kforge("explain", "--format", "json", converted, expect=0).json()["configs"]
    hand_migrated = json.loads((LEGACY / f"{name}.flat.resolved.json").read_text())
    assert first_difference(hand_migrated, config["resolved"]) is None


# -- checkpoints -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=[c["name"] for c in CHECKPOINT_CASES])
def test_freeze_plan_against_a_checkpoint(kforge, case):
    run = kforge("freeze-plan", "--format", "json", "--model-ckpt", RECORDED / case["checkpoint"],
                 RECORDED / case["config"], expect=case["exit"])
    assert "Traceback" not in run.stderr
    (plan,) = run.json()["plans"]
    codes = {f["code"] for f in plan["findings"]}
    assert set(case.get("expect", [])) <= codes
    assert not set(case.get("forbid", [])) & codes
