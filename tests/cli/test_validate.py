"""`kforge validate` through the real entry point."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def test_json_document_shape(kforge, shared_fixtures):
    good = shared_fixtures / "configs" / "r_vlm_debug.toml"
    bad = shared_fixtures / "configs" / "m_unknown_model_key.toml"
    doc = kforge("validate", "-f", "json", good, bad, expect=1).json()
    assert doc["version"] == 1
    assert [f["path"] for f in doc["files"]] == [str(good), str(bad)]
    assert [f["valid"] for f in doc["files"]] == [True, False]
    assert doc["summary"] == {"files": 2, "errors": 1, "warnings": 0}
    (finding,) = doc["files"][1]["findings"]
    assert finding == {
        "code": "KF101", "severity": "error", "message": "unknown key model.dimm (ModelConfig has no field 'dimm')",
        "key": "model.dimm", "line": 10, "column": 1, "hint": "did you mean model.dim?", "stage": "loader"}


def test_text_report_golden(kforge, shared_fixtures, monkeypatch):
    monkeypatch.chdir(shared_fixtures / "configs")
    run = kforge("validate", "m_unknown_model_key.toml", "m_kv_heads_inherit.toml", "r_vlm_debug.toml", expect=1)
    golden = GOLDEN / "validate_text.txt"
    if os.environ.get("KFORGE_UPDATE_GOLDEN"):
        golden.write_text(run.stdout)
    assert run.stdout == golden.read_text()


def test_strict_fails_on_warnings(kforge, shared_fixtures):
    path = shared_fixtures / "configs" / "m_dim_float.toml"
    kforge("validate", path, expect=0)
    run = kforge("validate", "--strict", "-f", "json", path, expect=1)
    assert run.json()["files"][0]["valid"] is False


def test_world_size_is_optional(kforge, shared_fixtures):
    path = shared_fixtures / "configs" / "m_vlm_pp.toml"
    # pp = 2 with VLM is rejected whatever the world size ...
    kforge("validate", path, expect=1)
    # ... and the world-size arithmetic joins in when it is given.
    doc = kforge("validate", "-f", "json", "--world-size", "3", path, expect=1).json()
    assert {"KF200", "KF203"} <= {f["code"] for f in doc["files"][0]["findings"]}


def test_overrides_apply_after_the_file(kforge, shared_fixtures):
    path = shared_fixtures / "configs" / "m_seq_len_too_small.toml"
    kforge("validate", path, expect=1)
    kforge("validate", "--set", "train.seq_len=576", path, expect=0)


def test_bad_override_is_a_usage_error(kforge, shared_fixtures):
    run = kforge("validate", "--set", "=1", shared_fixtures / "configs" / "r_debug.toml", expect=2)
    assert "KEY=VALUE" in run.stderr


def test_unreadable_inputs_do_not_stop_the_others(kforge, tmp_path, shared_fixtures):
    binary = tmp_path / "weights.toml"
    binary.write_bytes(b"\x00\x01\x02garbage")
    latin = tmp_path / "latin1.toml"
    latin.write_bytes("[model]\n# caf\xe9\n".encode("latin-1"))
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 10_000 + "]" * 10_000 + "\n")
    loop = tmp_path / "loop.toml"
    os.symlink(loop, loop)
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    good = shared_fixtures / "configs" / "r_debug.toml"
    doc = kforge("validate", "-f", "json", tmp_path / "missing.toml", fifo, binary, latin, deep, loop, good,
                 expect=1).json()
    verdicts = [(f["valid"], [x["code"] for x in f["findings"] if x["severity"] == "error"]) for f in doc["files"]]
    assert verdicts == [(False, ["KF001"])] * 6 + [(True, [])]
    messages = [f["findings"][0]["message"] for f in doc["files"][:6]]
    assert "does not exist" in messages[0]
    assert "named pipe" in messages[1]
    assert "binary" in messages[2]
    assert "not valid UTF-8" in messages[3] and doc["files"][3]["findings"][0]["line"] == 2
    assert "nested too deeply" in messages[4]
    assert "symlink loop" in messages[5]


def test_huge_file_is_refused_quickly(kforge, tmp_path):
    big = tmp_path / "big.toml"
    with open(big, "w") as handle:
        handle.write("[model]\n")
        line = "# " + "x" * 1000 + "\n"
        for _ in range(50 * 1024):
            handle.write(line)
    doc = kforge("validate", "-f", "json", big, expect=1).json()
    assert "larger than" in doc["files"][0]["findings"][0]["message"]


def test_syntax_error_has_line_and_column(kforge, shared_fixtures):
    doc = kforge("validate", "-f", "json", shared_fixtures / "configs" / "s_unterminated.toml", expect=1).json()
    (finding,) = doc["files"][0]["findings"]
    assert (finding["code"], finding["line"], finding["column"]) == ("KF001", 34, 22)
    assert "not closed" in finding["hint"]


def test_github_annotations(kforge, shared_fixtures):
    path = shared_fixtures / "configs" / "m_unknown_model_key.toml"
    run = kforge("validate", "--format", "github", path, expect=1)
    assert run.stdout == (f"::error file={path},line=10,col=1,title=KF101 model.dimm::unknown key model.dimm "
                          "(ModelConfig has no field 'dimm') (fix: did you mean model.dim?)\n")


def test_sarif_lists_rules_and_results(kforge, shared_fixtures):
    path = shared_fixtures / "configs" / "m_unknown_model_key.toml"
    doc = kforge("validate", "--format", "sarif", path, expect=1).json()
    run = doc["runs"][0]
    assert doc["version"] == "2.1.0"
    ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    (result,) = run["results"]
    assert result["ruleId"] == "KF101" and ids[result["ruleIndex"]] == "KF101"
    assert result["locations"][0]["physicalLocation"]["region"] == {"startLine": 10, "startColumn": 1}


def test_model_ckpt_works_without_deep(kforge, shared_fixtures):
    run = kforge("validate", "-f", "json", "--model-ckpt", "x", shared_fixtures / "configs" / "r_debug.toml",
                 expect=1)
    assert [f["code"] for f in run.json()["files"][0]["findings"] if f["severity"] == "error"] == ["KF505"]


def test_validate_does_not_import_torch(shared_fixtures):
    import subprocess
    import sys

    code = ("import sys; from kforge_cli.cli.main import main; "
            f"rc = main(['validate', {str(shared_fixtures / 'configs' / 'r_vlm_7b_cross_attn.toml')!r}]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
