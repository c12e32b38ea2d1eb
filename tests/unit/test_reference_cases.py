"""kforge's loader and job validation against outcomes recorded from the reference."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from kforge_cli.config.loader import load_job
from kforge_cli.config.resolved import resolved_dict
from kforge_cli.lint.engine import Options, check_file
from kforge_cli.rules.rule import VALIDATE

CASES = sorted((Path(__file__).parent.parent / "cases" / "reference").glob("*.toml"))


def _same(expected, actual, path="resolved"):
    if isinstance(expected, dict) and isinstance(actual, dict):
        assert set(expected) == set(actual), f"{path}: keys differ: {set(expected) ^ set(actual)}"
        for key in expected:
            _same(expected[key], actual[key], f"{path}.{key}")
    elif isinstance(expected, list) and isinstance(actual, (list, tuple)):
        assert len(expected) == len(actual), f"{path}: length {len(expected)} vs {len(actual)}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            _same(e, a, f"{path}[{i}]")
    elif expected == "nan":
        assert isinstance(actual, float) and math.isnan(actual), f"{path}: {actual!r} is not NaN"
    elif isinstance(expected, float) or isinstance(actual, float):
        assert math.isclose(expected, actual, rel_tol=1e-12), f"{path}: {expected!r} vs {actual!r}"
    else:
        assert isinstance(expected, bool) is isinstance(actual, bool) and expected == actual, (
            f"{path}: {expected!r} vs {actual!r}")


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_matches_reference(case: Path) -> None:
    expected = json.loads((case.parent / f"{case.stem}.expected.json").read_text())
    result = load_job(str(case))
    load_errors = [f for f in result.findings if f.is_error]
    if expected["load"] == "error":
        assert load_errors, f"reference rejected at load ({expected['load_error']}); kforge accepted"
        return
    assert not load_errors, f"reference accepted; kforge: {[(f.code, f.key, f.message) for f in load_errors]}"
    _same(expected["resolved"], resolved_dict(result.job))
    report = check_file(str(case), Options(world_size=expected["world_size"]))
    validate_errors = [f for f in report.findings if f.is_error and f.stage == VALIDATE]
    if expected["validate"] == "error":
        assert validate_errors, f"reference's validate raised ({expected['validate_error']}); kforge passed"
    else:
        assert not validate_errors, [(f.code, f.message) for f in validate_errors]
