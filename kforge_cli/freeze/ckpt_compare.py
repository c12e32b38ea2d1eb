"""Does this config build the model a checkpoint holds? Names and shapes, compared.

Pure Python: works on (name, shape) lists from the meta model and from
``freeze.checkpoint.read_checkpoint``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kforge_cli.findings import Finding, error, warning
from kforge_cli.freeze.units import human_count

_SHOWN = 5  # names listed in a message before "and N more"


@dataclass
class CheckpointFit:
    missing: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    unexpected: list[tuple[str, tuple[int, ...] | None]] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...] | None]] = field(default_factory=list)
    matched: int = 0
    # Checkpoint entries standing in for a component kforge cannot build.
    stand_ins: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)


def compare(model: Sequence[tuple[str, tuple[int, ...]]], checkpoint: dict[str, tuple[int, ...] | None],
            unknown_prefixes: Iterable[str] = ()) -> CheckpointFit:
    prefixes = tuple(p.rstrip(".") + "." for p in unknown_prefixes)
    fit = CheckpointFit()
    model_shapes = dict(model)
    for name, shape in model:
        if name not in checkpoint:
            fit.missing.append((name, shape))
        elif checkpoint[name] is not None and tuple(checkpoint[name]) != tuple(shape):
            fit.mismatched.append((name, tuple(shape), tuple(checkpoint[name])))
        else:
            fit.matched += 1
    for name, shape in checkpoint.items():
        if name in model_shapes:
            continue
        if prefixes and name.startswith(prefixes):
            if shape is not None:
                fit.stand_ins.append((name, tuple(shape)))
            continue
        fit.unexpected.append((name, shape))
    return fit


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _numel(shape: Iterable[int]) -> int:
    total = 1
    for d in shape:
        total *= d
    return total


def fit_findings(fit: CheckpointFit, ckpt_path: str, *, frozen_at_step0: set[str] | None = None,
                 job: Any = None) -> list[Finding]:
    out: list[Finding] = []
    if fit.missing:
        names = [n for n, _ in fit.missing]
        numel = sum(_numel(s) for _, s in fit.missing)
        frozen = sorted(set(names) & (frozen_at_step0 or set()))
        worse = ""
        if frozen:
            worse = (f" {len(frozen)} of them are frozen at step 0 ({_listing(frozen)}), so they would stay at "
                     "their random initialization for good.")
        out.append(error(
            "KF501", f"{len(names)} parameter(s) ({human_count(numel)} values) of the model are not in "
            f"{ckpt_path}: {_listing(names)}. Loading would fail (DCP requires every key), and a partial load "
            f"would leave them at random initialization.{worse}",
            _blame_key(names, job), _missing_hint(names), stage="checkpoint load",
            parameters=names[:200], numel=numel))
    if fit.unexpected:
        names = [n for n, _ in fit.unexpected]
        out.append(warning(
            "KF502", f"{len(names)} checkpoint entr{'y' if len(names) == 1 else 'ies'} of {ckpt_path} have no "
            f"parameter in the model built from this config: {_listing(names)}; the load ignores them",
            _blame_key(names, job), _unexpected_hint(names), parameters=names[:200]))
    for name, want, have in fit.mismatched:
        key, why = explain_shape_mismatch(name, want, have, job)
        out.append(error(
            "KF503", f"{name}: the config builds shape {list(want)}, the checkpoint holds {list(have or ())}"
            + (f" — {why}" if why else ""), key,
            f"make {key} match the run that wrote the checkpoint" if key else
            "use the config the checkpoint was trained with", stage="checkpoint load",
            parameter=name, model_shape=list(want), checkpoint_shape=list(have or ())))
    return out


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
            return "model.n_kv_heads", f"the checkpoint has {heads} key/value heads of {head_dim} (config: " \
                f"{model.n_kv_heads})"
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


def _blame_key(names: Sequence[str], job: Any) -> str | None:
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
