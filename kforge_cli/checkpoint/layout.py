"""How KempnerForge lays a run out on disk: which step directory a path means.

A run directory holds ``step_N/`` directories and a ``latest`` pointer (a
symlink, or a file naming the step directory). A step directory is one DCP
save, or with pipeline parallelism one ``ppK/`` DCP save per stage, plus
``metadata.json`` (step, tokens_seen, vlm_freeze). DCP writes ``.metadata``
last, so a step without it is an interrupted save.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Any

from kforge_cli.checkpoint import limits
from kforge_cli.checkpoint.dcp import DCP_METADATA_FILE
from kforge_cli.checkpoint.errors import CheckpointError, CheckpointLimitError
from kforge_cli.checkpoint.safe_io import (
    base_name,
    is_dir,
    is_file,
    link_chain,
    list_dir,
    os_error,
    read_bounded,
)
from kforge_cli.checkpoint.safe_json import load_json
from kforge_cli.findings import shown

RUN_METADATA_FILE = "metadata.json"
LATEST_POINTER = "latest"

STEP_DIR = re.compile(r"step_(\d{1,18})")
STAGE_DIR = re.compile(r"pp(\d{1,9})")


def step_dirs(directory: str, names: list[str]) -> list[tuple[int, str]]:
    """(step, path) of the ``step_N`` directories in ``directory``, newest first."""
    found = []
    for name in names:
        match = STEP_DIR.fullmatch(name)
        path = os.path.join(directory, name)
        if match and is_dir(path):
            found.append((int(match.group(1)), path))
    return sorted(found, reverse=True)


def stage_dirs(directory: str, names: list[str]) -> list[str]:
    """The ``ppK`` pipeline-stage directories in ``directory``, by stage."""
    found = []
    for name in names:
        match = STAGE_DIR.fullmatch(name)
        path = os.path.join(directory, name)
        if match and is_dir(path):
            found.append((int(match.group(1)), path))
    return [p for _, p in sorted(found)]


def dcp_incomplete_reason(step_dir: str) -> str | None:
    """None when the DCP save in ``step_dir`` is complete, else what is missing."""
    if not is_dir(step_dir):
        return "is not a directory"
    try:
        names = os.listdir(step_dir)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if is_file(os.path.join(step_dir, DCP_METADATA_FILE)):
        return None
    stages = stage_dirs(step_dir, names)
    if not stages:
        return f"has no {DCP_METADATA_FILE}"
    missing = [base_name(s) for s in stages if not is_file(os.path.join(s, DCP_METADATA_FILE))]
    if missing:
        return f"has no {DCP_METADATA_FILE} in {', '.join(missing)}"
    return None


def incomplete_error(directory: str, what: str) -> CheckpointError:
    hint = ("DCP writes .metadata last, so the save was interrupted or is still in "
            "flight; point at an earlier step_N")
    parent = os.path.dirname(os.path.normpath(directory))
    if STEP_DIR.fullmatch(base_name(directory)) and parent:
        try:
            complete = [p for _, p in step_dirs(parent, list_dir(parent))
                        if dcp_incomplete_reason(p) is None]
        except CheckpointError:
            complete = []
        if complete:
            hint += f" (newest complete: {complete[0]}), or at the run directory"
    return CheckpointError(f"{directory} {what}: the checkpoint is incomplete", hint=hint)


def resolve_run(run_dir: str, names: list[str], notes: list[str]) -> str:
    """Pick the step directory of a run: ``latest`` if usable, else the newest complete one."""
    problems: list[str] = []
    latest_target = None
    if LATEST_POINTER in names:
        try:
            latest_target, how = follow_latest(run_dir)
        except CheckpointError as exc:
            problems.append(exc.message)
        else:
            reason = None if is_file(latest_target) else dcp_incomplete_reason(latest_target)
            target_text = _relative(latest_target, run_dir)
            if reason is None:
                notes.append(f"followed latest -> {target_text}"
                             + (" (`latest` is a file naming it)" if how == "file" else ""))
                return latest_target
            problems.append(f"latest -> {target_text} {reason}")

    steps = step_dirs(run_dir, names)
    skipped: list[str] = []
    for _, candidate in steps:
        reason = dcp_incomplete_reason(candidate)
        if reason is not None:
            skipped.append(f"{base_name(candidate)} {reason}")
            continue
        why = "; ".join(problems + skipped)
        if not why:
            notes.append(f"no `latest`; picked newest {base_name(candidate)}")
            return candidate
        notes.append(f"picked newest complete {base_name(candidate)}; {why}")
        # The trainer's auto-resume (resolve_resume_path) takes `latest` or else
        # the highest step_N, and loads it without checking for .metadata.
        trainer_pick = latest_target or steps[0][1]
        if os.path.exists(trainer_pick) and trainer_pick != candidate:
            notes.append(f"KempnerForge's auto-resume would load {_relative(trainer_pick, run_dir)} "
                         "instead and fail there")
        return candidate
    detail = "; ".join(problems + skipped[:8]) or "no step_N directories"
    if len(skipped) > 8:
        detail += f"; and {len(skipped) - 8} more"
    raise CheckpointError(f"no complete checkpoint in {run_dir}: {detail}",
                          hint="DCP writes .metadata last; a step without it was interrupted")


def _relative(path: str, base_dir: str) -> str:
    relative = os.path.relpath(path, base_dir)
    return path if relative.startswith("..") else relative


def follow_latest(run_dir: str) -> tuple[str, str]:
    """Target of ``latest`` (a symlink, or a file naming the step dir) and how it was read."""
    pointer = os.path.join(run_dir, LATEST_POINTER)
    if os.path.islink(pointer):
        try:
            link = os.readlink(pointer)
        except OSError as exc:
            raise os_error(exc, pointer, "`latest` symlink") from None
        target, how = os.path.normpath(os.path.join(run_dir, link)), "symlink"
    elif is_file(pointer):
        raw = read_bounded(pointer, limits.MAX_POINTER_BYTES, "`latest` file", "MAX_POINTER_BYTES")
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
    link_text = shown(link, 200)[1:-1]
    try:
        os.stat(target)
    except FileNotFoundError:
        raise CheckpointError(f"latest -> {link_text}, which does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CheckpointError(f"latest -> {link_text} is a symlink loop "
                                  f"({link_chain(pointer)})") from None
        raise os_error(exc, target, "`latest` target") from None
    return target, how


# --- metadata.json ---------------------------------------------------------------------

def read_run_metadata(step_dir: str, notes: list[str]) -> dict | None:
    """The step directory's metadata.json, or None when absent or unreadable.

    The trainer treats a metadata.json it cannot read or parse as absent, and
    so does this; one past kforge's caps is refused instead, since its
    vlm_freeze decides whether a resume is allowed.
    """
    path = os.path.join(step_dir, RUN_METADATA_FILE)
    if not os.path.lexists(path):
        return None
    try:
        data = read_bounded(path, limits.MAX_RUN_METADATA_BYTES, "metadata.json",
                            "MAX_RUN_METADATA_BYTES")
        metadata = load_json(data, path, "metadata.json")
    except CheckpointLimitError:
        raise
    except CheckpointError as exc:
        notes.append(f"ignored {path}: {exc.message}")
        return None
    if not isinstance(metadata, dict):
        notes.append(f"ignored {path}: not a JSON object")
        return None
    return metadata


def step_of(step_dir: str, metadata: dict | None, notes: list[str]) -> int | None:
    """The saved step: metadata.json's ``step``, else the ``step_N`` directory name."""
    match = STEP_DIR.fullmatch(base_name(step_dir))
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
    if from_metadata is None or from_metadata < 0 or from_metadata > 2**62 or \
            (isinstance(value, float) and value != from_metadata):
        notes.append(f"metadata.json step {shown(metadata['step'])} is not a step number; "
                     "ignored")
        return from_name
    if from_name is not None and from_name != from_metadata:
        notes.append(f"metadata.json says step {from_metadata} but the directory is "
                     f"step_{from_name}; using {from_metadata}")
    return from_metadata


def vlm_freeze_of(value: Any, notes: list[str]) -> list[dict] | None:
    if isinstance(value, list) and all(isinstance(e, dict) for e in value):
        return value
    notes.append("metadata.json vlm_freeze is not a list of objects; ignored")
    return None
