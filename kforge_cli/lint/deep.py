"""Parameter-level checks: build the model on the meta device, plan freezing, fit a checkpoint.

Imported only by `validate --deep`, `freeze-plan` and `explain`; it is the one
lint module that pulls in torch (through the model builder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kforge_cli.findings import Finding, error, info, warning

@dataclass
class DeepResult:
    model: Any = None  # MetaModel, or None when the build failed
    plan: Any = None  # FreezePlan, or None
    checkpoint: Any = None  # CheckpointManifest, or None
    findings: list[Finding] = field(default_factory=list)


def deep_check(job: Any, *, model_ckpt: str | None = None, known_error_keys: set[str] = frozenset()) -> DeepResult:
    from kforge_cli.freeze.plan import plan_for_job
    from kforge_cli.model import ModelBuildError, ModelTooLarge, build_meta_model

    result = DeepResult()
    try:
        model = build_meta_model(job)
    except ModelTooLarge as exc:
        result.findings.append(info("KF400", f"parameter-level checks skipped, the model was not built: "
                                    f"{exc.message}", exc.key, exc.hint))
        return result
    except ModelBuildError as exc:
        if exc.key not in known_error_keys:
            result.findings.append(error("KF211", f"building the model fails: {exc.message}", exc.key,
                                         exc.hint or "fix the field named here", stage="model build"))
        if model_ckpt:
            result.checkpoint = _read(model_ckpt, result.findings)
        return result
    result.model = model
    fit = manifest = None
    if model_ckpt:
        manifest = result.checkpoint = _read(model_ckpt, result.findings)
    if manifest is not None:
        from kforge_cli.freeze.ckpt_compare import compare

        expected = [(p.name, tuple(p.shape)) for p in [*model.parameters, *model.buffers]]
        fit = compare(expected, manifest.tensors, unknown_prefixes=[u.prefix for u in model.unknown])
    plan = plan_for_job(job, model.parameters, unknown=model.unknown, stand_ins=fit.stand_ins if fit else (),
                        saved_step=manifest.step if manifest else None)
    result.plan = plan
    if fit is not None:
        # The plan's step-0 state says which missing parameters would keep their random init for good.
        frozen_at_step0 = set(plan.stages[0].frozen) if plan.stages else set()
        result.findings.extend(_fit_findings(job, manifest, fit, frozen_at_step0))
    result.findings.extend(plan.findings)
    if manifest is not None:
        result.findings.extend(_freeze_metadata_findings(job, manifest))
    return result


def _read(path: str, findings: list[Finding]) -> Any:
    from kforge_cli.freeze.checkpoint import CheckpointError, UnsafeCheckpointError, read_checkpoint

    try:
        return read_checkpoint(path)
    except UnsafeCheckpointError as exc:
        findings.append(error("KF505", f"refusing to load {path}: {exc.message} (no code from it was run)",
                              None, exc.hint or "only load checkpoints you trust; re-save it as plain tensors",
                              stage="checkpoint load"))
    except CheckpointError as exc:
        findings.append(error("KF505", f"cannot read checkpoint {path}: {exc.message}", None,
                              exc.hint or "pass a checkpoint directory, step_N directory, .pt or .safetensors file",
                              stage="checkpoint load"))
    return None


def _fit_findings(job: Any, manifest: Any, fit: Any, frozen_at_step0: set[str]) -> list[Finding]:
    from kforge_cli.freeze.ckpt_compare import fit_findings

    findings = fit_findings(fit, manifest.requested_path, frozen_at_step0=frozen_at_step0, job=job)
    if not (fit.missing or fit.unexpected or fit.mismatched) and fit.matched:
        findings.append(Finding("KF400", "info", f"{manifest.requested_path}: all {fit.matched} model tensors "
                                f"match the checkpoint ({manifest.format}"
                                + (f", step {manifest.step})" if manifest.step is not None else ")")))
    if fit.stand_ins:
        prefixes = sorted({n.split(".")[0] for n, _ in fit.stand_ins})
        findings.append(Finding("KF400", "info", f"{', '.join(prefixes)} cannot be built here; the plan uses the "
                                f"checkpoint's {len(fit.stand_ins)} entries for it instead", key=prefixes[0]))
    return findings


def _freeze_metadata_findings(job: Any, manifest: Any) -> list[Finding]:
    """The checkpoint manager's vlm_freeze compare at the saved step (KF504)."""
    from kforge_cli.freeze.plan import compare_freeze_metadata, effective_freeze_error, expected_freeze_metadata

    vlm = getattr(job, "vlm", None)
    saved = manifest.vlm_freeze
    if vlm is None or saved is None:
        return []
    step = manifest.step or 0
    if effective_freeze_error(vlm, step):
        return []  # resuming already fails on the unknown alias (KF301)
    mismatch = compare_freeze_metadata(saved, expected_freeze_metadata(vlm, step))
    if mismatch is None:
        return []
    ignore = bool(getattr(job.checkpoint, "ignore_freeze_mismatch", False))
    message = (f"{manifest.requested_path} was saved at step {step} with a different freeze state than this "
               f"config expects there: {mismatch.message}")
    if ignore:
        return [warning("KF504", message + "; checkpoint.ignore_freeze_mismatch = true, so the trainer only warns",
                        "checkpoint.ignore_freeze_mismatch",
                        "make vlm.freeze / freeze_schedule match the run, unless the change is intended")]
    return [error("KF504", message + "; the trainer refuses to resume", "vlm.freeze",
                  "make vlm.freeze / freeze_schedule match the run that wrote the checkpoint, or set "
                  "checkpoint.ignore_freeze_mismatch = true if the change is intended", stage="checkpoint load")]
