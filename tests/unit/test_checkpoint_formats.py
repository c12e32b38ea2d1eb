"""read_checkpoint on every supported format, built for real with torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from ckpt_factory import (
    HF_TO_KF,
    TINY_PARAMS,
    optimizer_state,
    point_latest,
    save_dcp,
    save_hf_sharded,
    save_kf_step,
    save_safetensors,
    tensors,
)

from kforge_cli.checkpoint import (
    CheckpointError,
    hf_to_kempnerforge_name,
    looks_hf_named,
    normalize_parameter_name,
    read_checkpoint,
)

FREEZE = [{"module": "vision_encoder", "frozen": True}]


# --- DCP / KempnerForge run directories -------------------------------------------

def test_dcp_step_dir_reads_model_names_shapes_and_metadata(tmp_path: Path) -> None:
    step_dir = save_kf_step(tmp_path / "run", 5, vlm_freeze=FREEZE)
    m = read_checkpoint(step_dir)
    assert m.format == "dcp"
    assert m.requested_path == str(step_dir)
    assert m.resolved_path == str(step_dir)
    assert m.tensors == TINY_PARAMS
    assert m.original_names == {n: f"model.{n}" for n in TINY_PARAMS}
    assert m.step == 5
    assert m.metadata == {"step": 5, "tokens_seen": 64, "vlm_freeze": FREEZE}
    assert m.vlm_freeze == FREEZE
    # 3 moments per parameter plus the flattened param_groups entries.
    assert f"optimizer.state.{next(iter(TINY_PARAMS))}.exp_avg" in m.ignored
    assert "optimizer.param_groups.0.lr" in m.ignored
    assert all(i.startswith("optimizer.") for i in m.ignored)
    assert len([i for i in m.ignored if i.startswith("optimizer.state.")]) == 3 * len(TINY_PARAMS)


def test_run_dir_follows_latest_symlink(tmp_path: Path) -> None:
    run = tmp_path / "run"
    save_kf_step(run, 5)
    save_kf_step(run, 10, vlm_freeze=FREEZE)
    point_latest(run, "step_5")
    m = read_checkpoint(run)
    assert m.resolved_path == str(run / "step_5")
    assert m.step == 5
    assert m.vlm_freeze is None
    assert "followed latest -> step_5" in m.notes


def test_run_dir_follows_latest_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    save_kf_step(run, 5)
    save_kf_step(run, 10)
    point_latest(run, "step_5\n", as_file=True)
    m = read_checkpoint(run)
    assert m.resolved_path == str(run / "step_5")
    assert m.step == 5
    assert m.notes[0] == "followed latest -> step_5 (`latest` is a file naming it)"


def test_run_dir_without_latest_picks_newest_step_numerically(tmp_path: Path) -> None:
    run = tmp_path / "run"
    save_kf_step(run, 9)
    save_kf_step(run, 10)
    m = read_checkpoint(run)
    assert m.resolved_path == str(run / "step_10")
    assert m.step == 10
    assert m.notes[0] == "no `latest`; picked newest step_10"


def test_newest_complete_step_skips_interrupted_save(tmp_path: Path) -> None:
    run = tmp_path / "run"
    save_kf_step(run, 12, vlm_freeze=FREEZE)
    save_kf_step(run, 13, complete=False)
    m = read_checkpoint(run)
    assert m.resolved_path == str(run / "step_12")
    assert m.step == 12
    assert m.vlm_freeze == FREEZE
    assert m.notes[0] == "picked newest complete step_12; step_13 has no .metadata"
    assert m.notes[1] == "KempnerForge's auto-resume would load step_13 instead and fail there"


def test_latest_pointing_at_incomplete_step_falls_back(tmp_path: Path) -> None:
    run = tmp_path / "run"
    save_kf_step(run, 12)
    save_kf_step(run, 13, complete=False)
    point_latest(run, "step_13")
    m = read_checkpoint(run)
    assert m.step == 12
    assert m.notes[0] == ("picked newest complete step_12; latest -> step_13 has no .metadata; "
                          "step_13 has no .metadata")


def test_dangling_latest_falls_back_to_newest_step(tmp_path: Path) -> None:
    run = tmp_path / "run"
    save_kf_step(run, 3)
    point_latest(run, "step_99")
    m = read_checkpoint(run)
    assert m.step == 3
    assert m.notes[0] == "picked newest complete step_3; latest -> step_99, which does not exist"


def test_step_from_dir_name_when_metadata_json_is_absent(tmp_path: Path) -> None:
    step_dir = save_kf_step(tmp_path / "run", 7)
    (step_dir / "metadata.json").unlink()
    m = read_checkpoint(step_dir)
    assert (m.step, m.metadata, m.vlm_freeze) == (7, None, None)


def test_metadata_json_step_wins_over_dir_name(tmp_path: Path) -> None:
    step_dir = save_kf_step(tmp_path / "run", 7, metadata_step=8)
    m = read_checkpoint(step_dir)
    assert m.step == 8
    assert "metadata.json says step 8 but the directory is step_7; using 8" in m.notes


def test_unreadable_metadata_json_is_a_note_not_an_error(tmp_path: Path) -> None:
    step_dir = save_kf_step(tmp_path / "run", 7)
    (step_dir / "metadata.json").write_text("{not json")
    m = read_checkpoint(step_dir)
    assert (m.step, m.metadata) == (7, None)
    assert any(n.startswith("ignored ") and "metadata.json" in n for n in m.notes)


def test_plain_dcp_dir_without_step_name(tmp_path: Path) -> None:
    # What scripts/convert_checkpoint.py hf-to-dcp writes: {"model": Transformer sd}.
    shapes = {"layers.0.attention.q_proj.weight": (4, 4), "norm.weight": (4,)}
    save_dcp(tmp_path / "pretrained", {"model": tensors(shapes)})
    m = read_checkpoint(tmp_path / "pretrained")
    assert (m.format, m.tensors, m.step, m.ignored) == ("dcp", shapes, None, [])


def test_dcp_non_tensor_model_entries_are_ignored(tmp_path: Path) -> None:
    save_dcp(tmp_path / "ck", {"model": {**tensors({"w": (2, 2)}), "note": "hello"}})
    m = read_checkpoint(tmp_path / "ck")
    assert m.tensors == {"w": (2, 2)}
    assert m.ignored == ["model.note"]


def test_pipeline_stages_are_merged(tmp_path: Path) -> None:
    run = tmp_path / "run"
    save_kf_step(run, 9, stages=3, vlm_freeze=FREEZE)
    m = read_checkpoint(run)
    assert m.format == "dcp-pipeline"
    assert m.resolved_path == str(run / "step_9")
    assert m.tensors == TINY_PARAMS
    assert m.step == 9 and m.vlm_freeze == FREEZE
    assert "merged 3 pipeline stages (pp0, pp1, pp2)" in m.notes


def test_single_pipeline_stage_dir(tmp_path: Path) -> None:
    step_dir = save_kf_step(tmp_path / "run", 9, stages=2)
    m = read_checkpoint(step_dir / "pp1")
    names = list(TINY_PARAMS)
    assert m.format == "dcp"
    assert m.tensors == {n: TINY_PARAMS[n] for n in names[1::2]}
    assert m.step == 9
    assert any(n.startswith("read only pipeline stage pp1") for n in m.notes)


def test_newest_step_with_an_incomplete_stage_is_skipped(tmp_path: Path) -> None:
    run = tmp_path / "run"
    save_kf_step(run, 4, stages=2)
    newest = save_kf_step(run, 6, stages=2)
    (newest / "pp1" / ".metadata").unlink()
    m = read_checkpoint(run)
    assert m.step == 4
    assert m.notes[0] == "picked newest complete step_4; step_6 has no .metadata in pp1"


def test_requesting_a_symlink_to_a_step_dir(tmp_path: Path) -> None:
    step_dir = save_kf_step(tmp_path / "run", 5)
    os.symlink(step_dir, tmp_path / "alias")
    m = read_checkpoint(tmp_path / "alias")
    assert m.resolved_path == str(step_dir) and m.step == 5
    assert m.notes[0] == f"followed symlink {tmp_path / 'alias'} -> {step_dir}"


def test_requesting_the_metadata_file_or_latest_pointer(tmp_path: Path) -> None:
    run = tmp_path / "run"
    save_kf_step(run, 5)
    point_latest(run, "step_5", as_file=True)
    by_metadata = read_checkpoint(run / "step_5" / ".metadata")
    by_latest = read_checkpoint(run / "latest")
    assert by_metadata.resolved_path == by_latest.resolved_path == str(run / "step_5")
    assert by_metadata.tensors == by_latest.tensors == TINY_PARAMS


# --- torch.save --------------------------------------------------------------------

def test_torch_save_model_container(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    torch.save({"model": tensors(), "optimizer": optimizer_state(), "epoch": 3,
                "ema": tensors({"w": (2,)})}, path)
    m = read_checkpoint(path)
    assert (m.format, m.resolved_path, m.step) == ("torch", str(path), None)
    assert m.tensors == TINY_PARAMS
    assert m.original_names["transformer.norm.weight"] == "model.transformer.norm.weight"
    assert "epoch" in m.ignored and "ema.w" in m.ignored
    assert "optimizer.param_groups" in m.ignored


class _Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = torch.nn.Linear(4, 6, bias=True)
        self.norm = torch.nn.LayerNorm(4)
        self.register_buffer("table", torch.zeros(3))


def test_torch_save_bare_module_state_dict(tmp_path: Path) -> None:
    # A real state_dict: Parameters, a buffer and the _metadata attribute.
    path = tmp_path / "bare.pt"
    torch.save(_Block().state_dict(), path)
    m = read_checkpoint(path)
    assert m.tensors == {"attention.weight": (6, 4), "attention.bias": (6,),
                         "norm.weight": (4,), "norm.bias": (4,), "table": (3,)}
    assert m.ignored == []


def test_torch_compile_prefix_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "compiled.pt"
    torch.save(torch.compile(_Block()).state_dict(), path)
    m = read_checkpoint(path)
    assert m.tensors["attention.weight"] == (6, 4)
    assert m.original_names["attention.weight"] == "_orig_mod.attention.weight"


def test_wrapper_components_are_stripped_anywhere(tmp_path: Path) -> None:
    path = tmp_path / "wrapped.pt"
    stored = {
        "module.layers.0._fsdp_wrapped_module.attention.q_proj.weight": (4, 4),
        "_orig_mod.layers.0._checkpoint_wrapped_module.mlp.up_proj.weight": (8, 4),
        "module.model.norm.weight": (4,),
    }
    torch.save(tensors(stored), path)
    m = read_checkpoint(path)
    assert m.tensors == {"layers.0.attention.q_proj.weight": (4, 4),
                         "layers.0.mlp.up_proj.weight": (8, 4), "norm.weight": (4,)}


def test_torch_save_legacy_format(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pt"
    torch.save({"model": tensors(), "optimizer": optimizer_state()}, path,
               _use_new_zipfile_serialization=False)
    m = read_checkpoint(path)
    assert m.format == "torch"
    assert m.tensors == TINY_PARAMS
    assert "legacy (pre-1.6) torch.save format" in m.notes


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_save_dtypes_parameters_views_and_meta_tensors(tmp_path: Path, legacy: bool) -> None:
    plain_with_attr = torch.zeros(2)
    plain_with_attr.tag = "x"
    param_with_attr = torch.nn.Parameter(torch.zeros(3))
    param_with_attr.tag = "y"
    state = {
        "f8": torch.zeros(3, 2, dtype=torch.float8_e4m3fn),
        "u16": torch.zeros(5, dtype=torch.uint16),
        "bf16": torch.zeros(2, 2, dtype=torch.bfloat16),
        "scalar": torch.tensor(1.5),
        "empty": torch.zeros(0, 7),
        "view": torch.zeros(10)[2:5],
        "transposed": torch.zeros(3, 4).t(),
        "param": torch.nn.Parameter(torch.zeros(4, 4)),
        "tagged": plain_with_attr,
        "tagged_param": param_with_attr,
        "meta": torch.empty(6, 2, device="meta"),
        "blob": b"\x00\xff", "nothing": b"", "ids": {1, 2}, "lr": 0.1,
    }
    path = tmp_path / "mixed.pt"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    m = read_checkpoint(path)
    assert m.tensors == {
        "f8": (3, 2), "u16": (5,), "bf16": (2, 2), "scalar": (), "empty": (0, 7), "view": (3,),
        "transposed": (4, 3), "param": (4, 4), "tagged": (2,), "tagged_param": (3,),
        "meta": (6, 2)}
    assert m.ignored == ["blob", "nothing", "ids", "lr"]


def test_torch_reader_only_opens_the_pickle_member(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.pt"
    torch.save({"w": torch.zeros(256, 1024)}, path)
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    assert read_checkpoint(path).tensors == {"w": (256, 1024)}
    assert opened == ["big/data.pkl"]


def test_dcp_reader_never_opens_shards(tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / "run"
    save_kf_step(run, 5)
    point_latest(run, "step_5")
    opened: list[str] = []
    real_open = os.open

    def spy(path, *args, **kwargs):
        opened.append(os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    read_checkpoint(run)
    assert sorted(os.path.basename(p) for p in opened) == [".metadata", "metadata.json"]


# --- safetensors and Hugging Face ---------------------------------------------------

def test_safetensors_file(tmp_path: Path) -> None:
    path = save_safetensors(tmp_path / "w.safetensors", {
        "transformer.norm.weight": torch.zeros(8),
        "transformer.layers.0.attention.q_proj.weight": torch.zeros(8, 8, dtype=torch.bfloat16),
        "scalar": torch.tensor(2, dtype=torch.int64),
        "empty": torch.zeros(0, 3)})
    m = read_checkpoint(path)
    assert (m.format, m.resolved_path, m.step, m.ignored) == ("safetensors", str(path), None, [])
    assert m.tensors == {"transformer.norm.weight": (8,),
                         "transformer.layers.0.attention.q_proj.weight": (8, 8),
                         "scalar": (), "empty": (0, 3)}


def test_hf_sharded_dir_maps_llama_names_back(tmp_path: Path) -> None:
    hf = save_hf_sharded(tmp_path / "hf", {n: torch.zeros(i + 1, 2) for i, n in enumerate(HF_TO_KF)})
    m = read_checkpoint(hf)
    assert m.format == "hf-sharded"
    assert m.resolved_path == str(hf / "model.safetensors.index.json")
    assert m.tensors == {HF_TO_KF[n]: (i + 1, 2) for i, n in enumerate(HF_TO_KF)}
    assert m.original_names == {kf: hf_name for hf_name, kf in HF_TO_KF.items()}
    assert "read 2 shard headers listed in model.safetensors.index.json" in m.notes
    assert any(n.startswith("Hugging Face (Llama-style) names: mapped 9") for n in m.notes)


def test_hf_dir_with_single_model_safetensors(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    save_safetensors(hf / "model.safetensors", {"model.embed_tokens.weight": torch.zeros(10, 4),
                                                "lm_head.weight": torch.zeros(10, 4)})
    m = read_checkpoint(hf)
    assert (m.format, m.resolved_path) == ("safetensors", str(hf / "model.safetensors"))
    assert m.tensors == {"token_embedding.embedding.weight": (10, 4),
                         "output_head.proj.weight": (10, 4)}


def test_hf_dir_with_pytorch_model_bin(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    hf.mkdir()
    torch.save({"model.layers.0.self_attn.k_proj.weight": torch.zeros(2, 4)},
               hf / "pytorch_model.bin")
    m = read_checkpoint(hf)
    assert m.format == "torch"
    assert m.tensors == {"layers.0.attention.k_proj.weight": (2, 4)}


def test_hf_index_of_torch_bin_shards(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    hf.mkdir()
    torch.save({"model.norm.weight": torch.zeros(4)}, hf / "pytorch_model-1.bin")
    torch.save({"lm_head.weight": torch.zeros(9, 4)}, hf / "pytorch_model-2.bin")
    (hf / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {
        "model.norm.weight": "pytorch_model-1.bin", "lm_head.weight": "pytorch_model-2.bin"}}))
    m = read_checkpoint(hf)
    assert m.format == "hf-sharded"
    assert m.tensors == {"norm.weight": (4,), "output_head.proj.weight": (9, 4)}


def test_kempnerforge_names_are_never_taken_for_hf() -> None:
    kf = [f"model.{n}" for n in TINY_PARAMS] + ["model.layers.0.attention.q_proj.weight",
                                               "model.token_embedding.embedding.weight"]
    assert not looks_hf_named(kf)
    assert looks_hf_named(["model.layers.3.self_attn.q_proj.weight"])
    assert looks_hf_named(["module.model.embed_tokens.weight"])
    assert looks_hf_named(["lm_head.weight"])
    assert not looks_hf_named(["model.norm.weight", "model.output_head.proj.weight"])


@pytest.mark.parametrize("hf_name,kf_name", sorted(HF_TO_KF.items()))
def test_hf_to_kempnerforge_name(hf_name: str, kf_name: str) -> None:
    assert normalize_parameter_name(hf_to_kempnerforge_name(hf_name)) == kf_name


@pytest.mark.parametrize("stored,normalized", [
    ("model.transformer.layers.0.attention.q_proj.weight",
     "transformer.layers.0.attention.q_proj.weight"),
    ("_orig_mod.model.adapter.proj1.weight", "adapter.proj1.weight"),
    ("module._fsdp_wrapped_module.norm.weight", "norm.weight"),
    ("transformer.layers.1._checkpoint_wrapped_module.mlp.up_proj.weight",
     "transformer.layers.1.mlp.up_proj.weight"),
    ("model.model.norm.weight", "model.norm.weight"),  # only one container level
    ("modelx.weight", "modelx.weight"),
    ("module", "module"),
])
def test_normalize_parameter_name(stored: str, normalized: str) -> None:
    assert normalize_parameter_name(stored) == normalized


def test_colliding_names_keep_the_first_and_say_so(tmp_path: Path) -> None:
    path = tmp_path / "dup.pt"
    torch.save({"norm.weight": torch.zeros(4), "module.norm.weight": torch.zeros(5)}, path)
    m = read_checkpoint(path)
    assert m.tensors == {"norm.weight": (4,)}
    assert m.ignored == ["module.norm.weight"]
    assert any("both name 'norm.weight'" in n for n in m.notes)


def test_reader_does_not_import_torch() -> None:
    # Every module of the package, then a read: none may pull in torch (or the CLI's libraries).
    probe = (
        "import importlib, pkgutil, sys, tempfile\n"
        "import kforge_cli.checkpoint as checkpoint\n"
        "for module in pkgutil.iter_modules(checkpoint.__path__):\n"
        "    importlib.import_module(f'kforge_cli.checkpoint.{module.name}')\n"
        "assert 'torch' not in sys.modules, 'imported torch'\n"
        "try:\n"
        "    checkpoint.read_checkpoint(tempfile.mkdtemp())\n"
        "except checkpoint.CheckpointError:\n"
        "    pass\n"
        "bad = [m for m in ('torch', 'typer', 'rich', 'safetensors', 'numpy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_missing_path_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(tmp_path / "does_not_exist")
    assert err.value.message == f"checkpoint path {tmp_path / 'does_not_exist'} does not exist"
    assert err.value.hint


def test_hf_state_dict_under_a_model_container(tmp_path: Path) -> None:
    hf_state = {"model.layers.0.self_attn.q_proj.weight": torch.zeros(4, 4),
                "model.norm.weight": torch.zeros(4), "lm_head.weight": torch.zeros(9, 4)}
    save_dcp(tmp_path / "dcp", {"model": hf_state})
    torch.save({"model": hf_state}, tmp_path / "ck.pt")
    for path in (tmp_path / "dcp", tmp_path / "ck.pt"):
        m = read_checkpoint(path)
        assert m.tensors == {"layers.0.attention.q_proj.weight": (4, 4), "norm.weight": (4,),
                             "output_head.proj.weight": (9, 4)}, path
