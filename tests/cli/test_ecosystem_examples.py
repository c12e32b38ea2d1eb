"""examples/: realistic configs for the README; all valid except the intentionally broken one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BROKEN = EXAMPLES / "broken.toml"
# examples/legacy/ holds old-layout inputs for `kforge convert`; they are not meant to validate.
VALID = sorted(p for p in EXAMPLES.glob("*.toml") if p != BROKEN)


def test_examples_cover_every_arch_text_only_and_a_freeze_schedule():
    arches = set()
    text_only = schedules = 0
    for path in VALID:
        vlm = tomllib.loads(path.read_text()).get("vlm")
        if vlm is None:
            text_only += 1
            continue
        arches.add(vlm.get("arch", "joint_decoder"))
        schedules += bool(vlm.get("freeze_schedule"))
    assert {"joint_decoder", "cross_attention", "mot", "moma"} <= arches
    assert text_only >= 1 and schedules >= 1
    assert (EXAMPLES / "llama_70b.toml").exists()


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_example_validates_without_errors(kforge, path):
    doc = kforge("validate", "-f", "json", path, expect=0).json()
    assert [f for f in doc["files"][0]["findings"] if f["severity"] == "error"] == []


def test_all_examples_in_one_call(kforge):
    # The README's `kforge validate examples/*.toml`: only the broken one fails.
    doc = kforge("validate", "-f", "json", *VALID, BROKEN, expect=1).json()
    assert [f["valid"] for f in doc["files"]] == [True] * len(VALID) + [False]


def test_broken_example_shows_the_typical_mistakes(kforge):
    doc = kforge("validate", "-f", "json", BROKEN, expect=1).json()
    findings = {f["code"]: f for f in doc["files"][0]["findings"]}
    assert {"KF101", "KF103", "KF202", "KF301", "KF401", "KF402"} <= set(findings)
    assert findings["KF101"]["hint"] == "did you mean model.n_heads?"
    assert findings["KF103"]["key"] == "optimizer.name" and "adamw" in findings["KF103"]["hint"]
    assert all(f["line"] for f in findings.values() if f["code"] != "KF202")
