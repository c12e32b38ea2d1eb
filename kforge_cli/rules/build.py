"""Rules the trainer enforces while it builds the model, checked from the config alone.

The parameter manifest (``kforge_cli.manifest``) re-derives the whole module
tree and raises where the build raises; ``MODEL_BUILD_FAILS`` reports what it
finds that the specific rules below do not name.
"""

from __future__ import annotations

from typing import Any

from kforge_cli.config.job import JobConfig
from kforge_cli.config.registry import registry
from kforge_cli.config.vision import (
    HF_VISION_ENCODER_TYPES,
    RANDOM_ENCODER_FEATURE_DIM,
    RANDOM_ENCODER_TOKENS,
    AdapterConfig,
    PoolingError,
    VideoConfig,
    VisionEncoderConfig,
)
from kforge_cli.config.vlm import CrossAttentionConfig, MoMaConfig, MoTConfig, VLMConfig
from kforge_cli.findings import Finding
from kforge_cli.rules.job import PIPELINE_UNSUPPORTED, SEQUENCE_BUDGET
from kforge_cli.rules.loading import INVALID_VALUE, MISSING_REQUIRED
from kforge_cli.rules.rule import BUILD, ERROR, Rule, Subject

MOT_HEAD_MISMATCH = Rule(
    "KF208", "mot-head-mismatch", ERROR,
    "MoT per-modality head counts differ from the text backbone's (v1 needs them equal).",
    "mot_image_n_heads = 8 with model.n_heads = 16")
ADAPTER_BUILD = Rule(
    "KF209", "adapter-build", ERROR,
    "The adapter cannot be built for this encoder (pooling grid, heads not dividing the feature dim).",
    'adapter.type = "attentional_pool", pool_heads = 7, feature_dim = 384')
ODD_HEAD_DIM = Rule(
    "KF210", "odd-head-dim", ERROR,
    "model.dim / model.n_heads is odd; rotary embeddings need an even head dimension.",
    "dim = 96, n_heads = 32 (head_dim 3)")
MODEL_BUILD_FAILS = Rule(
    "KF211", "model-build-fails", ERROR,
    "Building the model fails for a reason the other rules do not name.",
    "a negative FFN width from ffn_dim_multiplier", emitted_at=(BUILD,), emitted_by="the parameter manifest")


def encoder_dims(encoder: VisionEncoderConfig) -> tuple[int | None, int | None]:
    """(num_tokens, feature_dim) the built encoder will have; None where only the HF model knows."""
    tokens = encoder.num_tokens if encoder.num_tokens > 0 else None
    features = encoder.feature_dim if encoder.feature_dim > 0 else None
    if encoder.type == "random":
        tokens = tokens or RANDOM_ENCODER_TOKENS
        features = features or RANDOM_ENCODER_FEATURE_DIM
    return tokens, features


def _has_moe_layer(model: Any) -> bool:
    return model.num_experts > 0 and 0 < model.moe_frequency <= model.n_layers


def _is_moma(job: JobConfig) -> bool:
    # The transformer picks MoMa blocks by the config's class (an --set vlm.arch override keeps it).
    return isinstance(job.vlm, MoMaConfig)


@INVALID_VALUE.check(stage=BUILD, reads=("model.model_type", "distributed.pp", "vlm"))
def text_model_registered(s: Subject) -> list[Finding]:
    """A text-only job without pipeline parallelism looks model_type up in the registry."""
    model = s.job.model
    if s.job.vlm is not None or s.job.distributed.pp != 1 or ("model", model.model_type) in registry:
        return []
    names = sorted(registry.list("model"))
    return [INVALID_VALUE.finding(f"Unknown model: {model.model_type!r}. Available: {names}", "model.model_type",
                                  f"use one of {names}")]


@PIPELINE_UNSUPPORTED.check(stage=BUILD, reads=("distributed.pp", "model.n_layers", "vlm"))
def pipeline_stages_have_layers(s: Subject) -> list[Finding]:
    """Every pipeline stage needs at least one transformer block."""
    job = s.job
    pp, layers = job.distributed.pp, job.model.n_layers
    if job.vlm is not None or not pp > layers > 0:
        return []
    return [PIPELINE_UNSUPPORTED.finding(
        f"distributed.pp ({pp}) exceeds model.n_layers ({layers}): some pipeline stage would get no transformer "
        "block", "distributed.pp", f"use at most {layers} pipeline stages")]


@INVALID_VALUE.check(stage=BUILD, reads=("model", "vlm.arch"))
def moe_router_registered(s: Subject) -> list[Finding]:
    """An MoE layer looks its router up in the registry (MoMa does not use it)."""
    model = s.job.model
    if not _has_moe_layer(model) or _is_moma(s.job) or ("router", model.moe_router) in registry:
        return []
    names = sorted(registry.list("router"))
    return [INVALID_VALUE.finding(f"Unknown router: {model.moe_router!r}. Available: {names}", "model.moe_router",
                                  f"use one of {names}")]


@INVALID_VALUE.check(stage=BUILD, reads=("model", "vlm.arch"))
def dense_ffn_width_buildable(s: Subject) -> list[Finding]:
    """A dense FFN whose resolved width is negative cannot be built."""
    job, model = s.job, s.job.model
    dense = not _has_moe_layer(model) or model.moe_frequency > 1 or isinstance(job.vlm, CrossAttentionConfig)
    if not dense or _is_moma(job):
        return []
    try:
        width = model.computed_ffn_hidden_dim
    except (OverflowError, ValueError):
        width = None  # an infinite or NaN multiplier: the manifest reports it
    if width is None or width >= 0:
        return []
    key = "model.ffn_hidden_dim" if model.ffn_hidden_dim is not None else "model.ffn_dim_multiplier"
    return [INVALID_VALUE.finding(f"the dense FFN width resolves to {width}, which torch cannot build", key,
                                  "use a positive model.ffn_hidden_dim or ffn_dim_multiplier")]


@INVALID_VALUE.check(stage=BUILD, reads=("model.init_std",))
def init_std_is_a_standard_deviation(s: Subject) -> list[Finding]:
    """nn.init.normal_ refuses a standard deviation that is not >= 0 (negative, -inf, NaN)."""
    std = s.job.model.init_std
    if not isinstance(std, (int, float)) or std >= 0:
        return []
    return [INVALID_VALUE.finding(
        f"model.init_std = {std}: when the model's weights are initialised, nn.init.normal_ raises RuntimeError: "
        f"normal expects std >= 0.0, but found std {std}", "model.init_std",
        "use a small positive standard deviation, e.g. model.init_std = 0.02")]


@ODD_HEAD_DIM.check(stage=BUILD, reads=("model.dim", "model.n_heads"))
def rope_needs_even_head_dim(s: Subject) -> list[Finding]:
    """Rotary embeddings need an even head dimension."""
    model = s.job.model
    if model.n_heads <= 0 or model.dim <= 0:
        return []
    head_dim = model.dim // model.n_heads
    if head_dim % 2 == 0:
        return []
    return [ODD_HEAD_DIM.finding(
        f"head_dim = model.dim // model.n_heads = {model.dim} // {model.n_heads} = {head_dim} is odd; rotary "
        "embeddings need an even head dimension (the reference asserts while building)", "model.n_heads",
        "choose n_heads so that dim / n_heads is even")]


@MOT_HEAD_MISMATCH.check(stage=BUILD, reads=("vlm", "vision_encoder", "model.n_heads", "model.n_kv_heads"))
def mot_heads_match_text(s: Subject) -> list[Finding]:
    """MoT v1 runs one global attention, so every modality keeps the text head counts."""
    vlm, model = s.job.vlm, s.job.model
    if not isinstance(vlm, MoTConfig) or s.job.vision_encoder is None or model.n_heads <= 0:
        return []
    kv = model.n_kv_heads or model.n_heads
    image_heads, image_kv = vlm.resolved_image_heads(model.n_heads, kv)
    detail = (f"MoT v1 requires equal head counts across modalities (single global SDPA): image=({image_heads}, "
              f"{image_kv}) vs text=({model.n_heads}, {kv})")
    out = []
    if image_heads != model.n_heads:
        out.append(MOT_HEAD_MISMATCH.finding(detail, "vlm.mot_image_n_heads",
                                             f"set vlm.mot_image_n_heads = 0 (or {model.n_heads})"))
    if image_kv != kv:
        out.append(MOT_HEAD_MISMATCH.finding(detail, "vlm.mot_image_n_kv_heads",
                                             f"set vlm.mot_image_n_kv_heads = 0 (or {kv})"))
    return out


@MISSING_REQUIRED.check(stage=BUILD, reads=("vlm", "vision_encoder"))
def hf_encoder_needs_path(s: Subject) -> list[Finding]:
    """An HF encoder loads a model from vision_encoder.path."""
    encoder = s.job.vision_encoder
    if not isinstance(s.job.vlm, VLMConfig) or not isinstance(encoder, VisionEncoderConfig):
        return []
    if encoder.type not in HF_VISION_ENCODER_TYPES or encoder.path:
        return []
    return [MISSING_REQUIRED.finding(
        f"vision_encoder.type = {encoder.type!r} loads a Hugging Face model, but vision_encoder.path is empty (the "
        "reference raises when building the encoder)", "vision_encoder.path",
        'set vision_encoder.path, e.g. "google/siglip2-base-patch16-224"')]


_ADAPTER_READS = ("vlm", "vision_encoder", "adapter", "video", "model")


def _adapter(job: JobConfig) -> AdapterConfig:
    return job.adapter if isinstance(job.adapter, AdapterConfig) else AdapterConfig()


@ADAPTER_BUILD.check(stage=BUILD, reads=_ADAPTER_READS)
def attentional_pool_heads_divide_features(s: Subject) -> list[Finding]:
    """attentional_pool splits the vision feature dim over its heads."""
    job = s.job
    if not isinstance(job.vlm, VLMConfig) or not isinstance(job.vision_encoder, VisionEncoderConfig):
        return []
    adapter = _adapter(job)
    _, features = encoder_dims(job.vision_encoder)
    if adapter.type != "attentional_pool" or not features or adapter.pool_heads <= 0:
        return []
    if features % adapter.pool_heads == 0:
        return []
    return [ADAPTER_BUILD.finding(
        f"AttentionalPoolAdapter in_dim ({features}) must be divisible by pool_heads ({adapter.pool_heads})",
        "adapter.pool_heads", "choose adapter.pool_heads from the divisors of the vision feature dim")]


def _build_time_tokens(job: JobConfig) -> int | None:
    """The encoder's own token count when the file leaves it at 0 and only the build knows it."""
    if not isinstance(job.vlm, VLMConfig) or not isinstance(job.vision_encoder, VisionEncoderConfig):
        return None
    tokens, _ = encoder_dims(job.vision_encoder)
    if tokens is None or job.vision_encoder.num_tokens > 0:
        return None  # unknown until the HF model is loaded, or already checked at load time
    return tokens


@ADAPTER_BUILD.check(stage=BUILD, reads=_ADAPTER_READS)
def adapter_pools_encoder_tokens(s: Subject) -> list[Finding]:
    """A pooling adapter must be able to pool the encoder's own token count."""
    tokens = _build_time_tokens(s.job)
    if tokens is None:
        return []
    adapter = _adapter(s.job)
    try:
        adapter.output_num_tokens(tokens)
    except PoolingError as exc:
        return [ADAPTER_BUILD.finding(
            f"adapter.type={adapter.type!r} cannot pool the encoder's {tokens} tokens: {exc}", exc.field,
            "set vision_encoder.num_tokens explicitly and pick a compatible adapter")]
    return []


@SEQUENCE_BUDGET.check(stage=BUILD, reads=_ADAPTER_READS)
def build_time_sequence_budget(s: Subject) -> list[Finding]:
    """The budget against model.max_seq_len with the token count the encoder reports at build."""
    job = s.job
    tokens = _build_time_tokens(job)
    if tokens is None:
        return []
    try:
        per_frame = _adapter(job).output_num_tokens(tokens)
    except PoolingError:
        return []
    vlm, model = job.vlm, job.model
    assert isinstance(vlm, VLMConfig)
    frames = job.video.max_frames if isinstance(job.video, VideoConfig) else 1
    residual = vlm.residual_stream_image_tokens(frames * per_frame)
    required = residual + vlm.max_text_len
    if model.max_seq_len >= required:
        return []
    encoder = job.vision_encoder
    assert isinstance(encoder, VisionEncoderConfig)
    return [SEQUENCE_BUDGET.finding(
        f"model.max_seq_len ({model.max_seq_len}) insufficient for VLM at build time: the {encoder.type!r} encoder "
        f"produces {tokens} tokens (vision_encoder.num_tokens = 0) -> residual_image_tokens ({residual}) + "
        f"vlm.max_text_len ({vlm.max_text_len}) = {required}", "model.max_seq_len",
        f"raise model.max_seq_len to at least {required}")]


# Block positions listed at most; a config with more is absurd, and listing them would not fit in memory.
MAX_LISTED_BLOCKS = 4096


def cross_attention_blocks(job: JobConfig) -> list[int]:
    """Text-layer indices after which a cross-attention block runs (the first MAX_LISTED_BLOCKS)."""
    from kforge_cli.config.vlm import cross_attention_after_layers
    from kforge_cli.rules.advice import cross_attention_block_count

    count = cross_attention_block_count(job)
    if not count:
        return []
    vlm = job.vlm
    assert isinstance(vlm, CrossAttentionConfig)
    every = vlm.cross_attention_every_n_layers
    return cross_attention_after_layers(min(count, MAX_LISTED_BLOCKS) * every, every)
