"""kforge fit core: every memory term against a hand computation from the code facts."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kforge_cli.config import load_job_text
from kforge_cli.fit import (
    KNOWN_GPUS,
    LayoutError,
    UnknownGPUError,
    activation_checkpointing_coverage,
    custom_gpu,
    flops_per_token,
    lookup_gpu,
    predict,
    resolve_layout,
    suggest,
    verdict_for,
)
from kforge_cli.fit import activations as act
from kforge_cli.fit.memory import GIB, stage_moments
from kforge_cli.manifest import build_manifest

SMALL = """
[model]
dim = 256
n_layers = 2
n_heads = 4
n_kv_heads = 2
vocab_size = 1000
ffn_hidden_dim = 512
max_seq_len = 64
[train]
batch_size = 2
seq_len = 64
grad_accum_steps = 2
activation_checkpointing = "none"
compile_model = false
[distributed]
dp_shard = -1
"""
# Parameter counts of SMALL, by hand: embedding and head 1000*256 each; per block
# two norms (2*256), q and o 256*256, k and v 256*128 (2 KV heads of 64), SwiGLU 3*256*512.
BLOCK = 2 * 256 + 2 * 256 * 256 + 2 * 256 * 128 + 3 * 256 * 512
TOTAL = 2 * 1000 * 256 + 2 * BLOCK + 256


def _job(text: str = SMALL, *sets: str):
    loaded = load_job_text(text, overrides=list(sets))
    assert loaded.job is not None and not loaded.has_errors, [f.message for f in loaded.findings]
    return loaded.job


def _params(job):
    return build_manifest(job).parameters


def _loss_moment(job, world_size: int, stage: int = 0):
    layout = resolve_layout(job, world_size)
    return next(m for m in stage_moments(job, _params(job), layout, set(), stage)
                if m.name.startswith("loss backward"))


def test_small_config_parameter_count():
    assert sum(p.numel for p in _params(_job())) == TOTAL


def test_loss_moment_terms_match_the_code_facts():
    terms = _loss_moment(_job(), world_size=2).terms
    assert terms["parameters"] == TOTAL * 2 / 2  # bf16 shards over dp_shard=2
    assert terms["optimizer_state"] == 2 * TOTAL * 2 / 2  # AdamW: exp_avg + exp_avg_sq, bf16
    assert terms["gradient_accumulation"] == 4 * TOTAL  # fp32, unsharded, grad_accum_steps > 1
    tokens = 2 * 64
    per_token = (2 * (8 * 256 + 4)  # two RMSNorms: fp32 input copy + fp32 normalized + rsqrt
                 + 2 * 2 * 256  # attention and MLP inputs (bf16)
                 + 4 * 2 * 256 + 4 * 4  # q, expanded k and v, output; fp32 logsumexp per head
                 + 4 * 2 * 512)  # SwiGLU: gate, silu, up, product
    assert terms["activations"] == 2 * per_token * tokens
    assert terms["logits_and_loss"] == 4 * tokens * 1000 * 2
    root = (2 * 1000 * 256 + 256) * 2
    assert terms["fsdp_unsharded"] == root + BLOCK * 2
    assert "gradients" not in terms  # sharded gradients appear only when the last micro-batch reduces


def test_no_accumulation_without_grad_accum_and_no_fp32_when_training_in_fp32():
    assert "gradient_accumulation" not in _loss_moment(_job(SMALL, "train.grad_accum_steps=1"), 2).terms
    terms = _loss_moment(_job(SMALL, "train.mixed_precision=fp32"), 2).terms
    assert terms["gradient_accumulation"] == 4 * TOTAL
    assert terms["parameters"] == TOTAL * 4 / 2


def test_single_gpu_keeps_full_bf16_gradients_instead_of_fp32_accumulators():
    terms = _loss_moment(_job(), world_size=1).terms
    assert "gradient_accumulation" not in terms and "fsdp_unsharded" not in terms
    assert terms["gradients"] == 2 * TOTAL
    assert terms["parameters"] == 2 * TOTAL


def test_full_ac_keeps_only_block_inputs_and_recomputes_one_block():
    job = _job(SMALL, "train.activation_checkpointing=full")
    layout = resolve_layout(job, 2)
    moments = {m.name: m for m in stage_moments(job, _params(job), layout, set())}
    tokens = 2 * 64
    assert moments["loss backward (last micro-batch)"].terms["activations"] == 2 * 2 * 256 * tokens
    block = act.dense_block(act.BlockShape(256, 256, 128, 4, 2, 512, 2)).per_token(1) * tokens
    grad_flow = 2 * 2 * 256 * tokens
    assert moments["first block backward"].terms["activations"] == 2 * 2 * 256 * tokens + block + grad_flow


def test_tensor_parallel_shards_projections_and_keeps_full_vocab_logits():
    job = _job(SMALL, "distributed.tp=2")
    layout = resolve_layout(job, 2)
    assert layout.fsdp and layout.fsdp_shard == 1 and layout.sequence_parallel  # dp_shard forced in with TP
    terms = _loss_moment(job, 2).terms
    sharded_block = 2 * 256 + (2 * 256 * 256 + 2 * 256 * 128 + 3 * 256 * 512) / 2
    local = 1000 * 256 + 2 * sharded_block + 256 + 1000 * 256 / 2  # embedding replicated, head colwise
    assert terms["gradient_accumulation"] == 4 * local
    assert terms["logits_and_loss"] == 4 * 2 * 64 * 1000 * 2  # every TP rank all-gathers the vocab


def test_pipeline_stage_holds_unsharded_params_and_fp32_grads_even_without_accumulation():
    job = _job(SMALL, "distributed.pp=2", "train.grad_accum_steps=2")
    layout = resolve_layout(job, 4)
    assert layout.fsdp_shard == 2 and not layout.sequence_parallel
    first = next(m for m in stage_moments(job, _params(job), layout, set(), 0) if m.name == "first block backward")
    stage0 = 1000 * 256 + BLOCK
    assert first.terms["gradient_accumulation"] == 4 * stage0
    assert first.terms["fsdp_unsharded"] == 2 * stage0 + 2 * BLOCK
    last = _loss_moment(job, 4, stage=1).terms
    logits = 2 * 64 * 1000 * 2
    assert last["logits_and_loss"] == (4 + 1) * logits  # this micro-batch + the one kept in output_chunks


def test_gpu_table_exact_names_no_substring_match():
    assert lookup_gpu("H100 PCIe").peak_tflops == 756.0
    assert lookup_gpu("NVIDIA H100 PCIe").peak_tflops == 756.0
    assert lookup_gpu("H100 SXM 80GB").peak_tflops == 989.0
    assert lookup_gpu("h100-sxm").peak_tflops == 989.0
    assert lookup_gpu("H200").capacity_gib == pytest.approx(143_771 / 1024)
    assert lookup_gpu("A100 40GB").capacity_gib == 40.0
    assert lookup_gpu("A100 80GB").capacity_gib == 80.0
    assert lookup_gpu("L40S").capacity_gib == pytest.approx(46_068 / 1024)
    assert all(g.capacity_source and g.peak_source for g in KNOWN_GPUS)


def test_unknown_gpu_is_a_typed_error_listing_known_ones():
    with pytest.raises(UnknownGPUError) as info:
        lookup_gpu("H100 NVL 94GB")
    assert "H100 PCIe" in str(info.value) and "H200" in info.value.known
    with pytest.raises(ValueError):
        custom_gpu(0)


def test_custom_gpu_has_no_throughput():
    result = predict(_job(), _params(_job()), gpu=custom_gpu(24), world_size=2)
    assert result.throughput.tokens_per_second is None and result.gpu.capacity_gib == 24


@pytest.mark.parametrize("sets,world", [(("distributed.tp=2",), 3), (("distributed.tp=4",), 6),
                                        (("distributed.dp_shard=3",), 4), (("distributed.pp=4",), 4)])
def test_indivisible_layouts_are_typed_errors(sets, world):
    job = _job(SMALL, *sets)
    with pytest.raises(LayoutError):
        predict(job, _params(_job()), gpu=lookup_gpu("H200"), world_size=world)


def test_world_size_must_be_positive():
    with pytest.raises(LayoutError):
        resolve_layout(_job(), 0)


def test_verdicts():
    assert verdict_for(50, 60, 80) == "fits"
    assert verdict_for(70, 90, 80) == "tight"
    assert verdict_for(81, 99, 80) == "oom"


def test_flops_per_token_is_the_trainers_formula():
    model = _job().model
    attn = 256 * 256 + 2 * 256 * 128 + 256 * 256
    assert flops_per_token(model, 64) == 6 * (2 * (attn + 3 * 256 * 512) + 1000 * 256) + 12 * 2 * 256 * 64


def test_derivation_matches_the_measured_cpu_constants():
    # The CPU kernel saves one more A*q (a real .contiguous() copy) than CUDA flash.
    for d, h, kv, f in ((256, 4, 2, 512), (512, 8, 8, 768), (384, 6, 2, 1024)):
        q = d
        shape = act.BlockShape(d, q, kv * d // h, h, kv, f, 2)
        cd, cq, cf, ch, c0 = act.MEASURED_CPU["dense_swiglu"]
        cpu = cd * d + cq * q + cf * f + ch * h + c0
        assert act.dense_block(shape).per_token(1) + act.CPU_CONTIGUOUS_COPY_Q * q == cpu
        cd, cq, cf, ch, c0 = act.MEASURED_CPU["dense_gelu"]
        gelu = act.BlockShape(d, q, kv * d // h, h, kv, f, 2, swiglu=False)
        assert act.dense_block(gelu).per_token(1) + 2 * q == cd * d + cq * q + cf * f + ch * h + c0
        cd, cq, cf, ch, c0 = act.MEASURED_CPU["cross_attention_text"]
        assert act.cross_attention_block(shape).per_token(1) + 2 * q == cd * d + cq * q + cf * f + ch * h + c0
        assert act.cross_attention_image_bytes(shape) == act.MEASURED_CPU_CROSS_ATTENTION_IMAGE_Q * q


def test_masked_attention_bias_is_padded_to_16():
    assert act.masked_attention_bias_bytes(100, 2) == 100 * 112 * 2


VLM_BASE = """
[model]
dim = 256
n_layers = 4
n_heads = 4
n_kv_heads = 4
vocab_size = 1000
max_seq_len = 256
[vision_encoder]
type = "random"
feature_dim = 64
num_tokens = 16
[train]
batch_size = 2
seq_len = 80
"""


@pytest.mark.parametrize("arch,mode,wrapped,unwrapped", [
    ("mot", "full", {}, {"MoTBlock": 4}),
    ("mot", "selective", {}, {"MoTBlock": 4}),
    ("moma", "full", {}, {"MoMaBlock": 4}),
    ("moma", "selective", {"Attention": 4}, {}),
    ("cross_attention", "full", {"TransformerBlock": 4}, {"CrossAttentionBlock": 1}),
    ("joint_decoder", "full", {"TransformerBlock": 4}, {}),
])
def test_activation_checkpointing_coverage(arch, mode, wrapped, unwrapped):
    text = VLM_BASE + f'[vlm]\narch = "{arch}"\nmax_text_len = 64\n'
    job = _job(text, f"train.activation_checkpointing={mode}")
    coverage = activation_checkpointing_coverage(job)
    assert coverage.wrapped == wrapped and coverage.unwrapped == unwrapped


def test_fp32_accumulation_is_flagged_as_a_surprise():
    big = _job(SMALL, "model.dim=2048", "model.ffn_hidden_dim=8192", "model.n_heads=16", "model.n_kv_heads=8",
               "model.n_layers=8", "train.activation_checkpointing=full", "train.grad_accum_steps=8")
    result = predict(big, _params(big), gpu=lookup_gpu("H200"), world_size=8)
    assert any(s.term == "gradient_accumulation" for s in result.surprises)


def test_suggestions_fit_and_pass_the_validity_check():
    job = _job(SMALL, "model.dim=4096", "model.n_heads=32", "model.n_kv_heads=8", "model.ffn_hidden_dim=14336",
               "model.n_layers=16", "model.vocab_size=128256", "train.batch_size=8", "train.seq_len=4096",
               "model.max_seq_len=4096", "train.grad_accum_steps=2")
    params = _params(job)
    gpu = lookup_gpu("H100 SXM 80GB")
    assert predict(job, params, gpu=gpu, world_size=8).verdict != "fits"
    rejected = []

    def no_pipeline(overrides):
        ok = not any(o.startswith("distributed.pp") for o in overrides)
        if not ok:
            rejected.append(overrides)
        return ok

    found = suggest(job, params, gpu=gpu, world_size=8, is_valid=no_pipeline, limit=100)
    assert found and rejected
    from kforge_cli.fit import apply_overrides
    for suggestion in found:
        assert no_pipeline(suggestion.overrides)
        again = predict(apply_overrides(job, suggestion.overrides), params, gpu=gpu, world_size=8)
        assert again.verdict == "fits" and again.memory.high_gib <= gpu.capacity_gib
    # The validity check (a whole validate run each) is asked only until enough are found.
    asked = []
    first = suggest(job, params, gpu=gpu, world_size=8, limit=1, is_valid=lambda o: asked.append(o) or True)
    assert len(first) == 1 and asked == [first[0].overrides]


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 16), extra=st.integers(1, 8))
def test_peak_is_monotone_in_batch_size(batch, extra):
    job = _job(SMALL, "train.activation_checkpointing=full")
    params = _params(job)
    gpu = lookup_gpu("H200")
    small = predict(_job(SMALL, f"train.batch_size={batch}"), params, gpu=gpu, world_size=2)
    large = predict(_job(SMALL, f"train.batch_size={batch + extra}"), params, gpu=gpu, world_size=2)
    assert large.memory.peak_gib >= small.memory.peak_gib


@settings(max_examples=20, deadline=None)
@given(shard=st.sampled_from([2, 4, 8, 16]), ac=st.sampled_from(["none", "full", "selective"]),
       accum=st.integers(1, 4))
def test_more_dp_shard_never_increases_rank_memory(shard, ac, accum):
    sets = (f"train.activation_checkpointing={ac}", f"train.grad_accum_steps={accum}")
    job = _job(SMALL, *sets)
    params = _params(job)
    gpu = lookup_gpu("H200")
    fewer = predict(job, params, gpu=gpu, world_size=shard)
    more = predict(job, params, gpu=gpu, world_size=shard * 2)
    assert more.memory.peak_gib <= fewer.memory.peak_gib + 1e-9


def test_json_plan_has_the_design_keys():
    result = predict(_job(), _params(_job()), gpu=lookup_gpu("H200"), world_size=2)
    plan = result.to_json("x.toml")
    assert set(plan) == {"path", "gpu", "world_size", "layout", "memory", "verdict", "confidence", "throughput",
                         "findings"}
    assert set(plan["memory"]) == {"rank0_peak_gib", "peak_gib", "peak_rank", "breakdown", "low_gib", "high_gib"}
    assert set(plan["throughput"]) == {"flops_per_token", "tokens_per_second", "mfu_pct"}
    assert plan["memory"]["breakdown"]["parameters"] == pytest.approx(TOTAL / GIB, abs=0.01)


def test_fit_imports_no_torch_numpy_typer_or_rich():
    code = ("import sys, kforge_cli.fit; "
            "bad = [m for m in ('torch', 'numpy', 'typer', 'rich') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_apply_overrides_changes_a_copy_and_shares_the_untouched_sections():
    from kforge_cli.fit import apply_overrides

    job = _job()
    batch, accum = job.train.batch_size, job.train.grad_accum_steps
    changed = apply_overrides(job, [f"train.batch_size={batch * 2}", "train.grad_accum_steps=3"])
    assert (changed.train.batch_size, changed.train.grad_accum_steps) == (batch * 2, 3)
    assert (job.train.batch_size, job.train.grad_accum_steps) == (batch, accum)
    assert changed.model is job.model and changed.train is not job.train
