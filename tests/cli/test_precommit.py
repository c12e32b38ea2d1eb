""".pre-commit-hooks.yaml: each hook's entry, run on files the way pre-commit selects them."""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / ".pre-commit-hooks.yaml"
EXAMPLES = REPO / "examples"


def read_manifest(text: str) -> list[dict[str, str]]:
    """The manifest's subset of YAML: a list of flat mappings of plain scalars (no PyYAML needed)."""
    hooks: list[dict[str, str]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"(- |  )([a-z_]+): (.+)", line)
        assert match, f"unexpected manifest line: {line!r}"
        if match.group(1) == "- ":
            hooks.append({})
        hooks[-1][match.group(2)] = match.group(3)
    return hooks


HOOKS = {hook["id"]: hook for hook in read_manifest(MANIFEST.read_text())}


def test_manifest_parses_the_same_with_pyyaml_when_available():
    yaml = pytest.importorskip("yaml")
    assert yaml.safe_load(MANIFEST.read_text()) == list(HOOKS.values())


def test_hooks_are_declared():
    assert sorted(HOOKS) == ["kforge-convert-check", "kforge-validate"]
    assert HOOKS["kforge-validate"]["entry"] == "kforge validate"
    assert HOOKS["kforge-convert-check"]["entry"] == "kforge convert --check"
    for hook in HOOKS.values():
        assert hook["language"] == "python" and hook["files"] == r"\.toml$" and hook["name"]


def test_entry_is_an_installed_console_script():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kforge"] == "kforge_cli.cli.main:main"
    for hook in HOOKS.values():
        assert shlex.split(hook["entry"])[0] in scripts


def selected(hook: dict[str, str], paths: list[str]) -> list[str]:
    """pre-commit's choice: `files` searched in the repo-relative path, minus `exclude`."""
    return [p for p in paths
            if re.search(hook["files"], p) and not re.search(hook.get("exclude", "^$"), p)]


CANDIDATES = ["pyproject.toml", "tools/pyproject.toml", "Cargo.toml", "ruff.toml", ".ruff.toml", "uv.toml",
              "configs/my_pyproject.toml", "configs/train.toml", "configs/train.toml.bak", "README.md",
              "configs/Cargo.toml.example"]


@pytest.mark.parametrize("hook_id", sorted(HOOKS))
def test_files_and_exclude(hook_id):
    assert selected(HOOKS[hook_id], CANDIDATES) == ["configs/my_pyproject.toml", "configs/train.toml"]


@pytest.fixture
def checkout(tmp_path, monkeypatch, shared_fixtures) -> Path:
    """A repository with job configs, a legacy one, a broken one and tool manifests."""
    (tmp_path / "configs" / "legacy").mkdir(parents=True)
    for name in ("text_7b.toml", "vlm_mot.toml", "vlm_joint_decoder.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / "configs" / name)
    shutil.copy(shared_fixtures / "legacy" / "vlm_7b_cross_attn.legacy.toml",
                tmp_path / "configs" / "legacy" / "ca.toml")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "jobs"\nversion = "1"\n')
    (tmp_path / "Cargo.toml").write_text('[package]\nname = "x"\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def files_in(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def run_hook(kforge, hook_id: str, files: list[str], expect: int):
    hook = HOOKS[hook_id]
    command = shlex.split(hook["entry"])
    assert command[0] == "kforge"
    chosen = selected(hook, files)
    assert chosen and "pyproject.toml" not in chosen and "Cargo.toml" not in chosen
    return kforge(*command[1:], *chosen, expect=expect)


def test_validate_hook_passes_clean_configs(kforge, checkout):
    files = [f for f in files_in(checkout) if "legacy" not in f]
    run = run_hook(kforge, "kforge-validate", files, expect=0)
    assert run.stdout.count("✓") == 3


def test_validate_hook_fails_on_a_broken_config(kforge, checkout):
    shutil.copy(EXAMPLES / "broken.toml", checkout / "configs" / "broken.toml")
    run = run_hook(kforge, "kforge-validate", files_in(checkout), expect=1)
    assert "configs/broken.toml  invalid" in run.stdout
    assert "configs/legacy/ca.toml  invalid" in run.stdout and "KF105" in run.stdout
    assert "configs/text_7b.toml  valid" in run.stdout


def test_validate_hook_honours_tool_kforge(kforge, checkout):
    shutil.copy(EXAMPLES / "broken.toml", checkout / "configs" / "broken.toml")
    (checkout / ".git").mkdir()
    (checkout / "pyproject.toml").write_text('[tool.kforge]\nselect = ["KF4"]\n')
    run_hook(kforge, "kforge-validate", [f for f in files_in(checkout) if "legacy" not in f], expect=0)


def test_convert_check_hook_passes_current_configs(kforge, checkout):
    files = [f for f in files_in(checkout) if "legacy" not in f]
    run = run_hook(kforge, "kforge-convert-check", files, expect=0)
    assert run.stdout == ""


def test_convert_check_hook_fails_on_a_legacy_config_and_changes_nothing(kforge, checkout):
    before = {f: (checkout / f).read_bytes() for f in files_in(checkout)}
    run = run_hook(kforge, "kforge-convert-check", files_in(checkout), expect=1)
    assert "configs/legacy/ca.toml" in run.stderr
    assert {f: (checkout / f).read_bytes() for f in files_in(checkout)} == before
