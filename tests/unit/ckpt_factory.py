"""Build small real checkpoints with torch for the checkpoint-reader tests."""

from __future__ import annotations

import json
import os
import pickletools
import warnings
from pathlib import Path

import torch

# KempnerForge-style parameter names of a tiny VLM, with their shapes.
TINY_PARAMS: dict[str, tuple[int, ...]] = {
    "adapter.proj1.weight": (8, 6),
    "adapter.proj1.bias": (8,),
    "transformer.token_embedding.embedding.weight": (32, 8),
    "transformer.layers.0.attention_norm.weight": (8,),
    "transformer.layers.0.attention.q_proj.weight": (8, 8),
    "transformer.layers.0.mlp.gate_proj.weight": (16, 8),
    "transformer.norm.weight": (8,),
    "transformer.output_head.proj.weight": (32, 8),
}


def tensors(shapes: dict[str, tuple[int, ...]] = TINY_PARAMS,
            dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    return {name: torch.zeros(shape, dtype=dtype) for name, shape in shapes.items()}


def optimizer_state(shapes: dict[str, tuple[int, ...]] = TINY_PARAMS) -> dict:
    """An AdamW-like optimizer state keyed by parameter name, as DCP stores it."""
    return {
        "state": {name: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(shape),
                         "exp_avg_sq": torch.zeros(shape)} for name, shape in shapes.items()},
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.95), "params": list(shapes)}],
    }


def save_dcp(directory: Path, state: dict) -> Path:
    import torch.distributed.checkpoint as dcp

    directory.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Single process, no process group: DCP warns and saves locally.
        warnings.simplefilter("ignore")
        dcp.save(state, checkpoint_id=str(directory))
    return directory


def save_kf_step(run_dir: Path, step: int, *, shapes: dict[str, tuple[int, ...]] = TINY_PARAMS,
                 vlm_freeze: list[dict] | None = None, stages: int | None = None,
                 metadata_step: int | None = None, complete: bool = True) -> Path:
    """One ``step_N`` directory the way KempnerForge's CheckpointManager writes it."""
    step_dir = run_dir / f"step_{step}"
    if stages is None:
        save_dcp(step_dir, {"model": tensors(shapes), "optimizer": optimizer_state(shapes)})
    else:
        names = list(shapes)
        for k in range(stages):
            part = {n: shapes[n] for n in names[k::stages]}
            save_dcp(step_dir / f"pp{k}", {"model": tensors(part),
                                           "optimizer": optimizer_state(part)})
    meta: dict = {"step": step if metadata_step is None else metadata_step, "tokens_seen": 64}
    if vlm_freeze is not None:
        meta["vlm_freeze"] = vlm_freeze
    (step_dir / "metadata.json").write_text(json.dumps(meta, indent=2))
    if not complete:
        # An interrupted async save: shards written, .metadata (written last) absent.
        for metadata in step_dir.rglob(".metadata"):
            metadata.unlink()
    return step_dir


def point_latest(run_dir: Path, target: str, *, as_file: bool = False) -> None:
    latest = run_dir / "latest"
    if as_file:
        latest.write_text(target)
    else:
        os.symlink(target, latest)


def save_safetensors(path: Path, named: dict[str, torch.Tensor]) -> Path:
    try:
        from safetensors.torch import save_file

        save_file(named, str(path))
    except ImportError:
        # safetensors.torch needs numpy only to get at the tensor bytes; the
        # serializer itself takes raw pointers, so hand it those directly.
        from safetensors import TensorSpec, serialize_file

        alive = {k: v.detach().cpu().contiguous() for k, v in named.items()}
        specs = {k: TensorSpec(dtype=str(v.dtype).split(".")[-1], shape=list(v.shape),
                               data_ptr=v.data_ptr(), data_len=v.numel() * v.element_size())
                 for k, v in alive.items()}
        serialize_file(specs, str(path))
    return path


# Llama-style names as scripts/convert_checkpoint.py exports them, with the
# KempnerForge names they come from.
HF_TO_KF: dict[str, str] = {
    "model.embed_tokens.weight": "token_embedding.embedding.weight",
    "model.layers.0.self_attn.q_proj.weight": "layers.0.attention.q_proj.weight",
    "model.layers.0.self_attn.o_proj.weight": "layers.0.attention.o_proj.weight",
    "model.layers.0.input_layernorm.weight": "layers.0.attention_norm.weight",
    "model.layers.0.post_attention_layernorm.weight": "layers.0.mlp_norm.weight",
    "model.layers.0.mlp.gate_proj.weight": "layers.0.mlp.gate_proj.weight",
    "model.layers.1.mlp.gate.weight": "layers.1.mlp.router.gate.weight",
    "model.layers.1.mlp.expert_bias": "layers.1.mlp.router.expert_bias",
    "model.layers.1.mlp.shared_experts.up_proj.weight": "layers.1.mlp.shared_expert.up_proj.weight",
    "model.layers.1.mlp.experts.0.down_proj.weight": "layers.1.mlp.experts.0.down_proj.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output_head.proj.weight",
}


def save_hf_sharded(directory: Path, named: dict[str, torch.Tensor], shards: int = 2) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    names = list(named)
    weight_map = {}
    for k in range(shards):
        shard = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: named[n] for n in names[k::shards]}
        save_safetensors(directory / shard, part)
        weight_map.update({n: shard for n in part})
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    (directory / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return directory


def pickle_globals(data: bytes) -> set[str]:
    """Globals a pickle names, found by disassembly (nothing is loaded).

    Tracks just enough of the memo to see through STACK_GLOBAL operands that
    were fetched with BINGET, as DCP's metadata does for its module name.
    """
    found: set[str] = set()
    memo: dict[int, object] = {}
    pushed: list[object] = []
    for opcode, arg, _ in pickletools.genops(data):
        name = opcode.name
        if name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            pushed.append(arg)
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(int(arg)))
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = pushed[-1] if pushed else None
        elif name == "STACK_GLOBAL":
            found.add(f"{pushed[-2]}.{pushed[-1]}")
            pushed.append(None)
        elif name in ("GLOBAL", "INST"):
            found.add(arg.replace(" ", "."))
            pushed.append(None)
        else:
            pushed.append(None)
    return found
