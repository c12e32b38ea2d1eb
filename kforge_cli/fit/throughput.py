"""FLOPs per token by the trainer's own formula, and a tokens/s / MFU range.

``flops_per_token`` is kempnerforge/metrics/mfu.py:90-147 at 5666d0d: the
PaLM ``6*P + 12*L*D*S`` with P the matmul parameters of the blocks plus the
output head (embedding excluded; GQA's K/V counted at their real width; the
attention term not discounted for GQA or causality); MoE counts top_k routed
experts plus shared ones on MoE layers. S is ``train.seq_len`` (the trainer
passes it, metrics/tracker.py:60, 120-126). VLM arches use the same formula
(the MoT config notes it undercounts MoT).

The MFU range is not derived (nothing in the code predicts achieved
utilization); it is an outside prior per layout class, from torchtitan's
published FSDP2 runs (pytorch/torchtitan docs/performance.md):

* FSDP only: 33-58 % (Llama 3.1 8B 1D FSDP on H100: 33-39 %, with and
  without torch.compile; Llama 3 8B 1D FSDP on A100: 56-58 %).
* TP involved: 23-29 % (Llama 3.1 405B FSDP+TP on H100, full AC: 29.0 %;
  with Float8 23.5 %).

Pipeline parallelism multiplies by the schedule's busy fraction
``n_mb / (n_mb + pp - 1)`` (the idle slots of a 1F1B/GPipe pipeline with n_mb
micro-batches over pp stages). tokens/s follows from MFU with the trainer's
own definition (mfu.py:150-180): tokens/s = MFU * peak * GPUs / flops_per_token.
"""

from __future__ import annotations

from typing import Any

from kforge_cli.fit.layout import Layout
from kforge_cli.records import record

MFU_PRIOR = {
    "fsdp": (33.0, 58.0),
    "tp": (23.0, 29.0),
}
MFU_PRIOR_SOURCE = "pytorch/torchtitan docs/performance.md (FSDP2 and FSDP2+TP Llama 3 runs)"


def _attn_params(model: Any) -> int:
    dim = int(model.dim)
    n_heads = int(model.n_heads)
    head_dim = dim // n_heads
    n_kv = int(model.n_kv_heads if model.n_kv_heads is not None else n_heads)
    return dim * n_heads * head_dim + 2 * dim * n_kv * head_dim + n_heads * head_dim * dim


def flops_per_token(model: Any, seq_len: int) -> int:
    """``estimate_model_flops_per_token`` of the trainer (metrics/mfu.py:90-147)."""
    attn = _attn_params(model)
    mlp = 3 * int(model.dim) * int(model.computed_ffn_hidden_dim)
    n_layers = int(model.n_layers)
    output = int(model.vocab_size) * int(model.dim)
    if int(getattr(model, "num_experts", 0) or 0) > 0:
        frequency = int(model.moe_frequency)
        n_moe = sum(1 for i in range(n_layers) if (i + 1) % frequency == 0)
        dense = (n_layers - n_moe) * (attn + mlp)
        shared = int(model.moe_shared_experts) * mlp
        active = dense + n_moe * (attn + int(model.moe_top_k) * mlp + shared) + output
    else:
        active = n_layers * (attn + mlp) + output
    return 6 * active + 12 * n_layers * int(model.dim) * seq_len


def attention_forward_flops(model: Any, seq_len: int) -> int:
    """Forward FLOPs per token of the Attention modules (what selective AC recomputes)."""
    n_layers = int(model.n_layers)
    return n_layers * (2 * _attn_params(model) + 4 * int(model.dim) * seq_len)


@record(frozen=True)
class Throughput:
    flops_per_token: int
    layout_class: str
    mfu_pct: tuple[float, float] | None
    tokens_per_second: tuple[float, float] | None
    basis: str


def layout_class(layout: Layout) -> str:
    return "tp" if layout.tp > 1 else "fsdp"


def pipeline_busy_fraction(layout: Layout, micro_batches: int) -> float:
    if layout.pp <= 1:
        return 1.0
    return micro_batches / (micro_batches + layout.pp - 1)


def estimate_throughput(job: Any, layout: Layout, peak_tflops: float | None) -> Throughput:
    model = job.model
    seq_len = int(job.train.seq_len)
    fpt = flops_per_token(model, seq_len)
    cls = layout_class(layout)
    low, high = MFU_PRIOR[cls]
    busy = pipeline_busy_fraction(layout, int(job.train.grad_accum_steps))
    low, high = low * busy, high * busy
    basis = f"{cls} prior {MFU_PRIOR[cls][0]:g}-{MFU_PRIOR[cls][1]:g}% ({MFU_PRIOR_SOURCE})"
    if busy < 1.0:
        basis += f" x pipeline busy fraction {busy:.2f}"
    if peak_tflops is None:
        return Throughput(fpt, cls, (low, high), None, basis)
    scale = peak_tflops * 1e12 * layout.world_size / fpt / 100.0
    return Throughput(fpt, cls, (low, high), (low * scale, high * scale), basis)


def relative_speed(job: Any, layout: Layout) -> float:
    """Model-FLOPs throughput of a layout relative to the same job without
    recomputation, without TP and without pipeline bubbles (ranks suggestions)."""
    seq_len = int(job.train.seq_len)
    fpt = flops_per_token(job.model, seq_len)
    mode = getattr(job.train, "activation_checkpointing", "none")
    mode = getattr(mode, "value", mode)
    if mode == "full":
        recompute = fpt / 3.0  # one more forward: 2 of the 6 FLOPs per parameter
    elif mode == "selective":
        recompute = float(attention_forward_flops(job.model, seq_len))
    else:
        recompute = 0.0
    speed = fpt / (fpt + recompute)
    cls = layout_class(layout)
    speed *= sum(MFU_PRIOR[cls]) / sum(MFU_PRIOR["fsdp"])
    return speed * pipeline_busy_fraction(layout, int(job.train.grad_accum_steps))
