"""Warnings: what the trainer accepts but is almost certainly a mistake, and notes worth reading."""

from __future__ import annotations

import dataclasses
from typing import Any

from kforge_cli.config.job import JobConfig
from kforge_cli.config.vision import HF_VISION_ENCODER_TYPES, VisionEncoderConfig
from kforge_cli.config.vlm import (
    CrossAttentionConfig,
    MoMaConfig,
    MoTConfig,
    VLMConfig,
    built_arch,
    module_patterns_for,
)
from kforge_cli.findings import Finding, shown
from kforge_cli.freeze.describe import toml_list
from kforge_cli.freeze.simulate import FreezePolicy
from kforge_cli.rules.loading import MODULE_PATTERNS_TRAP
from kforge_cli.rules.rule import INFO, NEEDS_MANIFEST, WARNING, Rule, Subject

NOTE = Rule(
    "KF400", "note", INFO, "Information worth knowing; nothing is wrong.",
    "the HF encoder's token budget is only checked when the model is built")
NO_CROSS_ATTENTION_BLOCKS = Rule(
    "KF402", "no-cross-attention-blocks", WARNING,
    "cross_attention_every_n_layers > model.n_layers: zero cross-attention blocks, images never reach the model.",
    "cross_attention_every_n_layers = 8 with n_layers = 4")
SECTION_WITHOUT_EFFECT = Rule(
    "KF403", "section-without-effect", WARNING,
    "A section (or a whole file) that has no effect.", "[vision_encoder] without [vlm]")
REFERENCE_WARNING = Rule(
    "KF404", "reference-warning", WARNING,
    "A warning the reference itself logs (HF encoder dims overridden, compile with MoE/MoMa, "
    "activation_checkpointing = full on MoMa, eval on VLM).", 'type = "siglip2", num_tokens = 196')
DATA_SOURCE_MISSING = Rule(
    "KF405", "data-source-missing", WARNING,
    "The data section lacks what the trainer needs at data setup (it raises there), or no data source is "
    "configured at all.", "a VLM job without data.hf_dataset_name")
SCHEDULE_MISMATCH = Rule(
    "KF407", "schedule-mismatch", WARNING,
    "The LR schedule does not fit the run length (warmup longer than training).",
    "warmup_steps = 2000 with max_steps = 50")
FAILS_AT_FIRST_STEP = Rule(
    "KF409", "fails-at-first-step", WARNING,
    "The model builds, but its first forward pass raises or part of it can never train.",
    'mot_modalities = ["image", "text", "audio"]')


# A run this short is a smoke test or a benchmark (every such config KempnerForge
# ships runs 500 steps or fewer; its training runs 5,000 and up): synthetic data
# and an LR that is still warming up are choices there, not mistakes.
SMOKE_RUN_STEPS = 1000
# Below this share of the peak LR a run never really trains, however short it is.
NEVER_WARMS_UP = 0.1


def is_model_preset(data: Any) -> bool:
    """A file that writes model fields and nothing else (under [model], or with the header missing):
    a model preset, e.g. for checkpoint conversion, not a training run."""
    if not isinstance(data, dict) or not data:
        return False
    from kforge_cli.config.model import ModelConfig

    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    return set(data) <= {"model"} | model_fields


def is_smoke_run(job: JobConfig) -> bool:
    return isinstance(job.train.max_steps, int) and job.train.max_steps <= SMOKE_RUN_STEPS


def _written(data: Any, section: str) -> dict[str, Any]:
    table = data.get(section) if isinstance(data, dict) else None
    return table if isinstance(table, dict) else {}


@SECTION_WITHOUT_EFFECT.check(stage=None)
def file_sets_nothing(s: Subject) -> list[Finding]:
    """An empty job file: every value is a default."""
    if s.data:
        return []
    return [SECTION_WITHOUT_EFFECT.finding(
        "the file sets nothing: every value is a default (a 7B-shaped text model, 100000 steps, synthetic data)",
        None, "this is rarely what you meant to launch")]


@SECTION_WITHOUT_EFFECT.check(stage=None, reads=("vlm",))
def vision_sections_without_vlm(s: Subject) -> list[Finding]:
    """[vision_encoder] / [adapter] in a text-only job."""
    if s.job.vlm is not None:
        return []
    return [SECTION_WITHOUT_EFFECT.finding(
        f"[{section}] has no effect without a [vlm] section: the job trains the text model only", section,
        'add a [vlm] section (e.g. arch = "joint_decoder") or remove it')
        for section in ("vision_encoder", "adapter") if section in s.data]


def cross_attention_block_count(job: JobConfig) -> int:
    vlm = job.vlm
    if not isinstance(vlm, CrossAttentionConfig) or vlm.cross_attention_every_n_layers <= 0:
        return 0
    return max(0, job.model.n_layers // vlm.cross_attention_every_n_layers)


@NO_CROSS_ATTENTION_BLOCKS.check(stage=None, reads=("vlm.cross_attention_every_n_layers", "model.n_layers"))
def cadence_above_layers(s: Subject) -> list[Finding]:
    """A cross-attention cadence larger than the layer count builds no block."""
    vlm, model = s.job.vlm, s.job.model
    if not isinstance(vlm, CrossAttentionConfig) or vlm.cross_attention_every_n_layers <= 0:
        return []
    if cross_attention_block_count(s.job):
        return []
    return [NO_CROSS_ATTENTION_BLOCKS.finding(
        f"vlm.cross_attention_every_n_layers ({vlm.cross_attention_every_n_layers}) > model.n_layers "
        f"({model.n_layers}): the model gets zero cross-attention blocks, so images never reach it",
        "vlm.cross_attention_every_n_layers",
        f"use a cadence <= {model.n_layers}, e.g. {max(1, model.n_layers // 4)}")]


@DATA_SOURCE_MISSING.check(stage=None, reads=("data", "video", "vlm"))
def vlm_data_setup(s: Subject) -> list[Finding]:
    """A VLM job needs a Hugging Face dataset and a tokenizer at data setup."""
    job, d = s.job, s.job.data
    if not isinstance(job.vlm, VLMConfig):
        return []
    if job.is_video:
        if d.tokenizer_path:
            return []
        return [DATA_SOURCE_MISSING.finding(
            "video training requires data.tokenizer_path; the trainer raises at data setup without it",
            "data.tokenizer_path", 'set data.tokenizer_path, e.g. "gpt2"', anchor="data")]
    missing = [k for k, v in (("data.hf_dataset_name", d.hf_dataset_name), ("data.tokenizer_path", d.tokenizer_path))
               if not v]
    if not missing:
        return []
    return [DATA_SOURCE_MISSING.finding(
        "VLM training requires data.hf_dataset_name and data.tokenizer_path; the trainer raises at data setup "
        f"without {' and '.join(missing)}", missing[0],
        "set " + " and ".join(missing) + " (or pass them with --set at launch)", anchor="vlm")]


@DATA_SOURCE_MISSING.check(stage=None, reads=("data", "vlm", "train.max_steps"))
def text_data_setup(s: Subject) -> list[Finding]:
    """A training run with no data at all (smoke tests and model presets aside), or HF data without a tokenizer."""
    job, d = s.job, s.job.data
    if isinstance(job.vlm, VLMConfig):
        return []
    if not d.datasets and not d.dataset_path and not d.hf_dataset_name:
        if is_model_preset(s.data) or is_smoke_run(job):
            return []  # synthetic token ids on purpose
        return [DATA_SOURCE_MISSING.finding(
            "no data source is configured (data.dataset_path, data.hf_dataset_name or data.datasets): the trainer "
            "falls back to random token ids", "data",
            "point data.dataset_path or data.hf_dataset_name at real data")]
    if d.hf_dataset_name and not d.datasets and not d.dataset_path and not d.tokenizer_path:
        return [DATA_SOURCE_MISSING.finding(
            "data.tokenizer_path is required for Hugging Face datasets; the trainer raises at data setup",
            "data.tokenizer_path", 'set data.tokenizer_path, e.g. "gpt2"')]
    return []


@REFERENCE_WARNING.check(stage=None, reads=("vlm", "eval.enabled"))
def eval_ignored_for_vlm(s: Subject) -> list[Finding]:
    """eval.enabled on a VLM job (the reference logs a warning and skips eval)."""
    if not isinstance(s.job.vlm, VLMConfig) or not s.job.eval.enabled:
        return []
    return [REFERENCE_WARNING.finding(
        "eval.enabled = true is ignored for VLM jobs (the reference logs a warning and skips eval)",
        "eval.enabled", "set eval.enabled = false, or evaluate separately")]


@MODULE_PATTERNS_TRAP.check(stage=None, reads=("vlm.module_patterns", "vlm.arch"))
def module_patterns_replace_defaults(s: Subject) -> list[Finding]:
    """A written vlm.module_patterns drops the arch's default aliases."""
    vlm = s.job.vlm
    if not isinstance(vlm, VLMConfig) or "module_patterns" not in _written(s.data, "vlm"):
        return []
    if not isinstance(vlm.module_patterns, dict):
        return []
    # The defaults a written table replaces are the config class's (an arch override keeps the class).
    defaults = module_patterns_for(built_arch(vlm) or vlm.arch)
    dropped = sorted(set(defaults) - set(vlm.module_patterns))
    if not dropped:
        return []
    return [MODULE_PATTERNS_TRAP.finding(
        "vlm.module_patterns replaces the arch's default aliases instead of extending them; "
        f"{', '.join(dropped)} {'is' if len(dropped) == 1 else 'are'} no longer defined, so a freeze spec naming "
        "them becomes a raw pattern",
        "vlm.module_patterns",
        "re-list the defaults you still use, e.g. " + ", ".join(f"{a} = {defaults[a]}" for a in dropped[:2]))]


@MODULE_PATTERNS_TRAP.check(stage=None, reads=("vlm.module_patterns", "vlm.freeze", "vlm.freeze_schedule"))
def alias_values_not_pattern_lists(s: Subject) -> list[Finding]:
    """An alias whose value is a table or a scalar: kept by the loader, odd or fatal where a spec uses it."""
    vlm = s.job.vlm
    if not isinstance(vlm, VLMConfig) or not isinstance(vlm.module_patterns, dict):
        return []
    used = {spec.module for spec in FreezePolicy.from_vlm(vlm).all_specs()}
    out: list[Finding] = []
    for alias, value in vlm.module_patterns.items():
        key = f"vlm.module_patterns.{alias}"
        if isinstance(value, dict):
            keys = list(value)
            out.append(MODULE_PATTERNS_TRAP.finding(
                f"{key} is a table; the reference keeps it, and freeze_params calls list() on it, so the alias's "
                f"patterns are the table's keys: {toml_list(keys[:8])}",
                key, f"write {alias} = {toml_list(keys[:8])} if those are the patterns meant"))
        elif not isinstance(value, (list, tuple, str)) and alias not in used:
            # A spec that names it fails at the stage that applies it (the freeze rules report that).
            out.append(MODULE_PATTERNS_TRAP.finding(
                f"{key} = {shown(value)} is not a list of patterns; the reference keeps it, and no freeze spec "
                "names the alias yet, but the first one that does fails with TypeError when list() is called on it",
                key, f'write {alias} = ["pattern", "pattern.*"]'))
    return out


@NOTE.check(stage=None, reads=("vision_encoder", "vlm"))
def hf_token_budget_deferred(s: Subject) -> list[Finding]:
    """An HF encoder with num_tokens = 0: the budget is checked only at model build."""
    encoder, job = s.job.vision_encoder, s.job
    if not (isinstance(job.vlm, VLMConfig) and isinstance(encoder, VisionEncoderConfig)):
        return []
    if not (isinstance(encoder.type, str) and encoder.type in HF_VISION_ENCODER_TYPES
            and encoder.num_tokens <= 0 and encoder.path):
        return []
    return [NOTE.finding(
        f"vision_encoder.num_tokens = 0: the {encoder.type!r} encoder's token count is probed when the model is "
        f"built, so the sequence budget against model.max_seq_len ({job.model.max_seq_len}) is only checked then",
        "vision_encoder.num_tokens", "set vision_encoder.num_tokens to the encoder's patch count to check it now")]


@NOTE.check(stage=None, reads=("vision_encoder", "adapter"), needs=(NEEDS_MANIFEST,))
def unknown_components_limit_checks(s: Subject) -> list[Finding]:
    """A component whose parameters kforge cannot know here, and which checks that limits."""
    return [NOTE.finding(f"{part.prefix}: {part.reason}; unknown here: {part.limits_text()}", part.prefix,
                         "install kforge-cli[torch] and transformers with a local copy of the model to list it"
                         if part.prefix == "vision_encoder" else None)
            for part in s.manifest.unknown]


@SCHEDULE_MISMATCH.check(stage=None, reads=("scheduler.name", "scheduler.warmup_steps", "train.max_steps"))
def warmup_longer_than_training(s: Subject) -> list[Finding]:
    """The LR never reaches its peak: warmup_steps >= max_steps (on a real run, or so short it never trains)."""
    sched, train = s.job.scheduler, s.job.train
    if sched.name == "none" or not isinstance(sched.warmup_steps, int) or not sched.warmup_steps >= train.max_steps > 0:
        return []
    reached = train.max_steps / sched.warmup_steps
    if is_smoke_run(s.job) and reached >= NEVER_WARMS_UP:
        return []  # a benchmark's LR schedule does not matter as long as it moves the weights
    return [SCHEDULE_MISMATCH.finding(
        f"scheduler.warmup_steps ({sched.warmup_steps}) >= train.max_steps ({train.max_steps}): the LR never "
        f"gets past {reached:.0%} of its peak", "scheduler.warmup_steps",
        f"use fewer warmup steps than train.max_steps, e.g. {max(1, train.max_steps // 10)}",
        anchor="train.max_steps")]


@FAILS_AT_FIRST_STEP.check(stage=None, reads=("vlm.mot_modalities",))
def mot_extra_modalities(s: Subject) -> list[Finding]:
    """MoT builds a stream per modality, but only image and text are ever fed."""
    vlm = s.job.vlm
    if not (isinstance(vlm, MoTConfig) and isinstance(vlm.mot_modalities, (tuple, list))
            and len(vlm.mot_modalities) > 2):
        return []
    extra = [m for m in vlm.mot_modalities if m not in ("image", "text")]
    return [FAILS_AT_FIRST_STEP.finding(
        f"vlm.mot_modalities has {len(vlm.mot_modalities)} entries ({', '.join(map(repr, extra))} besides image and "
        "text): the model builds a stream per modality, but the first forward pass raises because only image and "
        "text streams are ever fed", "vlm.mot_modalities", 'use mot_modalities = ["image", "text"]')]


@FAILS_AT_FIRST_STEP.check(stage=None, reads=("vlm.cross_attention_n_heads", "vlm.cross_attention_n_kv_heads",
                                              "model.n_heads"))
def cross_attention_heads_do_not_group(s: Subject) -> list[Finding]:
    """Cross-attention query heads that are not a multiple of its key/value heads."""
    vlm, model = s.job.vlm, s.job.model
    if not isinstance(vlm, CrossAttentionConfig) or model.n_heads <= 0:
        return []
    heads, kv = vlm.resolved_heads(model.n_heads)
    if kv <= heads and heads % kv == 0:
        return []
    return [FAILS_AT_FIRST_STEP.finding(
        f"cross-attention resolves to {heads} query heads and {kv} key/value heads; the blocks build, but the first "
        "forward pass fails in scaled-dot-product attention (query heads must be a multiple of key/value heads)",
        "vlm.cross_attention_n_kv_heads", "set vlm.cross_attention_n_kv_heads to a divisor of the query heads")]


@FAILS_AT_FIRST_STEP.check(stage=None, reads=("vlm.moma_modalities",))
def moma_extra_modalities(s: Subject) -> list[Finding]:
    """MoMa expert groups for modalities no token is ever routed to."""
    vlm = s.job.vlm
    modalities = getattr(vlm, "moma_modalities", None)
    if not (isinstance(vlm, MoMaConfig) and isinstance(modalities, (tuple, list))):
        return []
    extra = [m for m in modalities if m not in ("image", "text")]
    if not extra:
        return []
    return [FAILS_AT_FIRST_STEP.finding(
        f"vlm.moma_modalities includes {', '.join(map(repr, extra))}: their expert groups are built but no token is "
        "ever routed to them, so they never receive a gradient", "vlm.moma_modalities",
        'use moma_modalities = ["image", "text"] unless your data pipeline tags other modalities')]
