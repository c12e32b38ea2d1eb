"""[model]: the text backbone's architecture."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from kforge_cli.config.fields import Condition, JobCondition, Use, is_number, setting
from kforge_cli.config.section import Section
from kforge_cli.records import record
from kforge_cli.rules.rule import BUILD, LOAD, LOOP, VALIDATE

NORM_TYPES = ("rmsnorm", "layernorm")
ACTIVATIONS = ("silu", "gelu", "relu")
SDPA_BACKENDS = ("auto", "flash", "efficient", "cudnn", "math")
MOE_BIAS_SCHEDULES = ("constant", "cosine_decay", "linear_warmup")


def _is_moe(model: Any) -> bool:
    return is_number(model.num_experts) and model.num_experts > 0


# The reference checks its MoE knobs only for an MoE model.
MOE = Condition("model.num_experts > 0", _is_moe)

# Where the trainer uses a model value its loader keeps as is (see fields.Use).
MOE_MODEL = JobCondition("model.num_experts > 0", lambda s: _is_moe(s.job.model), ("model.num_experts",))
FFN_FROM_MULTIPLIER = JobCondition("model.ffn_hidden_dim is unset", lambda s: s.job.model.ffn_hidden_dim is None,
                                   ("model.ffn_hidden_dim",))


def _budget_checked_at_load(s: Any) -> bool:
    encoder = s.job.vision_encoder
    return s.job.vlm is not None and encoder is not None and is_number(encoder.num_tokens) and encoder.num_tokens > 0


def _builds_moma(s: Any) -> bool:
    from kforge_cli.config.vlm import built_arch

    return s.job.vlm is not None and built_arch(s.job.vlm) == "moma"


VLM_BUDGET_AT_LOAD = JobCondition("a VLM job with vision_encoder.num_tokens > 0", _budget_checked_at_load,
                                  ("vlm.arch", "vision_encoder.num_tokens"))
MOMA_MODEL = JobCondition("the model is MoMa", _builds_moma, ("vlm.arch",))
DENSE_ONLY = Use(None, "only MoE layers read it, and this model is dense (model.num_experts = 0)")


@record
class ModelConfig(Section):
    SECTION: ClassVar[str] = "model"

    dim: int = setting(4096, "hidden size of the residual stream", gt=0, divisible_by="n_heads")
    n_layers: int = setting(32, "number of transformer blocks", gt=0)
    n_heads: int = setting(32, "query heads per attention layer; must divide dim", gt=0)
    n_kv_heads: int | None = setting(
        None, "key/value heads (GQA); unset means n_heads. Must divide n_heads", gt=0, divides="n_heads")
    vocab_size: int = setting(32000, "tokenizer vocabulary size (embedding and output rows)", gt=0,
                              fix="set model.vocab_size to the tokenizer's vocabulary size")
    ffn_dim_multiplier: float = setting(
        1.0, "scales the Llama-style FFN width 4*dim*2/3 (rounded up to a multiple of 256)", used=(
            Use(BUILD, "ModelConfig.computed_ffn_hidden_dim multiplies 4 * dim * 2/3 by it",
                FFN_FROM_MULTIPLIER),))
    ffn_hidden_dim: int | None = setting(None, "explicit FFN width; overrides the computed one", used=(
        Use(BUILD, "every FFN's nn.Linear takes it as its width"),))
    norm_type: str = setting("rmsnorm", "normalization layer", choices=NORM_TYPES, enum=True, registry="norm")
    norm_eps: float = setting(1e-5, "epsilon of the normalization layers", used=(
        Use(LOOP, "every norm layer adds it to the variance in the first forward pass (step 1)"),))
    activation: str = setting("silu", "MLP activation (silu selects SwiGLU)", choices=ACTIVATIONS, enum=True)
    max_seq_len: int = setting(2048, "longest sequence the model is built for (RoPE table length)",
                               unit="tokens", used=(
                                   Use(LOAD, "JobConfig compares it with the VLM token budget while loading",
                                       VLM_BUDGET_AT_LOAD),
                                   Use(VALIDATE, "JobConfig.validate compares train.seq_len with it")))
    rope_theta: float = setting(10000.0, "RoPE base frequency", used=(
        Use(BUILD, "the RoPE table raises it to a tensor power"),))
    tie_embeddings: bool = setting(False, "share the token embedding with the output head")
    qk_norm: bool = setting(False, "RMSNorm on queries and keys per head before RoPE")
    init_std: float = setting(0.02, "standard deviation of the weight initialization", used=(
        Use(BUILD, "nn.init.normal_ takes it as the standard deviation when the weights are initialised"),))
    model_type: str = setting("transformer", "model builder registry key (text-only jobs)",
                              registry="model")
    sdpa_backend: str = setting("auto", "scaled-dot-product-attention kernel", choices=SDPA_BACKENDS,
                                fix='use "auto"')
    num_experts: int = setting(0, "routed experts per MoE layer (0 = dense model)")
    moe_top_k: int = setting(2, "experts selected per token", gt=0, le="num_experts", when=MOE, used=(DENSE_ONLY,))
    moe_frequency: int = setting(1, "an MoE layer every N blocks (1 = all, 2 = alternating)", gt=0, when=MOE,
                                 fix="use 1 for MoE in every block, 2 for every other block", used=(DENSE_ONLY,))
    moe_router: str = setting("softmax_topk", "router registry key", registry="router")
    moe_shared_experts: int = setting(0, "always-active shared experts per MoE layer", used=(
        Use(BUILD, "each MoE layer compares it with 0 when it is built", MOE_MODEL),))
    moe_aux_loss_weight: float = setting(0.01, "load-balancing auxiliary loss coefficient", used=(
        Use(LOOP, "the loop scales the MoE auxiliary loss by it (step 1)", MOE_MODEL),))
    moe_capacity_factor: float = setting(0.0, "tokens per expert cap as a multiple of the mean (0 = no drop)",
                                         used=(Use(LOOP, "each MoE layer's forward compares it with 0 (step 1)",
                                                   MOE_MODEL),))
    moe_sequence_aux_loss_weight: float = setting(0.0, "sequence-level balance loss coefficient (0 = off)",
                                                  ge=0, when=MOE, fix="use 0 to disable it", used=(DENSE_ONLY,))
    moe_gradient_scale: bool = setting(False, "normalize gradients per expert")
    moe_bias_schedule: str = setting("constant", "schedule of the sigmoid router's bias update rate",
                                     choices=MOE_BIAS_SCHEDULES, when=MOE, fix='use "constant"')
    moe_packed_experts: bool = setting(False, "store expert weights packed, one tensor per projection")
    moe_expert_ffn_multiplier: float = setting(
        1.0, "expert FFN width relative to the dense FFN (0.5 = fine-grained experts)", gt=0, when=MOE,
        fix="use 1.0 (or 0.5 for fine-grained experts)", used=(
            Use(BUILD, "MoMa sizes its expert FFNs with it (computed_expert_ffn_hidden_dim)", MOMA_MODEL),
            DENSE_ONLY))
    moe_router_z_loss_weight: float = setting(0.0, "router logit z-loss coefficient (0 = off)", ge=0, when=MOE,
                                              fix="use 0 to disable it", used=(DENSE_ONLY,))

    def normalize(self) -> None:
        # The reference resolves an unset n_kv_heads while constructing. Because
        # the loader overlays the file onto an already-built default ModelConfig,
        # a file that changes n_heads without n_kv_heads keeps the default's 32.
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads

    @property
    def is_moe(self) -> bool:
        return _is_moe(self)

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
