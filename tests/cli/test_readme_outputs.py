"""The README shows real output: every shown command must still print exactly that."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent.parent

SHOWN = [
    (("validate", "examples/broken.toml", "examples/vlm_joint_decoder.toml"), 1),
    (("explain", "examples/vlm_cross_attention_freeze_schedule.toml"), 0),
    (("explain", "--field", "vlm.cross_attention_every_n_layers"), 0),
    (("freeze-plan", "examples/vlm_freeze_traps.toml"), 0),
    (("freeze-plan", "--step", "2500", "examples/vlm_freeze_traps.toml"), 0),
    (("convert", "--diff", "examples/legacy/vlm_mot_staged.legacy.toml"), 0),
]


@pytest.mark.parametrize("args, code", SHOWN, ids=[" ".join(a[:2]) for a, _ in SHOWN])
def test_readme_output_is_current(kforge, monkeypatch, args, code):
    monkeypatch.chdir(REPO_ROOT)
    run = kforge(*args, expect=code)
    shown = "\n".join(line.rstrip() for line in run.stdout.splitlines())
    if args[:2] == ("freeze-plan", "--step"):
        shown = "\n".join(shown.splitlines()[:24])  # the README shows the table, not the findings
    assert shown in (REPO_ROOT / "README.md").read_text(), f"README output of kforge {' '.join(args)} is stale"
