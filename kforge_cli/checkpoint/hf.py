"""Hugging Face model directories and ``*.index.json`` shard indexes, and their names.

Hugging Face (Llama-style) names are mapped back to KempnerForge names with
the inverse of ``scripts/convert_checkpoint.py``'s export mapping:

    model.embed_tokens.weight                 -> token_embedding.embedding.weight
    lm_head.weight                            -> output_head.proj.weight
    model.norm.weight                         -> norm.weight
    model.layers.N.self_attn.*                -> layers.N.attention.*
    model.layers.N.input_layernorm.*          -> layers.N.attention_norm.*
    model.layers.N.post_attention_layernorm.* -> layers.N.mlp_norm.*
    model.layers.N.mlp.gate.*                 -> layers.N.mlp.router.gate.*
    model.layers.N.mlp.expert_bias            -> layers.N.mlp.router.expert_bias
    model.layers.N.mlp.shared_experts.*       -> layers.N.mlp.shared_expert.*

The mapping targets the bare text ``Transformer`` (as the reference script
does), so a VLM's ``transformer.`` prefix is not invented.

Shards named by an index are resolved once each to their canonical path,
must stay inside the model directory (or, for a hub cache snapshot, inside
its repo folder), and are read once however many spellings reach them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from kforge_cli.checkpoint import limits
from kforge_cli.checkpoint.errors import CheckpointError, CheckpointLimitError, clip
from kforge_cli.checkpoint.manifest import (
    FORMAT_HF_SHARDED,
    Contents,
    Entries,
    strip_wrappers,
)
from kforge_cli.checkpoint.safe_io import (
    ReadBudget,
    base_name,
    canonical,
    containment_root,
    is_file,
    is_inside,
    is_safe_relative,
    read_bounded,
    read_head,
    stat_path,
)
from kforge_cli.checkpoint.safe_json import load_json
from kforge_cli.checkpoint.safetensors import safetensors_header
from kforge_cli.checkpoint.torch_save import torch_file_entries

# --- names ---------------------------------------------------------------------------

_HF_TOP_LEVEL = {
    "model.embed_tokens.weight": "token_embedding.embedding.weight",
    "lm_head.weight": "output_head.proj.weight",
    "model.norm.weight": "norm.weight",
}
_HF_BLOCK = re.compile(r"model\.layers\.(\d+)\.(.+)")
_HF_BLOCK_RENAMES = {
    "self_attn": "attention",
    "input_layernorm": "attention_norm",
    "post_attention_layernorm": "mlp_norm",
}
# Components that only the HF layout has; KempnerForge names never contain them.
_HF_MARKER = re.compile(
    r"lm_head\.weight$"
    r"|model\.(embed_tokens\.|layers\.\d+\.(self_attn|input_layernorm|post_attention_layernorm)\.)")


def looks_hf_named(names: Iterable[str]) -> bool:
    """True when names use the Llama-style layout of Hugging Face checkpoints,
    directly or under one ``model.`` container key."""
    for name in names:
        name = strip_wrappers(name)
        if _HF_MARKER.match(name) or (name.startswith("model.") and _HF_MARKER.match(name[6:])):
            return True
    return False


def hf_to_kempnerforge_name(name: str) -> str:
    """Map one Hugging Face (Llama-style) name to the KempnerForge name."""
    if name in _HF_TOP_LEVEL:
        return _HF_TOP_LEVEL[name]
    match = _HF_BLOCK.match(name)
    if not match:
        return name
    parts = match.group(2).split(".")
    parts[0] = _HF_BLOCK_RENAMES.get(parts[0], parts[0])
    if parts[0] == "mlp" and len(parts) > 1:
        if parts[1] in ("gate", "expert_bias"):
            parts.insert(1, "router")
        elif parts[1] == "shared_experts":
            parts[1] = "shared_expert"
    return f"layers.{match.group(1)}." + ".".join(parts)


def from_hf(name: str) -> str:
    """The KempnerForge name of an HF-named entry, looking under one ``model.`` key too."""
    mapped = hf_to_kempnerforge_name(name)
    if mapped == name and name.startswith("model."):
        # {"model": hf_state_dict} saved through DCP or torch.save.
        inner = name[len("model."):]
        mapped_inner = hf_to_kempnerforge_name(inner)
        if mapped_inner != inner:
            return mapped_inner
    return mapped


# --- model directories ----------------------------------------------------------------

def hf_weights_file(directory: str, names: list[str]) -> str | None:
    """The weights file (or index) of an HF model directory, if it has one."""
    for preferred in ("model.safetensors.index.json", "model.safetensors",
                      "pytorch_model.bin.index.json", "pytorch_model.bin"):
        if preferred in names and is_file(os.path.join(directory, preferred)):
            return _contained(directory, preferred, "weights file")
    for suffix in (".safetensors.index.json", ".safetensors", ".bin.index.json"):
        matches = sorted(n for n in names if n.endswith(suffix))
        if len(matches) == 1:
            return _contained(directory, matches[0], "weights file")
        if len(matches) > 1:
            raise CheckpointError(
                f"{directory} holds several *{suffix} files "
                f"({', '.join(clip(m, 80) for m in matches[:4])}) "
                "and no model.safetensors.index.json to say how they fit together",
                hint="pass one of the files directly")
    return None


def _contained(directory: str, rel: str, what: str, root: str | None = None) -> str:
    """``directory/rel``, refused when its canonical path leaves the checkpoint."""
    path = os.path.join(directory, rel)
    root = root or containment_root(directory)
    real = canonical(path)
    if not is_inside(real, root):
        raise CheckpointError(
            f"{what} {path} resolves to {clip(real)}, outside the checkpoint directory {root}",
            hint="kforge reads only files inside the checkpoint; copy the file in, or pass "
                 "it directly if you trust it")
    return path


def read_hf_index(index_path: str, notes: list[str]) -> Contents:
    data = read_bounded(index_path, limits.MAX_INDEX_BYTES, "weight index", "MAX_INDEX_BYTES")
    index = load_json(data, index_path, "weight index")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(
            type(k) is str and type(v) is str for k, v in weight_map.items()):
        raise CheckpointError(f"{index_path} has no weight_map of tensor name -> shard file",
                              hint="expected a Hugging Face *.index.json")
    if len(weight_map) > limits.MAX_ENTRIES:
        raise CheckpointLimitError(f"{index_path} lists {len(weight_map):,} tensors, more than "
                                   f"the {limits.MAX_ENTRIES:,} kforge reads", "MAX_ENTRIES")
    directory = os.path.dirname(index_path) or "."
    by_spelling: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        by_spelling.setdefault(shard, []).append(name)
    if len(by_spelling) > limits.MAX_SHARDS:
        raise CheckpointLimitError(f"{index_path} names {len(by_spelling):,} shard files, more "
                                   f"than the {limits.MAX_SHARDS:,} kforge reads", "MAX_SHARDS")

    # Resolve every spelling once; group the names by the file they reach.
    root = containment_root(directory)
    by_file: dict[str, tuple[str, list[str]]] = {}
    for shard, listed in by_spelling.items():
        if len(shard) > limits.MAX_SHARD_PATH_CHARS:
            raise CheckpointLimitError(f"{index_path} names a shard path of {len(shard):,} "
                                       f"characters, more than the "
                                       f"{limits.MAX_SHARD_PATH_CHARS} kforge reads",
                                       "MAX_SHARD_PATH_CHARS")
        if not is_safe_relative(shard):
            raise CheckpointError(f"{index_path} names shard {clip(shard, 80)!r} outside its "
                                  "directory")
        real = canonical(_contained(directory, shard, f"shard {clip(shard, 80)} of", root))
        if real in by_file:
            by_file[real][1].extend(listed)
        else:
            by_file[real] = (shard, list(listed))

    entries: Entries = []
    unlisted = 0
    budget = ReadBudget(limits.MAX_INDEX_SHARD_BYTES, "MAX_INDEX_SHARD_BYTES",
                        f"the shard headers of {index_path}")
    for real, (shard, listed) in by_file.items():
        stat_path(real, "checkpoint shard")
        if shard.endswith(".safetensors"):
            found: dict[str, tuple[int, ...] | None] = dict(safetensors_header(real, budget))
        else:
            torch_file = torch_file_entries(real, read_head(real, 16), [], budget)
            if torch_file is None:
                raise CheckpointError(f"{os.path.join(directory, shard)}, a shard of "
                                      f"{index_path}, is neither safetensors nor a torch.save file")
            found = dict(torch_file[0])
        missing = [n for n in listed if n not in found]
        if missing:
            raise CheckpointError(f"{index_path} lists {clip(missing[0])} in {clip(shard, 80)}, "
                                  f"which does not hold it ({len(missing)} such names)",
                                  hint="the index and the shards are from different saves")
        unlisted += len(found) - len(listed)
        entries.extend(found.items())
        if len(entries) > limits.MAX_ENTRIES:
            raise CheckpointLimitError(f"the shards of {index_path} hold more than "
                                       f"{limits.MAX_ENTRIES:,} tensors", "MAX_ENTRIES")
    if unlisted:
        notes.append(f"{unlisted} tensors in the shards are not in {base_name(index_path)}")
    notes.append(f"read {len(by_file)} shard headers listed in {base_name(index_path)}")
    return Contents(FORMAT_HF_SHARDED, index_path, entries)
