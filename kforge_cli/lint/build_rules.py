"""Rules the reference enforces while building the model, checked without torch."""

from __future__ import annotations

from kforge_cli.config.fields import Checker
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
from kforge_cli.config.vlm import CrossAttentionConfig, MoTConfig, VLMConfig, cross_attention_after_layers


def encoder_dims(encoder: VisionEncoderConfig) -> tuple[int | None, int | None]:
    """(num_tokens, feature_dim) the built encoder will have; None where only the HF model knows."""
    tokens = encoder.num_tokens if encoder.num_tokens > 0 else None
    features = encoder.feature_dim if encoder.feature_dim > 0 else None
    if encoder.type == "random":
        tokens = tokens or RANDOM_ENCODER_TOKENS
        features = features or RANDOM_ENCODER_FEATURE_DIM
    return tokens, features


def _has_moe_layer(model) -> bool:
    return model.num_experts > 0 and 0 < model.moe_frequency <= model.n_layers


def text_build_rules(job: JobConfig, c: Checker, bad: set[str]) -> None:
    """What building the text backbone asserts, for every arch."""
    model, vlm = job.model, job.vlm
    if any(k.startswith("model") for k in bad) or model.n_heads <= 0 or model.dim <= 0:
        return
    if vlm is None and job.distributed.pp == 1 and ("model", model.model_type) not in registry:
        c.error("KF103", "model.model_type",
                f"Unknown model: {model.model_type!r}. Available: {sorted(registry.list('model'))}",
                f"use one of {sorted(registry.list('model'))}")
    if vlm is None and job.distributed.pp > model.n_layers > 0:
        c.error("KF203", "distributed.pp",
                f"distributed.pp ({job.distributed.pp}) exceeds model.n_layers ({model.n_layers}): some "
                "pipeline stage would get no transformer block",
                f"use at most {model.n_layers} pipeline stages")
    moma = isinstance(vlm, VLMConfig) and vlm.arch == "moma"
    if _has_moe_layer(model) and not moma and ("router", model.moe_router) not in registry:
        c.error("KF103", "model.moe_router",
                f"Unknown router: {model.moe_router!r}. Available: {sorted(registry.list('router'))}",
                f"use one of {sorted(registry.list('router'))}")
    head_dim = model.dim // model.n_heads
    if head_dim % 2:
        c.error("KF210", "model.n_heads",
                f"head_dim = model.dim // model.n_heads = {model.dim} // {model.n_heads} = {head_dim} is odd; "
                "rotary embeddings need an even head dimension (the reference asserts while building)",
                "choose n_heads so that dim / n_heads is even")
    dense_ffn = not _has_moe_layer(model) or model.moe_frequency > 1 or isinstance(vlm, CrossAttentionConfig)
    if dense_ffn and not moma and model.computed_ffn_hidden_dim < 0:
        key = "model.ffn_hidden_dim" if model.ffn_hidden_dim is not None else "model.ffn_dim_multiplier"
        c.error("KF103", key, f"the dense FFN width resolves to {model.computed_ffn_hidden_dim}, which torch "
                "cannot build", "use a positive model.ffn_hidden_dim or ffn_dim_multiplier")


def first_step_rules(job: JobConfig, c: Checker) -> None:
    """Configs the reference builds but whose first forward/backward pass raises.

    Reported as warnings: the reference accepts them through load, validation
    and model build, and only the first training step fails.
    """
    vlm, model = job.vlm, job.model
    if isinstance(vlm, MoTConfig) and isinstance(vlm.mot_modalities, (tuple, list)) and len(vlm.mot_modalities) > 2:
        extra = [m for m in vlm.mot_modalities if m not in ("image", "text")]
        c.warn("KF409", "vlm.mot_modalities",
               f"vlm.mot_modalities has {len(vlm.mot_modalities)} entries ({', '.join(map(repr, extra))} besides "
               "image and text): the model builds a stream per modality, but the first forward pass raises "
               "because only image and text streams are ever fed", 'use mot_modalities = ["image", "text"]')
    if isinstance(vlm, CrossAttentionConfig) and model.n_heads > 0:
        heads, kv = vlm.resolved_heads(model.n_heads)
        if kv > heads or heads % kv:
            c.warn("KF409", "vlm.cross_attention_n_kv_heads",
                   f"cross-attention resolves to {heads} query heads and {kv} key/value heads; the blocks build, "
                   "but the first forward pass fails in scaled-dot-product attention (query heads must be a "
                   "multiple of key/value heads)", "set vlm.cross_attention_n_kv_heads to a divisor of the query heads")
    if isinstance(vlm, VLMConfig) and vlm.arch == "moma" and isinstance(getattr(vlm, "moma_modalities", None),
                                                                          (tuple, list)):
        extra = [m for m in vlm.moma_modalities if m not in ("image", "text")]
        if extra:
            c.warn("KF409", "vlm.moma_modalities",
                   f"vlm.moma_modalities includes {', '.join(map(repr, extra))}: their expert groups are built "
                   "but no token is ever routed to them, so they never receive a gradient",
                   'use moma_modalities = ["image", "text"] unless your data pipeline tags other modalities')


def build_rules(job: JobConfig, c: Checker, bad: set[str]) -> None:
    text_build_rules(job, c, bad)
    vlm = job.vlm
    if not isinstance(vlm, VLMConfig) or not isinstance(job.vision_encoder, VisionEncoderConfig):
        return
    model = job.model
    if any(k.startswith(("vlm", "vision_encoder", "adapter", "video", "model")) for k in bad):
        return
    encoder = job.vision_encoder
    adapter = job.adapter if isinstance(job.adapter, AdapterConfig) else AdapterConfig()

    if isinstance(vlm, MoTConfig) and model.n_heads > 0:
        kv = model.n_kv_heads or model.n_heads
        image_heads, image_kv = vlm.resolved_image_heads(model.n_heads, kv)
        if image_heads != model.n_heads:
            c.error("KF208", "vlm.mot_image_n_heads",
                    "MoT v1 requires equal head counts across modalities (single global SDPA): "
                    f"image=({image_heads}, {image_kv}) vs text=({model.n_heads}, {kv})",
                    f"set vlm.mot_image_n_heads = 0 (or {model.n_heads})")
        if image_kv != kv:
            c.error("KF208", "vlm.mot_image_n_kv_heads",
                    "MoT v1 requires equal head counts across modalities (single global SDPA): "
                    f"image=({image_heads}, {image_kv}) vs text=({model.n_heads}, {kv})",
                    f"set vlm.mot_image_n_kv_heads = 0 (or {kv})")

    if encoder.type in HF_VISION_ENCODER_TYPES and not encoder.path:
        c.error("KF104", "vision_encoder.path",
                f"vision_encoder.type = {encoder.type!r} loads a Hugging Face model, but vision_encoder.path "
                "is empty (the reference raises when building the encoder)",
                'set vision_encoder.path, e.g. "google/siglip2-base-patch16-224"')

    tokens, features = encoder_dims(encoder)
    if adapter.type == "attentional_pool" and features and adapter.pool_heads > 0 and features % adapter.pool_heads:
        c.error("KF209", "adapter.pool_heads",
                f"AttentionalPoolAdapter in_dim ({features}) must be divisible by pool_heads "
                f"({adapter.pool_heads})",
                "choose adapter.pool_heads from the divisors of the vision feature dim")

    if tokens is None or encoder.num_tokens > 0:
        return  # unknown until the HF model is loaded, or already checked at load time
    try:
        per_frame = adapter.output_num_tokens(tokens)
    except PoolingError as exc:
        c.error("KF209", exc.field,
                f"adapter.type={adapter.type!r} cannot pool the encoder's {tokens} tokens: {exc}",
                "set vision_encoder.num_tokens explicitly and pick a compatible adapter")
        return
    frames = job.video.max_frames if isinstance(job.video, VideoConfig) else 1
    residual = vlm.residual_stream_image_tokens(frames * per_frame)
    required = residual + vlm.max_text_len
    if model.max_seq_len < required:
        c.error("KF201", "model.max_seq_len",
                f"model.max_seq_len ({model.max_seq_len}) insufficient for VLM at build time: the "
                f"{encoder.type!r} encoder produces {tokens} tokens (vision_encoder.num_tokens = 0) -> "
                f"residual_image_tokens ({residual}) + vlm.max_text_len ({vlm.max_text_len}) = {required}",
                f"raise model.max_seq_len to at least {required}")


# Block positions listed at most; a config with more is absurd, and listing them would not fit in memory.
MAX_LISTED_BLOCKS = 4096


def cross_attention_block_count(job: JobConfig) -> int:
    vlm = job.vlm
    if not isinstance(vlm, CrossAttentionConfig) or vlm.cross_attention_every_n_layers <= 0:
        return 0
    return max(0, job.model.n_layers // vlm.cross_attention_every_n_layers)


def cross_attention_blocks(job: JobConfig) -> list[int]:
    """Text-layer indices after which a cross-attention block runs (the first MAX_LISTED_BLOCKS)."""
    count = cross_attention_block_count(job)
    if not count:
        return []
    every = job.vlm.cross_attention_every_n_layers
    return cross_attention_after_layers(min(count, MAX_LISTED_BLOCKS) * every, every)
