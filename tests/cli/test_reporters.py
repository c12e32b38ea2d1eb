"""--format sarif against SARIF 2.1.0's essentials, and GitHub annotation escaping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kforge_cli.cli.reporters import render_github
from kforge_cli.findings import Finding
from kforge_cli.lint.engine import FileReport
from kforge_cli.rules import all_rules

RULES = all_rules()

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SARIF_LEVELS = {"none", "note", "warning", "error"}


@pytest.fixture
def mixed_inputs(tmp_path, shared_fixtures) -> list[str]:
    """Files whose findings cover errors, warnings, located and unlocated findings, and KF001."""
    configs = shared_fixtures / "configs"
    syntax_error = tmp_path / "syntax.toml"
    syntax_error.write_text("[model]\ndim = 256\nn_heads = [4\n")
    return [str(EXAMPLES / "broken.toml"), str(configs / "m_unknown_model_key.toml"),
            str(configs / "r_debug.toml"), str(syntax_error), str(tmp_path / "missing.toml")]


@pytest.fixture
def sarif_and_json(kforge, mixed_inputs):
    sarif = kforge("validate", "-f", "sarif", *mixed_inputs, expect=1).json()
    as_json = kforge("validate", "-f", "json", *mixed_inputs, expect=1).json()
    return sarif, as_json


def test_sarif_top_level(sarif_and_json):
    doc, _ = sarif_and_json
    assert doc["version"] == "2.1.0"
    assert re.fullmatch(r"https://.*sarif-2\.1\.0(-rtm\.\d+)?\.json", doc["$schema"])
    assert isinstance(doc["runs"], list) and len(doc["runs"]) == 1
    driver = doc["runs"][0]["tool"]["driver"]
    assert driver["name"] == "kforge" and driver["version"]


def test_sarif_rules_are_the_catalog_in_a_stable_order(sarif_and_json, kforge, shared_fixtures):
    doc, _ = sarif_and_json
    rules = doc["runs"][0]["tool"]["driver"]["rules"]
    ids = [rule["id"] for rule in rules]
    assert ids == [rule.code for rule in RULES]
    assert len(set(ids)) == len(ids)
    # The same rule table whatever was checked, so ruleIndex values are comparable across runs.
    clean = kforge("validate", "-f", "sarif", EXAMPLES / "text_7b.toml", expect=0).json()
    assert clean["runs"][0]["tool"]["driver"]["rules"] == rules
    assert clean["runs"][0]["results"] == []


def test_sarif_every_rule_has_help(sarif_and_json):
    doc, _ = sarif_and_json
    by_code = {rule.code: rule for rule in RULES}
    for rule in doc["runs"][0]["tool"]["driver"]["rules"]:
        entry = by_code[rule["id"]]
        assert rule["name"] == entry.name
        assert rule["shortDescription"]["text"] == entry.summary
        assert rule["fullDescription"]["text"]
        assert entry.summary in rule["help"]["text"] and entry.example in rule["help"]["text"]
        assert rule["help"]["markdown"].startswith(f"**{entry.code}**")
        assert rule["defaultConfiguration"]["level"] in SARIF_LEVELS


def test_sarif_results_match_the_json_findings(sarif_and_json, mixed_inputs):
    doc, as_json = sarif_and_json
    run = doc["runs"][0]
    ids = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    findings = [(file["path"], f) for file in as_json["files"] for f in file["findings"]]
    assert len(run["results"]) == len(findings)
    assert {"error", "warning"} <= {finding["severity"] for _, finding in findings}
    levels = {"error": "error", "warning": "warning", "info": "note"}
    for result, (path, finding) in zip(run["results"], findings):
        assert result["ruleId"] == finding["code"]
        assert result["ruleId"] in ids and ids[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] == levels[finding["severity"]]
        assert result["message"]["text"].startswith(finding["message"])
        if finding["hint"]:
            assert finding["hint"] in result["message"]["text"]
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"]["uri"].endswith(Path(path).name)
        assert "\\" not in physical["artifactLocation"]["uri"]
        if finding["line"] is None:
            assert "region" not in physical
        else:
            assert physical["region"] == {"startLine": finding["line"], "startColumn": finding["column"] or 1}
            assert physical["region"]["startLine"] >= 1 and physical["region"]["startColumn"] >= 1
        if finding["key"]:
            assert location["logicalLocations"] == [{"fullyQualifiedName": finding["key"], "kind": "member"}]
    assert any("region" in r["locations"][0]["physicalLocation"] for r in run["results"])
    assert any("region" not in r["locations"][0]["physicalLocation"] for r in run["results"])


def test_sarif_uri_is_relative_to_the_working_directory(kforge, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "jobs" / "a.toml"
    config.parent.mkdir()
    config.write_text("[model\n")
    doc = kforge("validate", "-f", "sarif", str(config), expect=1).json()
    (result,) = doc["runs"][0]["results"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "jobs/a.toml"


def test_sarif_uri_is_percent_encoded(kforge, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "odd name:1%.toml").write_text("[model\n")
    doc = kforge("validate", "-f", "sarif", "odd name:1%.toml", expect=1).json()
    uri = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri in ("odd%20name%3A1%25.toml", "./odd%20name:1%25.toml")


# --- GitHub workflow commands ----------------------------------------------------------


def unescape_data(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def unescape_property(text: str) -> str:
    return unescape_data(text.replace("%3A", ":").replace("%2C", ","))


def parse_annotation(line: str) -> tuple[str, dict[str, str], str]:
    """Split one workflow command the way the Actions runner does."""
    match = re.fullmatch(r"::(\w+) ([^:]*)::(.*)", line)
    assert match, line
    command, raw_props, data = match.groups()
    props = {}
    for pair in raw_props.split(","):
        key, _, value = pair.partition("=")
        props[key] = unescape_property(value)
    return command, props, unescape_data(data)


AWKWARD = "50% done, then: more\r\nnext line %0A literal"


def test_github_escapes_data_and_properties():
    finding = Finding("KF101", "error", AWKWARD, key="model.a,b:c%", line=3, column=7, hint="use 100%")
    report = FileReport(path="dir,1/odd:name%.toml", load=None, findings=[finding])
    (line,) = render_github([report]).splitlines()
    # Control characters from the file are shown escaped, then the annotation is encoded.
    assert line == ("::error file=dir%2C1/odd%3Aname%25.toml,line=3,col=7,title=KF101 model.a%2Cb%3Ac%25::"
                    "50%25 done, then: more\\r\\nnext line %250A literal (fix: use 100%25)")
    command, props, data = parse_annotation(line)
    assert command == "error"
    assert props == {"file": "dir,1/odd:name%.toml", "line": "3", "col": "7", "title": "KF101 model.a,b:c%"}
    assert data == AWKWARD.replace("\r", "\\r").replace("\n", "\\n") + " (fix: use 100%)"


def test_github_levels_and_unlocated_findings():
    findings = [Finding("KF405", "warning", "w", key="data"), Finding("KF400", "info", "i"),
                Finding("KF001", "error", "e")]
    lines = render_github([FileReport(path="a.toml", load=None, findings=findings)]).splitlines()
    assert lines == ["::warning file=a.toml,title=KF405 data::w", "::notice file=a.toml,title=KF400::i",
                     "::error file=a.toml,title=KF001::e"]
    assert render_github([FileReport(path="a.toml", load=None, findings=[])]) == ""


def test_github_end_to_end_with_an_awkward_file_name_and_key(kforge, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = "odd, name:1%.toml"
    (tmp_path / name).write_text('[model]\n"we%ird,key:x\\nz" = 1\ndim = 256\n')
    out = kforge("validate", "-f", "github", name, expect=1).stdout
    lines = out.splitlines()
    assert len(lines) == out.count("\n")  # no raw newline inside an annotation
    parsed = [parse_annotation(line) for line in lines]
    assert {props["file"] for _, props, _ in parsed} == {name}
    unknown = [(props, data) for command, props, data in parsed if props["title"].startswith("KF101")]
    (props, data), = unknown
    assert props["title"] == "KF101 model.we%ird,key:x\\nz"
    assert data.startswith("unknown key model.we%ird,key:x\\nz")
