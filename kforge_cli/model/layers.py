"""Parameter-only stand-ins for the reference's building blocks, on the meta device.

Each class registers its parameters and children under the same attribute
names and in the same order as the reference module it stands for, so
``named_parameters()`` yields identical fully-qualified names in identical
order. None of them has a forward, and none runs an initializer: parameters
are bare ``torch.empty`` tensors on ``meta``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from kforge_cli.model.manifest import ModelBuildError

META = torch.device("meta")


def meta_parameter(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(shape, device=META))


def keyed_modules(names: Iterable[str], make: Callable[[str], nn.Module],
                  key: str) -> nn.ModuleDict:
    """A ModuleDict keyed by config-supplied names (modalities).

    torch rejects some names (containing '.', empty, clashing with ModuleDict
    attributes) exactly as it does in the reference, so report those as build
    errors of ``key``.
    """
    modules = nn.ModuleDict()
    for name in names:
        try:
            modules[name] = make(name)
        except KeyError as exc:
            raise ModelBuildError(f"{key}: {name!r} cannot name a module ({exc.args[0]})", key,
                                  "use plain identifiers such as \"image\", \"text\", \"video\"") from None
    return modules


class Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.weight = meta_parameter(out_features, in_features)
        if bias:
            self.bias = meta_parameter(out_features)


class Embedding(nn.Module):
    def __init__(self, num_embeddings: int, dim: int) -> None:
        super().__init__()
        self.weight = meta_parameter(num_embeddings, dim)


class RMSNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = meta_parameter(dim)


class LayerNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = meta_parameter(dim)
        self.bias = meta_parameter(dim)


def make_norm(norm_type: str, dim: int) -> nn.Module:
    if norm_type == "rmsnorm":
        return RMSNorm(dim)
    if norm_type == "layernorm":
        return LayerNorm(dim)
    raise ModelBuildError(f"unknown norm type {norm_type!r}", "model.norm_type",
                          "use \"rmsnorm\" or \"layernorm\"")


class SwiGLUMLP(nn.Module):
    """activation = "silu": gated, three projections."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.gate_proj = Linear(dim, hidden_dim)
        self.up_proj = Linear(dim, hidden_dim)
        self.down_proj = Linear(hidden_dim, dim)


class PlainMLP(nn.Module):
    """activation = "gelu" / "relu": two projections."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.up_proj = Linear(dim, hidden_dim)
        self.down_proj = Linear(hidden_dim, dim)


def make_mlp(dim: int, hidden_dim: int, activation: str, *, hidden_key: str) -> nn.Module:
    if hidden_dim < 0:
        # torch refuses a negative Linear width while the reference constructs it.
        raise ModelBuildError(f"the FFN hidden width resolves to {hidden_dim}, which is negative",
                              hidden_key, "use a positive model.ffn_hidden_dim, or leave it unset "
                              "and keep model.ffn_dim_multiplier positive")
    if activation == "silu":
        return SwiGLUMLP(dim, hidden_dim)
    if activation in ("gelu", "relu"):
        return PlainMLP(dim, hidden_dim)
    raise ModelBuildError(f"unknown activation {activation!r}", "model.activation",
                          "use \"silu\", \"gelu\" or \"relu\"")


class Attention(nn.Module):
    """Self-attention with grouped K/V heads and optional per-head QK RMSNorm."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, head_dim: int,
                 qk_norm: bool = False) -> None:
        super().__init__()
        self.q_proj = Linear(dim, n_heads * head_dim)
        self.k_proj = Linear(dim, n_kv_heads * head_dim)
        self.v_proj = Linear(dim, n_kv_heads * head_dim)
        self.o_proj = Linear(n_heads * head_dim, dim)
        if qk_norm:
            # Always RMSNorm over head_dim, whatever model.norm_type says.
            self.q_norm = RMSNorm(head_dim)
            self.k_norm = RMSNorm(head_dim)


class CrossAttention(nn.Module):
    """Text queries over image keys/values; head width follows its own head count."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int) -> None:
        super().__init__()
        head_dim = dim // n_heads
        self.q_proj = Linear(dim, n_heads * head_dim)
        self.k_proj = Linear(dim, n_kv_heads * head_dim)
        self.v_proj = Linear(dim, n_kv_heads * head_dim)
        self.o_proj = Linear(n_heads * head_dim, dim)


class SoftmaxTopKRouter(nn.Module):
    def __init__(self, dim: int, num_experts: int) -> None:
        super().__init__()
        self.gate = Linear(dim, num_experts)


class SigmoidTopKRouter(nn.Module):
    def __init__(self, dim: int, num_experts: int) -> None:
        super().__init__()
        self.gate = Linear(dim, num_experts)
        self.expert_bias = meta_parameter(num_experts)
        # Utilization EMA: a persistent buffer, so it is a checkpoint key.
        self.register_buffer("expert_ema", torch.empty(num_experts, device=META))


ROUTERS: dict[str, type[nn.Module]] = {
    "softmax_topk": SoftmaxTopKRouter,
    "sigmoid_topk": SigmoidTopKRouter,
}


class MoEMLP(nn.Module):
    """Token-choice MoE: router, optional single shared expert, routed experts.

    Packed experts replace the per-expert modules with one (E, in, out) tensor
    per projection, held directly on this module.
    """

    def __init__(self, dim: int, hidden_dim: int, num_experts: int, activation: str,
                 router_type: str, shared_experts: int, packed: bool) -> None:
        super().__init__()
        router_cls = ROUTERS.get(router_type)
        if router_cls is None:
            raise ModelBuildError(f"unknown MoE router {router_type!r}", "model.moe_router",
                                  "use \"softmax_topk\" or \"sigmoid_topk\"")
        self.router = router_cls(dim, num_experts)
        if shared_experts > 0:
            # Any positive count yields one shared expert of the expert width.
            self.shared_expert = make_mlp(dim, hidden_dim, activation,
                                          hidden_key="model.moe_expert_ffn_multiplier")
        if packed:
            self.up_w = meta_parameter(num_experts, dim, hidden_dim)
            self.down_w = meta_parameter(num_experts, hidden_dim, dim)
            if activation == "silu":
                self.gate_w = meta_parameter(num_experts, dim, hidden_dim)
        else:
            self.experts = nn.ModuleList(
                make_mlp(dim, hidden_dim, activation, hidden_key="model.moe_expert_ffn_multiplier")
                for _ in range(num_experts)
            )


class ExpertChoiceRouter(nn.Module):
    def __init__(self, dim: int, num_experts: int) -> None:
        super().__init__()
        self.gate = Linear(dim, num_experts)


class ExpertChoiceMoE(nn.Module):
    """One MoMa modality group: expert-choice router plus its experts."""

    def __init__(self, dim: int, hidden_dim: int, num_experts: int, activation: str) -> None:
        super().__init__()
        self.router = ExpertChoiceRouter(dim, num_experts)
        self.experts = nn.ModuleList(
            make_mlp(dim, hidden_dim, activation, hidden_key="model.moe_expert_ffn_multiplier")
            for _ in range(num_experts)
        )


class MoMaFFN(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, activation: str,
                 experts_per_modality: dict[str, int], modalities: tuple[str, ...]) -> None:
        super().__init__()
        self.experts = keyed_modules(
            modalities,
            lambda m: ExpertChoiceMoE(dim, hidden_dim, experts_per_modality[m], activation),
            "vlm.moma_modalities",
        )
