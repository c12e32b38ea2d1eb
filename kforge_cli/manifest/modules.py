"""The reference's modules as :class:`Node` descriptions: every shape and placement rule.

Each function builds the node of one reference module, registering its
parameters and children under the reference's attribute names and in its
order, so the tree names its parameters exactly as ``named_parameters()`` on
the trainer's model does. Rules kept here:

- layer ``i`` uses a MoE FFN iff ``num_experts > 0`` and ``(i + 1) % moe_frequency == 0``;
- cross-attention block ``k`` runs after text layer ``(k + 1) * every - 1``, and there
  are ``n_layers // every`` of them;
- MoT keeps the shared final ``norm`` (frozen at construction, unused) next to its
  per-modality ``mot_norms``; MoMa replaces every FFN with per-modality expert groups.

Each function fails, with a ``ModelBuildError``, exactly where the reference's
constructor fails, so the first error is the one the trainer would report.
"""

from __future__ import annotations

from kforge_cli.config.vision import RANDOM_ENCODER_FEATURE_DIM, RANDOM_ENCODER_TOKENS
from kforge_cli.manifest.bounds import check_experts, check_layers
from kforge_cli.manifest.errors import (
    ModelBuildError,
    ModelNotDescribed,
    safe_repr,
    show,
)
from kforge_cli.manifest.knobs import (
    DIVISIBLE_ONLY_POOLING_ADAPTERS,
    AdapterSpec,
    TextSpec,
    VLMSpec,
    pooled_token_count,
)
from kforge_cli.manifest.tree import (
    MODULE_DICT,
    Node,
    Tensor,
    Tie,
    keyed,
    module_list,
    tensor,
)

# apply_ac wraps every module of this class in a CheckpointWrapper, per activation_checkpointing mode
# (a MoT or MoMa block is not a TransformerBlock, and MoT's attention is not an Attention).
CHECKPOINTED_KIND = {"full": "TransformerBlock", "selective": "Attention"}


# -- building blocks -------------------------------------------------------------------


def linear(in_features: int, out_features: int, *, bias: bool = False) -> Node:
    parameters: dict[str, Tensor | Tie] = {"weight": tensor(out_features, in_features)}
    if bias:
        parameters["bias"] = tensor(out_features)
    return Node("Linear", parameters)


def embedding(num_embeddings: int, dim: int) -> Node:
    return Node("Embedding", {"weight": tensor(num_embeddings, dim)})


def rms_norm(dim: int, *, frozen: bool = False) -> Node:
    return Node("RMSNorm", {"weight": tensor(dim, frozen=frozen)})


def layer_norm(dim: int, *, frozen: bool = False) -> Node:
    return Node("LayerNorm", {"weight": tensor(dim, frozen=frozen),
                              "bias": tensor(dim, frozen=frozen)})


def norm(norm_type: str, dim: int, *, frozen: bool = False) -> Node:
    if norm_type == "rmsnorm":
        return rms_norm(dim, frozen=frozen)
    if norm_type == "layernorm":
        return layer_norm(dim, frozen=frozen)
    raise ModelBuildError(f"unknown norm type {norm_type!r}", "model.norm_type",
                          "use \"rmsnorm\" or \"layernorm\"")


def mlp(dim: int, hidden_dim: int, activation: str, *, hidden_key: str) -> Node:
    """silu selects the gated SwiGLU MLP (three projections); gelu / relu a plain two-layer MLP."""
    if hidden_dim < 0:
        # torch refuses a negative Linear width while the reference constructs it.
        raise ModelBuildError(f"the FFN hidden width resolves to {show(hidden_dim)}, which is negative",
                              hidden_key, "use a positive model.ffn_hidden_dim, or leave it unset "
                              "and keep model.ffn_dim_multiplier positive")
    if activation == "silu":
        return Node("SwiGLUMLP", children={"gate_proj": linear(dim, hidden_dim),
                                           "up_proj": linear(dim, hidden_dim),
                                           "down_proj": linear(hidden_dim, dim)})
    if activation in ("gelu", "relu"):
        return Node("PlainMLP", children={"up_proj": linear(dim, hidden_dim),
                                          "down_proj": linear(hidden_dim, dim)})
    raise ModelBuildError(f"unknown activation {activation!r}", "model.activation",
                          "use \"silu\", \"gelu\" or \"relu\"")


def attention(dim: int, n_heads: int, n_kv_heads: int, head_dim: int, qk_norm: bool) -> Node:
    """Self-attention with grouped K/V heads and optional per-head QK RMSNorm."""
    children = {"q_proj": linear(dim, n_heads * head_dim),
                "k_proj": linear(dim, n_kv_heads * head_dim),
                "v_proj": linear(dim, n_kv_heads * head_dim),
                "o_proj": linear(n_heads * head_dim, dim)}
    if qk_norm:
        # Always RMSNorm over head_dim, whatever model.norm_type says.
        children["q_norm"] = rms_norm(head_dim)
        children["k_norm"] = rms_norm(head_dim)
    return Node("Attention", children=children)


def cross_attention(dim: int, n_heads: int, n_kv_heads: int) -> Node:
    """Text queries over image keys/values; the head width follows its own head count."""
    head_dim = dim // n_heads
    return Node("CrossAttention", children={"q_proj": linear(dim, n_heads * head_dim),
                                            "k_proj": linear(dim, n_kv_heads * head_dim),
                                            "v_proj": linear(dim, n_kv_heads * head_dim),
                                            "o_proj": linear(n_heads * head_dim, dim)})


# -- mixture of experts ----------------------------------------------------------------


def _softmax_topk_router(dim: int, num_experts: int) -> Node:
    return Node("SoftmaxTopKRouter", children={"gate": linear(dim, num_experts)})


def _sigmoid_topk_router(dim: int, num_experts: int) -> Node:
    # The bias is the router's own parameter; the utilization EMA a persistent
    # buffer, so it is a checkpoint key.
    return Node("SigmoidTopKRouter", {"expert_bias": tensor(num_experts)},
                buffers={"expert_ema": tensor(num_experts)},
                children={"gate": linear(dim, num_experts)})


ROUTERS = {"softmax_topk": _softmax_topk_router, "sigmoid_topk": _sigmoid_topk_router}


def moe_mlp(spec: TextSpec) -> Node:
    """Token-choice MoE: router, optional single shared expert, routed experts.

    Packed experts replace the per-expert modules with one (E, in, out) tensor
    per projection, held directly on this module.
    """
    hidden = spec.expert_ffn_hidden_dim  # an argument of the reference's constructor: computed first
    make_router = ROUTERS.get(spec.moe_router)
    if make_router is None:
        from kforge_cli.config.registry import registry

        if ("router", spec.moe_router) in registry:
            raise ModelNotDescribed(f"model.moe_router = {safe_repr(spec.moe_router)} comes from a plugin, so "
                                    "kforge cannot list its parameters", "model.moe_router",
                                    "the parameter-level checks need a built-in router")
        raise ModelBuildError(f"unknown MoE router {safe_repr(spec.moe_router)}", "model.moe_router",
                              "use \"softmax_topk\" or \"sigmoid_topk\"")
    check_experts(spec.num_experts, "model.num_experts")
    dim, experts = spec.dim, spec.num_experts
    children = {"router": make_router(dim, experts)}
    parameters: dict[str, Tensor | Tie] = {}
    expert_key = "model.moe_expert_ffn_multiplier"
    if spec.moe_shared_experts > 0:
        # Any positive count yields one shared expert of the expert width.
        children["shared_expert"] = mlp(dim, hidden, spec.activation, hidden_key=expert_key)
    if spec.moe_packed_experts:
        parameters["up_w"] = tensor(experts, dim, hidden)
        parameters["down_w"] = tensor(experts, hidden, dim)
        if spec.activation == "silu":
            parameters["gate_w"] = tensor(experts, dim, hidden)
    else:
        expert = mlp(dim, hidden, spec.activation, hidden_key=expert_key)
        children["experts"] = module_list([expert] * experts)
    return Node("MoEMLP", parameters, children=children)


def _expert_choice_moe(dim: int, hidden_dim: int, num_experts: int, activation: str) -> Node:
    """One MoMa modality group: an expert-choice router plus its experts."""
    check_experts(num_experts, "vlm.moma_experts_per_modality")
    router = Node("ExpertChoiceRouter", children={"gate": linear(dim, num_experts)})
    expert = mlp(dim, hidden_dim, activation, hidden_key="model.moe_expert_ffn_multiplier")
    return Node("ExpertChoiceMoE", children={"router": router,
                                             "experts": module_list([expert] * num_experts)})


def moma_ffn(spec: TextSpec, vlm: VLMSpec) -> Node:
    # MoMa ignores model.num_experts / moe_frequency / moe_router: every layer gets
    # expert groups sized by vlm.moma_experts_per_modality.
    groups = keyed(vlm.moma_modalities,
                   lambda m: _expert_choice_moe(spec.dim, spec.expert_ffn_hidden_dim,
                                                vlm.moma_experts_per_modality[m], spec.activation),
                   "vlm.moma_modalities")
    return Node("MoMaFFN", children={"experts": groups})


# -- transformer -----------------------------------------------------------------------


def _ffn(spec: TextSpec, layer_index: int) -> Node:
    if spec.layer_is_moe(layer_index):
        return moe_mlp(spec)
    return mlp(spec.dim, spec.dense_ffn_hidden_dim, spec.activation, hidden_key=spec.dense_ffn_key)


def _self_attention(spec: TextSpec) -> Node:
    return attention(spec.dim, spec.n_heads, spec.n_kv_heads, spec.head_dim, spec.qk_norm)


def _transformer_block(spec: TextSpec, layer_index: int) -> Node:
    return Node("TransformerBlock", children={
        "attention_norm": norm(spec.norm_type, spec.dim),
        "attention": _self_attention(spec),
        "mlp_norm": norm(spec.norm_type, spec.dim),
        "mlp": _ffn(spec, layer_index),
    })


def _cross_attention_block(spec: TextSpec, n_heads: int, n_kv_heads: int) -> Node:
    return Node("CrossAttentionBlock", children={
        "attn_norm": norm(spec.norm_type, spec.dim),
        "attn": cross_attention(spec.dim, n_heads, n_kv_heads),
        "mlp_norm": norm(spec.norm_type, spec.dim),
        # Always a dense FFN of the text width, even in MoE models.
        "mlp": mlp(spec.dim, spec.dense_ffn_hidden_dim, spec.activation,
                   hidden_key=spec.dense_ffn_key),
    })


def _mot_attention(spec: TextSpec, modalities: tuple[str, ...]) -> Node:
    """Per-modality Q/K/V/O (and QK norms), one shared attention over all tokens."""
    dim, head_dim, key = spec.dim, spec.head_dim, "vlm.mot_modalities"
    q_width, kv_width = spec.n_heads * head_dim, spec.n_kv_heads * head_dim
    children = {"q_proj": keyed(modalities, lambda _: linear(dim, q_width), key),
                "k_proj": keyed(modalities, lambda _: linear(dim, kv_width), key),
                "v_proj": keyed(modalities, lambda _: linear(dim, kv_width), key),
                "o_proj": keyed(modalities, lambda _: linear(q_width, dim), key)}
    if spec.qk_norm:
        children["q_norm"] = keyed(modalities, lambda _: rms_norm(head_dim), key)
        children["k_norm"] = keyed(modalities, lambda _: rms_norm(head_dim), key)
    return Node("MoTAttention", children=children)


def _mot_block(spec: TextSpec, modalities: tuple[str, ...], layer_index: int) -> Node:
    key = "vlm.mot_modalities"
    attn_norm = keyed(modalities, lambda _: norm(spec.norm_type, spec.dim), key)
    attn = _mot_attention(spec, modalities)
    mlp_norm = keyed(modalities, lambda _: norm(spec.norm_type, spec.dim), key)
    ffn = _ffn(spec, layer_index)  # identical for every modality: describe it once
    return Node("MoTBlock", children={"attn_norm": attn_norm, "attn": attn, "mlp_norm": mlp_norm,
                                      "mlp": keyed(modalities, lambda _: ffn, key)})


def _moma_block(spec: TextSpec, vlm: VLMSpec) -> Node:
    return Node("MoMaBlock", children={
        "attention_norm": norm(spec.norm_type, spec.dim),
        "attention": _self_attention(spec),
        "mlp_norm": norm(spec.norm_type, spec.dim),
        "mlp": moma_ffn(spec, vlm),
    })


def _block(spec: TextSpec, vlm: VLMSpec | None, layer_index: int) -> Node:
    if vlm is not None and vlm.arch == "mot":
        return _mot_block(spec, vlm.mot_modalities, layer_index)
    if vlm is not None and vlm.arch == "moma":
        return _moma_block(spec, vlm)
    return _transformer_block(spec, layer_index)


def _layers(spec: TextSpec, vlm: VLMSpec | None) -> Node:
    check_layers(spec.n_layers)
    # A layer's module depends on its index only through "is it a MoE layer", so
    # each of the (at most two) kinds is described once, at its first index:
    # construction errors surface in the order the reference meets them.
    kinds: dict[bool, Node] = {}
    children = {}
    for index in range(spec.n_layers):
        moe = spec.layer_is_moe(index)
        block = kinds.get(moe)
        if block is None:
            block = kinds[moe] = _block(spec, vlm, index)
        children[str(index)] = block
    return Node(MODULE_DICT, children=children)


def transformer(spec: TextSpec, vlm: VLMSpec | None = None) -> Node:
    arch = vlm.arch if vlm is not None else None
    if vlm is not None and arch == "mot":
        check_mot_heads(spec, vlm)
    children = {"token_embedding": Node("TokenEmbedding",
                                        children={"embedding": embedding(spec.vocab_size, spec.dim)}),
                "layers": _layers(spec, vlm)}

    # Registered (possibly empty) on every arch so the attribute order matches.
    cross: dict[str, Node] = {}
    if vlm is not None and arch == "cross_attention":
        heads, kv_heads = vlm.cross_attention_heads(spec.n_heads)
        blocks = spec.n_layers // vlm.cross_attention_every_n_layers
        if blocks:
            block = _cross_attention_block(spec, heads, kv_heads)
            cross = {str(i): block for i in range(blocks)}
    children["cross_attention_layers"] = Node(MODULE_DICT, children=cross)

    # MoT normalizes per modality; the shared norm never sees a gradient, so the
    # reference freezes it at construction.
    children["norm"] = norm(spec.norm_type, spec.dim, frozen=arch == "mot")
    mot_norms = Node(MODULE_DICT)
    if vlm is not None and arch == "mot":
        mot_norms = keyed(vlm.mot_modalities, lambda _: norm(spec.norm_type, spec.dim),
                          "vlm.mot_modalities")
    children["mot_norms"] = mot_norms

    head = linear(spec.dim, spec.vocab_size)
    if spec.head_is_tied:
        # One Parameter: named_parameters() reports it once, as the embedding.
        # (Linear -> OutputHead -> Transformer: the embedding is two levels up.)
        head = Node("Linear", {"weight": Tie(2, "token_embedding.embedding.weight")})
    children["output_head"] = Node("OutputHead", children={"proj": head})
    return Node("Transformer", children=children)


def check_mot_heads(spec: TextSpec, vlm: VLMSpec) -> None:
    image_heads, image_kv_heads = vlm.mot_image_heads(spec.n_heads, spec.n_kv_heads)
    if image_heads != spec.n_heads:
        raise ModelBuildError(
            f"MoT needs equal head counts across modalities: vlm.mot_image_n_heads resolves to "
            f"{show(image_heads)} but model.n_heads is {show(spec.n_heads)}", "vlm.mot_image_n_heads",
            f"set vlm.mot_image_n_heads = 0 (inherit) or {show(spec.n_heads)}")
    if image_kv_heads != spec.n_kv_heads:
        raise ModelBuildError(
            f"MoT needs equal KV head counts across modalities: vlm.mot_image_n_kv_heads "
            f"resolves to {show(image_kv_heads)} but model.n_kv_heads is {show(spec.n_kv_heads)}",
            "vlm.mot_image_n_kv_heads",
            f"set vlm.mot_image_n_kv_heads = 0 (inherit) or {show(spec.n_kv_heads)}")


def check_rope_head_dim(spec: TextSpec) -> None:
    """RoPE tables need an even head width; the reference asserts it while building."""
    if spec.head_dim % 2:
        raise ModelBuildError(
            f"head_dim = model.dim / model.n_heads = {show(spec.dim)} / {show(spec.n_heads)} = "
            f"{show(spec.head_dim)} is odd; rotary embeddings need an even head_dim",
            "model.n_heads", "pick n_heads so that dim / n_heads is even")


# -- vision encoder and adapter --------------------------------------------------------


def random_encoder(feature_dim: int, num_tokens: int) -> tuple[Node, int, int]:
    """The reference's deterministic stub: no parameters; 0 dims take its defaults."""
    return (Node("RandomVisionEncoder"), feature_dim or RANDOM_ENCODER_FEATURE_DIM,
            num_tokens or RANDOM_ENCODER_TOKENS)


def adapter(spec: AdapterSpec, in_dim: int, out_dim: int) -> Node:
    if in_dim <= 0:
        raise ModelBuildError(
            f"the adapter's input width (the vision feature dim) resolves to {show(in_dim)}",
            "vision_encoder.feature_dim",
            "set vision_encoder.feature_dim to the encoder's hidden size")
    if spec.type == "mlp_2layer":
        width = spec.hidden_dim if spec.hidden_dim > 0 else out_dim
        return Node("MLP2LayerAdapter", children={"proj1": linear(in_dim, width, bias=True),
                                                  "proj2": linear(width, out_dim, bias=True)})
    if spec.type in ("linear", "avgpool"):
        # avgpool window-averages the patch grid, then projects the same way.
        kind = "LinearAdapter" if spec.type == "linear" else "AvgPoolAdapter"
        return Node(kind, children={"proj": linear(in_dim, out_dim, bias=True)})
    if spec.type == "attentional_pool":
        if in_dim % spec.pool_heads:
            raise ModelBuildError(
                f"attentional_pool splits the vision feature dim ({show(in_dim)}) over "
                f"adapter.pool_heads ({show(spec.pool_heads)}), which does not divide it",
                "adapter.pool_heads", f"pick pool_heads that divides {show(in_dim)}")
        return Node("AttentionalPoolAdapter", children={
            "q_proj": linear(in_dim, in_dim, bias=True),
            "k_proj": linear(in_dim, in_dim, bias=True),
            "v_proj": linear(in_dim, in_dim, bias=True),
            "o_proj": linear(in_dim, in_dim, bias=True),
            "out_proj": linear(in_dim, out_dim, bias=True),
        })
    raise ModelBuildError(f"unknown adapter.type {spec.type!r}", "adapter.type",
                          "use mlp_2layer, linear, avgpool or attentional_pool")


def adapter_output_tokens(spec: AdapterSpec, encoder_tokens: int) -> int:
    """Tokens per image after the adapter: projections keep them, pooling shrinks them."""
    if not spec.is_pooling:
        return encoder_tokens
    return pooled_token_count(encoder_tokens, spec.pool_window,
                              require_divisible=spec.type in DIVISIBLE_ONLY_POOLING_ADAPTERS)
