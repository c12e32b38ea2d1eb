"""What a job config means: the data behind `kforge explain FILE`.

``explain_file`` runs the engine on one file (so its findings are exactly
validate's) and adds what a reader needs to understand the job: the resolved
config with where each value came from, what the VLM arch implies, the token
budget and the parameter counts of the model's manifest. Returns plain data
and never prints (``cli/`` renders).
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, field
from typing import Any

from kforge_cli.config.fields import field_default, spec_of
from kforge_cli.config.job import JobConfig
from kforge_cli.config.loader import DEFAULT
from kforge_cli.config.registry import registry
from kforge_cli.config.resolved import resolved_dict, to_plain
from kforge_cli.config.vision import (
    HF_VISION_ENCODER_TYPES,
    AdapterConfig,
    PoolingError,
    VideoConfig,
    VisionEncoderConfig,
)
from kforge_cli.config.vlm import (
    CrossAttentionConfig,
    MoMaConfig,
    MoTConfig,
    VLMConfig,
    built_arch,
    module_patterns_for,
)
from kforge_cli.findings import Finding
from kforge_cli.lint.engine import FileReport, Options, check_file
from kforge_cli.lint.settings import SettingsFinder
from kforge_cli.manifest import ModelNotDescribed, ModelTooLarge
from kforge_cli.records import record
from kforge_cli.rules.rule import LOAD

__all__ = [
    "ArchView", "BuildFailure", "CrossAttentionLayout", "Explanation", "FieldRow", "ParamCounts", "SectionView",
    "StageCount", "TokenBudgetView", "explain_file", "explain_report",
]

CROSS_ATTENTION_PREFIX = "transformer.cross_attention_layers"
# Shown first in text output: the sections that say what model is trained.
SECTION_ORDER = ("model", "vision_encoder", "adapter", "vlm", "video")


# --------------------------------------------------------------------------------------
# Data returned by explain_file
# --------------------------------------------------------------------------------------


@record
class FieldRow:
    name: str
    value: Any  # plain JSON data
    source: str  # file | default | override
    doc: str
    default: Any  # the declared default (plain), or None when the field has none

    @property
    def is_set(self) -> bool:
        """Written in the file or overridden, or resolved to something other than its default."""
        return self.source != DEFAULT or self.value != self.default


@record
class SectionView:
    name: str
    doc: str
    rows: list[FieldRow] | None  # None: the section is unset (null in the resolved config)

    @property
    def set_rows(self) -> list[FieldRow]:
        return [r for r in self.rows or [] if r.is_set]


@record
class CrossAttentionLayout:
    every_n_layers: int
    after_layers: list[int]  # 0-based text-layer index each block runs after (the first MAX_LISTED)
    n_heads: int | None
    n_kv_heads: int | None
    head_dim: int | None
    blocks: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"every_n_layers": self.every_n_layers, "blocks": self.blocks, "after_layers": self.after_layers,
                "n_heads": self.n_heads, "n_kv_heads": self.n_kv_heads, "head_dim": self.head_dim}


@record
class ArchView:
    arch: str
    description: str
    image_tokens_in_residual: bool  # False: images reach the model another way (cross-attention K/V)
    cross_attention: CrossAttentionLayout | None
    modalities: list[str] | None  # per-modality weights (MoT, MoMa)
    image_heads: tuple[int, int] | None  # MoT image stream (n_heads, n_kv_heads), resolved
    moma_experts: dict[str, int] | None
    moma_capacity: dict[str, float] | None
    moma_gumbel_noise: bool | None
    module_aliases: dict[str, list[str]]
    dropped_aliases: list[str]  # the arch's default aliases that a custom module_patterns left out
    freeze: list[dict[str, Any]]
    freeze_schedule: list[dict[str, Any]]

    @property
    def residual_stream(self) -> str:
        return "image+text" if self.image_tokens_in_residual else "text"

    def to_json(self) -> dict[str, Any]:
        mot = None
        if self.image_heads is not None:
            mot = {"image_n_heads": self.image_heads[0], "image_n_kv_heads": self.image_heads[1]}
        moma = None
        if self.moma_experts is not None:
            moma = {"experts_per_modality": self.moma_experts, "capacity_factor": self.moma_capacity,
                    "gumbel_noise": self.moma_gumbel_noise}
        return {
            "arch": self.arch,
            "description": self.description,
            "residual_stream": self.residual_stream,
            "cross_attention": self.cross_attention.to_json() if self.cross_attention else None,
            "modalities": self.modalities,
            "mot": mot,
            "moma": moma,
            "module_aliases": self.module_aliases,
            "dropped_default_aliases": self.dropped_aliases,
            "freeze": self.freeze,
            "freeze_schedule": self.freeze_schedule,
        }


@record
class TokenBudgetView:
    encoder_tokens: int | None  # patch tokens per frame out of the encoder
    encoder_tokens_from: str | None
    adapter: str
    tokens_per_frame: int | None  # after the adapter
    frames: int
    visual_tokens: int | None
    image_tokens_in_residual: bool
    residual_image_tokens: int | None
    max_text_len: int
    required: int | None
    model_max_seq_len: int
    train_seq_len: int
    unknown_reason: str | None = None  # why the image token count is not known

    @property
    def known(self) -> bool:
        return self.required is not None

    @property
    def model_slack(self) -> int | None:
        """Spare positions in model.max_seq_len (negative: the shortfall)."""
        return None if self.required is None else self.model_max_seq_len - self.required

    @property
    def train_slack(self) -> int | None:
        return None if self.required is None else self.train_seq_len - self.required

    def to_json(self) -> dict[str, Any]:
        return {
            "known": self.known,
            "unknown_reason": self.unknown_reason,
            "encoder_tokens": self.encoder_tokens,
            "encoder_tokens_from": self.encoder_tokens_from,
            "adapter": self.adapter,
            "tokens_per_frame": self.tokens_per_frame,
            "frames": self.frames,
            "visual_tokens": self.visual_tokens,
            "residual_image_tokens": self.residual_image_tokens,
            "max_text_len": self.max_text_len,
            "required_seq_len": self.required,
            "model_max_seq_len": self.model_max_seq_len,
            "train_seq_len": self.train_seq_len,
            "model_max_seq_len_slack": self.model_slack,
            "train_seq_len_slack": self.train_slack,
        }


@record
class BuildFailure:
    message: str
    key: str | None
    hint: str | None
    # False when kforge declined to build (too large to simulate): not a failure of the job.
    fatal: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "key": self.key, "hint": self.hint, "fatal": self.fatal}


@record
class StageCount:
    start_step: int
    trainable: int
    frozen: int


@record
class UnknownPart:
    prefix: str
    reason: str
    frozen_at_step_0: bool | None  # None: cannot tell


@record
class ParamCounts:
    """Parameter counts per component (None: not part of this model, or unknown; see ``unknown``)."""

    is_vlm: bool
    vision_encoder: int | None = None
    adapter: int | None = None
    transformer: int | None = None
    cross_attention: int | None = None  # a subset of transformer
    total: int | None = None  # of the parameters that are known
    trainable_at_step_0: int | None = None
    frozen_at_step_0: int | None = None  # construction freeze + vlm.freeze, what the optimizer leaves out
    frozen_at_construction: int | None = None  # parameters the model freezes itself (MoT's unused norm)
    later_stages: list[StageCount] = field(default_factory=list)
    unknown: list[UnknownPart] = field(default_factory=list)
    error: BuildFailure | None = None

    @property
    def complete(self) -> bool:
        return self.error is None and not self.unknown

    @property
    def frozen_by_specs(self) -> int:
        """Frozen at step 0 beyond what the model froze itself."""
        return max(0, (self.frozen_at_step_0 or 0) - (self.frozen_at_construction or 0))

    def unknown_reason(self, prefix: str) -> str | None:
        for part in self.unknown:
            if part.prefix == prefix:
                return part.reason
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "vision_encoder": self.vision_encoder,
            "adapter": self.adapter,
            "transformer": self.transformer,
            "cross_attention": self.cross_attention,
            "total": self.total,
            "trainable_at_step_0": self.trainable_at_step_0,
            "frozen_at_step_0": self.frozen_at_step_0,
            "frozen_at_construction": self.frozen_at_construction,
            "later_stages": [dataclasses.asdict(s) for s in self.later_stages],
            "complete": self.complete,
            "unknown": [{"prefix": u.prefix, "reason": u.reason, "frozen_at_step_0": u.frozen_at_step_0}
                        for u in self.unknown],
            "error": self.error.to_json() if self.error else None,
        }


@record
class Explanation:
    path: str
    report: FileReport
    accepted: bool  # the reference's loader produces a JobConfig for this file
    resolved: dict[str, Any] | None = None
    sources: dict[str, str] | None = None
    sections: list[SectionView] = field(default_factory=list)
    arch: ArchView | None = None
    token_budget: TokenBudgetView | None = None
    params: ParamCounts | None = None

    @property
    def readable(self) -> bool:
        return self.report.load.readable

    @property
    def findings(self) -> list[Finding]:
        return self.report.findings

    @property
    def errors(self) -> int:
        return self.report.errors

    @property
    def warnings(self) -> int:
        return self.report.warnings

    @property
    def build_failed(self) -> bool:
        return self.params is not None and self.params.error is not None and self.params.error.fatal

    @property
    def valid(self) -> bool:
        return self.report.valid

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "valid": self.valid,
            "resolved": self.resolved,
            "sources": self.sources,
            "arch": self.arch.arch if self.arch else None,
            "architecture": self.arch.to_json() if self.arch else None,
            "token_budget": self.token_budget.to_json() if self.token_budget else None,
            "param_counts": self.params.to_json() if self.params else None,
            "findings": [f.to_json() for f in self.findings],
        }


# --------------------------------------------------------------------------------------
# explain_file
# --------------------------------------------------------------------------------------


def explain_file(path: str, options: Options = Options(), *, text: str | None = None,
                 finder: SettingsFinder | None = None) -> Explanation:
    """Check ``path`` with the engine and explain what it resolves to.

    A file the reference's loader rejects (unreadable, or an error at load)
    gets only its findings: there is no resolved config to explain.
    """
    report = check_file(path, options, text=text, finder=finder)
    return explain_report(report)


def explain_report(report: FileReport) -> Explanation:
    load = report.load
    accepted = load.job is not None and not any(f.is_error and f.stage == LOAD for f in load.findings)
    explanation = Explanation(path=report.path, report=report, accepted=accepted)
    if not accepted:
        return explanation
    job = load.job
    assert job is not None
    resolved = resolved_dict(job)
    sources = {f"{section}.{name}": load.sources.get(f"{section}.{name}", DEFAULT)
               for section, values in resolved.items() if isinstance(values, dict) for name in values}
    explanation.resolved = resolved
    explanation.sources = sources
    explanation.sections = _sections(job, resolved, sources)
    explanation.arch = _arch_view(job)
    failure = None
    if report.model_error is not None:
        error = report.model_error
        fatal = not isinstance(error, (ModelTooLarge, ModelNotDescribed))
        failure = BuildFailure(error.message, error.key, error.hint, fatal=fatal)
    explanation.params = _param_counts(job, report.model, report.plan, failure)
    explanation.token_budget = _token_budget(job, report.model)
    return explanation


def _sections(job: JobConfig, resolved: dict[str, Any], sources: dict[str, str]) -> list[SectionView]:
    job_docs = {f.name: spec_of(f).doc for f in dataclasses.fields(JobConfig)}
    names = [n for n in SECTION_ORDER if n in resolved] + [n for n in resolved if n not in SECTION_ORDER]
    out = []
    for name in names:
        section = getattr(job, name)
        if section is None or not dataclasses.is_dataclass(section):
            out.append(SectionView(name, job_docs.get(name, ""), None))
            continue
        rows = []
        for f in dataclasses.fields(section):
            default = field_default(f)
            rows.append(FieldRow(
                name=f.name,
                value=resolved[name][f.name],
                source=sources.get(f"{name}.{f.name}", DEFAULT),
                doc=spec_of(f).doc,
                default=None if default is MISSING else to_plain(default),
            ))
        out.append(SectionView(name, job_docs.get(name, ""), rows))
    return out


def _arch_description(vlm: VLMConfig) -> str:
    if ("modality_strategy", vlm.arch) in registry:
        doc = getattr(registry.get("modality_strategy", vlm.arch), "doc", "")
        if doc:
            return doc
    return (type(vlm).__doc__ or "").strip().splitlines()[0] if type(vlm).__doc__ else ""


def _arch_view(job: JobConfig) -> ArchView | None:
    vlm = job.vlm
    if not isinstance(vlm, VLMConfig):
        return None
    model = job.model
    ca = None
    if isinstance(vlm, CrossAttentionConfig):
        from kforge_cli.rules.advice import cross_attention_block_count
        from kforge_cli.rules.build import cross_attention_blocks

        heads = kv = head_dim = None
        if model.n_heads > 0:
            heads, kv = vlm.resolved_heads(model.n_heads)
            head_dim = model.dim // heads if heads > 0 else None
        ca = CrossAttentionLayout(vlm.cross_attention_every_n_layers, cross_attention_blocks(job), heads, kv,
                                  head_dim, blocks=cross_attention_block_count(job))
    modalities = image_heads = experts = capacity = gumbel = None
    if isinstance(vlm, MoTConfig):
        modalities = list(vlm.mot_modalities)
        if model.n_heads > 0:
            image_heads = vlm.resolved_image_heads(model.n_heads, model.n_kv_heads or model.n_heads)
    if isinstance(vlm, MoMaConfig):
        modalities = list(vlm.moma_modalities)
        experts = dict(vlm.moma_experts_per_modality)
        capacity = {}
        for modality in modalities:
            try:
                capacity[modality] = vlm.effective_capacity_factor(modality)
            except (KeyError, ZeroDivisionError, TypeError):
                continue
        gumbel = bool(vlm.moma_gumbel_noise)
    aliases = {name: list(patterns) if isinstance(patterns, (list, tuple)) else [patterns]
               for name, patterns in vlm.module_patterns.items()}
    dropped = [a for a in module_patterns_for(built_arch(vlm) or vlm.arch) if a not in aliases]
    return ArchView(
        arch=vlm.arch,
        description=_arch_description(vlm),
        image_tokens_in_residual=vlm.residual_stream_image_tokens(1) > 0,
        cross_attention=ca,
        modalities=modalities,
        image_heads=image_heads,
        moma_experts=experts,
        moma_capacity=capacity,
        moma_gumbel_noise=gumbel,
        module_aliases=aliases,
        dropped_aliases=dropped,
        freeze=to_plain(vlm.freeze),
        freeze_schedule=to_plain(vlm.freeze_schedule),
    )


def _token_budget(job: JobConfig, meta: Any) -> TokenBudgetView | None:
    vlm, encoder = job.vlm, job.vision_encoder
    if not isinstance(vlm, VLMConfig) or not isinstance(encoder, VisionEncoderConfig):
        return None
    from kforge_cli.rules.build import encoder_dims

    adapter = job.adapter if isinstance(job.adapter, AdapterConfig) else AdapterConfig()
    frames = job.video.max_frames if isinstance(job.video, VideoConfig) else 1
    tokens, origin = None, None
    default_tokens, _ = encoder_dims(encoder)
    if encoder.num_tokens > 0:
        tokens, origin = encoder.num_tokens, "vision_encoder.num_tokens"
    elif default_tokens:
        tokens, origin = default_tokens, f"the {encoder.type} encoder's default"
    elif meta is not None and meta.encoder_num_tokens:
        tokens, origin = meta.encoder_num_tokens, f"reported by the built {encoder.type} encoder"
    unknown_reason = None
    per_frame = visual = None
    if tokens is None:
        if encoder.type in HF_VISION_ENCODER_TYPES:
            unknown_reason = (f"unknown until the HF encoder is built: vision_encoder.num_tokens = 0, so the "
                              f"{encoder.type} encoder reports its own token count")
        else:
            unknown_reason = f"the {encoder.type} encoder's token count is not known offline"
    else:
        try:
            per_frame = adapter.output_num_tokens(tokens)
            visual = frames * per_frame
        except PoolingError as exc:
            unknown_reason = f"adapter.type = {adapter.type!r} cannot pool {tokens} tokens: {exc}"
    in_residual = vlm.residual_stream_image_tokens(1) > 0
    residual = required = None
    if not in_residual:
        # Images never enter the residual stream: the budget is known even when their count is not.
        residual = 0
    elif visual is not None:
        residual = vlm.residual_stream_image_tokens(visual)
    if residual is not None:
        required = residual + vlm.max_text_len
    return TokenBudgetView(
        encoder_tokens=tokens, encoder_tokens_from=origin, adapter=adapter.type, tokens_per_frame=per_frame,
        frames=frames, visual_tokens=visual, image_tokens_in_residual=in_residual,
        residual_image_tokens=residual, max_text_len=vlm.max_text_len, required=required,
        model_max_seq_len=job.model.max_seq_len, train_seq_len=job.train.seq_len, unknown_reason=unknown_reason)


def _param_counts(job: JobConfig, model: Any, plan: Any, failure: BuildFailure | None) -> ParamCounts:
    is_vlm = isinstance(job.vlm, VLMConfig)
    counts = ParamCounts(is_vlm=is_vlm, error=failure)
    if model is None:
        return counts
    unknown_prefixes = {u.prefix for u in model.unknown}

    def component(prefix: str) -> int | None:
        if any(p == prefix or p.startswith(prefix + ".") for p in unknown_prefixes):
            return None
        return model.numel_under(prefix)

    counts.total = model.total_numel
    if is_vlm:
        counts.vision_encoder = component("vision_encoder")
        counts.adapter = component("adapter")
        counts.transformer = component("transformer")
        if isinstance(job.vlm, CrossAttentionConfig):
            counts.cross_attention = model.numel_under(CROSS_ATTENTION_PREFIX)
    else:
        counts.transformer = model.total_numel
    counts.frozen_at_construction = sum(p.numel for p in model.parameters if p.frozen_at_construction)
    unknown_frozen: dict[str, bool | None] = {}
    if plan is not None:
        # What the optimizer leaves out: construction freeze plus vlm.freeze, as the plan replays it.
        in_optimizer = set(plan.optimizer_param_names)
        counts.frozen_at_step_0 = sum(p.numel for p in model.parameters if p.name not in in_optimizer)
        counts.later_stages = [StageCount(s.start_step, s.trainable_numel, s.frozen_numel)
                               for s in plan.stages if s.start_step > 0]
        unknown_frozen = dict(plan.stages[0].unknown_frozen) if plan.stages else {}
    else:
        counts.frozen_at_step_0 = counts.frozen_at_construction
    counts.trainable_at_step_0 = model.total_numel - counts.frozen_at_step_0
    counts.unknown = [UnknownPart(u.prefix, u.reason, unknown_frozen.get(u.prefix)) for u in model.unknown]
    return counts
