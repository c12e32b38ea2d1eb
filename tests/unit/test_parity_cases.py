"""kforge against whole trainer runs recorded from the reference (tests/cases/parity/README.md).

For every case: the verdict, the stage, code and key of the first error, the
resolved config the reference loaded (values it keeps as is included), the
parameter list, what the model freezes itself and the freeze plan's frozen sets.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from kforge_cli.config.loader import parse_override
from kforge_cli.explain.job import explain_report
from kforge_cli.lint.engine import FileReport, Options, check_file
from kforge_cli.rules.rule import BUILD, LOAD

CASES = sorted((Path(__file__).parent.parent / "cases" / "parity").glob("*.toml"))


def _expected(case: Path) -> dict[str, Any]:
    return json.loads(case.with_name(f"{case.stem}.expected.json").read_text())


_REPORTS: dict[Path, FileReport] = {}


def _report(case: Path) -> FileReport:
    if case not in _REPORTS:
        expected = _expected(case)
        options = Options(world_size=expected["world_size"],
                          overrides=[parse_override(o) for o in expected["overrides"]])
        _REPORTS[case] = check_file(str(case), options)
    return _REPORTS[case]


def _plain(value: Any) -> Any:
    """A resolved value as the recording writes it (NaN and infinities as strings, tuples as lists)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _same(expected: Any, actual: Any, path: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(expected) == set(actual), f"{path}: {expected!r} vs {actual!r}"
        for key in expected:
            _same(expected[key], actual[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {expected!r} vs {actual!r}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            _same(e, a, f"{path}[{i}]")
    else:
        # Type-strict: a list kept as is, or integer betas, must stay exactly what the trainer holds.
        same_kind = type(expected) is type(actual) or (
            isinstance(expected, float) and isinstance(actual, float))
        assert same_kind and expected == actual, f"{path}: {expected!r} vs {actual!r}"


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_verdict_stage_and_key(case: Path) -> None:
    expected = _expected(case)
    wanted = expected["kforge"]
    errors = [f for f in _report(case).findings if f.is_error]
    if "deliberate" not in wanted:
        assert wanted["verdict"] == expected["verdict"]
    assert ("error" if errors else "ok") == wanted["verdict"], [(f.code, f.key, f.message) for f in errors]
    if not errors:
        return
    first = errors[0]  # ordered by trainer stage: the one the run stops at
    if "deliberate" not in wanted:
        assert first.stage == expected["rejected_by"], (first.code, first.key, first.message)
    assert (first.code, first.key, first.stage) == (wanted["code"], wanted["key"], wanted["stage"]), first.message


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_resolved_config(case: Path) -> None:
    expected = _expected(case)
    explanation = explain_report(_report(case))
    if expected["load"] != "ok":
        assert explanation.resolved is None
        return
    assert explanation.resolved is not None, "the reference loads this file"
    _same(expected["resolved"], _plain(explanation.resolved), "resolved")


def _built(expected: dict[str, Any]) -> bool:
    """Whether the reference got past the model build (so kforge must list the parameters)."""
    return expected["verdict"] == "ok" or expected["rejected_by"] not in (LOAD, "job validation", BUILD)


@pytest.mark.parametrize("case", [c for c in CASES if "parameters" in _expected(c)],
                         ids=[c.stem for c in CASES if "parameters" in _expected(c)])
def test_parameters_and_freeze_plan(case: Path) -> None:
    expected = _expected(case)
    report = _report(case)
    model = report.model
    if model is None:
        assert not _built(expected), f"the reference built the model; kforge: {report.model_error}"
        return
    assert [[p.name, list(p.shape)] for p in model.parameters] == expected["parameters"]
    assert sorted(p.name for p in model.parameters if p.frozen_at_construction) == sorted(
        expected["frozen_at_construction"])
    plan = report.plan
    if not expected.get("stages") or plan is None:
        return
    planned = {stage.start_step: stage.frozen for stage in plan.stages}
    for stage in expected["stages"]:
        if "frozen" in stage:  # a boundary where applying the specs raised has no frozen set
            assert int(stage["start_step"]) in planned, f"boundary {stage['start_step']} missing"
            assert sorted(planned[int(stage["start_step"])]) == sorted(stage["frozen"]), stage["start_step"]
