"""``read_checkpoint``: from any supported path to the names and shapes it holds.

Supported inputs: a KempnerForge run directory (``latest`` -> ``step_N/``), a
``step_N`` DCP directory (optionally split into ``ppK/`` pipeline stages), a
``torch.save`` file (zip or pre-1.6 format), a ``.safetensors`` file and a
Hugging Face model directory. Only metadata is read: DCP ``.metadata``, the
pickle inside a torch archive, safetensors headers, JSON indexes. Tensor data
is never read. Optimizer state and non-tensor entries are listed in
``ignored``.
"""

from __future__ import annotations

import os
import stat

from kforge_cli.checkpoint import limits
from kforge_cli.checkpoint.dcp import DCP_METADATA_FILE, dcp_entries, merge_stages
from kforge_cli.checkpoint.errors import CheckpointError, CheckpointLimitError, clip
from kforge_cli.checkpoint.hf import (
    from_hf,
    hf_weights_file,
    looks_hf_named,
    read_hf_index,
)
from kforge_cli.checkpoint.layout import (
    LATEST_POINTER,
    RUN_METADATA_FILE,
    STAGE_DIR,
    STEP_DIR,
    follow_latest,
    incomplete_error,
    read_run_metadata,
    resolve_run,
    stage_dirs,
    step_dirs,
    step_of,
    vlm_freeze_of,
)
from kforge_cli.checkpoint.manifest import (
    FORMAT_DCP,
    FORMAT_DCP_PIPELINE,
    FORMAT_SAFETENSORS,
    FORMAT_TORCH,
    CheckpointManifest,
    Contents,
    strip_wrappers,
)
from kforge_cli.checkpoint.safe_io import (
    HINT_INPUTS,
    base_name,
    canonical,
    is_file,
    list_dir,
    read_head,
    stat_path,
)
from kforge_cli.checkpoint.safetensors import looks_like_safetensors, safetensors_header
from kforge_cli.checkpoint.torch_save import torch_file_entries


def read_checkpoint(path: str | os.PathLike) -> CheckpointManifest:
    """Parameter names and shapes of the checkpoint at ``path``.

    Raises :class:`CheckpointError` for anything unreadable (its subclass
    :class:`CheckpointLimitError` when the file is past one of the caps in
    :mod:`kforge_cli.checkpoint.limits`) and :class:`UnsafeCheckpointError`
    for a pickle naming a disallowed global.
    """
    requested = os.fspath(path)
    notes: list[str] = []
    info = stat_path(requested, "checkpoint path")
    start = requested
    if os.path.islink(requested):
        # Read the target under its own name, so step_N and ppK are recognized.
        start = canonical(requested)
        notes.append(f"followed symlink {requested} -> {start}")
    if stat.S_ISDIR(info.st_mode):
        contents = _read_directory(start, notes, follow_run_pointers=True)
    elif stat.S_ISREG(info.st_mode):
        contents = _read_file(start, notes)
    else:
        raise CheckpointError(f"{requested} is neither a regular file nor a directory",
                              hint=HINT_INPUTS)
    return _assemble(requested, contents, notes)


# --- directories ------------------------------------------------------------------

def _read_directory(directory: str, notes: list[str], *, follow_run_pointers: bool) -> Contents:
    names = list_dir(directory)
    if is_file(os.path.join(directory, DCP_METADATA_FILE)):
        return _read_dcp(directory, notes)
    stages = stage_dirs(directory, names)
    if stages:
        missing = [base_name(s) for s in stages
                   if not is_file(os.path.join(s, DCP_METADATA_FILE))]
        if missing:
            raise incomplete_error(directory, f"pipeline stage(s) {', '.join(missing)} "
                                              f"have no {DCP_METADATA_FILE}")
        entries, stage_notes = merge_stages(stages)
        notes.extend(stage_notes)
        return Contents(FORMAT_DCP_PIPELINE, directory, entries, step_dir=directory)
    if follow_run_pointers and (LATEST_POINTER in names or step_dirs(directory, names)):
        target = resolve_run(directory, names, notes)
        if is_file(target):
            return _read_file(target, notes, via_pointer=True)
        return _read_directory(target, notes, follow_run_pointers=False)
    weights = hf_weights_file(directory, names)
    if weights is not None:
        return _read_file(weights, notes)
    if any(n.endswith(".distcp") for n in names) or STEP_DIR.fullmatch(base_name(directory)):
        raise incomplete_error(directory, f"has no {DCP_METADATA_FILE}")
    if not names:
        raise CheckpointError(f"{directory} is an empty directory", hint=HINT_INPUTS)
    listing = ", ".join(clip(n, 60) for n in sorted(names)[:8]) + (", ..." if len(names) > 8 else "")
    raise CheckpointError(f"no checkpoint found in {directory} (it holds: {listing})",
                          hint=HINT_INPUTS)


def _read_dcp(dcp_dir: str, notes: list[str]) -> Contents:
    entries = dcp_entries(dcp_dir)
    step_dir = dcp_dir
    if STAGE_DIR.fullmatch(base_name(dcp_dir)):
        step_dir = os.path.dirname(os.path.normpath(dcp_dir)) or "."
        notes.append(f"read only pipeline stage {base_name(dcp_dir)}; pass {step_dir} "
                     "to read every stage")
    return Contents(FORMAT_DCP, dcp_dir, entries, step_dir=step_dir)


# --- files --------------------------------------------------------------------------

def _read_file(path: str, notes: list[str], *, via_pointer: bool = False) -> Contents:
    base = base_name(path)
    parent = os.path.dirname(path) or "."
    if via_pointer and base == LATEST_POINTER:
        raise CheckpointError(f"`latest` points at {path}, another pointer; "
                              "kforge follows one level only",
                              hint="make `latest` name the step directory")
    if base in (DCP_METADATA_FILE, RUN_METADATA_FILE):
        return _read_directory(parent, notes, follow_run_pointers=False)
    if base == LATEST_POINTER:
        target, _ = follow_latest(parent)
        notes.append(f"followed latest -> {target}")
        if is_file(target):
            return _read_file(target, notes, via_pointer=True)
        return _read_directory(target, notes, follow_run_pointers=False)
    if base.endswith(".index.json"):
        return read_hf_index(path, notes)
    if base.endswith(".distcp"):
        raise CheckpointError(f"{path} is one DCP shard, not a checkpoint",
                              hint=f"pass the directory that holds it and {DCP_METADATA_FILE}")

    head = read_head(path, 512)
    if base.endswith(".safetensors") or looks_like_safetensors(head):
        return Contents(FORMAT_SAFETENSORS, path, list(safetensors_header(path).items()))
    torch_file = torch_file_entries(path, head, notes)
    if torch_file is not None:
        entries, container = torch_file
        return Contents(FORMAT_TORCH, path, entries, model_container=container)
    if head[257:262] == b"ustar":
        raise CheckpointError(f"{path} is a tar archive (the torch.save format before 0.4), "
                              "which kforge does not read",
                              hint="re-save the state dict with a current torch")
    if not head:
        raise CheckpointError(f"{path} is empty", hint=HINT_INPUTS)
    raise CheckpointError(f"{path} is not a checkpoint kforge recognizes", hint=HINT_INPUTS)


# --- turning entries into a manifest ---------------------------------------------------

def _assemble(requested: str, contents: Contents, notes: list[str]) -> CheckpointManifest:
    if len(contents.entries) > limits.MAX_ENTRIES:
        raise CheckpointLimitError(f"{contents.resolved_path} holds {len(contents.entries):,} "
                                   f"entries, more than the {limits.MAX_ENTRIES:,} kforge reads",
                                   "MAX_ENTRIES")
    for stored, _ in contents.entries:
        if len(stored) > limits.MAX_NAME_CHARS:
            raise CheckpointLimitError(
                f"{contents.resolved_path} holds an entry named with {len(stored):,} "
                f"characters ({clip(stored, 60)}), more than the {limits.MAX_NAME_CHARS:,} "
                "kforge reads", "MAX_NAME_CHARS")
    entries = [(stored, strip_wrappers(stored), shape) for stored, shape in contents.entries]
    tops = {name.split(".", 1)[0] for _, name, _ in entries}
    # A bare optimizer.state_dict() has exactly these two top-level keys.
    optimizer_tops = {"state", "param_groups"} if "param_groups" in tops else set()
    hf_named = looks_hf_named(name for _, name, shape in entries if shape is not None)

    tensors: dict[str, tuple[int, ...]] = {}
    original: dict[str, str] = {}
    ignored: list[str] = []
    optimizer_count = 0
    collisions = 0
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
            name = from_hf(name)
        name = name.removeprefix("model.")
        if name in tensors:
            ignored.append(stored)
            collisions += 1
            if collisions <= 20:
                notes.append(f"{clip(stored)!r} and {clip(original[name])!r} both name "
                             f"{clip(name)!r}; kept {clip(original[name])!r}")
            continue
        tensors[name] = shape
        original[name] = stored
    if collisions > 20:
        notes.append(f"{collisions - 20} more stored names collided after normalization")

    if hf_named:
        renamed = sum(1 for n, s in original.items()
                      if strip_wrappers(s) not in (n, "model." + n))
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
        metadata = read_run_metadata(contents.step_dir, notes)
        step = step_of(contents.step_dir, metadata, notes)
        if metadata is not None and "vlm_freeze" in metadata:
            vlm_freeze = vlm_freeze_of(metadata["vlm_freeze"], notes)
    return CheckpointManifest(
        requested_path=requested, resolved_path=contents.resolved_path, format=contents.format,
        tensors=tensors, original_names=original, ignored=ignored, step=step,
        metadata=metadata, vlm_freeze=vlm_freeze, notes=notes)
