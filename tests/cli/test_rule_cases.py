"""Every rule, case by case: tests/rules/KFxxx/ holds configs that fire the rule and configs that must not.

The layout and the sidecar keys are described in tests/rules/README.md. Each case runs through
`kforge validate --format json`: a firing case must report the folder's code (with the key,
severity, stage and message text its sidecar names), a clean case must not; every error of
either says how to fix it.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from recorded import RECORDED

from kforge_cli.rules import all_rules

RULES_DIR = Path(__file__).resolve().parents[1] / "rules"
RULES = {rule.code: rule for rule in all_rules()}
SIDECAR_KEYS = {"args", "key", "severity", "stage", "message", "hint", "valid", "exit", "errors", "warnings",
                "error_lines"}
CASE_NAME = re.compile(r"(fires|clean)(_[a-z0-9_]+)?")
# Codes no config can make kforge report, and where they are tested instead.
EXEMPT = {
    "KF000": "an internal error is a bug in kforge, not something a config can trigger; "
             "tests/cli/test_exit_codes.py raises one inside a rule check",
}


@dataclass(frozen=True)
class Case:
    code: str
    name: str
    path: Path  # the .toml file, or the folder holding job.toml
    expect: dict[str, Any] = field(default_factory=dict)

    @property
    def fires(self) -> bool:
        return self.name.startswith("fires")

    @property
    def id(self) -> str:
        return f"{self.code}/{self.name}"


def _cases() -> list[Case]:
    cases = []
    for folder in sorted(p for p in RULES_DIR.iterdir() if p.is_dir()):
        for path in sorted(folder.iterdir()):
            name = path.name.removesuffix(".toml")
            if not CASE_NAME.fullmatch(name) or (path.is_file() and path.suffix != ".toml"):
                continue
            sidecar = folder / f"{name}.json"
            expect = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
            cases.append(Case(folder.name, name, path, expect))
    return cases


CASES = _cases()


def _checked_copy(case: Case, tmp_path: Path) -> Path:
    """The case copied into a folder that is a repository of its own; the path to validate."""
    (tmp_path / ".git").mkdir()
    if case.path.is_dir():
        shutil.copytree(case.path, tmp_path / case.name)
        return tmp_path / case.name / "job.toml"
    shutil.copy(case.path, tmp_path / case.path.name)
    return tmp_path / case.path.name


def _args(case: Case) -> list[str]:
    return [arg.replace("{recorded}", str(RECORDED)) for arg in case.expect.get("args", [])]


def _expected_exit(case: Case) -> int:
    if "exit" in case.expect:
        return case.expect["exit"]
    if "valid" in case.expect:
        return 0 if case.expect["valid"] else 1
    if not case.fires:
        return 0
    severity = case.expect.get("severity", RULES[case.code].severity)
    return 1 if severity == "error" else 0


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule_case(kforge, tmp_path, case):
    path = _checked_copy(case, tmp_path)
    expect = case.expect
    code = _expected_exit(case)
    run = kforge("validate", "--format", "json", *_args(case), path, expect=code)
    assert run.stderr == ""
    (report,) = run.json()["files"]
    findings = report["findings"]
    assert report["valid"] is (code == 0)
    summary = [(f["code"], f["severity"], f["key"], f["message"]) for f in findings]
    mine = [f for f in findings if f["code"] == case.code]
    if not case.fires:
        assert mine == [], f"{case.code} fires on a clean case: {summary}"
    else:
        assert mine, f"{case.code} does not fire: {summary}"
        if "key" in expect:
            mine = [f for f in mine if f["key"] == expect["key"]]
            assert mine, f"no {case.code} finding at {expect['key']}: {summary}"
        for name in ("severity", "stage"):
            if name in expect:
                assert {f[name] for f in mine} == {expect[name]}, summary
        for name in ("message", "hint"):
            if name in expect:
                assert any(expect[name] in (f[name] or "") for f in mine), summary
    errors = [f for f in findings if f["severity"] == "error"]
    assert {(f["code"], f["key"]) for f in errors} >= {tuple(e) for e in expect.get("errors", [])}, summary
    warned = {(f["code"], f["key"]) for f in findings if f["severity"] == "warning"}
    assert warned >= {tuple(w) for w in expect.get("warnings", [])}, summary
    if "error_lines" in expect:
        assert [f["line"] for f in errors] == expect["error_lines"]
    for finding in errors:
        assert finding["hint"], finding  # every error says how to fix it


# -- the cases themselves ------------------------------------------------------------------------


def test_every_rule_has_a_firing_and_a_clean_case():
    have = {(c.code, c.fires) for c in CASES}
    missing = [f"{code} {kind}" for code in RULES if code not in EXEMPT
               for kind, fires in (("firing", True), ("clean", False)) if (code, fires) not in have]
    assert missing == [], f"add tests/rules/<code>/fires_*.toml and clean_*.toml for: {missing}"
    assert set(EXEMPT) <= set(RULES)
    assert not {c.code for c in CASES} & set(EXEMPT), "an exempt code has cases: drop the exemption"


def test_case_folders_hold_only_cases_and_their_sidecars():
    # A misnamed file (fires.expect.json, fire_x.toml) would otherwise be silently ignored.
    known = {case.path for case in CASES} | {case.path.parent / f"{case.name}.json" for case in CASES}
    for folder in RULES_DIR.iterdir():
        if folder.name == "README.md":
            continue
        assert folder.is_dir() and folder.name in RULES, f"tests/rules/{folder.name} is not a rule code"
        for path in folder.iterdir():
            assert path in known, f"{path.relative_to(RULES_DIR)} is neither a case nor a case's sidecar"
            if path.suffix == ".json":
                assert set(json.loads(path.read_text())) <= SIDECAR_KEYS, path
    for case in CASES:
        if case.path.is_dir():
            assert (case.path / "job.toml").is_file(), f"{case.id} is a folder without job.toml"
