"""validate with [tool.kforge] settings and --select / --ignore / --strict / --no-strict."""

from __future__ import annotations

from pathlib import Path

import pytest

# One KF101 error (model.dimm) and one KF405 warning (no data source).
ERROR_AND_WARNING = """\
[model]
dim = 256
dimm = 256
n_layers = 4
n_heads = 4
n_kv_heads = 4
vocab_size = 1000
max_seq_len = 512

[train]
seq_len = 512
"""

# Valid; tp = 4 does not divide a world size of 6 (KF200).
TENSOR_PARALLEL = """\
[model]
dim = 256
n_layers = 4
n_heads = 4
n_kv_heads = 4
vocab_size = 1000
max_seq_len = 512

[train]
seq_len = 512

[data]
dataset_path = "/data/tokens"

[distributed]
tp = 4
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / ".git").mkdir()  # a repository root, so the walk never leaves tmp_path
    return tmp_path


def put(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def codes(run) -> list[list[str]]:
    return [[f["code"] for f in file["findings"]] for file in run.json()["files"]]


def test_without_settings_every_finding_counts(kforge, repo):
    config = put(repo / "a.toml", ERROR_AND_WARNING)
    assert codes(kforge("validate", "-f", "json", config, expect=1)) == [["KF101", "KF405"]]


def test_ignored_error_no_longer_fails_the_file(kforge, repo):
    put(repo / "pyproject.toml", '[tool.kforge]\nignore = ["KF1"]\n')
    config = put(repo / "configs" / "a.toml", ERROR_AND_WARNING)
    run = kforge("validate", "-f", "json", config, expect=0)
    assert codes(run) == [["KF405"]]
    assert run.json()["summary"] == {"files": 1, "errors": 0, "warnings": 1}
    assert run.json()["files"][0]["valid"] is True


def test_ignored_findings_leave_text_github_and_sarif_output(kforge, repo):
    put(repo / "pyproject.toml", '[tool.kforge]\nignore = ["KF101"]\n')
    config = put(repo / "a.toml", ERROR_AND_WARNING)
    assert "KF101" not in kforge("validate", config, expect=0).stdout
    assert "KF101" not in kforge("validate", "-f", "github", config, expect=0).stdout
    results = kforge("validate", "-f", "sarif", config, expect=0).json()["runs"][0]["results"]
    assert [r["ruleId"] for r in results] == ["KF405"]


def test_select_in_file(kforge, repo):
    put(repo / "pyproject.toml", '[tool.kforge]\nselect = ["KF4"]\n')
    config = put(repo / "a.toml", ERROR_AND_WARNING)
    assert codes(kforge("validate", "-f", "json", config, expect=0)) == [["KF405"]]


def test_command_line_select_replaces_the_files_select(kforge, repo):
    put(repo / "pyproject.toml", '[tool.kforge]\nselect = ["KF4"]\n')
    config = put(repo / "a.toml", ERROR_AND_WARNING)
    assert codes(kforge("validate", "-f", "json", "--select", "KF101", config, expect=1)) == [["KF101"]]


def test_command_line_select_reenables_a_rule_the_file_ignores(kforge, repo):
    put(repo / "pyproject.toml", '[tool.kforge]\nignore = ["KF1", "KF4"]\n')
    config = put(repo / "a.toml", ERROR_AND_WARNING)
    assert codes(kforge("validate", "-f", "json", "--select", "KF405", config, expect=0)) == [["KF405"]]


@pytest.mark.parametrize("flags", [
    ("--ignore", "KF101,KF405"),
    ("--ignore", "KF101", "--ignore", "KF405"),
    ("--ignore", " kf101 , KF4 "),
])
def test_ignore_comma_separated_or_repeated(kforge, repo, flags):
    config = put(repo / "a.toml", ERROR_AND_WARNING)
    assert codes(kforge("validate", "-f", "json", *flags, config, expect=0)) == [[]]


def test_command_line_ignore_adds_to_the_files_ignore(kforge, repo):
    put(repo / "pyproject.toml", '[tool.kforge]\nignore = ["KF405"]\n')
    config = put(repo / "a.toml", ERROR_AND_WARNING)
    assert codes(kforge("validate", "-f", "json", "--ignore", "KF101", config, expect=0)) == [[]]


def test_strict_from_settings_and_no_strict_overrides_it(kforge, repo):
    put(repo / "pyproject.toml", '[tool.kforge]\nstrict = true\nignore = ["KF101"]\n')
    config = put(repo / "a.toml", ERROR_AND_WARNING)
    run = kforge("validate", config, expect=1)
    assert "invalid: 1 warning (strict)" in " ".join(run.stdout.split())
    assert kforge("validate", "-f", "json", config, expect=1).json()["files"][0]["valid"] is False
    assert kforge("validate", "--no-strict", config, expect=0)


def test_strict_flag_still_works_without_settings(kforge, repo):
    config = put(repo / "a.toml", ERROR_AND_WARNING)
    assert kforge("validate", "--strict", "--ignore", "KF101", config, expect=1)
    assert kforge("validate", "--ignore", "KF101", config, expect=0)


def test_world_size_from_settings_and_the_command_line_wins(kforge, repo):
    put(repo / "pyproject.toml", "[tool.kforge]\nworld-size = 6\n")
    config = put(repo / "a.toml", TENSOR_PARALLEL)
    assert codes(kforge("validate", "-f", "json", config, expect=1)) == [["KF200"]]
    assert codes(kforge("validate", "-f", "json", "--world-size", "8", config, expect=0)) == [[]]


def test_each_file_gets_its_own_settings(kforge, repo):
    put(repo / "strict" / "pyproject.toml", "[tool.kforge]\nstrict = true\n")
    put(repo / "lenient" / "pyproject.toml", '[tool.kforge]\nignore = ["KF1"]\n')
    strict = put(repo / "strict" / "a.toml", ERROR_AND_WARNING.replace("dimm = 256\n", ""))
    lenient = put(repo / "lenient" / "a.toml", ERROR_AND_WARNING)
    run = kforge("validate", "-f", "json", strict, lenient, expect=1)
    assert [f["valid"] for f in run.json()["files"]] == [False, True]
    assert codes(run) == [["KF405"], ["KF405"]]


def test_unreadable_file_cannot_be_ignored(kforge, repo):
    put(repo / "pyproject.toml", '[tool.kforge]\nignore = ["KF0", "KF1"]\n')
    broken = put(repo / "a.toml", "[model\n")
    assert codes(kforge("validate", "-f", "json", "--ignore", "KF001", broken, expect=1)) == [["KF001"]]


@pytest.mark.parametrize(("table", "expected"), [
    ("world_size = 8", "unknown key 'world_size'"),
    ('ignore = "KF4"', "[tool.kforge].ignore must be a list of rule codes"),
    ('select = ["KF99"]', "'KF99' is not a rule code"),
    ("strict = 1", "[tool.kforge].strict must be true or false"),
])
def test_invalid_settings_table_is_an_error_of_every_file_it_governs(kforge, repo, table, expected):
    put(repo / "pyproject.toml", f"[tool.kforge]\n{table}\n")
    config = put(repo / "a.toml", ERROR_AND_WARNING)
    other = put(repo / "b.toml", "")
    doc = kforge("validate", "-f", "json", config, other, expect=1).json()
    for file in doc["files"]:
        [problem] = [f for f in file["findings"] if f["code"] == "KF003"]
        assert expected in problem["message"] and "pyproject.toml" in problem["message"]
        assert not file["valid"]


def test_invalid_selector_on_the_command_line_is_a_usage_error(kforge, repo):
    config = put(repo / "a.toml", ERROR_AND_WARNING)
    run = kforge("validate", "--ignore", "KF4,E501", config, expect=2)
    assert "--ignore: 'E501' is not a rule code" in run.stderr
    assert "kforge rules" in run.stderr


def test_help_says_ignored_errors_do_not_fail(kforge):
    text = " ".join(kforge("validate", "--help", expect=0).stdout.replace("│", " ").split())
    assert "an ignored error no longer fails the file" in text
    assert "[tool.kforge]" in text
    for flag in ("--select", "--ignore", "--no-strict"):
        assert flag in text
