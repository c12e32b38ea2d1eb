"""Read parameter names and shapes from a checkpoint without trusting it.

Supported inputs: a KempnerForge run directory (``latest`` -> ``step_N/``), a
``step_N`` DCP directory (optionally split into ``ppK/`` pipeline stages), a
``torch.save`` file (zip or pre-1.6 format), a ``.safetensors`` file and a
Hugging Face model directory. Only metadata is read: DCP ``.metadata``, the
pickle inside a torch archive, safetensors headers, JSON indexes. Pickles go
through :mod:`kforge_cli.freeze.safe_pickle`, which never imports or calls
anything named by the file. Tensor data is never read.

Names are normalized to what the KempnerForge model's ``named_parameters()``
uses: wrapper components (``_orig_mod``, ``module``, ``_fsdp_wrapped_module``,
``_checkpoint_wrapped_module``) are dropped wherever they occur and one
leading ``model.`` (the DCP / ``{"model": ...}`` container key) is stripped.
Optimizer state and non-tensor entries are listed in ``ignored``.

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
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable, List, Optional, Tuple

from kforge_cli.freeze.safe_pickle import (
    ForbiddenGlobalError,
    MalformedPickleError,
    Record,
    StorageRef,
    TensorStub,
    as_shape,
    restricted_load,
)

FORMAT_DCP = "dcp"
FORMAT_DCP_PIPELINE = "dcp-pipeline"
FORMAT_TORCH = "torch"
FORMAT_SAFETENSORS = "safetensors"
FORMAT_HF_SHARDED = "hf-sharded"

MiB = 2**20
# A DCP .metadata of a large FSDP run (one chunk record per rank per tensor)
# reaches hundreds of MiB; the pickle of a torch.save archive is far smaller.
MAX_PICKLE_BYTES = 512 * MiB
MAX_SAFETENSORS_HEADER_BYTES = 100 * MiB
MAX_JSON_BYTES = 64 * MiB
MAX_POINTER_BYTES = 4096

DCP_METADATA_FILE = ".metadata"
RUN_METADATA_FILE = "metadata.json"
LATEST_POINTER = "latest"

_STEP_DIR = re.compile(r"step_(\d+)")
_STAGE_DIR = re.compile(r"pp(\d+)")
_WRAPPER_COMPONENTS = frozenset(
    {"_orig_mod", "module", "_fsdp_wrapped_module", "_checkpoint_wrapped_module"})
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_PROTOCOL = 1001
_ZIP_MAGIC = b"PK\x03\x04"

_ITEMSIZE = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "complex128": 16,
    "complex64": 8, "complex32": 4, "int64": 8, "int32": 4, "int16": 2, "int8": 1,
    "uint64": 8, "uint32": 4, "uint16": 2, "uint8": 1, "bool": 1, "qint32": 4,
}
_SAFETENSORS_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "C64": 8,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
}

_HINT_INPUTS = ("expected a KempnerForge run directory (with `latest` or step_N/), a step_N "
                "directory, a torch.save .pt file, a .safetensors file or a Hugging Face "
                "model directory")


class CheckpointError(Exception):
    """A checkpoint that cannot be read: missing, truncated, malformed or absurd."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UnsafeCheckpointError(CheckpointError):
    """A pickle in the checkpoint asked for a global outside the allow-list."""

    def __init__(self, message: str, hint: str | None = None,
                 global_name: str | None = None) -> None:
        super().__init__(message, hint)
        self.global_name = global_name


@dataclass
class CheckpointManifest:
    """What a checkpoint holds, keyed by KempnerForge parameter name.

    ``resolved_path`` is what was actually read (the step dir behind
    ``latest``, the HF index, ...); ``original_names`` maps each normalized
    name back to the name as stored; ``ignored`` lists stored entries that are
    optimizer state or not tensors; ``notes`` explain every choice made.
    """

    requested_path: str
    resolved_path: str
    format: str
    tensors: dict[str, tuple[int, ...]]
    original_names: dict[str, str]
    ignored: list[str] = field(default_factory=list)
    step: int | None = None
    metadata: dict | None = None
    vlm_freeze: list[dict] | None = None
    notes: list[str] = field(default_factory=list)


# (name as stored, shape); shape None for an entry that is not a tensor.
_Entries = List[Tuple[str, Optional[Tuple[int, ...]]]]


@dataclass
class _Contents:
    """What a format reader found, before names are normalized."""

    format: str
    resolved_path: str
    entries: _Entries
    # torch.save of {"model": state_dict, ...}: siblings of "model" are extras.
    model_container: bool = False
    # Directory whose metadata.json and step_N name describe this checkpoint.
    step_dir: str | None = None


# --- public entry point ------------------------------------------------------

def read_checkpoint(path: str | os.PathLike) -> CheckpointManifest:
    """Parameter names and shapes of the checkpoint at ``path``.

    Raises :class:`CheckpointError` for anything unreadable and
    :class:`UnsafeCheckpointError` for a pickle naming a disallowed global.
    """
    requested = os.fspath(path)
    notes: list[str] = []
    info = _stat(requested, "checkpoint path")
    start = requested
    if os.path.islink(requested):
        # Read the target under its own name, so step_N and ppK are recognized.
        start = os.path.realpath(requested)
        notes.append(f"followed symlink {requested} -> {start}")
    if stat.S_ISDIR(info.st_mode):
        contents = _read_directory(start, notes, follow_run_pointers=True)
    elif stat.S_ISREG(info.st_mode):
        contents = _read_file(start, notes)
    else:
        raise CheckpointError(f"{requested} is neither a regular file nor a directory",
                              hint=_HINT_INPUTS)
    return _assemble(requested, contents, notes)


def normalize_parameter_name(name: str) -> str:
    """Drop wrapper components anywhere and one leading ``model.`` container key."""
    stripped = _strip_wrappers(name)
    return stripped[len("model."):] if stripped.startswith("model.") else stripped


def looks_hf_named(names: Iterable[str]) -> bool:
    """True when names use the Llama-style layout of Hugging Face checkpoints,
    directly or under one ``model.`` container key."""
    for name in names:
        name = _strip_wrappers(name)
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


def _from_hf(name: str) -> str:
    mapped = hf_to_kempnerforge_name(name)
    if mapped == name and name.startswith("model."):
        # {"model": hf_state_dict} saved through DCP or torch.save.
        inner = name[len("model."):]
        mapped_inner = hf_to_kempnerforge_name(inner)
        if mapped_inner != inner:
            return mapped_inner
    return mapped


def _strip_wrappers(name: str) -> str:
    parts = [p for p in name.split(".") if p not in _WRAPPER_COMPONENTS]
    return ".".join(parts) if parts else name


# --- turning entries into a manifest -------------------------------------------

def _assemble(requested: str, contents: _Contents, notes: list[str]) -> CheckpointManifest:
    entries = [(stored, _strip_wrappers(stored), shape) for stored, shape in contents.entries]
    tops = {name.split(".", 1)[0] for _, name, _ in entries}
    # A bare optimizer.state_dict() has exactly these two top-level keys.
    optimizer_tops = {"state", "param_groups"} if "param_groups" in tops else set()
    hf_named = looks_hf_named(name for _, name, shape in entries if shape is not None)

    tensors: dict[str, tuple[int, ...]] = {}
    original: dict[str, str] = {}
    ignored: list[str] = []
    optimizer_count = 0
    for stored, name, shape in entries:
        top = name.split(".", 1)[0]
        if top.startswith("optim") or top in optimizer_tops:
            ignored.append(stored)
            optimizer_count += 1
            continue
        if shape is None or (contents.model_container and top != "model"):
            ignored.append(stored)
            continue
        if hf_named:
            name = _from_hf(name)
        if name.startswith("model."):
            name = name[len("model."):]
        if name in tensors:
            ignored.append(stored)
            notes.append(f"{stored!r} and {original[name]!r} both name {name!r}; "
                         f"kept {original[name]!r}")
            continue
        tensors[name] = shape
        original[name] = stored

    if hf_named:
        renamed = sum(1 for n, s in original.items() if _strip_wrappers(s) not in (n, "model." + n))
        notes.append(f"Hugging Face (Llama-style) names: mapped {renamed} of them to "
                     "KempnerForge names as scripts/convert_checkpoint.py does")
    if optimizer_count:
        notes.append(f"ignored {optimizer_count} optimizer entries")
    if not tensors:
        what = "only optimizer state" if optimizer_count else "no tensors"
        raise CheckpointError(
            f"{contents.resolved_path} has no model parameters ({what}; "
            f"{len(entries)} entries in all)",
            hint="point at the model weights: a checkpoint saved from model.state_dict()")

    metadata, step, vlm_freeze = None, None, None
    if contents.step_dir is not None:
        metadata = _read_run_metadata(contents.step_dir, notes)
        step = _step_of(contents.step_dir, metadata, notes)
        if metadata is not None and "vlm_freeze" in metadata:
            vlm_freeze = _vlm_freeze_of(metadata["vlm_freeze"], notes)
    return CheckpointManifest(
        requested_path=requested, resolved_path=contents.resolved_path, format=contents.format,
        tensors=tensors, original_names=original, ignored=ignored, step=step,
        metadata=metadata, vlm_freeze=vlm_freeze, notes=notes)


def _read_run_metadata(step_dir: str, notes: list[str]) -> dict | None:
    path = os.path.join(step_dir, RUN_METADATA_FILE)
    if not os.path.lexists(path):
        return None
    # The trainer treats an unreadable metadata.json as absent; so do we.
    try:
        data = json.loads(_read_bounded(path, MAX_JSON_BYTES, "metadata.json"))
    except (CheckpointError, ValueError) as exc:
        notes.append(f"ignored {path}: {getattr(exc, 'message', exc)}")
        return None
    if not isinstance(data, dict):
        notes.append(f"ignored {path}: not a JSON object")
        return None
    return data


def _step_of(step_dir: str, metadata: dict | None, notes: list[str]) -> int | None:
    match = _STEP_DIR.fullmatch(os.path.basename(os.path.normpath(step_dir)))
    from_name = int(match.group(1)) if match else None
    if metadata is None or "step" not in metadata:
        return from_name
    value = metadata["step"]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        value = None
    try:
        from_metadata = int(value) if value is not None else None
    except (ValueError, OverflowError):
        from_metadata = None
    if from_metadata is None or from_metadata < 0 or \
            (isinstance(value, float) and value != from_metadata):
        notes.append(f"metadata.json step {metadata['step']!r} is not a step number; ignored")
        return from_name
    if from_name is not None and from_name != from_metadata:
        notes.append(f"metadata.json says step {from_metadata} but the directory is "
                     f"step_{from_name}; using {from_metadata}")
    return from_metadata


def _vlm_freeze_of(value: Any, notes: list[str]) -> list[dict] | None:
    if isinstance(value, list) and all(isinstance(e, dict) for e in value):
        return value
    notes.append("metadata.json vlm_freeze is not a list of objects; ignored")
    return None


# --- directories ----------------------------------------------------------------

def _read_directory(directory: str, notes: list[str], *, follow_run_pointers: bool) -> _Contents:
    names = _list_dir(directory)
    if _is_file(os.path.join(directory, DCP_METADATA_FILE)):
        return _read_dcp(directory, notes)
    stages = _stage_dirs(directory, names)
    if stages:
        missing = [os.path.basename(s) for s in stages
                   if not _is_file(os.path.join(s, DCP_METADATA_FILE))]
        if missing:
            raise _incomplete_error(directory, f"pipeline stage(s) {', '.join(missing)} "
                                               f"have no {DCP_METADATA_FILE}")
        return _read_dcp_pipeline(directory, stages, notes)
    if follow_run_pointers and (LATEST_POINTER in names or _step_dirs(directory, names)):
        target = _resolve_run(directory, names, notes)
        if _is_file(target):
            return _read_file(target, notes, via_pointer=True)
        return _read_directory(target, notes, follow_run_pointers=False)
    hf = _hf_weights_file(directory, names)
    if hf is not None:
        return _read_file(hf, notes)
    if any(n.endswith(".distcp") for n in names) or _STEP_DIR.fullmatch(_base(directory)):
        raise _incomplete_error(directory, f"has no {DCP_METADATA_FILE}")
    if not names:
        raise CheckpointError(f"{directory} is an empty directory", hint=_HINT_INPUTS)
    shown = ", ".join(sorted(names)[:8]) + (", ..." if len(names) > 8 else "")
    raise CheckpointError(f"no checkpoint found in {directory} (it holds: {shown})",
                          hint=_HINT_INPUTS)


def _incomplete_error(directory: str, what: str) -> CheckpointError:
    hint = ("DCP writes .metadata last, so the save was interrupted or is still in "
            "flight; point at an earlier step_N")
    parent = os.path.dirname(os.path.normpath(directory))
    if _STEP_DIR.fullmatch(_base(directory)) and parent:
        try:
            complete = [p for _, p in _step_dirs(parent, _list_dir(parent))
                        if _dcp_incomplete_reason(p) is None]
        except CheckpointError:
            complete = []
        if complete:
            hint += f" (newest complete: {complete[0]}), or at the run directory"
    return CheckpointError(f"{directory} {what}: the checkpoint is incomplete", hint=hint)


def _resolve_run(run_dir: str, names: list[str], notes: list[str]) -> str:
    """Pick the step directory of a run: ``latest`` if usable, else the newest complete one."""
    problems: list[str] = []
    latest_target = None
    if LATEST_POINTER in names:
        try:
            latest_target, how = _follow_latest(run_dir)
        except CheckpointError as exc:
            problems.append(exc.message)
        else:
            reason = None if _is_file(latest_target) else _dcp_incomplete_reason(latest_target)
            shown = _shown(latest_target, run_dir)
            if reason is None:
                notes.append(f"followed latest -> {shown}"
                             + (" (`latest` is a file naming it)" if how == "file" else ""))
                return latest_target
            problems.append(f"latest -> {shown} {reason}")

    steps = _step_dirs(run_dir, names)
    skipped: list[str] = []
    for _, candidate in steps:
        reason = _dcp_incomplete_reason(candidate)
        if reason is not None:
            skipped.append(f"{_base(candidate)} {reason}")
            continue
        why = "; ".join(problems + skipped)
        if not why:
            notes.append(f"no `latest`; picked newest {_base(candidate)}")
            return candidate
        notes.append(f"picked newest complete {_base(candidate)}; {why}")
        # The trainer's auto-resume (resolve_resume_path) takes `latest` or else
        # the highest step_N, and loads it without checking for .metadata.
        trainer_pick = latest_target or steps[0][1]
        if os.path.exists(trainer_pick) and trainer_pick != candidate:
            notes.append(f"KempnerForge's auto-resume would load {_shown(trainer_pick, run_dir)} "
                         "instead and fail there")
        return candidate
    detail = "; ".join(problems + skipped) or "no step_N directories"
    raise CheckpointError(f"no complete checkpoint in {run_dir}: {detail}",
                          hint="DCP writes .metadata last; a step without it was interrupted")


def _shown(path: str, base_dir: str) -> str:
    relative = os.path.relpath(path, base_dir)
    return path if relative.startswith("..") else relative


def _follow_latest(run_dir: str) -> tuple[str, str]:
    """Target of ``latest`` (a symlink, or a file naming the step dir) and how it was read."""
    pointer = os.path.join(run_dir, LATEST_POINTER)
    if os.path.islink(pointer):
        try:
            link = os.readlink(pointer)
        except OSError as exc:
            raise _os_error(exc, pointer, "`latest` symlink") from None
        target, how = os.path.normpath(os.path.join(run_dir, link)), "symlink"
    elif _is_file(pointer):
        raw = _read_bounded(pointer, MAX_POINTER_BYTES, "`latest` file")
        try:
            link = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise CheckpointError(f"{pointer} is not a text file naming a step directory") \
                from None
        if not link or "\n" in link or "\x00" in link:
            raise CheckpointError(f"{pointer} does not hold one step directory name")
        target, how = os.path.normpath(os.path.join(run_dir, link)), "file"
    else:
        return pointer, "directory"
    try:
        os.stat(target)
    except FileNotFoundError:
        raise CheckpointError(f"latest -> {link}, which does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CheckpointError(f"latest -> {link} is a symlink loop "
                                  f"({_link_chain(pointer)})") from None
        raise _os_error(exc, target, "`latest` target") from None
    return target, how


def _dcp_incomplete_reason(step_dir: str) -> str | None:
    """None when the DCP save in ``step_dir`` is complete, else what is missing."""
    try:
        if not stat.S_ISDIR(os.stat(step_dir).st_mode):
            return "is not a directory"
        names = os.listdir(step_dir)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if _is_file(os.path.join(step_dir, DCP_METADATA_FILE)):
        return None
    stages = _stage_dirs(step_dir, names)
    if not stages:
        return f"has no {DCP_METADATA_FILE}"
    missing = [_base(s) for s in stages if not _is_file(os.path.join(s, DCP_METADATA_FILE))]
    if missing:
        return f"has no {DCP_METADATA_FILE} in {', '.join(missing)}"
    return None


def _step_dirs(directory: str, names: list[str]) -> list[tuple[int, str]]:
    found = []
    for name in names:
        match = _STEP_DIR.fullmatch(name)
        path = os.path.join(directory, name)
        if match and os.path.isdir(path):
            found.append((int(match.group(1)), path))
    return sorted(found, reverse=True)


def _stage_dirs(directory: str, names: list[str]) -> list[str]:
    found = []
    for name in names:
        match = _STAGE_DIR.fullmatch(name)
        path = os.path.join(directory, name)
        if match and os.path.isdir(path):
            found.append((int(match.group(1)), path))
    return [p for _, p in sorted(found)]


def _hf_weights_file(directory: str, names: list[str]) -> str | None:
    for preferred in ("model.safetensors.index.json", "model.safetensors",
                      "pytorch_model.bin.index.json", "pytorch_model.bin"):
        if preferred in names and _is_file(os.path.join(directory, preferred)):
            return os.path.join(directory, preferred)
    for suffix in (".safetensors.index.json", ".safetensors", ".bin.index.json"):
        matches = sorted(n for n in names if n.endswith(suffix))
        if len(matches) == 1:
            return os.path.join(directory, matches[0])
        if len(matches) > 1:
            raise CheckpointError(
                f"{directory} holds several *{suffix} files ({', '.join(matches[:4])}) "
                "and no model.safetensors.index.json to say how they fit together",
                hint="pass one of the files directly")
    return None


# --- DCP ---------------------------------------------------------------------------

def _read_dcp(dcp_dir: str, notes: list[str]) -> _Contents:
    entries = _dcp_entries(dcp_dir)
    step_dir = dcp_dir
    if _STAGE_DIR.fullmatch(_base(dcp_dir)):
        step_dir = os.path.dirname(os.path.normpath(dcp_dir)) or "."
        notes.append(f"read only pipeline stage {_base(dcp_dir)}; pass {step_dir} "
                     "to read every stage")
    return _Contents(FORMAT_DCP, dcp_dir, entries, step_dir=step_dir)


def _read_dcp_pipeline(step_dir: str, stages: list[str], notes: list[str]) -> _Contents:
    merged: _Entries = []
    seen: dict[str, tuple[str, tuple[int, ...] | None]] = {}
    for stage in stages:
        for name, shape in _dcp_entries(stage):
            if name in seen:
                first_stage, first_shape = seen[name]
                if shape is not None and first_shape is not None and shape != first_shape:
                    raise CheckpointError(
                        f"pipeline stages disagree on {name}: {list(first_shape)} in "
                        f"{first_stage}, {list(shape)} in {_base(stage)}",
                        hint="the stages come from different runs; re-save the checkpoint")
                continue
            seen[name] = (_base(stage), shape)
            merged.append((name, shape))
    numbers = [int(_base(s)[len("pp"):]) for s in stages]
    if numbers != list(range(len(numbers))):
        notes.append(f"pipeline stages {', '.join(_base(s) for s in stages)} are not "
                     "numbered 0..K-1; a stage may be missing")
    notes.append(f"merged {len(stages)} pipeline stages ({', '.join(_base(s) for s in stages)})")
    return _Contents(FORMAT_DCP_PIPELINE, step_dir, merged, step_dir=step_dir)


def _dcp_entries(dcp_dir: str) -> _Entries:
    path = os.path.join(dcp_dir, DCP_METADATA_FILE)
    data = _read_bounded(path, MAX_PICKLE_BYTES, "DCP metadata")
    metadata, _ = _unpickle(io.BytesIO(data), path, allow_storages=False,
                            what="a DCP .metadata file")
    if not _is_record(metadata, "Metadata") or \
            not isinstance(metadata.fields.get("state_dict_metadata"), dict):
        raise CheckpointError(f"{path} is not a DCP .metadata file (no state_dict_metadata)",
                              hint="the file may be from an unsupported DCP storage plugin")
    entries: _Entries = []
    for name, item in metadata.fields["state_dict_metadata"].items():
        if not isinstance(name, str):
            raise CheckpointError(f"{path} is malformed: entry name {name!r:.60}")
        if _is_record(item, "TensorStorageMetadata"):
            try:
                entries.append((name, as_shape(item.fields.get("size"))))
            except MalformedPickleError as exc:
                raise CheckpointError(f"{path} is malformed: {name}: {exc}") from None
        elif _is_record(item, "BytesStorageMetadata"):
            entries.append((name, None))
        else:
            raise CheckpointError(f"{path} is malformed: {name} has no storage metadata")
    _check_dcp_shards(dcp_dir, metadata.fields.get("storage_data"))
    return entries


def _check_dcp_shards(dcp_dir: str, storage_data: Any) -> None:
    """Every byte range the metadata points at must exist: catches truncated shards."""
    if not isinstance(storage_data, dict):
        return
    needed: dict[str, int] = {}
    for info in storage_data.values():
        if not _is_record(info, "_StorageInfo"):
            return  # a storage plugin we do not know; nothing to check against
        rel, offset, length = (info.fields.get(k) for k in ("relative_path", "offset", "length"))
        if not isinstance(rel, str) or type(offset) is not int or type(length) is not int \
                or offset < 0 or length < 0 or not _is_safe_relative(rel):
            raise CheckpointError(f"{dcp_dir}/{DCP_METADATA_FILE} is malformed: bad shard "
                                  f"record {rel!r:.80}")
        needed[rel] = max(needed.get(rel, 0), offset + length)
    for rel, end in sorted(needed.items()):
        shard = os.path.join(dcp_dir, rel)
        try:
            size = os.stat(shard).st_size
        except FileNotFoundError:
            raise CheckpointError(f"{shard} is missing: the checkpoint is incomplete",
                                  hint="the save was interrupted or files were deleted") from None
        except OSError as exc:
            raise _os_error(exc, shard, "DCP shard") from None
        if size < end:
            raise CheckpointError(f"{shard} is truncated ({size} bytes, the metadata needs "
                                  f"{end})", hint="the copy or the save was cut short")


def _is_record(value: Any, kind: str) -> bool:
    return isinstance(value, Record) and value.kind == kind


# --- files --------------------------------------------------------------------------

def _read_file(path: str, notes: list[str], *, via_pointer: bool = False) -> _Contents:
    base = _base(path)
    parent = os.path.dirname(path) or "."
    if via_pointer and base == LATEST_POINTER:
        raise CheckpointError(f"`latest` points at {path}, another pointer; "
                              "kforge follows one level only",
                              hint="make `latest` name the step directory")
    if base == DCP_METADATA_FILE:
        return _read_directory(parent, notes, follow_run_pointers=False)
    if base == RUN_METADATA_FILE:
        return _read_directory(parent, notes, follow_run_pointers=False)
    if base == LATEST_POINTER:
        target, _ = _follow_latest(parent)
        notes.append(f"followed latest -> {target}")
        if _is_file(target):
            return _read_file(target, notes, via_pointer=True)
        return _read_directory(target, notes, follow_run_pointers=False)
    if base.endswith(".index.json"):
        return _read_hf_index(path, notes)
    if base.endswith(".distcp"):
        raise CheckpointError(f"{path} is one DCP shard, not a checkpoint",
                              hint=f"pass the directory that holds it and {DCP_METADATA_FILE}")

    head = _read_head(path, 512)
    if base.endswith(".safetensors") or _looks_like_safetensors(head):
        return _Contents(FORMAT_SAFETENSORS, path, _safetensors_entries(path))
    torch_file = _torch_file_entries(path, head, notes)
    if torch_file is not None:
        return _Contents(FORMAT_TORCH, path, *torch_file)
    if head[257:262] == b"ustar":
        raise CheckpointError(f"{path} is a tar archive (the torch.save format before 0.4), "
                              "which kforge does not read",
                              hint="re-save the state dict with a current torch")
    if not head:
        raise CheckpointError(f"{path} is empty", hint=_HINT_INPUTS)
    raise CheckpointError(f"{path} is not a checkpoint kforge recognizes", hint=_HINT_INPUTS)


def _looks_like_safetensors(head: bytes) -> bool:
    # 8-byte header length, then the JSON header. Torch zips have a small
    # compression code there, legacy torch pickles part of their magic number.
    return len(head) >= 9 and head[8:9] == b"{"


# --- torch.save -------------------------------------------------------------------

def _torch_file_entries(path: str, head: bytes, notes: list[str]
                        ) -> tuple[_Entries, bool] | None:
    """Entries of a torch.save file, or None when ``head`` is neither format."""
    if head.startswith(_ZIP_MAGIC):
        return _torch_zip_entries(path)
    # Protocol 2+ pickles open with PROTO (0x80); protocols 0/1 with GLOBAL or MARK.
    if head[:1] == b"\x80" or head[:1] in (b"c", b"("):
        found = _torch_legacy_entries(path)
        notes.append("legacy (pre-1.6) torch.save format")
        return found
    return None


# What zipfile raises on a damaged archive (RuntimeError: "encrypted",
# NotImplementedError: unknown version or compression).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, LookupError,
               RuntimeError, OverflowError, struct.error)


def _torch_zip_entries(path: str) -> tuple[_Entries, bool]:
    with _open_regular(path, "torch checkpoint") as handle:
        try:
            archive = zipfile.ZipFile(handle)
        except _ZIP_ERRORS as exc:
            raise CheckpointError(f"{path} is a truncated or corrupt zip archive ({exc})",
                                  hint="the copy or the save was cut short") from None
        with archive:
            try:
                return _torch_zip_contents(path, archive)
            except _ZIP_ERRORS as exc:
                raise CheckpointError(f"{path} is a truncated or corrupt zip archive ({exc})",
                                      hint="the copy or the save was cut short") from None


def _torch_zip_contents(path: str, archive: zipfile.ZipFile
                        ) -> tuple[_Entries, bool]:
    infos = {info.filename: info for info in archive.infolist()}
    pickles = [n for n in infos if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in infos):
            raise CheckpointError(f"{path} is a TorchScript module (torch.jit.save), "
                                  "not a state dict",
                                  hint="save model.state_dict() with torch.save instead")
        raise CheckpointError(f"{path} is a zip archive but not a torch.save file "
                              f"({'no' if not pickles else 'several'} data.pkl)",
                              hint=_HINT_INPUTS)
    root = pickles[0][: -len("data.pkl")]
    if f"{root}constants.pkl" in infos:
        raise CheckpointError(f"{path} is a TorchScript module (torch.jit.save), not a state dict",
                              hint="save model.state_dict() with torch.save instead")
    info = infos[pickles[0]]
    if info.file_size > MAX_PICKLE_BYTES:
        raise CheckpointError(f"{path}: its data.pkl claims {info.file_size} bytes, over "
                              f"the {_size_text(MAX_PICKLE_BYTES)} limit")
    with archive.open(info) as member:
        data = member.read(MAX_PICKLE_BYTES + 1)
    if len(data) > MAX_PICKLE_BYTES:
        raise CheckpointError(f"{path}: data.pkl is over the {_size_text(MAX_PICKLE_BYTES)} limit")
    obj, storages = _unpickle(io.BytesIO(data), path, allow_storages=True,
                              what="a torch.save file")
    for ref in storages:
        record = infos.get(f"{root}data/{ref.key}")
        needed = ref.numel * _ITEMSIZE.get(ref.dtype, 1)
        if record is None or record.file_size < needed:
            raise CheckpointError(f"{path} is truncated or corrupt: tensor storage {ref.key} "
                                  f"is {'missing' if record is None else 'short'}",
                                  hint="the copy or the save was cut short")
    return _state_dict_entries(obj, path)


def _torch_legacy_entries(path: str) -> tuple[_Entries, bool]:
    """The pre-1.6 format: magic, protocol, sys_info and the object as consecutive
    pickles, then the storage keys, then the raw storages."""
    with _open_regular(path, "torch checkpoint") as handle:
        size = os.fstat(handle.fileno()).st_size
        stream = _BoundedReader(handle, MAX_PICKLE_BYTES)
        magic, _ = _unpickle(stream, path, allow_storages=False, what="a torch.save file")
        if type(magic) is not int or magic != _TORCH_LEGACY_MAGIC:
            raise CheckpointError(f"{path} is a pickle but not a torch.save checkpoint",
                                  hint=_HINT_INPUTS)
        protocol, _ = _unpickle(stream, path, allow_storages=False, what="a torch.save file")
        if protocol != _TORCH_LEGACY_PROTOCOL:
            raise CheckpointError(f"{path}: unsupported torch.save protocol {protocol!r:.20}")
        _unpickle(stream, path, allow_storages=False, what="a torch.save file")
        obj, storages = _unpickle(stream, path, allow_storages=True, what="a torch.save file")
        keys, _ = _unpickle(stream, path, allow_storages=False, what="a torch.save file")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise CheckpointError(f"{path} is corrupt: bad storage key list")
        # Each storage follows as an 8-byte element count and its bytes.
        by_key: dict[str, StorageRef] = {}
        for ref in storages:
            by_key.setdefault(ref.key, ref)
        needed = stream.consumed
        for key in keys:
            ref = by_key.get(key)
            needed += 8 + (ref.numel * _ITEMSIZE.get(ref.dtype, 1) if ref else 0)
        if size < needed:
            raise CheckpointError(f"{path} is truncated ({size} bytes, its storages need "
                                  f"{needed})", hint="the copy or the save was cut short")
    return _state_dict_entries(obj, path)


class _BoundedReader:
    """File wrapper that refuses to hand the unpickler more than ``limit`` bytes."""

    def __init__(self, handle: BinaryIO, limit: int) -> None:
        self._handle = handle
        self._left = limit
        self.consumed = 0

    def _take(self, chunk: bytes) -> bytes:
        self._left -= len(chunk)
        self.consumed += len(chunk)
        if self._left < 0:
            raise CheckpointError(f"pickle is over the {_size_text(MAX_PICKLE_BYTES)} limit")
        return chunk

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._left + 1
        return self._take(self._handle.read(min(size, self._left + 1)))

    def readline(self, size: int = -1) -> bytes:
        limit = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        return self._take(self._handle.readline(limit))


def _state_dict_entries(obj: Any, path: str) -> tuple[_Entries, bool]:
    if isinstance(obj, TensorStub) or not isinstance(obj, dict):
        kind = "tensor" if isinstance(obj, TensorStub) else type(obj).__name__
        raise CheckpointError(f"{path} holds a {kind}, not a state dict",
                              hint="save model.state_dict() (or {'model': model.state_dict()})")
    container = isinstance(obj.get("model"), dict)
    entries: _Entries = []
    on_path: set[int] = set()

    def walk(prefix: str, mapping: dict, depth: int) -> None:
        on_path.add(id(mapping))
        for key, value in mapping.items():
            name = f"{prefix}{key}"
            if isinstance(value, TensorStub):
                entries.append((name, value.shape))
            elif isinstance(value, dict) and value and depth < 32 and id(value) not in on_path:
                walk(name + ".", value, depth + 1)
            else:
                entries.append((name, None))
        on_path.discard(id(mapping))

    walk("", obj, 0)
    return entries, container


# --- safetensors / Hugging Face ------------------------------------------------------

def _safetensors_entries(path: str) -> _Entries:
    header = _safetensors_header(path)
    return [(name, shape) for name, shape in header.items()]


def _safetensors_header(path: str) -> dict[str, tuple[int, ...]]:
    """Names and shapes from the JSON header; the tensor bytes are never read."""
    with _open_regular(path, "safetensors file") as handle:
        size = os.fstat(handle.fileno()).st_size
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path} is truncated: {size} bytes, too short for a "
                                  "safetensors header", hint="the copy or the save was cut short")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > MAX_SAFETENSORS_HEADER_BYTES:
            raise CheckpointError(f"{path}: safetensors header size {header_len} is absurd "
                                  f"(limit {_size_text(MAX_SAFETENSORS_HEADER_BYTES)})",
                                  hint="the file is corrupt or not a safetensors file")
        if 8 + header_len > size:
            raise CheckpointError(f"{path} is truncated: the header claims {header_len} bytes "
                                  f"but the file has {size}",
                                  hint="the copy or the save was cut short")
        raw = handle.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the safetensors header is not valid JSON ({exc})",
                              hint="the file is corrupt or not a safetensors file") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object")
    data_len = size - 8 - header_len
    shapes: dict[str, tuple[int, ...]] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        try:
            shape = as_shape(spec["shape"])
            begin, end = spec["data_offsets"]
            dtype = spec["dtype"]
        except (TypeError, KeyError, ValueError, MalformedPickleError):
            raise CheckpointError(f"{path}: malformed safetensors header entry {name!r:.80}") \
                from None
        if type(begin) is not int or type(end) is not int or not 0 <= begin <= end \
                or not isinstance(dtype, str):
            raise CheckpointError(f"{path}: malformed dtype or data offsets for {name!r:.80}")
        if end > data_len:
            raise CheckpointError(f"{path} is truncated: {name} ends at byte {end} of a "
                                  f"{data_len}-byte data section",
                                  hint="the copy or the save was cut short")
        itemsize = _SAFETENSORS_ITEMSIZE.get(dtype)
        numel = 1
        for dim in shape:
            numel *= dim
        if itemsize is not None and end - begin != numel * itemsize:
            raise CheckpointError(f"{path}: {name} has shape {list(shape)} ({dtype}) but "
                                  f"{end - begin} bytes of data",
                                  hint="the file is corrupt")
        shapes[name] = shape
    return shapes


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r:.80}")
        result[key] = value
    return result


def _read_hf_index(index_path: str, notes: list[str]) -> _Contents:
    try:
        index = json.loads(_read_bounded(index_path, MAX_JSON_BYTES, "weight index"))
    except ValueError as exc:
        raise CheckpointError(f"{index_path} is not valid JSON ({exc})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise CheckpointError(f"{index_path} has no weight_map of tensor name -> shard file",
                              hint="expected a Hugging Face *.index.json")
    directory = os.path.dirname(index_path) or "."
    by_shard: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(name)

    entries: _Entries = []
    unlisted = 0
    for shard, listed in by_shard.items():
        if not _is_safe_relative(shard):
            raise CheckpointError(f"{index_path} names shard {shard!r:.80} outside its directory")
        shard_path = os.path.join(directory, shard)
        _stat(shard_path, "checkpoint shard")
        if shard.endswith(".safetensors"):
            found: dict[str, tuple[int, ...] | None] = dict(_safetensors_header(shard_path))
        else:
            torch_file = _torch_file_entries(shard_path, _read_head(shard_path, 16), [])
            if torch_file is None:
                raise CheckpointError(f"{shard_path}, a shard of {index_path}, is neither "
                                      "safetensors nor a torch.save file")
            found = dict(torch_file[0])
        missing = [n for n in listed if n not in found]
        if missing:
            raise CheckpointError(f"{index_path} lists {missing[0]} in {shard}, which does not "
                                  f"hold it ({len(missing)} such names)",
                                  hint="the index and the shards are from different saves")
        unlisted += len(found) - len(listed)
        entries.extend(found.items())
    if unlisted:
        notes.append(f"{unlisted} tensors in the shards are not in {_base(index_path)}")
    notes.append(f"read {len(by_shard)} shard headers listed in {_base(index_path)}")
    return _Contents(FORMAT_HF_SHARDED, index_path, entries)


# --- low-level helpers ------------------------------------------------------------

def _unpickle(stream: Any, path: str, *, allow_storages: bool, what: str
              ) -> tuple[Any, list[StorageRef]]:
    try:
        return restricted_load(stream, allow_storages=allow_storages)
    except ForbiddenGlobalError as exc:
        raise UnsafeCheckpointError(
            f"refusing to read {path}: its pickle asks for {exc.what}, which is not on "
            "kforge's allow-list of inert checkpoint globals (nothing was executed)",
            hint="kforge never runs code from a checkpoint; if you trust the file, re-save "
                 "the weights as model.state_dict() with torch.save or as .safetensors",
            global_name=exc.what[len("global "):] if exc.what.startswith("global ") else None,
        ) from None
    except CheckpointError:
        raise
    except EOFError:
        raise CheckpointError(f"{path} is truncated: the pickle ends early",
                              hint="the copy or the save was cut short") from None
    except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, OverflowError, MemoryError, RecursionError, UnicodeError,
            struct.error) as exc:
        raise CheckpointError(f"{path} is not {what} ({type(exc).__name__}: {exc})"[:400],
                              hint="the file is corrupt or of another kind") from None


def _stat(path: str, what: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        raise _os_error(exc, path, what) from None


def _os_error(exc: OSError, path: str, what: str) -> CheckpointError:
    if exc.errno == errno.ELOOP:
        return CheckpointError(f"{what} {path} is a symlink loop ({_link_chain(path)})",
                               hint="fix or remove the symlinks")
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            return CheckpointError(f"{what} {path} is a broken symlink ({_link_chain(path)})",
                                   hint="the target was moved or deleted")
        return CheckpointError(f"{what} {path} does not exist", hint=_HINT_INPUTS)
    if isinstance(exc, PermissionError):
        return CheckpointError(f"permission denied reading {what} {path}",
                               hint="check the permissions (ls -l) or run as a user who can "
                                    "read the checkpoint")
    if exc.errno == errno.ENOTDIR:
        return CheckpointError(f"{what} {path}: a component of the path is not a directory")
    return CheckpointError(f"cannot read {what} {path}: {exc.strerror or exc}")


def _link_chain(path: str) -> str:
    chain, current = [path], path
    for _ in range(8):
        try:
            link = os.readlink(current)
        except OSError:
            break
        current = os.path.normpath(os.path.join(os.path.dirname(current), link))
        chain.append(link)
        if current in chain[:-1] or os.path.normpath(link) in chain[:-1]:
            break
    return " -> ".join(chain)


def _list_dir(directory: str) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError as exc:
        raise _os_error(exc, directory, "directory") from None


def _is_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _is_safe_relative(rel: str) -> bool:
    parts = rel.replace("\\", "/").split("/")
    return bool(rel) and not os.path.isabs(rel) and "\x00" not in rel and \
        all(p not in ("", ".", "..") for p in parts)


def _base(path: str) -> str:
    return os.path.basename(os.path.normpath(path))


def _open_regular(path: str, what: str) -> BinaryIO:
    # O_NONBLOCK keeps a FIFO planted under a checkpoint name from hanging the
    # open; fstat then rejects it along with devices and sockets.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _os_error(exc, path, what) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CheckpointError(f"{what} {path} is not a regular file", hint=_HINT_INPUTS)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_bounded(path: str, limit: int, what: str) -> bytes:
    with _open_regular(path, what) as handle:
        if os.fstat(handle.fileno()).st_size > limit:
            raise CheckpointError(f"{what} {path} is larger than the {_size_text(limit)} "
                                  "kforge reads for it", hint="the file is corrupt or misplaced")
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise _os_error(exc, path, what) from None
    if len(data) > limit:
        raise CheckpointError(f"{what} {path} grew past {_size_text(limit)} while being read")
    return data


def _size_text(size: int) -> str:
    if size >= MiB:
        return f"{size // MiB} MiB"
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} bytes"


def _read_head(path: str, size: int) -> bytes:
    with _open_regular(path, "checkpoint file") as handle:
        try:
            return handle.read(size)
        except OSError as exc:
            raise _os_error(exc, path, "checkpoint file") from None
