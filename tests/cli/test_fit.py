"""`kforge fit` and the memory rules KF601-KF604, through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LLAMA_70B = EXAMPLES / "llama_70b.toml"
TEXT_7B = EXAMPLES / "text_7b.toml"
MOT = EXAMPLES / "vlm_mot.toml"

DESIGN_PLAN_KEYS = {"path", "gpu", "world_size", "layout", "memory", "verdict", "confidence", "throughput",
                    "findings"}


def codes(plan: dict) -> set[str]:
    return {f["code"] for f in plan["findings"]}


def test_json_has_the_design_keys(kforge):
    doc = kforge("fit", LLAMA_70B, "--gpu", "H200", "--world-size", "32", "-f", "json", expect=0).json()
    assert doc["version"] == 1
    (plan,) = doc["plans"]
    assert DESIGN_PLAN_KEYS <= set(plan)
    assert set(plan["gpu"]) == {"name", "capacity_gib", "peak_tflops"} and plan["gpu"]["name"] == "H200"
    assert set(plan["layout"]) == {"dp_replicate", "dp_shard", "tp", "pp", "ep", "cp"}
    memory = plan["memory"]
    assert set(memory) == {"rank0_peak_gib", "peak_gib", "peak_rank", "breakdown", "low_gib", "high_gib"}
    assert memory["low_gib"] < memory["peak_gib"] < memory["high_gib"]
    assert abs(sum(memory["breakdown"].values()) - memory["peak_gib"]) < 0.05
    assert plan["verdict"] in ("fits", "tight", "oom") and plan["confidence"] in ("high", "low")
    tput = plan["throughput"]
    assert tput["flops_per_token"] > 0 and tput["mfu_pct"]["low"] <= tput["mfu_pct"]["high"]


def test_text_shows_verdict_bar_breakdown_and_speed(kforge):
    out = kforge("fit", LLAMA_70B, "--gpu", "H200", "--world-size", "32", expect=0).stdout
    assert "of capacity" in out and "gradient accumulation" in out and "GFLOPs/token" in out
    assert "H200" in out and "peak" in out


def test_oom_is_an_error_with_suggestions_that_pass_validate(kforge):
    # 7B with pure FSDP on 8 A100 40GB: fp32 accumulation and logits do not fit.
    path = str(EXAMPLES.parent / "tests" / "cases" / "fit" / "oom_7b_a100.toml")
    doc = kforge("fit", path, "--gpu", "A100 40GB", "--world-size", "8", "-f", "json", expect=1).json()
    (plan,) = doc["plans"]
    assert plan["verdict"] == "oom" and "KF601" in codes(plan)
    assert plan["suggestions"], "an oom job should get changes that fit"
    for suggestion in plan["suggestions"]:
        assert suggestion["verdict"] == "fits"
        args = [a for o in suggestion["overrides"] for a in ("--set", o)]
        kforge("validate", path, "--world-size", str(suggestion["world_size"] or 8), *args, expect=0)


def test_validate_adds_memory_rules_only_with_a_gpu(kforge):
    plain = kforge("validate", LLAMA_70B, "-w", "32", "-f", "json", expect=0).json()["files"][0]
    assert not {"KF601", "KF602", "KF604"} & {f["code"] for f in plain["findings"]}
    gpu = kforge("validate", LLAMA_70B, "-w", "32", "--gpu", "H200", "-f", "json", expect=0).json()["files"][0]
    assert "KF604" in {f["code"] for f in gpu["findings"]}  # fp32 gradient accumulation dominates
    small = kforge("validate", LLAMA_70B, "-w", "8", "--gpu", "A100 40GB", "-f", "json", expect=1).json()
    assert "KF601" in {f["code"] for f in small["files"][0]["findings"]}


def test_checkpointing_without_effect_runs_without_a_gpu(kforge, tmp_path):
    config = tmp_path / "mot_ac.toml"
    config.write_text(MOT.read_text().replace("[train]", '[train]\nactivation_checkpointing = "full"', 1))
    doc = kforge("validate", config, "-f", "json", expect=0).json()
    (finding,) = [f for f in doc["files"][0]["findings"] if f["code"] == "KF603"]
    assert finding["key"] == "train.activation_checkpointing" and "MoTBlock" in finding["message"]


def test_unknown_gpu_is_a_usage_error(kforge):
    run = kforge("fit", LLAMA_70B, "--gpu", "H900", expect=2)
    assert "no such GPU" in run.stderr and "H200" in run.stderr and run.stdout == ""
    kforge("validate", LLAMA_70B, "--gpu", "H900", expect=2)
    kforge("fit", LLAMA_70B, "--gpu", "H200", "--gpu-memory", "80", expect=2)


def test_h100_pcie_does_not_get_the_sxm_peak(kforge):
    pcie = kforge("fit", TEXT_7B, "--gpu", "H100 PCIe", "-w", "8", "-f", "json", expect=0).json()["plans"][0]
    sxm = kforge("fit", TEXT_7B, "--gpu", "H100", "-w", "8", "-f", "json", expect=0).json()["plans"][0]
    assert (pcie["gpu"]["peak_tflops"], sxm["gpu"]["peak_tflops"]) == (756.0, 989.0)


def test_world_size_that_does_not_divide_is_a_finding_not_a_traceback(kforge):
    doc = kforge("fit", LLAMA_70B, "--gpu", "H200", "-w", "12", "-f", "json", expect=1).json()
    (plan,) = doc["plans"]
    assert plan["verdict"] is None and "KF200" in codes(plan) and plan["reason"]


def test_gpu_memory_gives_a_verdict_without_throughput(kforge):
    plan = kforge("fit", TEXT_7B, "--gpu-memory", "1000", "-w", "8", "-f", "json", expect=0).json()["plans"][0]
    assert plan["verdict"] == "fits" and plan["throughput"]["tokens_per_second"] is None


def test_list_gpus_cites_sources(kforge):
    doc = kforge("fit", "--list-gpus", "-f", "json", expect=0).json()
    names = [g["name"] for g in doc["gpus"]]
    assert {"H100 SXM 80GB", "H100 PCIe", "H200", "A100 80GB", "A100 40GB", "L40S"} <= set(names)
    assert all(g["capacity_source"] and g["peak_source"] for g in doc["gpus"])


@pytest.mark.parametrize("command", ["validate", "explain", "freeze-plan", "fit"])
def test_every_command_reports_the_same_findings(kforge, tmp_path, command):
    (tmp_path / ".git").mkdir()
    (tmp_path / "pyproject.toml").write_text('[tool.kforge]\ngpu = "A100 40GB"\nworld-size = 8\nignore = ["KF407"]\n')
    config = tmp_path / "job.toml"
    config.write_text(LLAMA_70B.read_text())
    expected = kforge("validate", config, "-f", "json", expect=1).json()["files"][0]["findings"]
    assert "KF601" in {f["code"] for f in expected} and "KF407" not in {f["code"] for f in expected}
    doc = kforge(command, config, "-f", "json", expect=1).json()
    entry = (doc.get("files") or doc.get("configs") or doc.get("plans"))[0]
    assert entry["findings"] == expected
