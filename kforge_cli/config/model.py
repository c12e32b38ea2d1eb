"""[model]: the text backbone's architecture."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from kforge_cli.config.fields import Checker, is_number, setting
from kforge_cli.config.section import Section

NORM_TYPES = ("rmsnorm", "layernorm")
ACTIVATIONS = ("silu", "gelu", "relu")
SDPA_BACKENDS = ("auto", "flash", "efficient", "cudnn", "math")
MOE_BIAS_SCHEDULES = ("constant", "cosine_decay", "linear_warmup")


@dataclass
class ModelConfig(Section):
    SECTION: ClassVar[str] = "model"

    dim: int = setting(4096, "hidden size of the residual stream")
    n_layers: int = setting(32, "number of transformer blocks")
    n_heads: int = setting(32, "query heads per attention layer; must divide dim")
    n_kv_heads: int | None = setting(
        None, "key/value heads (GQA); unset means n_heads. Must divide n_heads")
    vocab_size: int = setting(32000, "tokenizer vocabulary size (embedding and output rows)")
    ffn_dim_multiplier: float = setting(
        1.0, "scales the Llama-style FFN width 4*dim*2/3 (rounded up to a multiple of 256)")
    ffn_hidden_dim: int | None = setting(None, "explicit FFN width; overrides the computed one")
    norm_type: str = setting("rmsnorm", "normalization layer", choices=NORM_TYPES, enum=True, registry="norm")
    norm_eps: float = setting(1e-5, "epsilon of the normalization layers")
    activation: str = setting("silu", "MLP activation (silu selects SwiGLU)", choices=ACTIVATIONS, enum=True)
    max_seq_len: int = setting(2048, "longest sequence the model is built for (RoPE table length)",
                               unit="tokens")
    rope_theta: float = setting(10000.0, "RoPE base frequency")
    tie_embeddings: bool = setting(False, "share the token embedding with the output head")
    qk_norm: bool = setting(False, "RMSNorm on queries and keys per head before RoPE")
    init_std: float = setting(0.02, "standard deviation of the weight initialization")
    model_type: str = setting("transformer", "model builder registry key (text-only jobs)",
                              registry="model")
    sdpa_backend: str = setting("auto", "scaled-dot-product-attention kernel", choices=SDPA_BACKENDS)
    num_experts: int = setting(0, "routed experts per MoE layer (0 = dense model)")
    moe_top_k: int = setting(2, "experts selected per token")
    moe_frequency: int = setting(1, "an MoE layer every N blocks (1 = all, 2 = alternating)")
    moe_router: str = setting("softmax_topk", "router registry key", registry="router")
    moe_shared_experts: int = setting(0, "always-active shared experts per MoE layer")
    moe_aux_loss_weight: float = setting(0.01, "load-balancing auxiliary loss coefficient")
    moe_capacity_factor: float = setting(0.0, "tokens per expert cap as a multiple of the mean (0 = no drop)")
    moe_sequence_aux_loss_weight: float = setting(0.0, "sequence-level balance loss coefficient (0 = off)")
    moe_gradient_scale: bool = setting(False, "normalize gradients per expert")
    moe_bias_schedule: str = setting("constant", "schedule of the sigmoid router's bias update rate",
                                     choices=MOE_BIAS_SCHEDULES)
    moe_packed_experts: bool = setting(False, "store expert weights packed, one tensor per projection")
    moe_expert_ffn_multiplier: float = setting(
        1.0, "expert FFN width relative to the dense FFN (0.5 = fine-grained experts)")
    moe_router_z_loss_weight: float = setting(0.0, "router logit z-loss coefficient (0 = off)")

    def normalize(self) -> None:
        # The reference resolves an unset n_kv_heads while constructing. Because
        # the loader overlays the file onto an already-built default ModelConfig,
        # a file that changes n_heads without n_kv_heads keeps the default's 32.
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def computed_ffn_hidden_dim(self) -> int:
        if self.ffn_hidden_dim is not None:
            return self.ffn_hidden_dim
        raw = int(4 * self.dim * (2 / 3) * self.ffn_dim_multiplier)
        return 256 * math.ceil(raw / 256)

    @property
    def computed_expert_ffn_hidden_dim(self) -> int:
        raw = int(self.computed_ffn_hidden_dim * self.moe_expert_ffn_multiplier)
        return max(16, 16 * round(raw / 16))

    def rules(self, c: Checker) -> None:
        positive_ok = True
        for name in ("dim", "n_layers", "n_heads"):
            value = getattr(self, name)
            if is_number(value) and value <= 0:
                positive_ok = False
                c.error("KF103", name, f"model.{name} must be positive (got {value}); "
                        "dim, n_layers, and n_heads must be positive",
                        f"set model.{name} to a positive integer")
        if is_number(self.vocab_size) and self.vocab_size <= 0:
            c.error("KF103", "vocab_size", "vocab_size must be positive",
                    "set model.vocab_size to the tokenizer's vocabulary size")
        kv = self.n_kv_heads
        if is_number(kv) and kv <= 0:
            positive_ok = False
            c.error("KF103", "n_kv_heads", "n_kv_heads must be positive",
                    "set model.n_kv_heads to a divisor of model.n_heads")
        if positive_ok and all(is_number(v) for v in (self.dim, self.n_heads, kv)):
            if self.dim % self.n_heads != 0:
                c.error("KF103", "dim", f"model.dim ({self.dim}) must be divisible by model.n_heads ({self.n_heads})",
                        _divisor_hint("model.n_heads", self.dim, self.n_heads))
            if self.n_heads % kv != 0:
                c.error("KF103", "n_kv_heads",
                        f"model.n_heads ({self.n_heads}) must be divisible by model.n_kv_heads ({kv})",
                        _divisor_hint("model.n_kv_heads", self.n_heads, kv))
        if self.sdpa_backend not in SDPA_BACKENDS:
            c.error("KF103", "sdpa_backend", f"Unknown sdpa_backend: '{self.sdpa_backend}'. "
                    "Options: 'auto', 'flash', 'efficient', 'cudnn', 'math'", 'use "auto"')
        if is_number(self.num_experts) and self.num_experts > 0:
            if is_number(self.moe_top_k) and self.moe_top_k <= 0:
                c.error("KF103", "moe_top_k", "moe_top_k must be positive when num_experts > 0",
                        "use moe_top_k = 2")
            elif is_number(self.moe_top_k) and self.moe_top_k > self.num_experts:
                c.error("KF103", "moe_top_k",
                        f"model.moe_top_k ({self.moe_top_k}) must be <= model.num_experts ({self.num_experts})",
                        f"lower model.moe_top_k to at most {self.num_experts}")
            if is_number(self.moe_frequency) and self.moe_frequency <= 0:
                c.error("KF103", "moe_frequency", "moe_frequency must be positive",
                        "use 1 for MoE in every block, 2 for every other block")
            if is_number(self.moe_sequence_aux_loss_weight) and self.moe_sequence_aux_loss_weight < 0:
                c.error("KF103", "moe_sequence_aux_loss_weight",
                        "moe_sequence_aux_loss_weight must be non-negative", "use 0 to disable it")
            if self.moe_bias_schedule not in MOE_BIAS_SCHEDULES:
                c.error("KF103", "moe_bias_schedule",
                        f"Unknown moe_bias_schedule: '{self.moe_bias_schedule}'. "
                        "Options: 'constant', 'cosine_decay', 'linear_warmup'", 'use "constant"')
            if is_number(self.moe_expert_ffn_multiplier) and self.moe_expert_ffn_multiplier <= 0:
                c.error("KF103", "moe_expert_ffn_multiplier", "moe_expert_ffn_multiplier must be positive",
                        "use 1.0 (or 0.5 for fine-grained experts)")
            if is_number(self.moe_router_z_loss_weight) and self.moe_router_z_loss_weight < 0:
                c.error("KF103", "moe_router_z_loss_weight", "moe_router_z_loss_weight must be non-negative",
                        "use 0 to disable it")


def _divisor_hint(field: str, whole: int, part: int) -> str:
    if whole <= 0:
        return f"choose {field} so that it divides {whole}"
    divisors = [d for d in range(1, min(whole, 4096) + 1) if whole % d == 0]
    near = sorted(divisors, key=lambda d: (abs(d - part), d))[:3]
    return f"choose {field} from the divisors of {whole}, e.g. {', '.join(map(str, sorted(near)))}"
