"""Bytes each block saves for backward, per token, and what activation checkpointing wraps.

Derived op by op from the reference's forward (KempnerForge 5666d0d) and
checked by measurement. Per token of the residual stream, in bytes, with
``A`` the activation element size (2 for bf16/fp16/fp8 runs, 4 for fp32),
``d`` model.dim, ``q = n_heads*head_dim``, ``f`` the FFN width, ``H`` the
query heads:

* RMSNorm (kempnerforge/model/norm.py:16-21): ``x.float()`` and the fp32
  normalized tensor are both saved (by pow/mul and by the weight mul), plus a
  fp32 rsqrt per token: ``8d + 4`` whatever ``A`` is. nn.LayerNorm saves its
  input and fp32 mean/rstd: ``A*d + 8``.
* Attention (model/attention.py:150-246): q_proj/k_proj/v_proj save their
  shared input ``A*d``; K/V are expanded to all query heads by
  repeat_interleave *before* SDPA (attention.py:172-175), so SDPA saves q, the
  expanded k and v, and its output at ``A*q`` each, plus a fp32 logsumexp per
  head (``4H``). On CUDA flash attention returns its output as a transposed
  view of a (B,S,H,D) buffer, so ``out.transpose(1,2).contiguous()`` is a
  no-op and o_proj saves that same buffer (on CPU the copy is real: the
  measurement below sees one more ``A*q``). qk_norm adds an RMSNorm over
  head_dim on q and k: ``8q + 4H`` and ``8*kv + 4*n_kv``.
* SwiGLU MLP (model/mlp.py:20-21): gate, silu(gate), up and their product are
  saved: ``4*A*f``; a plain MLP (gelu/relu) saves up and act(up): ``2*A*f``;
  mlp_norm's output ``A*d`` is saved by the first projection.
* Dense TransformerBlock total (CUDA): ``2*norm + 2*A*d + 4*A*q + 4H + mlp``
  = ``20d + 8q + 8f + 4H + 8`` bytes for bf16 SwiGLU with RMSNorm.
* MoTBlock (model/mot.py:310-326): per token the same as the dense block.
* CrossAttentionBlock (model/cross_attention.py): ``2*norm + A*d + 2*A*q + 4H
  + mlp`` per text token plus ``2*A*q`` (expanded K and V) per image token.

Measurement (the method; scratch script, never part of kforge): one block of
the reference built in bf16 on CPU (torch 2.13.0+cpu), its forward run under
``torch.autograd.graph.saved_tensors_hooks``, summing the bytes of every
distinct storage packed for backward (parameters and block inputs excluded).
Shapes (dim, heads, kv_heads, ffn, batch, seq) = (256,4,2,512,2,64),
(512,8,8,768,1,128), (384,6,2,1024,2,32). Results: dense SwiGLU blocks saved
``20d + 10q + 8f + 4H + 8`` bytes per token exactly (CPU's extra ``2q`` is the
real ``.contiguous()`` copy), gelu blocks ``20d + 10q + 4f + 4H + 8``, MoT
blocks the same as dense, and cross-attention blocks ``18d + 6q + 8f + 4H + 8``
per text token plus ``4q`` per image token ((256,4,2,512,2,64,16 image tokens)
and (512,8,8,768,1,128,48)). ``MEASURED_CPU`` keeps those coefficients; the
unit tests hold the derivation above to them.
"""

from __future__ import annotations

from dataclasses import dataclass

from kforge_cli.records import record

# (d, q, f, H, constant) coefficients of the per-token bytes the measurement
# above found for bf16 blocks with RMSNorm on CPU (one more ``2q`` than CUDA).
MEASURED_CPU = {
    "dense_swiglu": (20, 10, 8, 4, 8),
    "dense_gelu": (20, 10, 4, 4, 8),
    "mot_swiglu": (20, 10, 8, 4, 8),
    "cross_attention_text": (18, 6, 8, 4, 8),
}
MEASURED_CPU_CROSS_ATTENTION_IMAGE_Q = 4  # bytes per image token per unit of q
# What CUDA flash attention saves less than the CPU kernel: the o_proj input is
# the SDPA output buffer itself (see module docstring).
CPU_CONTIGUOUS_COPY_Q = 2


@record(frozen=True)
class BlockShape:
    """What sets a block's activation size."""

    dim: int
    q_dim: int  # n_heads * head_dim
    kv_dim: int  # n_kv_heads * head_dim
    n_heads: int
    n_kv_heads: int
    ffn: int
    act_bytes: int  # A
    norm_type: str = "rmsnorm"
    swiglu: bool = True
    qk_norm: bool = False


def norm_bytes(shape: BlockShape) -> int:
    if shape.norm_type == "layernorm":
        return shape.act_bytes * shape.dim + 8
    return 8 * shape.dim + 4


def mlp_bytes(shape: BlockShape, ffn: int | None = None) -> int:
    width = shape.ffn if ffn is None else ffn
    return (4 if shape.swiglu else 2) * shape.act_bytes * width


def attention_bytes(shape: BlockShape, tp: int = 1) -> int:
    """Saved inside Attention (q, expanded k and v, output, logsumexp [, qk_norm]) per token, per TP rank."""
    a = shape.act_bytes
    saved = 4 * a * shape.q_dim + 4 * shape.n_heads
    if shape.qk_norm:
        saved += 8 * shape.q_dim + 4 * shape.n_heads + 8 * shape.kv_dim + 4 * shape.n_kv_heads
    return saved // tp


@dataclass(frozen=True, slots=True)  # many instances: the generated __init__ is faster
class BlockActivations:
    """Per-token bytes of one block on one rank, split by where TP leaves them."""

    norms: int  # over the tokens the norm sees (sequence-sharded under SP)
    gathered_inputs: int  # projection inputs: full sequence on every TP rank
    attention: int  # inside Attention, per TP rank
    mlp: int  # inside the MLP, per TP rank

    def per_token(self, sp_tp: int) -> float:
        """Average bytes per residual token when norms see 1/sp_tp of the sequence."""
        return self.norms / sp_tp + self.gathered_inputs + self.attention + self.mlp


def dense_block(shape: BlockShape, tp: int = 1) -> BlockActivations:
    """A TransformerBlock (also a MoTBlock per token): no activation checkpointing."""
    return BlockActivations(norms=2 * norm_bytes(shape), gathered_inputs=2 * shape.act_bytes * shape.dim,
                            attention=attention_bytes(shape, tp), mlp=mlp_bytes(shape) // tp)


def selective_block(shape: BlockShape, tp: int = 1) -> BlockActivations:
    """A TransformerBlock whose Attention is checkpointed: the attention input is
    kept (sequence-sharded under SP, like the norm output it is), its insides dropped."""
    return BlockActivations(norms=2 * norm_bytes(shape) + shape.act_bytes * shape.dim,
                            gathered_inputs=shape.act_bytes * shape.dim, attention=0,
                            mlp=mlp_bytes(shape) // tp)


def cross_attention_block(shape: BlockShape) -> BlockActivations:
    """A CrossAttentionBlock per text token (never TP-sharded, never checkpointed)."""
    a = shape.act_bytes
    return BlockActivations(norms=2 * norm_bytes(shape), gathered_inputs=a * shape.dim,
                            attention=2 * a * shape.q_dim + 4 * shape.n_heads, mlp=mlp_bytes(shape))


def cross_attention_image_bytes(shape: BlockShape) -> int:
    """Per image token per CrossAttentionBlock: the expanded K and V SDPA saves."""
    return 2 * shape.act_bytes * shape.q_dim


def moe_block_mlp(shape: BlockShape, expert_ffn: int, top_k: int, shared: int, num_experts: int) -> int:
    """Per-token bytes an MoE MLP saves (rough: routed copies through SwiGLU experts).

    Router probabilities in fp32, top_k gathered copies of the token, each
    expert's SwiGLU intermediates and the weighted outputs; shared experts as
    dense MLPs. Low confidence: dispatch buffers and grouped-GEMM padding
    (kempnerforge/model/moe.py) are not counted.
    """
    a = shape.act_bytes
    routed = top_k * (2 * a * shape.dim + (4 if shape.swiglu else 2) * a * expert_ffn)
    return 8 * num_experts + routed + shared * mlp_bytes(shape)


def masked_attention_bias_bytes(seq_len: int, act_bytes: int) -> int:
    """Per sequence per layer: the additive bias SDPA's memory-efficient kernel keeps.

    An explicit attn_mask (packed documents' doc_ids, video key padding) is not a
    flash-attention shape (model/attention.py:189-229), so SDPA runs the
    memory-efficient kernel, which converts the bool mask into a float bias of
    the query dtype, pads its last dim to a multiple of 16 and saves it for
    backward: (S, S_pad16) elements per sequence, broadcast over heads.
    """
    padded = -(-seq_len // 16) * 16
    return seq_len * padded * act_bytes
