"""[tool.kforge] discovery and rule selection (kforge_cli.lint.settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kforge_cli.lint.settings import (
    RuleSelection,
    SelectionLayer,
    Settings,
    SettingsError,
    SettingsFinder,
    cli_layer,
    parse_selectors,
    settings_from_table,
)
from kforge_cli.rules import all_rules

RULES = all_rules()
ALL_CODES = [rule.code for rule in RULES]
# Rules no selection can hide (an unreadable file, invalid settings, an internal error).
ALWAYS = {rule.code for rule in RULES if not rule.suppressible}


def enabled(*layers: SelectionLayer) -> set[str]:
    selection = RuleSelection(layers)
    return {code for code in ALL_CODES if selection.enabled(code)}


def codes(prefix: str) -> set[str]:
    return {code for code in ALL_CODES if code.startswith(prefix)}


# --- selectors ---------------------------------------------------------------


def test_selectors_split_commas_strip_uppercase_and_dedupe():
    assert parse_selectors(["kf4, KF301", "KF4", ""], "--ignore") == ("KF4", "KF301")


@pytest.mark.parametrize("bad", ["KF9", "KF3011", "E501", "KF-3", "301", "KFx"])
def test_selector_that_matches_no_rule_is_an_error(bad):
    with pytest.raises(SettingsError) as caught:
        parse_selectors([bad], "--select")
    assert repr(bad) in str(caught.value) and str(caught.value).startswith("--select: ")
    assert "kforge rules" in caught.value.hint


def test_bare_kf_prefix_selects_every_rule():
    assert parse_selectors(["KF"], "x") == ("KF",)
    assert enabled(SelectionLayer(select=("KF",))) == set(ALL_CODES)


# --- layered selection ---------------------------------------------------------


def test_no_layers_enable_everything():
    assert enabled() == set(ALL_CODES)


def test_select_starts_from_nothing():
    assert enabled(SelectionLayer(select=("KF3",))) == codes("KF3") | ALWAYS


def test_ignore_prefix_and_exact_code():
    assert enabled(SelectionLayer(ignore=("KF4", "KF305"))) == set(ALL_CODES) - codes("KF4") - {"KF305"}


def test_more_specific_prefix_wins_within_a_layer_and_ignore_wins_ties():
    layer = SelectionLayer(select=("KF4", "KF401"), ignore=("KF40", "KF401"))
    # KF401: select and ignore are equally specific -> ignored; other KF40x: ignore is more specific.
    assert enabled(layer) & codes("KF4") == set()
    assert enabled(SelectionLayer(select=("KF401",), ignore=("KF4",))) == {"KF401"} | ALWAYS


def test_command_line_select_replaces_file_select_and_can_reenable_an_ignored_rule():
    in_file = SelectionLayer(select=("KF3",), ignore=("KF4",))
    assert enabled(in_file, SelectionLayer(select=("KF401",))) == {"KF401"} | ALWAYS


def test_command_line_ignore_adds_to_the_file():
    in_file = SelectionLayer(ignore=("KF4",))
    assert enabled(in_file, SelectionLayer(ignore=("KF305",))) == set(ALL_CODES) - codes("KF4") - {"KF305"}


def test_unreadable_file_finding_cannot_be_ignored():
    assert RuleSelection((SelectionLayer(ignore=("KF0", "KF")),)).enabled("KF001")


def test_cli_layer_without_select_keeps_earlier_layers():
    assert cli_layer([], []) == SelectionLayer(select=None, ignore=())
    assert cli_layer(["KF3,KF401"], ["KF305", "KF306"]) == SelectionLayer(
        select=("KF3", "KF401"), ignore=("KF305", "KF306"))


# --- the [tool.kforge] table -----------------------------------------------------


def test_full_table():
    got = settings_from_table({"select": ["KF"], "ignore": ["KF4"], "strict": True, "world-size": 32}, "p")
    assert got == Settings(path="p", selection=SelectionLayer(select=("KF",), ignore=("KF4",)),
                           strict=True, world_size=32)


def test_empty_table_changes_nothing():
    assert settings_from_table({}, "p") == Settings(path="p")


@pytest.mark.parametrize(("table", "message", "hint"), [
    ({"world_size": 8}, "unknown key 'world_size'", "did you mean 'world-size'?"),
    ({"ignored": ["KF4"]}, "unknown key 'ignored'", "did you mean 'ignore'?"),
    ({"colour": 1}, "unknown key 'colour'", "known keys: select, ignore, strict, world-size, gpu"),
    ({"ignore": "KF4"}, ".ignore must be a list of rule codes, not 'KF4'", 'write ignore = ["KF4"]'),
    ({"ignore": "KF4, kf30"}, ".ignore must be a list", 'write ignore = ["KF4", "kf30"]'),
    ({"ignore": {"a": 1}}, ".ignore must be a list",
     'write ignore as a list of codes or prefixes, e.g. ignore = ["KF4", "KF30"]'),
    ({"select": [4]}, ".select must be a list of rule codes", None),
    ({"select": ["KF9"]}, "'KF9' is not a rule code", None),
    ({"strict": "yes"}, ".strict must be true or false, not 'yes'", None),
    ({"world-size": 0}, ".world-size must be a positive integer, not 0", None),
    ({"world-size": True}, ".world-size must be a positive integer, not True", None),
    ({"world-size": 8.0}, ".world-size must be a positive integer, not 8.0", None),
])
def test_invalid_table_is_a_settings_error(table, message, hint):
    with pytest.raises(SettingsError) as caught:
        settings_from_table(table, "/repo/pyproject.toml")
    assert str(caught.value).startswith("/repo/pyproject.toml: [tool.kforge]")
    assert message in str(caught.value)
    if hint:
        assert caught.value.hint == hint


def test_table_must_be_a_table():
    with pytest.raises(SettingsError, match=r"\[tool.kforge\] must be a table, not list"):
        settings_from_table(["KF4"], "p")


# --- discovery -------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_nearest_pyproject_with_the_table_wins(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.kforge]\nignore = ["KF4"]\n')
    write(tmp_path / "jobs" / "pyproject.toml", '[tool.kforge]\nignore = ["KF3"]\n')
    config = write(tmp_path / "jobs" / "vlm" / "a.toml", "")
    found = SettingsFinder().for_config(str(config))
    assert found.path == str(tmp_path / "jobs" / "pyproject.toml")
    assert found.selection.ignore == ("KF3",)


def test_pyproject_without_the_table_is_skipped(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.kforge]\nstrict = true\n')
    write(tmp_path / "jobs" / "pyproject.toml", '[project]\nname = "kforge-jobs"\n[tool.ruff]\nline-length = 99\n')
    config = write(tmp_path / "jobs" / "a.toml", "")
    assert SettingsFinder().for_config(str(config)).strict is True


def test_walk_stops_at_the_repository_root(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.kforge]\nstrict = true\n')
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    config = write(tmp_path / "repo" / "configs" / "a.toml", "")
    assert SettingsFinder().for_config(str(config)) == Settings()


def test_repository_root_itself_is_searched(tmp_path):
    (tmp_path / ".git").write_text("gitdir: elsewhere\n")  # a worktree or submodule marks it with a file
    write(tmp_path / "pyproject.toml", '[tool.kforge]\nworld-size = 8\n')
    config = write(tmp_path / "configs" / "a.toml", "")
    assert SettingsFinder().for_config(str(config)).world_size == 8


def test_relative_config_path_is_resolved_from_the_working_directory(tmp_path, monkeypatch):
    write(tmp_path / "pyproject.toml", '[tool.kforge]\nignore = ["KF305"]\n')
    write(tmp_path / "a.toml", "")
    monkeypatch.chdir(tmp_path)
    assert SettingsFinder().for_config("a.toml").selection.ignore == ("KF305",)


def test_broken_pyproject_that_mentions_kforge_is_an_error(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.kforge\nignore = 1\n")
    config = write(tmp_path / "a.toml", "")
    problem = SettingsFinder().for_config(str(config)).problem
    assert problem is not None and "cannot be parsed" in str(problem)


def test_unrelated_broken_pyproject_is_not_our_business(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.ruff\n")
    (tmp_path / ".git").mkdir()
    config = write(tmp_path / "a.toml", "")
    assert SettingsFinder().for_config(str(config)) == Settings()


def test_one_lookup_per_directory(tmp_path, monkeypatch):
    import kforge_cli.lint.settings as settings_module

    write(tmp_path / "pyproject.toml", '[tool.kforge]\nstrict = true\n')
    (tmp_path / "jobs").mkdir()
    reads = []
    real = settings_module._read_pyproject
    monkeypatch.setattr(settings_module, "_read_pyproject", lambda p: reads.append(p) or real(p))
    finder = SettingsFinder()
    for i in range(50):
        assert finder.for_config(str(tmp_path / "jobs" / f"c{i}.toml")).strict is True
    assert len(reads) == 2  # jobs/ then its parent, once


def test_very_deep_directory_does_not_recurse(tmp_path):
    deep = tmp_path
    for _ in range(60):
        deep = deep / "d"
    (tmp_path / ".git").mkdir()
    write(tmp_path / "pyproject.toml", '[tool.kforge]\nselect = ["KF1"]\n')
    assert SettingsFinder().for_config(str(deep / "a.toml")).selection.select == ("KF1",)
