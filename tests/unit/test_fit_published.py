"""kforge fit against every published KempnerForge measurement (tests/cases/fit/published.json).

Nothing in kforge_cli.fit is fitted to these rows; this test fails if the
derivation drifts away from them.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "cases" / "fit" / "published.json"


def _fit_table():
    spec = importlib.util.spec_from_file_location("fit_table", ROOT / "scripts" / "fit_table.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["fit_table"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def outcomes():
    return _fit_table().evaluate(CASES)


def test_every_row_has_a_source_and_a_job():
    rows = json.loads(CASES.read_text())["rows"]
    assert len(rows) >= 40
    for row in rows:
        assert ":" in row["source"] and row["job"]["model"] and row["gpu"] == "H200"
        assert row["measured"]["oom"] or row["measured"]["peak_gib"] is not None or "note" in row


def test_every_row_predicts(outcomes):
    assert [o.row["id"] for o in outcomes if o.error] == []


def test_dense_and_vlm_memory_targets(outcomes):
    errors = {o.row["id"]: o.error_pct for o in outcomes if o.row["memory_target"]}
    assert len(errors) >= 20
    assert statistics.median(abs(e) for e in errors.values()) <= 10.0, errors
    assert max(abs(e) for e in errors.values()) <= 20.0, errors


def test_documented_ooms_come_out_oom(outcomes):
    by_id = {o.row["id"]: o for o in outcomes}
    for row_id in ("70b_pure_fsdp_32gpu", "7b_fp8_selective_ac"):
        assert by_id[row_id].verdict == "oom", row_id


def test_moe_predictions_are_low_confidence(outcomes):
    # Known gap: MoE peaks are under-predicted (dispatch buffers, grouped-GEMM
    # padding are not modelled), so the MoE OOMs are not caught; they must at
    # least be flagged low confidence.
    for o in outcomes:
        if o.row["class"] == "moe":
            assert o.confidence == "low", o.row["id"]


def test_measured_runs_fit_or_are_tight(outcomes):
    for o in outcomes:
        if not o.row["measured"]["oom"] and o.row["measured"]["peak_gib"] is not None:
            assert o.verdict in ("fits", "tight"), o.row["id"]
