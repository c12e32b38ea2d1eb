"""`kforge explain` through the real entry point: exit codes, JSON document, --field, golden text."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "vlm_cross_attention_freeze_schedule.toml"

CONFIG_KEYS = {"path", "valid", "resolved", "sources", "arch", "architecture", "token_budget", "param_counts",
               "findings"}


def check_golden(name: str, text: str) -> None:
    golden = GOLDEN / name
    if os.environ.get("KFORGE_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def loadable_fixtures(shared_fixtures: Path) -> list[tuple[Path, dict]]:
    out = []
    for resolved in sorted((shared_fixtures / "configs").glob("*.resolved.json")):
        reference = json.loads(resolved.read_text())
        if "error" not in reference:
            out.append((Path(str(resolved).replace(".resolved.json", ".toml")), reference))
    return out


# -- JSON ---------------------------------------------------------------------------------


def test_resolved_equals_every_reference_resolved_fixture_in_one_call(kforge, shared_fixtures):
    cases = loadable_fixtures(shared_fixtures)
    run = kforge("explain", "--format", "json", *[path for path, _ in cases], expect=1)  # some fail validation
    doc = run.json()
    assert doc["version"] == 1 and len(doc["configs"]) == len(cases)
    for (path, reference), config in zip(cases, doc["configs"]):
        assert config["path"] == str(path)
        assert set(config) == CONFIG_KEYS
        assert config["resolved"] == reference, path.name
        fields = {f"{s}.{k}" for s, v in reference.items() if isinstance(v, dict) for k in v}
        assert set(config["sources"]) == fields, path.name
        assert set(config["sources"].values()) <= {"file", "default", "override"}


def test_json_document_for_a_cross_attention_job(kforge, shared_fixtures):
    path = shared_fixtures / "configs" / "p_cross_attention_base.toml"
    (config,) = kforge("explain", "-f", "json", path, expect=0).json()["configs"]
    assert config["arch"] == "cross_attention" and config["valid"] is True
    assert config["architecture"]["cross_attention"]["after_layers"] == [3]
    assert config["token_budget"]["required_seq_len"] == 512
    assert config["token_budget"]["model_max_seq_len_slack"] == 88
    assert config["param_counts"] | {"unknown": []} == {
        "vision_encoder": 0, "adapter": 6272, "transformer": 456384, "cross_attention": 65664, "total": 462656,
        "trainable_at_step_0": 462656, "frozen_at_step_0": 0, "frozen_at_construction": 0, "later_stages": [],
        "complete": True, "unknown": [], "error": None}
    assert [f["code"] for f in config["findings"]] == ["KF405", "KF407"]


def test_text_only_job_has_null_arch(kforge, shared_fixtures):
    (config,) = kforge("explain", "-f", "json", shared_fixtures / "configs" / "r_debug.toml",
                       expect=0).json()["configs"]
    assert config["arch"] is None and config["architecture"] is None and config["token_budget"] is None
    assert config["param_counts"]["transformer"] == config["param_counts"]["total"] == 19794176


def test_unreadable_file_exits_1_and_the_others_are_still_explained(kforge, shared_fixtures, tmp_path):
    good = shared_fixtures / "configs" / "r_vlm_debug.toml"
    missing = tmp_path / "missing.toml"
    rejected = shared_fixtures / "configs" / "m_dim_zero.toml"
    doc = kforge("explain", "-f", "json", good, missing, rejected, expect=1).json()
    first, second, third = doc["configs"]
    assert first["valid"] is True and first["resolved"]["vlm"]["arch"] == "joint_decoder"
    assert second["resolved"] is None and [f["code"] for f in second["findings"]] == ["KF001"]
    assert third["resolved"] is None and third["sources"] is None
    assert [f["code"] for f in third["findings"]] == ["KF103"]
    assert doc["summary"] == {"files": 3, "invalid": 2, "errors": 2, "warnings": 0}


def test_validation_error_exits_1_but_still_resolves(kforge, shared_fixtures):
    path = shared_fixtures / "configs" / "m_seq_len_too_small.toml"
    (config,) = kforge("explain", "-f", "json", path, expect=1).json()["configs"]
    assert config["resolved"]["train"]["seq_len"] == 512
    assert config["token_budget"]["train_seq_len_slack"] == -64
    assert ("KF201", "train.seq_len") in {(f["code"], f["key"]) for f in config["findings"]}


def test_model_build_failure_exits_1_with_the_error_in_place_of_counts(kforge, tmp_path):
    path = tmp_path / "odd.toml"
    path.write_text("[model]\ndim = 96\nn_layers = 2\nn_heads = 32\nn_kv_heads = 32\nmax_seq_len = 64\n"
                    "[train]\nseq_len = 64\n")
    (config,) = kforge("explain", "-f", "json", path, expect=1).json()["configs"]
    assert config["param_counts"]["error"]["key"] == "model.n_heads"
    assert config["param_counts"]["total"] is None
    text = kforge("explain", path, expect=1).stdout
    assert "the model cannot be built: head_dim" in text


def test_set_overrides_show_as_override(kforge, shared_fixtures):
    path = shared_fixtures / "configs" / "r_vlm_debug.toml"
    (config,) = kforge("explain", "-f", "json", "--set", "vlm.max_text_len=100", path, expect=0).json()["configs"]
    assert config["resolved"]["vlm"]["max_text_len"] == 100
    assert config["sources"]["vlm.max_text_len"] == "override"
    text = kforge("explain", "--set", "vlm.max_text_len=100", path, expect=0).stdout
    (line,) = [ln for ln in text.splitlines() if ln.strip().startswith("max_text_len = 100")]
    assert line.split()[3] == "--set"


def test_bad_set_is_a_usage_error(kforge, shared_fixtures):
    run = kforge("explain", "--set", "=3", shared_fixtures / "configs" / "r_debug.toml", expect=2)
    assert "KEY=VALUE" in run.stderr


def test_no_file_and_no_field_is_a_usage_error(kforge):
    run = kforge("explain", expect=2)
    assert "nothing to explain" in run.stderr


# -- text ------------------------------------------------------------------------------------


def test_text_hides_defaults_unless_all(kforge, shared_fixtures):
    path = shared_fixtures / "configs" / "p_cross_attention_base.toml"
    short = kforge("explain", path, expect=0).stdout
    assert "dim = 64" in short and "rope_theta" not in short
    assert "all defaults: adapter, optimizer" in short
    full = kforge("explain", "--all", path, expect=0).stdout
    assert "rope_theta = 10000.0" in full and "default" in full
    assert "cross_attention_n_kv_heads = 0" in full


def test_user_text_is_not_read_as_markup(kforge, tmp_path):
    path = tmp_path / "markup.toml"
    path.write_text('[checkpoint]\ndir = "[bold red]x[/]"\n[model]\ndim = 64\nn_layers = 1\nn_heads = 4\n'
                    'n_kv_heads = 4\nmax_seq_len = 64\n[train]\nseq_len = 64\n')
    assert 'dir = "[bold red]x[/]"' in kforge("explain", path, expect=0).stdout


def test_golden_cross_attention_with_freeze_schedule(kforge, monkeypatch):
    monkeypatch.chdir(EXAMPLE.parents[1])
    run = kforge("explain", "examples/" + EXAMPLE.name, expect=0)
    check_golden("explain_cross_attention_freeze_schedule.txt", run.stdout)


def test_golden_mot_and_a_budget_shortfall(kforge, shared_fixtures, monkeypatch):
    monkeypatch.chdir(shared_fixtures / "configs")
    run = kforge("explain", "r_vlm_debug_mot.toml", "m_seq_len_too_small.toml", expect=1)
    check_golden("explain_mot_and_shortfall.txt", run.stdout)


# -- --field ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key, expected", [
    ("vlm.freeze", ['default  [{module = "vision_encoder", frozen = true}]', "accepts only aliases", "each entry"]),
    ("model.n_kv_heads", ["integer, or unset", "keeps 32", "KF204"]),
    ("vlm.cross_attention_every_n_layers", ["arches   cross_attention only", "KF402"]),
    ("adapter.pool_window", ["default  2", "ceil(side / pool_window)^2"]),
    ("model.norm_type", ["allowed  rmsnorm, layernorm"]),
    ("vlm", ["[vlm]", "cross_attention only", "moma only", "[vlm] without [vision_encoder]"]),
    ("data.datasets[0].weight", ["data.datasets[].weight", "KF103"]),
])
def test_field_docs(kforge, key, expected):
    out = kforge("explain", "--field", key, expect=0).stdout
    for text in expected:
        assert text in out, (key, text)


def test_field_json(kforge):
    doc = kforge("explain", "--field", "vlm.module_patterns", "-f", "json", expect=0).json()
    assert doc["version"] == 1 and "values" not in doc
    field = doc["field"]
    assert field["key"] == "vlm.module_patterns" and field["kind"] == "field"
    assert {"joint_decoder", "cross_attention", "mot", "moma"} <= set(field["defaults_by_arch"])
    assert any("KF406" in rule for rule in field["rules"])


def test_unknown_field_exits_2_with_did_you_mean(kforge):
    run = kforge("explain", "--field", "model.n_kv_head", expect=2)
    assert "no such config key" in run.stderr and "did you mean model.n_kv_heads?" in run.stderr
    assert run.stdout == ""


def test_field_with_files_shows_each_value(kforge, shared_fixtures):
    configs = shared_fixtures / "configs"
    doc = kforge("explain", "--field", "model.n_kv_heads", "-f", "json", configs / "r_debug.toml",
                 configs / "m_kv_heads_inherit.toml", expect=1).json()
    good, bad = doc["values"]
    assert (good["value"], good["source"], good["loaded"]) == (4, "file", True)
    assert bad["loaded"] is False and "(got 32)" in bad["error"]


def test_golden_field_doc(kforge):
    check_golden("explain_field_n_kv_heads.txt", kforge("explain", "--field", "model.n_kv_heads", expect=0).stdout)


def test_explain_module_import_stays_cheap():
    import subprocess
    import sys

    code = ("import sys, kforge_cli.cli.commands.explain; "
            "print(any(m in sys.modules for m in ('torch', 'rich', 'kforge_cli.explain', 'kforge_cli.model.build')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
