"""The README's promises that a test can hold it to."""

from __future__ import annotations

from conftest import REPO_ROOT


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    command = next(line for line in ci.splitlines() if line.startswith("python3 -m venv"))
    assert command in readme


def test_readme_examples_exist():
    readme = (REPO_ROOT / "README.md").read_text()
    for name in ("examples/broken.toml", "examples/vlm_freeze_traps.toml",
                 "examples/vlm_cross_attention_freeze_schedule.toml", "examples/legacy/vlm_mot_staged.legacy.toml"):
        assert name in readme
        assert (REPO_ROOT / name).is_file(), name
