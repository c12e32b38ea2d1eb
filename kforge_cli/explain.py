"""What a job config means: the data behind `kforge explain`.

``explain_file`` runs the full check of one file and adds what a reader needs
to understand the job: the resolved config with where each value came from,
what the VLM arch implies, the token budget and the parameter counts of the
model built on the meta device. ``describe_field`` documents one config key.

Sits beside ``lint/``: it uses the loader, the lint engine, the model builder
and the freeze plan, returns plain data and never prints (``cli/`` renders).
torch is imported only when a model is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
import types
import typing
import warnings
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field
from typing import Any, Union

from kforge_cli.config.field_docs import ENTRY_DOCS, FIELD_RULES
from kforge_cli.config.fields import field_default
from kforge_cli.config.job import JobConfig
from kforge_cli.config.loader import DEFAULT, Override
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
    FreezeSpec,
    FreezeStage,
    MoMaConfig,
    MoTConfig,
    VLMConfig,
    module_patterns_for,
)
from kforge_cli.findings import Finding
from kforge_cli.lint.engine import FileReport, check_file

__all__ = [
    "ArchView", "BuildFailure", "CrossAttentionLayout", "Explanation", "FieldDoc", "FieldRow", "FieldSummary",
    "ParamCounts", "SectionView", "StageCount", "TokenBudgetView", "UnknownFieldError", "all_field_keys",
    "describe_field", "explain_file", "format_value", "type_text",
]

CROSS_ATTENTION_PREFIX = "transformer.cross_attention_layers"
# Shown first in text output: the sections that say what model is trained.
SECTION_ORDER = ("model", "vision_encoder", "adapter", "vlm", "video")


# --------------------------------------------------------------------------------------
# Data returned by explain_file
# --------------------------------------------------------------------------------------


@dataclass
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


@dataclass
class SectionView:
    name: str
    doc: str
    rows: list[FieldRow] | None  # None: the section is unset (null in the resolved config)

    @property
    def set_rows(self) -> list[FieldRow]:
        return [r for r in self.rows or [] if r.is_set]


@dataclass
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


@dataclass
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


@dataclass
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


@dataclass
class BuildFailure:
    message: str
    key: str | None
    hint: str | None
    # False when kforge declined to build (too large to simulate): not a failure of the job.
    fatal: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "key": self.key, "hint": self.hint, "fatal": self.fatal}


@dataclass
class StageCount:
    start_step: int
    trainable: int
    frozen: int


@dataclass
class UnknownPart:
    prefix: str
    reason: str
    frozen_at_step_0: bool | None  # None: cannot tell


@dataclass
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


@dataclass
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
        return self.errors == 0 and not self.build_failed

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


def explain_file(path: str, overrides: Sequence[str | Override] = (), *, build_model: bool = True) -> Explanation:
    """Check ``path`` and explain what it resolves to.

    A file the reference's loader rejects (unreadable, or an error at load)
    gets only its findings: there is no resolved config to explain.
    """
    report = check_file(path, overrides=overrides)
    load = report.load
    accepted = load.job is not None and not any(f.is_error and f.stage == "loader" for f in load.findings)
    explanation = Explanation(path=path, report=report, accepted=accepted)
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

    meta = None
    if build_model:
        meta, failure = _build(job)
        explanation.params = _param_counts(job, meta, failure)
    explanation.token_budget = _token_budget(job, meta)
    return explanation


def _sections(job: JobConfig, resolved: dict[str, Any], sources: dict[str, str]) -> list[SectionView]:
    job_docs = {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(JobConfig)}
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
                doc=f.metadata.get("doc", "") if f.metadata else "",
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
        from kforge_cli.lint.build_rules import cross_attention_block_count, cross_attention_blocks

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
    dropped = [a for a in module_patterns_for(vlm.arch) if a not in aliases]
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


def _build(job: JobConfig) -> tuple[Any, BuildFailure | None]:
    from kforge_cli.model import ModelBuildError, ModelTooLarge, build_meta_model

    try:
        with warnings.catch_warnings():
            # torch announces optional dependencies it cannot find (numpy) on import.
            warnings.simplefilter("ignore")
            return build_meta_model(job), None
    except ModelBuildError as exc:
        return None, BuildFailure(exc.message, exc.key, exc.hint, fatal=not isinstance(exc, ModelTooLarge))


def _token_budget(job: JobConfig, meta: Any) -> TokenBudgetView | None:
    vlm, encoder = job.vlm, job.vision_encoder
    if not isinstance(vlm, VLMConfig) or not isinstance(encoder, VisionEncoderConfig):
        return None
    from kforge_cli.lint.build_rules import encoder_dims

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


def _param_counts(job: JobConfig, meta: Any, failure: BuildFailure | None) -> ParamCounts:
    is_vlm = isinstance(job.vlm, VLMConfig)
    counts = ParamCounts(is_vlm=is_vlm, error=failure)
    if meta is None:
        return counts
    unknown_prefixes = {u.prefix for u in meta.unknown}

    def component(prefix: str) -> int | None:
        if any(p == prefix or p.startswith(prefix + ".") for p in unknown_prefixes):
            return None
        return meta.numel_under(prefix)

    counts.total = meta.total_numel
    if is_vlm:
        counts.vision_encoder = component("vision_encoder")
        counts.adapter = component("adapter")
        counts.transformer = component("transformer")
        if isinstance(job.vlm, CrossAttentionConfig):
            counts.cross_attention = meta.numel_under(CROSS_ATTENTION_PREFIX)
    else:
        counts.transformer = meta.total_numel
    frozen, later, unknown_frozen = _freeze_counts(job, meta)
    counts.frozen_at_step_0 = frozen
    counts.frozen_at_construction = sum(p.numel for p in meta.parameters if p.frozen_at_construction)
    counts.trainable_at_step_0 = meta.total_numel - frozen
    counts.later_stages = later
    counts.unknown = [UnknownPart(u.prefix, u.reason, unknown_frozen.get(u.prefix)) for u in meta.unknown]
    return counts


def _freeze_counts(job: JobConfig, meta: Any) -> tuple[int, list[StageCount], dict[str, bool | None]]:
    """Frozen numel after the build (construction + vlm.freeze), per later stage, and per unbuilt part."""
    vlm = job.vlm if isinstance(job.vlm, VLMConfig) else None
    try:
        from kforge_cli.freeze.plan import plan_freeze

        plan = plan_freeze(meta.parameters, vlm, job.train.max_steps, unknown_prefixes=meta.unknown,
                           dyn_ckpt_covers_step0=job.checkpoint.covers_step0())
        in_optimizer = set(plan.optimizer_param_names)
        frozen = sum(p.numel for p in meta.parameters if p.name not in in_optimizer)
        later = [StageCount(s.start_step, s.trainable_numel, s.frozen_numel)
                 for s in plan.stages if s.start_step > 0]
        first = plan.stages[0].unknown_frozen if plan.stages else {}
        return frozen, later, dict(first)
    except Exception:  # noqa: BLE001 - the freeze engine is optional here; fall back to the plain rule
        return _build_frozen_numel(meta, vlm), [], {}


def _build_frozen_numel(meta: Any, vlm: VLMConfig | None) -> int:
    """Construction freeze, then the base vlm.freeze specs in order (later specs win per parameter)."""
    frozen = {p.name: p.frozen_at_construction for p in meta.parameters}
    if vlm is not None:
        for spec in vlm.freeze:
            patterns = vlm.module_patterns.get(spec.module, [spec.module])
            for name in frozen:
                if any(fnmatch.fnmatch(name, pattern) for pattern in patterns):
                    frozen[name] = bool(spec.frozen)
    return sum(p.numel for p in meta.parameters if frozen[p.name])


# --------------------------------------------------------------------------------------
# describe_field: `kforge explain --field KEY`
# --------------------------------------------------------------------------------------


class UnknownFieldError(KeyError):
    def __init__(self, key: str, suggestions: list[str]) -> None:
        super().__init__(key)
        self.key = key
        self.suggestions = suggestions

    def __str__(self) -> str:
        return f"unknown config key {self.key!r}"


@dataclass(frozen=True)
class _Entry:
    key: str  # canonical: "model.dim", "vlm.freeze[].module", "checkpoint.dyn_ckpt_window.stop"
    section: str
    name: str
    hint: Any
    field: dataclasses.Field | None
    owners: tuple[type, ...]
    arches: tuple[str, ...] | None  # vlm.* only: the arches that accept the field
    doc: str


@dataclass
class FieldSummary:
    name: str
    type: str
    default: str
    doc: str
    arches: list[str] | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class FieldDoc:
    key: str
    kind: str  # "section" or "field"
    doc: str
    type: str | None = None
    default: str | None = None  # as written in TOML; "unset" / "required" in words
    defaults_by_arch: dict[str, str] | None = None
    choices: list[str] | None = None
    choices_enforced: str | None = None  # how other values are treated
    unit: str | None = None
    rules: tuple[str, ...] = ()
    arches: list[str] | None = None  # vlm fields only
    all_arches: bool = False
    fields: list[FieldSummary] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "kind": self.kind, "doc": self.doc, "type": self.type, "default": self.default,
            "defaults_by_arch": self.defaults_by_arch, "choices": self.choices,
            "choices_enforced": self.choices_enforced, "unit": self.unit, "rules": list(self.rules),
            "arches": self.arches, "fields": [f.to_json() for f in self.fields],
        }


def _inner(hint: Any) -> tuple[type | None, str]:
    """The dataclass a field holds and how: ("", a table), ("[]", array of tables)."""
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        for arg in typing.get_args(hint):
            if arg is not type(None):
                return _inner(arg)
        return None, ""
    if origin in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if len(args) == 1 and dataclasses.is_dataclass(args[0]):
            return args[0], "[]"
        return None, ""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint, ""
    return None, ""


def _vlm_classes() -> list[tuple[str, type]]:
    return [(arch, registry.get_vlm_config(arch)) for arch in registry.list_vlm_configs()]


def _catalogue() -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}

    def add(prefix: str, section: str, cls: type, arch: str | None) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = f"{prefix}.{f.name}"
            doc = (f.metadata.get("doc", "") if f.metadata else "") or ENTRY_DOCS.get(key, "")
            known = entries.get(key)
            if known is None:
                entries[key] = _Entry(key, section, f.name, hints[f.name], f, (cls,),
                                      (arch,) if arch else None, doc)
            elif arch and known.arches is not None and arch not in known.arches:
                entries[key] = dataclasses.replace(known, owners=known.owners + (cls,),
                                                   arches=known.arches + (arch,))
            inner, shape = _inner(hints[f.name])
            if inner is not None:
                add(key + shape, section, inner, arch)

    job_hints = typing.get_type_hints(JobConfig)
    for f in dataclasses.fields(JobConfig):
        if f.name == "vlm":
            for arch, cls in _vlm_classes():
                add("vlm", "vlm", cls, arch)
        else:
            inner, _ = _inner(job_hints[f.name])
            if inner is not None:
                add(f.name, f.name, inner, None)
    return entries


def all_field_keys() -> list[str]:
    """Every documented key: sections, then their fields (canonical spelling)."""
    return [f.name for f in dataclasses.fields(JobConfig)] + list(_catalogue())


def _canonical(key: str) -> str:
    key = key.strip().strip("[]")
    key = re.sub(r"\[\d*\]", "[]", key)
    return key


def _lookup(key: str, entries: dict[str, _Entry]) -> str | None:
    wanted = _canonical(key)
    if wanted in entries:
        return wanted
    # "data.datasets.path" and "vlm.freeze.module" name an entry's field without the brackets.
    loose = {k.replace("[]", ""): k for k in entries}
    return loose.get(wanted.replace("[]", ""))


def _suggest(key: str, candidates: list[str]) -> list[str]:
    wanted = _canonical(key)
    tail = wanted.rsplit(".", 1)[-1]
    same_name = [c for c in candidates if c.replace("[]", "").rsplit(".", 1)[-1] == tail]
    if same_name:
        return same_name[:4]
    close = difflib.get_close_matches(wanted, candidates, n=3, cutoff=0.6)
    if close:
        return close
    tails = {c.rsplit(".", 1)[-1]: c for c in candidates}
    return [tails[t] for t in difflib.get_close_matches(tail, list(tails), n=3, cutoff=0.7)]


def format_value(value: Any) -> str:
    """A plain value as TOML would spell it ("unset" for None)."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{" + ", ".join(f"{_toml_key(k)} = {format_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _toml_key(key: Any) -> str:
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else format_value(text)


_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string"}
_PLURALS = {"boolean": "booleans", "integer": "integers", "number": "numbers", "string": "strings"}


def type_text(hint: Any) -> str:
    """A type hint in TOML words: "integer, or unset", "array of strings", ..."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Union or origin is types.UnionType:
        inner = [a for a in args if a is not type(None)]
        text = " or ".join(type_text(a) for a in inner)
        return f"{text}, or unset" if len(inner) < len(args) else text
    if hint in _SCALARS:
        return _SCALARS[hint]
    if hint is FreezeSpec:
        return "table {module = string, frozen = boolean}"
    if hint is FreezeStage:
        return "table {start_step = integer, specs = [...]}"
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return "table"
    if origin in (list, tuple):
        items = [a for a in args if a is not Ellipsis]
        if origin is tuple and Ellipsis not in args and items and len(set(items)) == 1:
            element = type_text(items[0])
            return f"array of {len(items)} {_PLURALS.get(element, element)}"
        if len(items) == 1:
            element = type_text(items[0])
            if element.startswith("table"):
                return f"array of {element.replace('table', 'tables', 1)}"
            return f"array of {_PLURALS.get(element, element)}"
        return "array"
    if origin is dict:
        value = type_text(args[1]) if len(args) == 2 else "value"
        return f"table of name = {value}"
    return getattr(hint, "__name__", str(hint))


def _default_text(f: dataclasses.Field | None) -> str:
    if f is None:
        return ""
    default = field_default(f)
    if default is MISSING:
        return "required"
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return "(defaults)"
    return format_value(to_plain(default))


def _choices(entry: _Entry) -> tuple[list[str] | None, str | None]:
    meta = entry.field.metadata if entry.field is not None and entry.field.metadata else {}
    category = meta.get("registry")
    if category:
        names = registry.list(category)
        if meta.get("choices"):
            names = [c for c in meta["choices"] if c in names] or list(meta["choices"])
        how = "enum: anything else is rejected at load" if meta.get("enum") else f"registered {category} names"
        return [str(n) for n in names], how
    if meta.get("choices"):
        how = "enum: anything else is rejected at load" if meta.get("enum") else "checked by the section's rules"
        return [str(c) for c in meta["choices"]], how
    return None, None


def describe_field(key: str) -> FieldDoc:
    """Documentation of one config key or section; raises UnknownFieldError with suggestions."""
    entries = _catalogue()
    sections = {f.name: f for f in dataclasses.fields(JobConfig)}
    wanted = _canonical(key)
    if wanted in sections:
        return _describe_section(wanted, sections[wanted].metadata.get("doc", ""), entries)
    found = _lookup(key, entries)
    if found is None:
        raise UnknownFieldError(key, _suggest(key, list(sections) + list(entries)))
    entry = entries[found]
    choices, enforced = _choices(entry)
    meta = entry.field.metadata if entry.field is not None and entry.field.metadata else {}
    doc = FieldDoc(
        key=entry.key, kind="field", doc=entry.doc, type=type_text(entry.hint), default=_default_text(entry.field),
        choices=choices, choices_enforced=enforced, unit=meta.get("unit"), rules=FIELD_RULES.get(entry.key, ()),
    )
    if entry.arches is not None:
        every = [arch for arch, _ in _vlm_classes()]
        doc.arches = [a for a in every if a in entry.arches]
        doc.all_arches = set(doc.arches) == set(every)
        by_arch = {}
        for arch, cls in _vlm_classes():
            f = next((g for g in dataclasses.fields(cls) if g.name == entry.name), None)
            if f is not None and "[]" not in entry.key and entry.key.count(".") == 1:
                by_arch[arch] = _default_text(f)
        if len(set(by_arch.values())) > 1:
            doc.defaults_by_arch = by_arch
            if entry.name == "arch":
                doc.default = format_value("joint_decoder")  # what the loader picks when arch is omitted
                doc.defaults_by_arch = None
    inner, shape = _inner(entry.hint)
    if inner is not None:
        doc.fields = _summaries(entry.key + shape, entries)
    return doc


def _summaries(prefix: str, entries: dict[str, _Entry]) -> list[FieldSummary]:
    out = []
    every = [arch for arch, _ in _vlm_classes()]
    for key, entry in entries.items():
        if not key.startswith(prefix + ".") or "." in key[len(prefix) + 1:]:
            continue
        arches = None
        if entry.arches is not None and set(entry.arches) != set(every):
            arches = [a for a in every if a in entry.arches]
        default = _default_text(entry.field)
        if entry.name == "arch" and prefix == "vlm":
            default = format_value("joint_decoder")  # what the loader picks when arch is omitted
        elif len({_default_text(_field_of(cls, entry.name)) for cls in entry.owners}) > 1:
            default = "depends on vlm.arch"
        out.append(FieldSummary(entry.name, type_text(entry.hint), default, entry.doc, arches))
    return out


def _field_of(cls: type, name: str) -> dataclasses.Field | None:
    return next((f for f in dataclasses.fields(cls) if f.name == name), None)


def _describe_section(name: str, doc: str, entries: dict[str, _Entry]) -> FieldDoc:
    out = FieldDoc(key=name, kind="section", doc=doc, type="table", rules=FIELD_RULES.get(name, ()),
                   fields=_summaries(name, entries))
    if name == "vlm":
        out.fields.sort(key=lambda s: s.arches is not None)  # shared fields first, then per arch
        every = [arch for arch, _ in _vlm_classes()]
        out.arches, out.all_arches = every, True
    return out
