"""Plain, checked values read from the duck-typed job sections.

The config layer normally rejects bad values at load time; the checks here
repeat the ones whose violation would make the build crash or produce a
misleading module tree, so describing the model always fails with a
``ModelBuildError`` naming the key instead of a raw Python or torch error.
"""

from __future__ import annotations

import math
from dataclasses import field, replace
from enum import Enum
from typing import Any

from kforge_cli.config.model import ACTIVATIONS, NORM_TYPES
from kforge_cli.config.vision import (
    ADAPTER_ACTIVATIONS,
    DIVISIBLE_ONLY_POOL_TYPES,
    HF_VISION_ENCODER_TYPES,
    POOLING_ADAPTER_TYPES,
    PoolingError,
)
from kforge_cli.config.vision import pooled_token_count as _pooled_token_count
from kforge_cli.config.vlm import (
    built_arch,
    cross_attention_after_layers,  # noqa: F401 - re-exported
)
from kforge_cli.manifest.errors import (
    ModelBuildError,
    ModelNotDescribed,
    safe_repr,
    show,
)
from kforge_cli.manifest.tree import INT64_MAX
from kforge_cli.records import record

# What this builder knows how to build (a plugin may register more names; those
# are reported as unbuildable rather than guessed).
TEXT_MODEL_TYPES = ("transformer",)
ADAPTER_TYPES = ("mlp_2layer", "linear", "avgpool", "attentional_pool")
VISION_ENCODERS = ("random", "siglip2", "clip")
VLM_ARCHES = ("joint_decoder", "cross_attention", "mot", "moma")
POOLING_ADAPTERS = POOLING_ADAPTER_TYPES
DIVISIBLE_ONLY_POOLING_ADAPTERS = DIVISIBLE_ONLY_POOL_TYPES
HF_VISION_ENCODERS = HF_VISION_ENCODER_TYPES


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _get(section: Any, name: str, default: Any) -> Any:
    return _plain(getattr(section, name, default))


def as_int(value: Any, key: str) -> int:
    value = _plain(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ModelBuildError(f"{key} must be an integer (got {safe_repr(value)})", key,
                          f"set {key} to a whole number")


def as_size(value: Any, key: str, module: str) -> int:
    """A value the trainer hands to torch unchanged as a tensor size: booleans and floats are refused."""
    value = _plain(value)
    if isinstance(value, (bool, float)):
        kind = "boolean" if isinstance(value, bool) else "float"
        written = str(value).lower() if isinstance(value, bool) else show(value)
        raise ModelBuildError(
            f"{key} = {written} is a {kind}: the trainer passes it unchanged to {module}, and torch "
            f"refuses it as a tensor size (TypeError: size must be a tuple of ints)", key,
            f"write {key} as an integer" + (f", e.g. {key} = {int(value)}" if isinstance(value, float)
                                             and value.is_integer() else ""))
    return as_int(value, key)


def _as_float(value: Any, key: str) -> float:
    value = _plain(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise ModelBuildError(f"{key} = {show(value)} is too large for a float", key,
                                  f"set {key} to a plain number such as 1.0") from None
    raise ModelBuildError(f"{key} must be a number (got {safe_repr(value)})", key,
                          f"set {key} to a number")


def _width(compute: Any, key: str, what: str) -> int:
    """An FFN width from float knobs; inf/nan (or a float overflow) fails as int() does in the trainer."""
    try:
        return int(compute())
    except (OverflowError, ValueError):
        raise ModelBuildError(f"{what} is not a finite number: check {key}", key,
                              f"set {key} to a finite positive number") from None


def _as_str(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except ValueError:  # an integer past Python's int-to-text limit
        return f"<{type(value).__name__}>"


def _require(condition: bool, message: str, key: str, hint: str) -> None:
    if not condition:
        raise ModelBuildError(message, key, hint)


def _choice(value: str, options: tuple[str, ...], key: str, category: str | None = None) -> str:
    if value not in options and category is not None:
        from kforge_cli.config.registry import registry

        if (category, value) in registry:
            # Registered by a plugin: the trainer builds it with the plugin's code, which kforge cannot see.
            raise ModelNotDescribed(f"{key} = {safe_repr(value)} comes from a plugin, so kforge cannot list its "
                                    "parameters", key, "the parameter-level checks need a built-in component")
    _require(value in options, f"unknown {key} {safe_repr(value)}", key,
             "use one of: " + ", ".join(repr(o) for o in options))
    return value


@record(frozen=True)
class TextSpec:
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    ffn_dim_multiplier: float
    ffn_hidden_dim: int | None
    norm_type: str
    activation: str
    max_seq_len: int
    tie_embeddings: bool
    qk_norm: bool
    model_type: str
    num_experts: int
    moe_top_k: int
    moe_frequency: int
    moe_router: str
    moe_shared_experts: int
    moe_packed_experts: bool
    # Kept as read: only MoE layers and MoMa's expert groups use it, and a dense
    # model builds whatever it holds.
    moe_expert_ffn_multiplier: Any
    # mixed_precision = "fp8": torchao swaps every nn.Linear outside the experts and
    # routers for a Float8Linear whose weight is a new Parameter wrapping the old one,
    # so a tied output head gets its own weight.
    float8: bool = False

    @property
    def head_is_tied(self) -> bool:
        return self.tie_embeddings and not self.float8

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def dense_ffn_hidden_dim(self) -> int:
        if self.ffn_hidden_dim is not None:
            return self.ffn_hidden_dim
        # Llama sizing: 2/3 of 4*dim, scaled, rounded up to a multiple of 256.
        # The float expression keeps the reference's evaluation order so the
        # truncation lands on the same integer.
        unrounded = _width(lambda: 4 * self.dim * (2 / 3) * self.ffn_dim_multiplier,
                           "model.ffn_dim_multiplier", "the dense FFN width")
        return 256 * math.ceil(unrounded / 256)

    @property
    def dense_ffn_key(self) -> str:
        if self.ffn_hidden_dim is not None:
            return "model.ffn_hidden_dim"
        return "model.ffn_dim_multiplier"

    @property
    def expert_ffn_hidden_dim(self) -> int:
        dense = self.dense_ffn_hidden_dim
        key = "model.moe_expert_ffn_multiplier"
        multiplier = _as_float(self.moe_expert_ffn_multiplier, key)
        scaled = _width(lambda: dense * multiplier, key, "the expert FFN width")
        # Python's round() (ties to even) is what the reference uses too.
        return max(16, 16 * _width(lambda: round(scaled / 16), key, "the expert FFN width"))

    def layer_is_moe(self, index: int) -> bool:
        return self.is_moe and (index + 1) % self.moe_frequency == 0

    @property
    def moe_layer_count(self) -> int:
        return self.n_layers // self.moe_frequency if self.is_moe else 0


def read_text_spec(model: Any, *, float8: bool = False) -> TextSpec:
    if model is None:
        raise ModelBuildError("the job has no [model] section", "model",
                              "add a [model] section")
    n_heads = as_int(_get(model, "n_heads", 32), "model.n_heads")
    raw_kv = _get(model, "n_kv_heads", None)
    num_experts = as_int(_get(model, "num_experts", 0), "model.num_experts")

    def moe_knob(name: str, default: Any, read: Any) -> Any:
        # A dense model never reads its MoE knobs, whatever their value.
        return read(_get(model, name, default), f"model.{name}") if num_experts > 0 else default

    ffn_override = _get(model, "ffn_hidden_dim", None)
    spec = TextSpec(
        dim=as_int(_get(model, "dim", 4096), "model.dim"),
        n_layers=as_int(_get(model, "n_layers", 32), "model.n_layers"),
        n_heads=n_heads,
        n_kv_heads=n_heads if raw_kv is None else as_int(raw_kv, "model.n_kv_heads"),
        vocab_size=as_size(_get(model, "vocab_size", 32000), "model.vocab_size", "nn.Embedding"),
        ffn_dim_multiplier=_as_float(_get(model, "ffn_dim_multiplier", 1.0),
                                     "model.ffn_dim_multiplier"),
        ffn_hidden_dim=None if ffn_override is None else as_size(ffn_override, "model.ffn_hidden_dim",
                                                                   "the FFN's nn.Linear"),
        norm_type=_as_str(_get(model, "norm_type", "rmsnorm")),
        activation=_as_str(_get(model, "activation", "silu")),
        max_seq_len=as_int(_get(model, "max_seq_len", 2048), "model.max_seq_len"),
        tie_embeddings=bool(_get(model, "tie_embeddings", False)),
        qk_norm=bool(_get(model, "qk_norm", False)),
        model_type=_as_str(_get(model, "model_type", "transformer")),
        num_experts=num_experts,
        moe_top_k=moe_knob("moe_top_k", 2, as_int),
        moe_frequency=moe_knob("moe_frequency", 1, as_int),
        moe_router=moe_knob("moe_router", "softmax_topk", lambda v, _: _as_str(v)),
        moe_shared_experts=moe_knob("moe_shared_experts", 0, as_int),
        moe_packed_experts=moe_knob("moe_packed_experts", False, lambda v, _: bool(v)),
        # MoMa sizes its per-modality experts with it even on a dense backbone.
        moe_expert_ffn_multiplier=_get(model, "moe_expert_ffn_multiplier", 1.0),
        float8=float8,
    )
    _check_text_spec(spec)
    return spec


def _check_text_spec(spec: TextSpec) -> None:
    for name in ("dim", "n_layers", "n_heads", "vocab_size", "n_kv_heads"):
        value = getattr(spec, name)
        _require(value > 0, f"model.{name} must be positive (got {show(value)})", f"model.{name}",
                 f"set model.{name} to a positive integer")
    _require(spec.dim % spec.n_heads == 0,
             f"model.dim ({show(spec.dim)}) must be divisible by model.n_heads ({show(spec.n_heads)})",
             "model.n_heads", "pick n_heads that divides dim")
    _require(spec.n_heads % spec.n_kv_heads == 0,
             f"model.n_heads ({show(spec.n_heads)}) must be divisible by model.n_kv_heads "
             f"({show(spec.n_kv_heads)})", "model.n_kv_heads", "pick n_kv_heads that divides n_heads")
    for name, used_by in (("dim", "nn.Embedding"), ("vocab_size", "nn.Embedding"),
                          ("ffn_hidden_dim", "the FFN's nn.Linear"), ("max_seq_len", "the RoPE table")):
        value = getattr(spec, name)
        _require(value is None or value <= INT64_MAX,
                 f"model.{name} = {show(value)} is past the largest size torch accepts (2**63 - 1): {used_by} "
                 "fails to convert it (overflow)", f"model.{name}", f"check model.{name} for a typo")
    _choice(spec.norm_type, NORM_TYPES, "model.norm_type")
    _choice(spec.activation, ACTIVATIONS, "model.activation")
    if spec.is_moe:
        _require(0 < spec.moe_top_k <= spec.num_experts,
                 f"model.moe_top_k ({show(spec.moe_top_k)}) must be in 1..model.num_experts "
                 f"({show(spec.num_experts)})", "model.moe_top_k",
                 "set moe_top_k between 1 and num_experts")
        _require(spec.moe_frequency > 0,
                 f"model.moe_frequency must be positive (got {show(spec.moe_frequency)})",
                 "model.moe_frequency", "use 1 for every layer, 2 for every other layer")
        _require(_as_float(spec.moe_expert_ffn_multiplier, "model.moe_expert_ffn_multiplier") > 0,
                 "model.moe_expert_ffn_multiplier must be positive",
                 "model.moe_expert_ffn_multiplier", "use 1.0, or 0.5 for fine-grained experts")


@record(frozen=True)
class VisionSpec:
    type: str
    path: str
    feature_dim: int
    num_tokens: int

    @property
    def is_hf(self) -> bool:
        return self.type in HF_VISION_ENCODERS


def read_vision_spec(vision: Any) -> VisionSpec:
    if vision is None:
        raise ModelBuildError("[vlm] is set but [vision_encoder] is missing", "vision_encoder",
                              "add a [vision_encoder] section (type = \"random\" for a stub)")
    spec = VisionSpec(
        type=_as_str(_get(vision, "type", "random")),
        path=_as_str(_get(vision, "path", "") or ""),
        feature_dim=as_int(_get(vision, "feature_dim", 0), "vision_encoder.feature_dim"),
        num_tokens=as_int(_get(vision, "num_tokens", 0), "vision_encoder.num_tokens"),
    )
    _choice(spec.type, VISION_ENCODERS, "vision_encoder.type", "vision_encoder")
    _require(spec.feature_dim >= 0, "vision_encoder.feature_dim must be non-negative",
             "vision_encoder.feature_dim", "use 0 to take the encoder's own width")
    _require(spec.num_tokens >= 0, "vision_encoder.num_tokens must be non-negative",
             "vision_encoder.num_tokens", "use 0 to take the encoder's own token count")
    return spec


@record(frozen=True)
class AdapterSpec:
    type: str = "mlp_2layer"
    hidden_dim: int = 0
    activation: str = "gelu"
    pool_window: int = 2
    pool_heads: int = 16

    @property
    def is_pooling(self) -> bool:
        return self.type in POOLING_ADAPTERS


def read_adapter_spec(adapter: Any) -> AdapterSpec:
    if adapter is None:
        # The reference materializes the default adapter whenever [vlm] is set.
        return AdapterSpec()
    adapter_type = _as_str(_get(adapter, "type", "mlp_2layer"))
    raw_hidden = _get(adapter, "hidden_dim", 0)
    if adapter_type == "mlp_2layer" and isinstance(raw_hidden, bool) and raw_hidden:
        # A positive hidden_dim becomes the Linear width as is (False falls back to model.dim).
        as_size(raw_hidden, "adapter.hidden_dim", "the adapter's nn.Linear")
    spec = AdapterSpec(
        type=adapter_type,
        hidden_dim=as_int(raw_hidden, "adapter.hidden_dim"),
        activation=_as_str(_get(adapter, "activation", "gelu")),
        pool_window=as_int(_get(adapter, "pool_window", 2), "adapter.pool_window"),
        pool_heads=as_int(_get(adapter, "pool_heads", 16), "adapter.pool_heads"),
    )
    _choice(spec.type, ADAPTER_TYPES, "adapter.type", "adapter")
    _choice(spec.activation, ADAPTER_ACTIVATIONS, "adapter.activation")
    _require(spec.hidden_dim >= 0, "adapter.hidden_dim must be non-negative",
             "adapter.hidden_dim", "use 0 to match model.dim")
    _require(spec.pool_window > 0, "adapter.pool_window must be positive",
             "adapter.pool_window", "use 2 for images, 3 for video")
    _require(spec.pool_heads > 0, "adapter.pool_heads must be positive",
             "adapter.pool_heads", "use a head count that divides the vision feature dim")
    return spec


def pooled_token_count(num_tokens: int, window: int, *, require_divisible: bool,
                       tokens_key: str = "vision_encoder.num_tokens") -> int:
    """Tokens left after pooling a square patch grid, as a ModelBuildError naming the knob."""
    try:
        return _pooled_token_count(num_tokens, window, require_divisible=require_divisible)
    except PoolingError as exc:
        key, message = (tokens_key if exc.field == "vision_encoder.num_tokens" else exc.field), str(exc)
    except ValueError:  # the message could not spell out a count past Python's int-to-text limit
        key, message = tokens_key, f"{tokens_key} = {show(num_tokens)} cannot be pooled"
    hint = ("use a token count that is a perfect square (strip any CLS token), or a projection "
            "adapter (mlp_2layer / linear)" if key == tokens_key else
            'pick a pool_window that divides the grid side, or use adapter.type = "avgpool"')
    raise ModelBuildError(message, key, hint)


@record(frozen=True)
class VLMSpec:
    arch: str  # the model built: the config class's arch
    max_text_len: int
    cross_attention_every_n_layers: int = 4
    cross_attention_n_heads: int = 0
    cross_attention_n_kv_heads: int = 0
    mot_modalities: tuple[str, ...] = ("image", "text")
    mot_image_n_heads: int = 0
    mot_image_n_kv_heads: int = 0
    moma_modalities: tuple[str, ...] = ("image", "text")
    moma_experts_per_modality: dict[str, int] = field(default_factory=dict)
    moma_capacity_factor: float = 0.0
    # The arch string, which picks the ModalityStrategy (and with it the image
    # tokens the build-time length check counts); differs from ``arch`` only
    # after a --set vlm.arch override.
    strategy: str = ""

    @property
    def places_images_in_residual(self) -> bool:
        # Cross-attention feeds images as side-channel K/V; every other arch
        # prepends them to the text sequence.
        return (self.strategy or self.arch) != "cross_attention"

    def cross_attention_heads(self, model_n_heads: int) -> tuple[int, int]:
        heads = self.cross_attention_n_heads or model_n_heads
        return heads, self.cross_attention_n_kv_heads or heads

    def mot_image_heads(self, model_n_heads: int, model_n_kv_heads: int) -> tuple[int, int]:
        heads = self.mot_image_n_heads or model_n_heads
        return heads, self.mot_image_n_kv_heads or model_n_kv_heads or heads


def _modalities(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise ModelBuildError(f"{key} must be a list of modality names (got {safe_repr(value)})", key,
                              f'use e.g. {key} = ["image", "text"]')
    names = tuple(_as_str(v) for v in value)
    _require(len(names) >= 2 and "image" in names and "text" in names,
             f"{key} must name at least 'image' and 'text' (got {safe_repr(list(names))})", key,
             f'use e.g. {key} = ["image", "text"]')
    _require(len(set(names)) == len(names), f"{key} has duplicates: {safe_repr(list(names))}", key,
             "list each modality once")
    return names


def read_vlm_spec(vlm: Any) -> VLMSpec:
    strategy = _choice(_as_str(_get(vlm, "arch", "joint_decoder")), VLM_ARCHES, "vlm.arch", "vlm_config")
    # The transformer is built for the config's class (a --set override changes only the string).
    arch = _choice(built_arch(vlm) or strategy, VLM_ARCHES, "vlm.arch", "vlm_config")
    spec = _read_arch_spec(vlm, arch)
    return replace(spec, strategy=strategy)


def _read_arch_spec(vlm: Any, arch: str) -> VLMSpec:
    max_text_len = as_int(_get(vlm, "max_text_len", 512), "vlm.max_text_len")
    _require(max_text_len > 0, "vlm.max_text_len must be positive", "vlm.max_text_len",
             "set the fixed text padding length, e.g. 512")
    if arch == "cross_attention":
        every = as_int(_get(vlm, "cross_attention_every_n_layers", 4),
                        "vlm.cross_attention_every_n_layers")
        _require(every > 0, "vlm.cross_attention_every_n_layers must be positive",
                 "vlm.cross_attention_every_n_layers", "e.g. 4: one block after every 4th layer")
        heads = as_int(_get(vlm, "cross_attention_n_heads", 0), "vlm.cross_attention_n_heads")
        kv_heads = as_int(_get(vlm, "cross_attention_n_kv_heads", 0),
                           "vlm.cross_attention_n_kv_heads")
        _require(heads >= 0, "vlm.cross_attention_n_heads must be non-negative",
                 "vlm.cross_attention_n_heads", "use 0 to inherit model.n_heads")
        _require(kv_heads >= 0, "vlm.cross_attention_n_kv_heads must be non-negative",
                 "vlm.cross_attention_n_kv_heads", "use 0 to inherit the cross-attention heads")
        return VLMSpec(arch, max_text_len, cross_attention_every_n_layers=every,
                       cross_attention_n_heads=heads, cross_attention_n_kv_heads=kv_heads)
    if arch == "mot":
        image_heads = as_int(_get(vlm, "mot_image_n_heads", 0), "vlm.mot_image_n_heads")
        image_kv = as_int(_get(vlm, "mot_image_n_kv_heads", 0), "vlm.mot_image_n_kv_heads")
        _require(image_heads >= 0, "vlm.mot_image_n_heads must be non-negative",
                 "vlm.mot_image_n_heads", "use 0 to inherit model.n_heads")
        _require(image_kv >= 0, "vlm.mot_image_n_kv_heads must be non-negative",
                 "vlm.mot_image_n_kv_heads", "use 0 to inherit model.n_kv_heads")
        return VLMSpec(arch, max_text_len,
                       mot_modalities=_modalities(_get(vlm, "mot_modalities", ("image", "text")),
                                                  "vlm.mot_modalities"),
                       mot_image_n_heads=image_heads, mot_image_n_kv_heads=image_kv)
    if arch == "moma":
        modalities = _modalities(_get(vlm, "moma_modalities", ("image", "text")),
                                 "vlm.moma_modalities")
        raw_experts = _get(vlm, "moma_experts_per_modality", None)
        if raw_experts is None:
            raw_experts = {"image": 4, "text": 4}
        key = "vlm.moma_experts_per_modality"
        _require(hasattr(raw_experts, "items"), f"{key} must be a table of modality -> count",
                 key, f"e.g. {key} = {{ image = 4, text = 4 }}")
        # Each count sizes the modality's router gate nn.Linear(dim, count) as is.
        experts = {_as_str(m): as_size(n, f"{key}.{_as_str(m)}", "the router gate's nn.Linear")
                   for m, n in raw_experts.items()}
        missing = [m for m in modalities if m not in experts]
        extra = sorted(set(experts) - set(modalities))
        _require(not missing, f"{key} has no entry for {safe_repr(missing)}", key,
                 "give every modality in vlm.moma_modalities an expert count")
        _require(not extra, f"{key} names modalities not in vlm.moma_modalities: {safe_repr(extra)}", key,
                 "remove them or add them to vlm.moma_modalities")
        for name, count in experts.items():
            _require(count > 0, f"{key}.{name} must be positive (got {show(count)})", key,
                     "use at least 1 expert per modality (arch = \"mot\" for dense FFNs)")
        capacity = _as_float(_get(vlm, "moma_capacity_factor", 0.0), "vlm.moma_capacity_factor")
        return VLMSpec(arch, max_text_len, moma_modalities=modalities,
                       moma_experts_per_modality=experts, moma_capacity_factor=capacity)
    return VLMSpec(arch, max_text_len)
