"""Peak ``torch.cuda.max_memory_allocated()`` per rank, as a sum of named terms.

The trainer logs that counter without ever resetting it
(kempnerforge/metrics/tracker.py:129 -> metrics/memory.py:212-213), so the
figure is the maximum over the whole run: model construction, every
micro-batch's forward/loss/backward and the optimizer step. kforge evaluates
the live tensors at each of those moments and keeps the largest.

Code facts (KempnerForge 5666d0d; torch files are 2.13's, uv.lock pins 2.11):

* Parameters are stored in ``train.param_dtype``: bf16 for "bf16" and "fp8"
  (config/training.py:51-65); every build path casts the model
  (``model.to(dtype=param_dtype)``, distributed/parallel.py:477-478, 580-582;
  scripts/train.py:136, 139). The FSDP2 policy asks for the same param dtype
  and fp32 reduction (parallel.py:83-87), so FSDP2 keeps bf16 shards and
  computes in bf16 (param_dtype equal to the stored dtype is clamped to "no
  cast", torch/distributed/fsdp/_fully_shard/_fsdp_param.py:586-600).
* AdamW state is ``zeros_like(param)``: two bf16 tensors per trainable shard
  (torch.optim.AdamW, built at training/optimizer.py:28-39); Lion keeps one
  (optimizer.py:93-96), schedule-free AdamW three (z, v, x: optimizer.py:203-241),
  Muon one momentum buffer for 2-D matrices and AdamW for the rest
  (optimizer.py:441-443, 487-495). State exists from the first step on.
* Gradient accumulation under FSDP2: ``maybe_no_sync`` turns off gradient sync
  for all but the last micro-batch (training/grad.py:29-39); with sync off,
  FSDP2 keeps each gradient *unsharded* and upcasts it to the fp32 reduce dtype
  (``to_accumulated_grad_if_needed``/``accumulate_unsharded_grad_if_needed``,
  _fsdp_param.py:802-820, called from _fsdp_param_group.py:606-612), so from the
  first micro-batch on every trainable parameter has a full-size fp32 gradient
  on every data-parallel rank (divided only by TP/EP). Sharded gradients
  (bf16) appear only when the last micro-batch reduce-scatters.
* FSDP is applied even with dp_shard=1 when TP or EP is on (the mesh always
  gets a dp_shard dimension then: distributed/setup.py:227-240), so the fp32
  accumulation happens with TP too.
* A pipeline stage stays unsharded through backward: torch's PipelineStage runs
  every micro-batch's backward with ``set_reshard_after_backward(False)`` and
  ``set_requires_gradient_sync(False)`` (torch/distributed/pipelining/stage.py:843-847)
  and reduces once at the end (stage.py:1164-1196). So a stage holds its
  unsharded params and fp32 unsharded gradients at the end of every backward,
  whatever ``grad_accum_steps`` is.
* The last pipeline stage keeps every micro-batch's output (the logits) in
  ``output_chunks`` (stage.py:907-908) and ``step()`` concatenates them before
  returning (schedules.py:795-796); they are cleared only at the next step
  (stage.py:603-611).
* Logits: the output head returns (batch, tokens, vocab) in the activation
  dtype. Under TP the head is ColwiseParallel with ``output_layouts=Replicate``
  (tensor_parallel.py:166-173), i.e. every TP rank all-gathers the full-vocab
  logits (no loss_parallel anywhere); in PP stages and with tied embeddings the
  head is not TP-sharded at all. Cross-entropy on them (training/loss.py:19-30)
  saves the log-softmax output; its backward creates the nll gradient and the
  log-softmax gradient, both full size, while the logits and log-softmax are
  alive: four logits-sized tensors at the start of backward. chunked_cross_entropy
  saves every chunk's log-softmax and its slicing backward materializes
  full-size gradients, so it peaks the same way. z-loss adds a fp32 copy of the
  logits (loss.py:100-102) and its fp32 gradient. The logits stay referenced by
  the training loop (scripts/train.py:819, 767) through backward.
* Sequence parallelism only outside pipeline stages, without tied embeddings
  and without MoE (tensor_parallel.py:122-129): norms then see 1/tp of the
  sequence and the block input kept by checkpointing is sequence-sharded.
* Text-only jobs without TP build the whole model on the GPU in param dtype
  before FSDP shards it (parallel.py:582: ``.to(device=device, dtype=param_dtype)``);
  PP without TP does the same per stage (scripts/train.py:138-139). With TP the
  model is materialized from meta shard by shard in fp32, then cast
  (parallel.py:578-580). A frozen vision encoder is not FSDP-wrapped and stays a
  full replica in its own dtype (parallel.py:350-356, 476).
* FSDP2 does not reshard a root module after forward, so the root unit
  (embedding, final norm, head) stays unsharded from forward through backward;
  block units are gathered one at a time, with the next one prefetched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kforge_cli.config.vlm import built_arch
from kforge_cli.fit import activations as act
from kforge_cli.fit.coverage import ac_mode, block_kinds
from kforge_cli.fit.layout import Layout, stage_layer_ranges
from kforge_cli.records import record

GIB = 2**30

TERMS = ("parameters", "gradients", "optimizer_state", "gradient_accumulation", "activations",
         "logits_and_loss", "fsdp_unsharded", "other")

_OPTIMIZER_STATES = {"adamw": 2.0, "lion": 1.0, "schedule_free_adamw": 3.0}
_LINEAR_TP = re.compile(r"\.attention\.(q|k|v|o)_proj\.weight$")
_MLP_TP = re.compile(r"\.mlp\.(gate|up|down)_proj\.weight$")
_LAYER = re.compile(r"^(?:transformer\.)?layers\.(\d+)\.")
# Routed expert weights: one module per expert, or three packed (E, ...) tensors.
_EXPERT = re.compile(r"\.mlp\.(experts\.|(up|down|gate)_w$)")


class ParamLike(Protocol):
    name: str
    shape: tuple[int, ...]
    numel: int


@record
class Moment:
    """Live bytes per term at one point of a training step."""

    name: str
    terms: dict[str, float] = field(default_factory=dict)

    def add(self, term: str, nbytes: float) -> None:
        if nbytes:
            self.terms[term] = self.terms.get(term, 0.0) + nbytes

    @property
    def total(self) -> float:
        return sum(self.terms.values())


@record
class RankMemory:
    """The peak of one rank: the moment it happens and its terms (GiB)."""

    rank: int
    label: str
    moment: str
    breakdown: dict[str, float]

    @property
    def peak_gib(self) -> float:
        return sum(self.breakdown.values())


@record
class Facts:
    """The job knobs the memory model reads, extracted once."""

    param_bytes: int
    act_bytes: int
    batch: int
    grad_accum: int
    residual_tokens: int  # per sequence, in the residual stream
    logit_tokens: int  # per sequence, into the output head
    image_tokens: int  # visual tokens per sequence (0 for text-only)
    vocab: int
    n_layers: int
    shape: act.BlockShape
    ac: str
    optimizer: str
    fused_optimizer: bool
    z_loss: bool
    is_vlm: bool
    arch: str | None
    is_moe: bool
    moe_frequency: int
    top_k: int
    shared_experts: int
    num_experts: int
    expert_ffn: int
    masked_attention: bool
    pp_schedule: str
    tie_embeddings: bool
    encoder_frozen: bool
    max_seq_len: int
    head_dim: int
    ca_blocks: int = 0
    notes: list[str] = field(default_factory=list)


def _get(obj: Any, name: str, default: Any) -> Any:
    value = getattr(obj, name, default)
    return default if value is None else getattr(value, "value", value)


def read_facts(job: Any) -> Facts:
    model, train = job.model, job.train
    precision = _get(train, "mixed_precision", "bf16")
    pbytes = 4 if precision == "fp32" else 2
    dim = int(model.dim)
    n_heads = int(model.n_heads)
    n_kv = int(_get(model, "n_kv_heads", n_heads))
    head_dim = dim // n_heads
    ffn = int(model.computed_ffn_hidden_dim)
    notes: list[str] = []
    shape = act.BlockShape(dim=dim, q_dim=n_heads * head_dim, kv_dim=n_kv * head_dim, n_heads=n_heads,
                           n_kv_heads=n_kv, ffn=ffn, act_bytes=pbytes,
                           norm_type=str(_get(model, "norm_type", "rmsnorm")),
                           swiglu=_get(model, "activation", "silu") == "silu",
                           qk_norm=bool(_get(model, "qk_norm", False)))
    vlm = getattr(job, "vlm", None)
    arch = built_arch(vlm) if vlm is not None else None  # the model built: the config's class
    seq_len = int(train.seq_len)
    image_tokens = 0
    masked = bool(_get(getattr(job, "data", None), "pack_sequences", False)) and vlm is None
    if vlm is not None:
        # The VLM collator pads the text to vlm.max_text_len (scripts/train.py:343);
        # JD/MoT/MoMa prepend the visual tokens, cross-attention keeps them aside
        # (model/vlm.py strategies); the head sees only the text (output_slice).
        text = int(_get(vlm, "max_text_len", 512))
        budget = job.token_budget() if hasattr(job, "token_budget") else None
        visual = getattr(budget, "visual_tokens", None)
        if visual is None:
            visual = 0
            notes.append("the vision encoder's token count is unknown offline (probed from the HF "
                         "model at build); visual tokens counted as 0")
        image_tokens = int(visual)
        residual = text if arch == "cross_attention" else text + image_tokens
        logit_tokens = text
        # Video batches carry a frame mask: image-prefix arches then always pass an
        # explicit key-padding mask to self-attention (model/attention.py:189-200).
        masked = getattr(job, "video", None) is not None and arch != "cross_attention"
    else:
        residual = logit_tokens = seq_len
    freeze = list(_get(vlm, "freeze", []) or []) if vlm is not None else []
    encoder_specs = [s for s in freeze if str(_get(s, "module", "")).startswith("vision_encoder")]
    encoder_frozen = bool(encoder_specs) and all(bool(_get(s, "frozen", True)) for s in encoder_specs)
    opt = getattr(job, "optimizer", None)
    return Facts(
        param_bytes=pbytes, act_bytes=pbytes, batch=int(train.batch_size),
        grad_accum=int(train.grad_accum_steps), residual_tokens=residual, logit_tokens=logit_tokens,
        image_tokens=image_tokens, vocab=int(model.vocab_size), n_layers=int(model.n_layers), shape=shape,
        ac=ac_mode(job), optimizer=str(_get(opt, "name", "adamw")), fused_optimizer=bool(_get(opt, "fused", True)),
        z_loss=float(_get(train, "z_loss_weight", 0.0)) > 0, is_vlm=vlm is not None, arch=arch,
        is_moe=int(_get(model, "num_experts", 0)) > 0, moe_frequency=max(1, int(_get(model, "moe_frequency", 1))),
        top_k=int(_get(model, "moe_top_k", 2)), shared_experts=int(_get(model, "moe_shared_experts", 0)),
        num_experts=int(_get(model, "num_experts", 0)),
        expert_ffn=int(model.computed_expert_ffn_hidden_dim) if int(_get(model, "num_experts", 0)) > 0 else ffn,
        masked_attention=masked, pp_schedule=str(_get(job.distributed, "pp_schedule", "1f1b")),
        tie_embeddings=bool(_get(model, "tie_embeddings", False)), encoder_frozen=encoder_frozen,
        max_seq_len=int(model.max_seq_len), head_dim=head_dim,
        ca_blocks=block_kinds(job).cross_attention_blocks, notes=notes)


@dataclass(slots=True)  # many instances: the generated __init__ is faster
class _Param:
    name: str
    local: float  # numel on one rank before FSDP sharding (after TP/EP)
    stage: int | None  # pipeline stage (None: every stage / no PP)
    unit: str  # FSDP unit
    trainable: bool
    wrapped: bool  # inside an FSDP unit
    nbytes: int  # element size as stored
    muon_matrix: bool = False


def _muon_eligible(shape: tuple[int, ...]) -> bool:
    # training/optimizer.py:498-509: 2-D+ with aspect ratio <= 10
    if len(shape) < 2:
        return False
    rows = shape[0]
    cols = 1
    for size in shape[1:]:
        cols *= size
    return max(rows, cols) / max(min(rows, cols), 1) <= 10


def classify(params: Sequence[ParamLike], facts: Facts, layout: Layout, frozen: set[str]) -> list[_Param]:
    """Where each parameter lives, how TP/EP/FSDP split it, and whether it trains.

    ``kforge fit`` tries a dozen changes of batch, accumulation and checkpointing on one
    layout: the classification of the same parameters is reused (the result is read-only).
    """
    key = (id(params), id(frozen), layout, facts.is_vlm, facts.n_layers, facts.is_moe, facts.moe_frequency,
           facts.arch, facts.param_bytes, facts.encoder_frozen)
    cached = _CLASSIFIED.get(key)
    if cached is not None and cached[0] is params and cached[1] is frozen:
        return cached[2]
    out = _classify(params, facts, layout, frozen)
    if len(_CLASSIFIED) > 32:
        _CLASSIFIED.clear()
    _CLASSIFIED[key] = (params, frozen, out)  # holding params and frozen keeps their ids from being reused
    return out


_CLASSIFIED: dict[tuple[Any, ...], tuple[Sequence[ParamLike], set[str], list[_Param]]] = {}


def _classify(params: Sequence[ParamLike], facts: Facts, layout: Layout, frozen: set[str]) -> list[_Param]:
    prefix = "transformer." if facts.is_vlm else ""
    ranges = stage_layer_ranges(facts.n_layers, layout.pp) if layout.pp > 1 else None
    moe_layers = {i for i in range(facts.n_layers) if facts.is_moe and (i + 1) % facts.moe_frequency == 0}
    standard_blocks = facts.arch not in ("mot", "moma")
    ep_moe = facts.is_moe and layout.ep > 1
    out: list[_Param] = []
    for p in params:
        name = p.name
        numel = float(p.numel)
        nbytes = facts.param_bytes
        wrapped = layout.fsdp
        stage: int | None = None
        layer_match = _LAYER.match(name)
        if layer_match:
            layer = int(layer_match.group(1))
            unit = f"layer{layer}"
            if layer in moe_layers and ep_moe:
                # EP-MoE blocks are wrapped per sub-module; the block norms fall
                # to the root unit (parallel.py:214-229, 290-291).
                if ".attention." in name:
                    unit = f"layer{layer}.attention"
                elif ".mlp." in name:
                    unit = f"layer{layer}.mlp"
                else:
                    unit = "root"
            tp_sharded = _LINEAR_TP.search(name) or (layer not in moe_layers and _MLP_TP.search(name))
            if layout.tp > 1 and standard_blocks and tp_sharded:
                numel /= layout.tp
            if layer in moe_layers and _EXPERT.search(name) and layout.ep > 1:
                numel /= layout.ep
            if ranges is not None:
                stage = next(i for i, (a, b) in enumerate(ranges) if a <= layer < b)
        elif name.startswith(prefix + "cross_attention_layers."):
            unit = "ca" + name.split(".")[1 + (1 if prefix else 0)]
        elif name.startswith("adapter."):
            unit = "adapter"
        elif name.startswith("vision_encoder."):
            unit = "vision_encoder"
            # A fully frozen encoder is not wrapped and keeps its HF dtype
            # (parallel.py:350-356, 476); its dtype is unknown offline: fp32 assumed.
            nbytes = 4
            wrapped = layout.fsdp and not facts.encoder_frozen
        else:
            unit = "root"
            if name.startswith(prefix + "output_head.") and layout.sequence_parallel:
                numel /= layout.tp
            if ranges is not None:
                stage = 0 if name.startswith(prefix + "token_embedding.") else layout.pp - 1
        out.append(_Param(name, numel, stage, unit, name not in frozen, wrapped, nbytes,
                          _muon_eligible(tuple(p.shape))))
    return out


def _on_stage(p: _Param, stage: int) -> bool:
    return p.stage is None or p.stage == stage


def _sharded(p: _Param, layout: Layout) -> float:
    return p.local / layout.fsdp_shard if p.wrapped else p.local


def _optimizer_bytes(p: _Param, facts: Facts, layout: Layout) -> float:
    if not p.trainable:
        return 0.0
    if facts.optimizer == "muon":
        states = 1.0 if p.muon_matrix else 2.0
    else:
        states = _OPTIMIZER_STATES.get(facts.optimizer, 2.0)
    return states * _sharded(p, layout) * p.nbytes


def _block_saved(facts: Facts, layout: Layout, kind: str) -> act.BlockActivations:
    shape = facts.shape
    if kind == "cross_attention":
        return act.cross_attention_block(shape)
    tp = layout.tp if kind in ("dense", "moe") else 1
    if kind == "moe":
        dense = act.dense_block(shape, tp)
        mlp = act.moe_block_mlp(shape, facts.expert_ffn, facts.top_k, facts.shared_experts, facts.num_experts)
        return act.BlockActivations(dense.norms, dense.gathered_inputs, dense.attention, mlp)
    if kind == "moma":
        dense = act.dense_block(shape, 1)
        mlp = act.moe_block_mlp(shape, facts.expert_ffn, 1, 0, facts.num_experts or 8)
        return act.BlockActivations(dense.norms, dense.gathered_inputs, dense.attention, mlp)
    return act.dense_block(shape, tp)


@record
class _StageActivations:
    kept: float  # bytes all of this stage's layers keep per micro-batch until backward
    recompute: float  # extra bytes while the first block backwards (recomputed saved set)
    grad_flow: float  # gradient of the residual in flight


def _stage_activations(facts: Facts, layout: Layout, layers: range) -> _StageActivations:
    """Activation bytes of one micro-batch on one rank for the given layers."""
    b = facts.batch
    tokens = b * facts.residual_tokens
    sp = layout.tp if layout.sequence_parallel else 1
    a = facts.act_bytes
    moe_layers = {i for i in layers if facts.is_moe and (i + 1) % facts.moe_frequency == 0}
    kinds = _text_block_kind(facts)
    kept = 0.0
    largest_recompute = 0.0
    for i in layers:
        kind = "moe" if i in moe_layers else kinds
        saved = _block_saved(facts, layout, kind)
        full = saved.per_token(sp) * tokens
        if facts.masked_attention:
            full += b * act.masked_attention_bias_bytes(facts.residual_tokens, a)
        checkpointed_block = kind in ("dense", "moe") and facts.ac == "full"
        checkpointed_attention = kind in ("dense", "moe", "moma") and facts.ac == "selective"
        if checkpointed_block:
            kept += a * facts.shape.dim * tokens / sp  # the block input
            largest_recompute = max(largest_recompute, full)
        elif checkpointed_attention:
            sel = act.selective_block(facts.shape, layout.tp if kind in ("dense", "moe") else 1)
            if kind != "dense":
                sel = act.BlockActivations(sel.norms, sel.gathered_inputs, 0, saved.mlp)
            kept += sel.per_token(sp) * tokens
            largest_recompute = max(largest_recompute, saved.attention * tokens)
        else:
            kept += full
    # Cross-attention blocks: text + the image K/V they expand.
    if facts.arch == "cross_attention" and layers:
        cadence_blocks = facts.ca_blocks
        if cadence_blocks:
            saved = act.cross_attention_block(facts.shape)
            per_block = saved.per_token(1) * tokens
            per_block += act.cross_attention_image_bytes(facts.shape) * b * facts.image_tokens
            kept += cadence_blocks * per_block
            # The adapter output (image K/V source) is saved once by every block's k/v projections.
            kept += a * facts.shape.dim * b * facts.image_tokens
    grad_flow = 2 * a * facts.shape.dim * tokens / sp
    return _StageActivations(kept, largest_recompute, grad_flow)


def _text_block_kind(facts: Facts) -> str:
    # Per token a MoTBlock saves what a TransformerBlock does (measured), but it
    # is never checkpointed: "mot" keeps the dense sizes with no AC.
    if facts.arch in ("mot", "moma"):
        return facts.arch
    return "dense"


def _vlm_front(facts: Facts, job: Any) -> float:
    """Adapter activations for one micro-batch (its input in the adapter dtype, hidden, output)."""
    if not facts.is_vlm or not facts.image_tokens:
        return 0.0
    adapter = getattr(job, "adapter", None)
    encoder = getattr(job, "vision_encoder", None)
    feature = int(_get(encoder, "feature_dim", 0) or 0) or facts.shape.dim
    hidden = int(_get(adapter, "hidden_dim", 0) or 0) or facts.shape.dim
    a = facts.act_bytes
    per_token = a * feature + 2 * a * hidden + a * facts.shape.dim
    return facts.batch * facts.image_tokens * per_token


def stage_moments(job: Any, params: Sequence[ParamLike], layout: Layout, frozen: set[str],
                  stage: int = 0) -> list[Moment]:
    """Every moment kforge evaluates for one pipeline stage (all ranks when pp == 1)."""
    facts = read_facts(job)
    ranges = stage_layer_ranges(facts.n_layers, layout.pp) if layout.pp > 1 else [(0, facts.n_layers)]
    return _moments(job, facts, layout, classify(params, facts, layout, frozen), stage, ranges[stage])


def memory_per_stage(job: Any, params: Sequence[ParamLike], layout: Layout, frozen: set[str]
                     ) -> tuple[list[RankMemory], Facts]:
    facts = read_facts(job)
    classified = classify(params, facts, layout, frozen)
    stages = range(layout.pp)
    ranges = stage_layer_ranges(facts.n_layers, layout.pp) if layout.pp > 1 else [(0, facts.n_layers)]
    results = []
    for stage in stages:
        moments = _moments(job, facts, layout, classified, stage, ranges[stage])
        best = max(moments, key=lambda m: m.total)
        breakdown = {t: best.terms.get(t, 0.0) / GIB for t in TERMS}
        label = f"pipeline stage {stage}" if layout.pp > 1 else "every rank"
        results.append(RankMemory(stage, label, best.name, breakdown))
    return results, facts


def _moments(job: Any, facts: Facts, layout: Layout, params: list[_Param], stage: int,
             layer_range: tuple[int, int]) -> list[Moment]:
    mine = [p for p in params if _on_stage(p, stage)]
    first, last = stage == 0, stage == layout.pp - 1
    pp = layout.pp > 1
    a = facts.act_bytes
    reduce_fp32 = layout.fsdp and facts.param_bytes != 4

    sharded_params = sum(_sharded(p, layout) * p.nbytes for p in mine)
    sharded_grads = sum(_sharded(p, layout) * p.nbytes for p in mine if p.trainable)
    full_grads = sum(p.local * p.nbytes for p in mine if p.trainable)
    optimizer = sum(_optimizer_bytes(p, facts, layout) for p in mine)
    accumulating = layout.fsdp and (facts.grad_accum > 1 or pp)
    accum_bytes = sum(p.local * (4 if reduce_fp32 else p.nbytes) for p in mine if p.trainable and p.wrapped)

    units: dict[str, float] = {}
    for p in mine:
        if p.wrapped:
            units[p.unit] = units.get(p.unit, 0.0) + p.local * p.nbytes
    root_units = sum(v for k, v in units.items() if k in ("root", "adapter", "vision_encoder"))
    block_units = sorted((v for k, v in units.items() if k not in ("root", "adapter", "vision_encoder")),
                         reverse=True)
    largest_block = block_units[0] if block_units else 0.0
    stage_unsharded = sum(units.values())

    tokens_out = facts.batch * facts.logit_tokens
    logits = tokens_out * facts.vocab * a
    loss_extra = 2 * tokens_out * facts.vocab * 4 if facts.z_loss else 0.0
    acts = _stage_activations(facts, layout, range(*layer_range))
    front = _vlm_front(facts, job) if first else 0.0
    n_mb = facts.grad_accum
    if pp:
        warmup = n_mb if facts.pp_schedule == "gpipe" else min(n_mb, layout.pp - stage)
        in_flight = max(1, warmup)
        boundary = 2.0 * a * facts.shape.dim * facts.batch * facts.residual_tokens  # stage input + output kept
    else:
        in_flight = 1
        boundary = 0.0
    inputs = 2 * 8 * facts.batch * facts.residual_tokens * (n_mb if pp else 1)
    rope = 2 * 4 * facts.max_seq_len * (facts.head_dim // 2)
    other = inputs + rope

    moments: list[Moment] = []

    def base(name: str) -> Moment:
        m = Moment(name)
        m.add("parameters", sharded_params)
        m.add("optimizer_state", optimizer)
        m.add("other", other)
        return m

    # 1. End of the loss of the last micro-batch: every accumulator exists, all
    #    activations of the micro-batches in flight are kept.
    m = base("loss backward (last micro-batch)" if not pp else "loss backward (last micro-batch, this stage)")
    if accumulating:
        m.add("gradient_accumulation", accum_bytes)
    elif not layout.fsdp and facts.grad_accum > 1:
        m.add("gradients", full_grads)
    m.add("activations", acts.kept * in_flight + front + boundary * in_flight)
    if last:
        retained = (n_mb - 1) * logits if pp else 0.0
        m.add("logits_and_loss", 4 * logits + loss_extra + retained)
    if layout.fsdp:
        m.add("fsdp_unsharded", (stage_unsharded if pp and n_mb > 1 else root_units + largest_block))
    moments.append(m)

    # 2. Backward of the first block (in backward order) of the last micro-batch:
    #    its saved set is recomputed while every other checkpoint is still kept.
    m = base("first block backward")
    if accumulating:
        m.add("gradient_accumulation", accum_bytes)
    elif not layout.fsdp and facts.grad_accum > 1:
        m.add("gradients", full_grads)
    m.add("activations", acts.kept * in_flight + acts.recompute + acts.grad_flow + front
          + boundary * in_flight)
    if last:
        m.add("logits_and_loss", logits * (n_mb if pp else 1))
    if layout.fsdp:
        unsharded = stage_unsharded if pp else root_units + 2 * largest_block
        # the block's own bf16 gradients before they are folded into fp32 or reduced
        m.add("fsdp_unsharded", unsharded + largest_block)
    moments.append(m)

    # 3. End of backward: gradients complete, few activations left.
    m = base("end of backward")
    if accumulating and pp:
        m.add("gradient_accumulation", accum_bytes)
        m.add("fsdp_unsharded", stage_unsharded)
    elif layout.fsdp:
        m.add("gradients", sharded_grads)
        m.add("fsdp_unsharded", root_units)
    else:
        m.add("gradients", full_grads)
    if last:
        m.add("logits_and_loss", logits * (n_mb if pp else 1))
    moments.append(m)

    # 4. Optimizer step (and, on the last PP stage, the merged outputs).
    m = base("optimizer step")
    grads = sharded_grads if layout.fsdp else full_grads
    m.add("gradients", grads)
    if not facts.fused_optimizer or facts.optimizer != "adamw":
        m.add("other", grads)  # foreach / per-tensor temporaries of one gradient-sized list
    if last and pp:
        m.add("logits_and_loss", 2 * n_mb * logits)
    moments.append(m)

    # 5. Model construction.
    m = Moment("model construction")
    if layout.tp == 1 and not facts.is_vlm:
        m.add("parameters", sum(p.local * p.nbytes for p in mine))
    else:
        m.add("parameters", 3 * sum(_sharded(p, layout) * p.nbytes for p in mine))
    moments.append(m)
    return moments
