"""The text backbone (and its VLM variants) as the reference's Transformer lays it out.

Layer placement rules mirrored here:
- layer ``i`` uses a MoE FFN iff ``num_experts > 0`` and ``(i + 1) % moe_frequency == 0``;
- cross-attention block ``k`` runs after text layer ``(k + 1) * every - 1``, and there
  are ``n_layers // every`` of them;
- MoT keeps the shared final ``norm`` (frozen at construction, unused) next to its
  per-modality ``mot_norms``; MoMa replaces every FFN with per-modality expert groups.
"""

from __future__ import annotations

from torch import nn

from kforge_cli.model.knobs import TextSpec, VLMSpec
from kforge_cli.model.layers import (
    Attention,
    CrossAttention,
    Embedding,
    Linear,
    MoEMLP,
    MoMaFFN,
    RMSNorm,
    keyed_modules,
    make_mlp,
    make_norm,
)
from kforge_cli.model.manifest import ModelBuildError


def _ffn(spec: TextSpec, layer_index: int) -> nn.Module:
    if spec.layer_is_moe(layer_index):
        return MoEMLP(spec.dim, spec.expert_ffn_hidden_dim, spec.num_experts, spec.activation,
                      spec.moe_router, spec.moe_shared_experts, spec.moe_packed_experts)
    return make_mlp(spec.dim, spec.dense_ffn_hidden_dim, spec.activation,
                    hidden_key=spec.dense_ffn_key)


def _self_attention(spec: TextSpec) -> Attention:
    return Attention(spec.dim, spec.n_heads, spec.n_kv_heads, spec.head_dim, spec.qk_norm)


class TransformerBlock(nn.Module):
    def __init__(self, spec: TextSpec, layer_index: int) -> None:
        super().__init__()
        self.attention_norm = make_norm(spec.norm_type, spec.dim)
        self.attention = _self_attention(spec)
        self.mlp_norm = make_norm(spec.norm_type, spec.dim)
        self.mlp = _ffn(spec, layer_index)


class CrossAttentionBlock(nn.Module):
    def __init__(self, spec: TextSpec, n_heads: int, n_kv_heads: int) -> None:
        super().__init__()
        self.attn_norm = make_norm(spec.norm_type, spec.dim)
        self.attn = CrossAttention(spec.dim, n_heads, n_kv_heads)
        self.mlp_norm = make_norm(spec.norm_type, spec.dim)
        # Always a dense FFN of the text width, even in MoE models.
        self.mlp = make_mlp(spec.dim, spec.dense_ffn_hidden_dim, spec.activation,
                            hidden_key=spec.dense_ffn_key)


class MoTAttention(nn.Module):
    """Per-modality Q/K/V/O (and QK norms), one shared attention over all tokens."""

    def __init__(self, spec: TextSpec, modalities: tuple[str, ...]) -> None:
        super().__init__()
        dim, head_dim = spec.dim, spec.head_dim
        key = "vlm.mot_modalities"
        q_width, kv_width = spec.n_heads * head_dim, spec.n_kv_heads * head_dim
        self.q_proj = keyed_modules(modalities, lambda _: Linear(dim, q_width), key)
        self.k_proj = keyed_modules(modalities, lambda _: Linear(dim, kv_width), key)
        self.v_proj = keyed_modules(modalities, lambda _: Linear(dim, kv_width), key)
        self.o_proj = keyed_modules(modalities, lambda _: Linear(q_width, dim), key)
        if spec.qk_norm:
            self.q_norm = keyed_modules(modalities, lambda _: RMSNorm(head_dim), key)
            self.k_norm = keyed_modules(modalities, lambda _: RMSNorm(head_dim), key)


class MoTBlock(nn.Module):
    def __init__(self, spec: TextSpec, modalities: tuple[str, ...], layer_index: int) -> None:
        super().__init__()
        key = "vlm.mot_modalities"
        def norm(_: str) -> nn.Module:
            return make_norm(spec.norm_type, spec.dim)

        self.attn_norm = keyed_modules(modalities, norm, key)
        self.attn = MoTAttention(spec, modalities)
        self.mlp_norm = keyed_modules(modalities, norm, key)
        self.mlp = keyed_modules(modalities, lambda _: _ffn(spec, layer_index), key)


class MoMaBlock(nn.Module):
    def __init__(self, spec: TextSpec, vlm: VLMSpec) -> None:
        super().__init__()
        self.attention_norm = make_norm(spec.norm_type, spec.dim)
        self.attention = _self_attention(spec)
        self.mlp_norm = make_norm(spec.norm_type, spec.dim)
        # MoMa ignores model.num_experts / moe_frequency / moe_router: every layer
        # gets expert groups sized by vlm.moma_experts_per_modality.
        self.mlp = MoMaFFN(spec.dim, spec.expert_ffn_hidden_dim, spec.activation,
                           vlm.moma_experts_per_modality, vlm.moma_modalities)


class TokenEmbedding(nn.Module):
    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.embedding = Embedding(vocab_size, dim)


class OutputHead(nn.Module):
    def __init__(self, dim: int, vocab_size: int) -> None:
        super().__init__()
        self.proj = Linear(dim, vocab_size)


def _block(spec: TextSpec, vlm: VLMSpec | None, layer_index: int) -> nn.Module:
    if vlm is not None and vlm.arch == "mot":
        return MoTBlock(spec, vlm.mot_modalities, layer_index)
    if vlm is not None and vlm.arch == "moma":
        return MoMaBlock(spec, vlm)
    return TransformerBlock(spec, layer_index)


class Transformer(nn.Module):
    def __init__(self, spec: TextSpec, vlm: VLMSpec | None = None) -> None:
        super().__init__()
        arch = vlm.arch if vlm is not None else None
        if vlm is not None and arch == "mot":
            _check_mot_heads(spec, vlm)

        self.token_embedding = TokenEmbedding(spec.vocab_size, spec.dim)
        self.layers = nn.ModuleDict(
            {str(i): _block(spec, vlm, i) for i in range(spec.n_layers)})

        # Registered (possibly empty) on every arch so the attribute order matches.
        self.cross_attention_layers = nn.ModuleDict()
        if vlm is not None and arch == "cross_attention":
            heads, kv_heads = vlm.cross_attention_heads(spec.n_heads)
            for block in range(spec.n_layers // vlm.cross_attention_every_n_layers):
                self.cross_attention_layers[str(block)] = CrossAttentionBlock(
                    spec, heads, kv_heads)

        self.norm = make_norm(spec.norm_type, spec.dim)
        self.mot_norms = nn.ModuleDict()
        if vlm is not None and arch == "mot":
            self.mot_norms = keyed_modules(vlm.mot_modalities,
                                           lambda _: make_norm(spec.norm_type, spec.dim),
                                           "vlm.mot_modalities")
            # MoT normalizes per modality; the shared norm never sees a gradient,
            # so the reference freezes it at construction.
            for parameter in self.norm.parameters():
                parameter.requires_grad_(False)

        self.output_head = OutputHead(spec.dim, spec.vocab_size)
        if spec.tie_embeddings:
            # Same Parameter object: named_parameters() reports it once, as the embedding.
            self.output_head.proj.weight = self.token_embedding.embedding.weight


def _check_mot_heads(spec: TextSpec, vlm: VLMSpec) -> None:
    image_heads, image_kv_heads = vlm.mot_image_heads(spec.n_heads, spec.n_kv_heads)
    if image_heads != spec.n_heads:
        raise ModelBuildError(
            f"MoT needs equal head counts across modalities: vlm.mot_image_n_heads resolves to "
            f"{image_heads} but model.n_heads is {spec.n_heads}", "vlm.mot_image_n_heads",
            f"set vlm.mot_image_n_heads = 0 (inherit) or {spec.n_heads}")
    if image_kv_heads != spec.n_kv_heads:
        raise ModelBuildError(
            f"MoT needs equal KV head counts across modalities: vlm.mot_image_n_kv_heads "
            f"resolves to {image_kv_heads} but model.n_kv_heads is {spec.n_kv_heads}",
            "vlm.mot_image_n_kv_heads",
            f"set vlm.mot_image_n_kv_heads = 0 (inherit) or {spec.n_kv_heads}")


def check_rope_head_dim(spec: TextSpec) -> None:
    """RoPE tables need an even head width; the reference asserts it while building."""
    if spec.head_dim % 2:
        raise ModelBuildError(
            f"head_dim = model.dim / model.n_heads = {spec.dim} / {spec.n_heads} = "
            f"{spec.head_dim} is odd; rotary embeddings need an even head_dim",
            "model.n_heads", "pick n_heads so that dim / n_heads is even")
