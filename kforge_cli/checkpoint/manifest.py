"""What a checkpoint holds, as the readers hand it back, and how stored names are normalized.

Names are normalized to what the KempnerForge model's ``named_parameters()``
uses: wrapper components (``_orig_mod``, ``module``, ``_fsdp_wrapped_module``,
``_checkpoint_wrapped_module``) are dropped wherever they occur and one
leading ``model.`` (the DCP / ``{"model": ...}`` container key) is stripped.
"""

from __future__ import annotations

from dataclasses import field

from kforge_cli.records import record

FORMAT_DCP = "dcp"
FORMAT_DCP_PIPELINE = "dcp-pipeline"
FORMAT_TORCH = "torch"
FORMAT_SAFETENSORS = "safetensors"
FORMAT_HF_SHARDED = "hf-sharded"

_WRAPPER_COMPONENTS = frozenset(
    {"_orig_mod", "module", "_fsdp_wrapped_module", "_checkpoint_wrapped_module"})


@record
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
Entries = list[tuple[str, tuple[int, ...] | None]]


@record
class Contents:
    """What a format reader found, before names are normalized."""

    format: str
    resolved_path: str
    entries: Entries
    # torch.save of {"model": state_dict, ...}: siblings of "model" are extras.
    model_container: bool = False
    # Directory whose metadata.json and step_N name shown this checkpoint.
    step_dir: str | None = None


def strip_wrappers(name: str) -> str:
    if "_mod" not in name and "module" not in name:  # no wrapper component: the common case
        return name
    parts = [p for p in name.split(".") if p not in _WRAPPER_COMPONENTS]
    return ".".join(parts) if parts else name


def normalize_parameter_name(name: str) -> str:
    """Drop wrapper components anywhere and one leading ``model.`` container key."""
    stripped = strip_wrappers(name)
    return stripped.removeprefix("model.")
