"""Freeze-plan rendering: golden text at width 100, the JSON document, SVG.

Regenerate the golden files after an intended change with
``KFORGE_UPDATE_GOLDEN=1 pytest tests/unit/test_freeze_render.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from kforge_cli.cli.freeze_render import (
    PlanReport,
    plan_to_json,
    plans_document,
    plans_svg,
    render_text,
)
from kforge_cli.config.section import collecting
from kforge_cli.config.vlm import FreezeSpec, FreezeStage, resolve_arch_class
from kforge_cli.freeze.plan import ParamRecord, UnknownPart, plan_freeze
from kforge_cli.rules.checkpoint import CHECKPOINT_FREEZE_MISMATCH
from kforge_cli.rules.freeze import plan_findings
from kforge_cli.rules.loading import UNREADABLE_FILE

GOLDEN = Path(__file__).parent / "golden"


def planned(path: str, plan: Any) -> PlanReport:
    """A report of a plan on its own: the freeze rules' findings are the file's findings."""
    return PlanReport(path, plan, plan_findings(plan))
WIDTH = 100


def make_vlm(arch: str, freeze: list[tuple[str, bool]], schedule: list[tuple[int, list[tuple[str, bool]]]] = ()) -> Any:
    with collecting():
        return resolve_arch_class(arch)(
            freeze=[FreezeSpec(m, f) for m, f in freeze],
            freeze_schedule=[FreezeStage(s, tuple(FreezeSpec(m, f) for m, f in specs)) for s, specs in schedule])


def ca_params() -> list[ParamRecord]:
    out = [ParamRecord("adapter.proj1.weight", (64, 32)), ParamRecord("adapter.proj1.bias", (64,))]
    for i in range(2):
        out += [ParamRecord(f"transformer.layers.{i}.attention.q_proj.weight", (64, 64)),
                ParamRecord(f"transformer.layers.{i}.mlp.up_proj.weight", (256, 64))]
    out += [ParamRecord("transformer.cross_attention_layers.0.attn.q_proj.weight", (64, 64)),
            ParamRecord("transformer.norm.weight", (64,)),
            ParamRecord("transformer.output_head.weight", (1000, 64))]
    return out


def overlap_report() -> PlanReport:
    vlm = make_vlm("cross_attention", [("transformer", True)],
                   [(10, [("cross_attention", False)]), (20, [("transformer", True)])])
    return planned("configs/overlap.toml", plan_freeze(ca_params(), vlm, 40, saved_step=15))


def stage_zero_report() -> PlanReport:
    vlm = make_vlm("joint_decoder", [("vision_encoder", True)],
                   [(0, [("adapter", True)]), (5, [("adapter", False)])])
    return planned("configs/stage_zero.toml", plan_freeze(ca_params()[:4], vlm, 40))


def text_only_report() -> PlanReport:
    params = [ParamRecord("token_embedding.weight", (50257, 4096)),
              *[ParamRecord(f"layers.{i}.attention.q_proj.weight", (4096, 4096)) for i in range(4)],
              ParamRecord("norm.weight", (4096,)), ParamRecord("output_head.weight", (50257, 4096))]
    return planned("configs/text.toml", plan_freeze(params, None, 1000))


def hf_encoder_report() -> PlanReport:
    vlm = make_vlm("joint_decoder", [("vision_encoder", True)], [(100, [("vision_encoder", False)])])
    unknown = [UnknownPart("vision_encoder", "siglip2 needs transformers and a local model copy")]
    return planned("configs/siglip.toml", plan_freeze(ca_params()[:6], vlm, 500, unknown_prefixes=unknown))


def _check_golden(name: str, text: str) -> None:
    text = "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
    path = GOLDEN / name
    if os.environ.get("KFORGE_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with KFORGE_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize(("name", "build", "options"), [
    ("freeze_plan_overlap.txt", overlap_report, {}),
    ("freeze_plan_stage_zero_params.txt", stage_zero_report, {"params": True}),
    ("freeze_plan_stage_zero_step3.txt", stage_zero_report, {"step": 3}),
    ("freeze_plan_overlap_step25_params.txt", overlap_report, {"params": True, "step": 25}),
    ("freeze_plan_text_only.txt", text_only_report, {}),
    ("freeze_plan_hf_encoder.txt", hf_encoder_report, {}),
])
def test_golden_text(name: str, build: Any, options: dict[str, Any]) -> None:
    _check_golden(name, render_text([build()], width=WIDTH, **options))


def test_golden_several_files_including_one_that_failed() -> None:
    failed = PlanReport("configs/broken.toml", None,
                        [UNREADABLE_FILE.finding("Expected '=' after a key (line 3, column 5)", None,
                                                 "fix the TOML syntax", stage="loader")])
    _check_golden("freeze_plan_two_files.txt", render_text([failed, stage_zero_report()], width=WIDTH))


def test_rendering_is_deterministic_and_fits_the_width() -> None:
    first = render_text([overlap_report()], width=WIDTH)
    assert first == render_text([overlap_report()], width=WIDTH)
    assert max(len(line) for line in first.splitlines()) <= WIDTH


def test_plan_table_shows_step_ranges_markers_and_totals() -> None:
    text = render_text([overlap_report()], width=WIDTH)
    for expected in ("steps 0\u20139", "steps 10\u201319", "steps 20+", "\u25c6 checkpoint @15",
                     "! resume differs", "partial", "trainable", "KF303", "KF304", "fix:"):
        assert expected in text


def test_plan_json_has_the_design_keys_and_values() -> None:
    report = overlap_report()
    doc = plan_to_json(report.plan, report.path, findings=report.findings)
    for key in ("path", "arch", "total_params", "parameters", "stages", "findings"):
        assert key in doc
    assert doc["arch"] == "cross_attention"
    assert doc["total_params"] == sum(p.numel for p in report.plan.params)
    assert doc["parameters"][0] == {"name": "adapter.proj1.weight", "shape": [64, 32], "numel": 2048,
                                    "frozen_at_construction": False}
    stages = doc["stages"]
    assert [(s["start_step"], s["end_step"]) for s in stages] == [(0, 9), (10, 19), (20, None)]
    assert stages[0]["specs"] == [{"module": "transformer", "frozen": True, "source": "vlm.freeze[0]"}]
    assert stages[1]["specs"] == [{"module": "cross_attention", "frozen": False,
                                   "source": "vlm.freeze_schedule[0].specs[0]"}]
    for s in stages:
        for key in ("start_step", "end_step", "specs", "frozen", "trainable_numel", "frozen_numel"):
            assert key in s
        assert s["trainable_numel"] + s["frozen_numel"] == doc["total_params"]
    assert stages[1]["frozen"] == ["transformer.layers.0.attention.q_proj.weight",
                                   "transformer.layers.0.mlp.up_proj.weight",
                                   "transformer.layers.1.attention.q_proj.weight",
                                   "transformer.layers.1.mlp.up_proj.weight",
                                   "transformer.norm.weight", "transformer.output_head.weight"]
    assert {f["code"] for f in doc["findings"]} == {"KF303", "KF304"}
    assert doc["saved_step"] == 15
    json.dumps(doc)  # serialisable as-is


def test_plans_document_wraps_plans_and_failed_files() -> None:
    failed = PlanReport("bad.toml", None, [UNREADABLE_FILE.finding("not TOML", stage="loader")])
    doc = plans_document([failed, stage_zero_report()], step=3)
    assert doc["version"] == 1 and [p["path"] for p in doc["plans"]] == ["bad.toml", "configs/stage_zero.toml"]
    assert doc["plans"][0] == {"path": "bad.toml", "arch": None, "total_params": 0, "parameters": [],
                               "stages": [], "findings": [failed.findings[0].to_json()]}
    at = doc["plans"][1]["at_step"]
    assert at["stage_start_step"] == 0 and at["fresh_run_frozen"] == []
    assert at["frozen"] == at["resume_frozen"] == ["adapter.proj1.weight", "adapter.proj1.bias"]


def test_the_reports_findings_are_the_plans_findings_in_json() -> None:
    report = stage_zero_report()
    report.findings.insert(0, CHECKPOINT_FREEZE_MISMATCH.finding("freeze metadata mismatch", "checkpoint",
                                                             stage="checkpoint load"))
    codes = [f["code"] for f in plans_document([report])["plans"][0]["findings"]]
    assert codes[0] == "KF504" and "KF302" in codes
    assert report.has_errors


def test_svg_export_is_deterministic() -> None:
    svg = plans_svg([overlap_report()], width=WIDTH)
    assert svg.lstrip().startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "KF303" in svg
    assert svg == plans_svg([overlap_report()], width=WIDTH)
