"""Checkpoint rules (KF501-KF505): does this config resume from that checkpoint?

The engine reads the checkpoint given with ``--model-ckpt`` (never trusting it)
and compares its tensors with the model's parameter list; these rules say what
the trainer's load would do with the difference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from kforge_cli.config.vlm import VLMConfig
from kforge_cli.findings import Finding
from kforge_cli.freeze.units import human_count
from kforge_cli.rules.advice import NOTE
from kforge_cli.rules.rule import (
    CHECKPOINT,
    ERROR,
    NEEDS_CHECKPOINT,
    WARNING,
    Rule,
    Subject,
)

CHECKPOINT_MISSING_KEYS = Rule(
    "KF501", "checkpoint-missing-keys", ERROR,
    "Parameters the model has and the checkpoint lacks (they would start from random init).",
    "a cross-attention config resumed from a joint-decoder checkpoint")
CHECKPOINT_UNEXPECTED_KEYS = Rule(
    "KF502", "checkpoint-unexpected-keys", WARNING,
    "Checkpoint entries the model does not have (the load ignores them).",
    "a checkpoint of a 32-layer model for 24 layers")
CHECKPOINT_SHAPE_MISMATCH = Rule(
    "KF503", "checkpoint-shape-mismatch", ERROR,
    "Checkpoint tensors whose shape differs from the model's.", "k_proj [1024, 4096] vs [4096, 4096]")
CHECKPOINT_FREEZE_MISMATCH = Rule(
    "KF504", "checkpoint-freeze-mismatch", ERROR,
    "The checkpoint's saved freeze metadata differs from the config's at the saved step.",
    "saved vision_encoder frozen, config unfreezes it")
CHECKPOINT_UNREADABLE = Rule(
    "KF505", "checkpoint-unreadable", ERROR,
    "The checkpoint is missing, unreadable, truncated or unsafe to load.", "a pickle that runs code",
    emitted_at=(CHECKPOINT,), emitted_by="the checkpoint reader")

_SHOWN = 5  # names listed in a message before "and N more"


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _numel(shape: Iterable[int]) -> int:
    total = 1
    for d in shape:
        total *= d
    return total


def unreadable_finding(path: str, message: str, hint: str | None, *, unsafe: bool) -> Finding:
    """KF505 for a checkpoint the reader refused or could not read."""
    if unsafe:
        return CHECKPOINT_UNREADABLE.finding(
            f"refusing to load {path}: {message} (no code from it was run)", None,
            hint or "only load checkpoints you trust; re-save it as plain tensors", stage=CHECKPOINT)
    return CHECKPOINT_UNREADABLE.finding(
        f"cannot read checkpoint {path}: {message}", None,
        hint or "pass a checkpoint directory, step_N directory, .pt or .safetensors file", stage=CHECKPOINT)


@CHECKPOINT_MISSING_KEYS.check(stage=CHECKPOINT, needs=(NEEDS_CHECKPOINT,))
def model_parameters_in_checkpoint(s: Subject) -> list[Finding]:
    """Every model parameter must be in the checkpoint (DCP requires every key)."""
    ckpt = s.checkpoint
    fit = ckpt.fit
    if fit is None or not fit.missing:
        return []
    names = [n for n, _ in fit.missing]
    numel = sum(_numel(shape) for _, shape in fit.missing)
    frozen = sorted(set(names) & ckpt.frozen_at_step0)
    worse = ""
    if frozen:
        worse = (f" {len(frozen)} of them are frozen at step 0 ({_listing(frozen)}), so they would stay at their "
                 "random initialization for good.")
    return [CHECKPOINT_MISSING_KEYS.finding(
        f"{len(names)} parameter(s) ({human_count(numel)} values) of the model are not in {ckpt.path}: "
        f"{_listing(names)}. Loading would fail (DCP requires every key), and a partial load would leave them at "
        f"random initialization.{worse}", _blame_key(names), _missing_hint(names),
        parameters=names[:200], numel=numel)]


@CHECKPOINT_UNEXPECTED_KEYS.check(stage=None, needs=(NEEDS_CHECKPOINT,))
def checkpoint_entries_in_model(s: Subject) -> list[Finding]:
    """Checkpoint entries without a parameter (the load ignores them)."""
    ckpt = s.checkpoint
    fit = ckpt.fit
    if fit is None or not fit.unexpected:
        return []
    names = [n for n, _ in fit.unexpected]
    return [CHECKPOINT_UNEXPECTED_KEYS.finding(
        f"{len(names)} checkpoint entr{'y' if len(names) == 1 else 'ies'} of {ckpt.path} have no parameter in the "
        f"model built from this config: {_listing(names)}; the load ignores them", _blame_key(names),
        _unexpected_hint(names), parameters=names[:200])]


@CHECKPOINT_SHAPE_MISMATCH.check(stage=CHECKPOINT, needs=(NEEDS_CHECKPOINT,))
def checkpoint_shapes_match(s: Subject) -> list[Finding]:
    """A tensor of another shape cannot be loaded into the parameter."""
    fit = s.checkpoint.fit
    if fit is None:
        return []
    out = []
    for name, want, have in fit.mismatched:
        key, why = explain_shape_mismatch(name, want, have, s.job)
        out.append(CHECKPOINT_SHAPE_MISMATCH.finding(
            f"{name}: the config builds shape {list(want)}, the checkpoint holds {list(have or ())}"
            + (f" \u2014 {why}" if why else ""), key,
            f"make {key} match the run that wrote the checkpoint" if key else
            "use the config the checkpoint was trained with",
            parameter=name, model_shape=list(want), checkpoint_shape=list(have or ())))
    return out


@NOTE.check(stage=None, needs=(NEEDS_CHECKPOINT,))
def checkpoint_fits(s: Subject) -> list[Finding]:
    """Say so when every tensor matches, and what stands in for an unbuilt component."""
    ckpt = s.checkpoint
    fit, manifest = ckpt.fit, ckpt.manifest
    if fit is None:
        return []
    out = []
    if not (fit.missing or fit.unexpected or fit.mismatched) and fit.matched:
        step = f", step {manifest.step})" if manifest.step is not None else ")"
        out.append(NOTE.finding(f"{ckpt.path}: all {fit.matched} model tensors match the checkpoint "
                                f"({manifest.format}{step}"))
    if fit.stand_ins:
        prefixes = sorted({n.split(".")[0] for n, _ in fit.stand_ins})
        out.append(NOTE.finding(f"{', '.join(prefixes)} cannot be built here; the plan uses the checkpoint's "
                                f"{len(fit.stand_ins)} entries for it instead", prefixes[0]))
    return out


@CHECKPOINT_FREEZE_MISMATCH.check(stage=CHECKPOINT, reads=("vlm", "checkpoint.ignore_freeze_mismatch"),
                                  needs=(NEEDS_CHECKPOINT,))
def saved_freeze_state_matches(s: Subject) -> list[Finding]:
    """The checkpoint manager compares the saved vlm_freeze with the config's at the saved step."""
    from kforge_cli.freeze.plan import (
        compare_freeze_metadata,
        effective_freeze_error,
        expected_freeze_metadata,
    )

    vlm = getattr(s.job, "vlm", None)
    manifest = s.checkpoint.manifest
    saved = manifest.vlm_freeze
    if not isinstance(vlm, VLMConfig) or saved is None:
        return []
    step = manifest.step or 0
    if effective_freeze_error(vlm, step):
        return []  # resuming already fails on the unknown alias (KF301)
    mismatch = compare_freeze_metadata(saved, expected_freeze_metadata(vlm, step))
    if mismatch is None:
        return []
    message = (f"{s.checkpoint.path} was saved at step {step} with a different freeze state than this config "
               f"expects there: {mismatch.message}")
    if bool(getattr(s.job.checkpoint, "ignore_freeze_mismatch", False)):
        return [CHECKPOINT_FREEZE_MISMATCH.finding(
            message + "; checkpoint.ignore_freeze_mismatch = true, so the trainer only warns",
            "checkpoint.ignore_freeze_mismatch",
            "make vlm.freeze / freeze_schedule match the run, unless the change is intended", severity=WARNING)]
    return [CHECKPOINT_FREEZE_MISMATCH.finding(
        message + "; the trainer refuses to resume", "vlm.freeze",
        "make vlm.freeze / freeze_schedule match the run that wrote the checkpoint, or set "
        "checkpoint.ignore_freeze_mismatch = true if the change is intended")]


_ATTN = re.compile(r"(?:^|\.)(cross_attention_layers\.\d+\.)?.*attention\.(q|k|v|o)_proj\.weight$")


def explain_shape_mismatch(name: str, want: tuple[int, ...], have: tuple[int, ...] | None,
                           job: Any) -> tuple[str | None, str]:
    """The config field that most likely explains a shape mismatch, and why."""
    if have is None or job is None:
        return None, ""
    model = getattr(job, "model", None)
    vlm = getattr(job, "vlm", None)
    head_dim = model.dim // model.n_heads if model and model.n_heads else None
    in_ca = "cross_attention_layers." in name
    m = _ATTN.search(name)
    if m and len(want) == 2 and len(have) == 2:
        proj = m.group(2)
        if proj in ("k", "v") and want[1] == have[1] and head_dim and have[0] % head_dim == 0:
            heads = have[0] // head_dim
            if in_ca:
                return "vlm.cross_attention_n_kv_heads", f"the checkpoint has {heads} key/value heads of {head_dim}"
            if "mot" in name or getattr(vlm, "arch", None) == "mot" and ".image." in name:
                return "vlm.mot_image_n_kv_heads", f"the checkpoint has {heads} key/value heads of {head_dim}"
            assert model is not None  # head_dim is only set when model is
            return "model.n_kv_heads", (f"the checkpoint has {heads} key/value heads of {head_dim} (config: "
                                        f"{model.n_kv_heads})")
        if proj == "q" and in_ca and want[1] == have[1]:
            return "vlm.cross_attention_n_heads", "the cross-attention query width differs"
        if want[1] != have[1] or want[0] != have[0]:
            return "model.dim", f"the hidden size differs (checkpoint {have[1]}, config {want[1]})"
    if name.endswith(("token_embedding.embedding.weight", "output_head.proj.weight")) and len(have) == 2:
        if want[0] != have[0]:
            return "model.vocab_size", f"the checkpoint's vocabulary has {have[0]} rows (config: {want[0]})"
        return "model.dim", f"the hidden size differs (checkpoint {have[1]}, config {want[1]})"
    if name.startswith("adapter.") and len(have) == 2:
        if want[1] != have[1] and name.endswith(("proj1.weight", "proj.weight", "out_proj.weight")):
            return "vision_encoder.feature_dim", f"the adapter input width differs (checkpoint {have[1]})"
        if name.endswith("proj1.weight") and want[0] != have[0]:
            return "adapter.hidden_dim", f"the adapter hidden width differs (checkpoint {have[0]})"
    if ".mlp." in name or ".experts." in name or "shared_expert" in name:
        if ".experts." in name or "expert" in name:
            if len(want) == 3 and len(have) == 3 and want[0] != have[0]:
                return "model.num_experts", f"the checkpoint has {have[0]} experts"
            return "model.moe_expert_ffn_multiplier", "the expert FFN width differs"
        return "model.ffn_dim_multiplier", "the FFN width differs (model.ffn_hidden_dim / ffn_dim_multiplier)"
    if name.endswith("norm.weight") or name.endswith("norm.bias"):
        return "model.dim", "the hidden size differs"
    return None, ""


def _blame_key(names: Sequence[str]) -> str | None:
    heads = {n.split(".")[0] for n in names}
    if any("cross_attention_layers" in n for n in names):
        return "vlm.arch"
    if heads & {"vision_encoder", "adapter"} and "transformer" not in heads:
        return "vision_encoder" if heads == {"vision_encoder"} else "adapter"
    if any(re.search(r"layers\.\d+\.", n) for n in names):
        return "model.n_layers"
    if heads == {"transformer"} or "token_embedding" in heads or "layers" in heads:
        return "vlm" if "transformer" in heads else "model"
    return None


def _missing_hint(names: Sequence[str]) -> str:
    if any("cross_attention_layers" in n for n in names):
        return ("the checkpoint has no cross-attention blocks: resume from a cross-attention run, or load the "
                "text weights separately and leave only the new blocks to initialize")
    if any(n.startswith("transformer.") for n in names) and not all(n.startswith("transformer.") for n in names):
        return "check vlm.arch and model.n_layers against the run that wrote the checkpoint"
    return "use the config the checkpoint was trained with (model.n_layers, arch, adapter type)"


def _unexpected_hint(names: Sequence[str]) -> str:
    if all(not n.startswith(("transformer.", "vision_encoder.", "adapter.")) for n in names) and any(
            n.startswith(("layers.", "token_embedding.")) for n in names):
        return "this looks like a text-only checkpoint; a VLM config expects transformer.* names"
    return "check model.n_layers / num_experts / arch against the run that wrote the checkpoint"
