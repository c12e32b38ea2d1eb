"""Start-up lookups the trainer performs, and warnings for what it accepts but is wrong."""

from __future__ import annotations

from typing import Any

from kforge_cli.config.fields import Checker
from kforge_cli.config.job import JobConfig
from kforge_cli.config.registry import registry
from kforge_cli.config.vision import HF_VISION_ENCODER_TYPES, VisionEncoderConfig
from kforge_cli.config.vlm import CrossAttentionConfig, VLMConfig, module_patterns_for
from kforge_cli.lint.build_rules import cross_attention_block_count


def startup_rules(job: JobConfig, c: Checker, bad: set[str]) -> None:
    """Registry names scripts/train.py resolves before the first step."""
    for key, category, value in (("train.loss_fn", "loss", job.train.loss_fn),
                                 ("optimizer.name", "optimizer", job.optimizer.name)):
        if key in bad or (category, value) in registry:
            continue
        names = sorted(registry.list(category))
        close = _close(value, names)
        c.error("KF103", key, f"Unknown {category}: {value!r}. Available: {names}",
                f"did you mean {close!r}?" if close else f"use one of {names}")


def advice(job: JobConfig, data: dict[str, Any], c: Checker) -> None:
    """Warnings: the reference accepts these, but they are almost certainly mistakes."""
    written = set(data)
    vlm = job.vlm
    if not data:
        c.warn("KF403", None, "the file sets nothing: every value is a default (a 7B-shaped text model, "
               "100000 steps, synthetic data)", "this is rarely what you meant to launch")
    if vlm is None:
        for section in ("vision_encoder", "adapter"):
            if section in written:
                c.warn("KF403", section, f"[{section}] has no effect without a [vlm] section: the job trains "
                       "the text model only", "add a [vlm] section (e.g. arch = \"joint_decoder\") or remove it")
    if isinstance(vlm, CrossAttentionConfig) and vlm.cross_attention_every_n_layers > 0:
        if not cross_attention_block_count(job):
            c.warn("KF402", "vlm.cross_attention_every_n_layers",
                   f"vlm.cross_attention_every_n_layers ({vlm.cross_attention_every_n_layers}) > model.n_layers "
                   f"({job.model.n_layers}): the model gets zero cross-attention blocks, so images never reach it",
                   f"use a cadence <= {job.model.n_layers}, e.g. {max(1, job.model.n_layers // 4)}")
    if isinstance(vlm, VLMConfig):
        _vlm_advice(job, vlm, data, c)
    else:
        _text_data_advice(job, c)
    sched, train = job.scheduler, job.train
    if sched.name != "none" and isinstance(sched.warmup_steps, int) and sched.warmup_steps >= train.max_steps > 0:
        c.warn("KF407", "scheduler.warmup_steps",
               f"scheduler.warmup_steps ({sched.warmup_steps}) >= train.max_steps ({train.max_steps}): the LR "
               "never reaches its peak", f"use fewer warmup steps than train.max_steps, e.g. "
               f"{max(1, train.max_steps // 10)}", anchor="train.max_steps")


def _vlm_advice(job: JobConfig, vlm: VLMConfig, data: dict[str, Any], c: Checker) -> None:
    encoder = job.vision_encoder
    d = job.data
    if job.is_video:
        if not d.tokenizer_path:
            c.warn("KF405", "data.tokenizer_path",
                   "video training requires data.tokenizer_path; the trainer raises at data setup without it",
                   'set data.tokenizer_path, e.g. "gpt2"', anchor="data")
    elif not d.hf_dataset_name or not d.tokenizer_path:
        missing = [k for k, v in (("data.hf_dataset_name", d.hf_dataset_name),
                                  ("data.tokenizer_path", d.tokenizer_path)) if not v]
        c.warn("KF405", missing[0],
               "VLM training requires data.hf_dataset_name and data.tokenizer_path; the trainer raises at data "
               f"setup without {' and '.join(missing)}",
               "set " + " and ".join(missing) + " (or pass them with --set at launch)", anchor="vlm")
    if job.eval.enabled:
        c.warn("KF404", "eval.enabled",
               "eval.enabled = true is ignored for VLM jobs (the reference logs a warning and skips eval)",
               "set eval.enabled = false, or evaluate separately")
    written = data.get("vlm", {}) if isinstance(data.get("vlm"), dict) else {}
    if "module_patterns" in written and isinstance(vlm.module_patterns, dict):
        dropped = sorted(set(module_patterns_for(vlm.arch)) - set(vlm.module_patterns))
        if dropped:
            c.warn("KF406", "vlm.module_patterns",
                   "vlm.module_patterns replaces the arch's default aliases instead of extending them; "
                   f"{', '.join(dropped)} {'is' if len(dropped) == 1 else 'are'} no longer defined, so a freeze "
                   "spec naming them becomes a raw pattern",
                   "re-list the defaults you still use, e.g. "
                   + ", ".join(f'{a} = {module_patterns_for(vlm.arch)[a]}' for a in dropped[:2]))
    if (isinstance(encoder, VisionEncoderConfig) and isinstance(encoder.type, str)
            and encoder.type in HF_VISION_ENCODER_TYPES and encoder.num_tokens <= 0 and encoder.path):
        c.info_note(
            "vision_encoder.num_tokens",
            f"vision_encoder.num_tokens = 0: the {encoder.type!r} encoder's token count is probed when the model "
            f"is built, so the sequence budget against model.max_seq_len ({job.model.max_seq_len}) is only "
            "checked then", "set vision_encoder.num_tokens to the encoder's patch count to check it now")


def _text_data_advice(job: JobConfig, c: Checker) -> None:
    d = job.data
    if not d.datasets and not d.dataset_path and not d.hf_dataset_name:
        c.warn("KF405", "data",
               "no data source is configured (data.dataset_path, data.hf_dataset_name or data.datasets): the "
               "trainer falls back to random token ids", "point data.dataset_path or data.hf_dataset_name at real "
               "data")
    elif d.hf_dataset_name and not d.datasets and not d.dataset_path and not d.tokenizer_path:
        c.warn("KF405", "data.tokenizer_path",
               "data.tokenizer_path is required for Hugging Face datasets; the trainer raises at data setup",
               'set data.tokenizer_path, e.g. "gpt2"')


def _close(name: Any, candidates: list[str]) -> str | None:
    if not isinstance(name, str):
        return None
    import difflib

    found = difflib.get_close_matches(name, candidates, n=1, cutoff=0.7)
    return found[0] if found else None
