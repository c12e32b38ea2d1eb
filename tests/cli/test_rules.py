"""`kforge rules`: the rule catalog as a table, as JSON, and one rule at a time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kforge_cli.rules import all_rules

RULES = all_rules()

PACKAGE = Path(__file__).resolve().parents[2] / "kforge_cli"


def squash(text: str) -> str:
    """Table text without borders and line wrapping, for 'contains' checks."""
    return " ".join(re.sub(r"[│┃┏┓┗┛┡┩└┘├┤┼┳┻╇━─]", " ", text).split())


def test_table_lists_every_rule(kforge):
    out = kforge("rules", expect=0).stdout
    flat = squash(out)
    for rule in RULES:
        assert rule.code in out
        assert rule.name in flat and rule.severity in flat
    assert [line.split()[1] for line in out.splitlines() if re.match(r"│ KF\d{3} ", line)] == \
        [rule.code for rule in RULES]


def test_json_is_the_catalog(kforge):
    doc = kforge("rules", "--format", "json", expect=0).json()
    assert doc == {"version": 1, "rules": [r.to_json() for r in RULES]}
    assert set(doc["rules"][0]) == {"code", "name", "severity", "summary", "example", "stages", "reads"}


@pytest.mark.parametrize("query", ["KF301", "kf301", "freeze-unknown-alias"])
def test_one_rule(kforge, query):
    out = squash(kforge("rules", query, expect=0).stdout)
    rule = next(r for r in RULES if r.code == "KF301")
    assert out.startswith(f"KF301 freeze-unknown-alias error {' '.join(rule.summary.split())}")
    assert out.endswith(f"Example: {rule.example}")


def test_prefix_lists_a_family(kforge):
    doc = kforge("rules", "KF3", "-f", "json", expect=0).json()
    assert [r["code"] for r in doc["rules"]] == [r.code for r in RULES if r.code.startswith("KF3")]
    assert "KF401" not in kforge("rules", "KF3", expect=0).stdout


def test_single_code_as_json_is_a_one_element_list(kforge):
    assert [r["code"] for r in kforge("rules", "KF501", "-f", "json", expect=0).json()["rules"]] == ["KF501"]


@pytest.mark.parametrize(("query", "hint"), [("KF999", "did you mean 'KF409'?"),
                                             ("unknwn-key", "did you mean 'unknown-key'?")])
def test_unknown_rule_is_a_usage_error_with_a_suggestion(kforge, query, hint):
    run = kforge("rules", query, expect=2)
    assert run.stdout == ""
    assert f"no rule matches {query!r}" in run.stderr and hint in run.stderr


def test_markup_in_catalog_text_is_printed_verbatim(kforge):
    # KF105's summary names the [model.vlm] table; Rich must not eat it as markup.
    assert "[model.vlm]" in squash(kforge("rules", "KF105", expect=0).stdout)


# --- the catalog itself -----------------------------------------------------------------


def test_catalog_entries_are_well_formed():
    codes = [r.code for r in RULES]
    names = [r.name for r in RULES]
    assert len(set(codes)) == len(codes) and codes == sorted(codes)
    assert len(set(names)) == len(names)
    for rule in RULES:
        assert re.fullmatch(r"KF\d{3}", rule.code)
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule.name), rule.name
        assert rule.severity in ("error", "warning", "info")
        assert rule.summary.endswith(".") and rule.example.strip()


def test_every_code_the_package_reports_is_in_the_catalog():
    # SARIF rule ids, --select / --ignore and `kforge rules` all rely on the catalog being complete.
    reported = set()
    for source in PACKAGE.rglob("*.py"):
        reported |= set(re.findall(r"""["'](KF\d{3})["']""", source.read_text()))
    missing = sorted(reported - {r.code for r in RULES})
    assert missing == [], f"codes reported but missing from kforge_cli/lint/catalog.py: {missing}"
