"""Where the trainer uses a value: kept-as-is values, optimizer and pipeline start-up, seeds, init_std."""

from __future__ import annotations

import textwrap

import pytest

from kforge_cli.explain.job import explain_report
from kforge_cli.lint.engine import FileReport, Options, check_file
from kforge_cli.rules.rule import BUILD, LOAD, LOOP, STARTUP, VALIDATE

TEXT_BASE = """
[model]
dim = 64
n_layers = 2
n_heads = 4
n_kv_heads = 4
vocab_size = 1000
max_seq_len = 128

[train]
seq_len = 128
max_steps = 100
compile_model = false

[scheduler]
warmup_steps = 10
"""

VLM_TABLES = """
[vision_encoder]
type = "random"
feature_dim = 32
num_tokens = 16

[vlm]
arch = "joint_decoder"
max_text_len = 64
"""


def merged(*tables: str) -> str:
    """TOML text of the tables, later keys of a [section] replacing earlier ones."""
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for line in "\n".join(textwrap.dedent(t) for t in tables).splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            current = stripped
            sections.setdefault(current, {})
        elif stripped:
            sections.setdefault(current, {})[stripped.split("=", 1)[0].strip()] = stripped
    return "\n".join(f"{name}\n" + "\n".join(lines.values()) for name, lines in sections.items()) + "\n"


def run(*tables: str, world_size: int | None = None) -> FileReport:
    """The engine's report on the base text model with ``tables`` merged in."""
    return check_file("job.toml", Options(world_size=world_size), text=merged(TEXT_BASE, *tables))


def about(report: FileReport, key: str) -> list[tuple[str, str, str | None]]:
    return [(f.code, f.severity, f.stage) for f in report.findings if f.key == key]


# -- values the loader keeps as is -------------------------------------------------------------


def test_a_kept_value_is_resolved_as_written_and_never_used_is_a_warning() -> None:
    report = run("[train]\ndata_seed = [7]\n")
    assert about(report, "train.data_seed") == [("KF102", "warning", None)]
    assert explain_report(report).resolved["train"]["data_seed"] == [7]


def test_a_kept_value_fails_where_the_trainer_uses_it() -> None:
    report = run("[train]\ndata_seed = [7]\n", '[data]\ndataset_path = "/data"\n')
    assert about(report, "train.data_seed") == [("KF102", "error", LOOP)]
    assert about(run("[train]\nseed = [1]\n"), "train.seed") == [("KF102", "error", STARTUP)]
    assert about(run("[model]\nrope_theta = [1.0]\n"), "model.rope_theta") == [("KF102", "error", BUILD)]
    assert about(run("[model]\nmax_seq_len = [128]\n"), "model.max_seq_len") == [("KF102", "error", VALIDATE)]


def test_the_vlm_token_budget_compares_max_seq_len_at_load() -> None:
    report = run(VLM_TABLES, "[model]\nmax_seq_len = [128]\n")
    assert about(report, "model.max_seq_len") == [("KF102", "error", LOAD)]
    assert explain_report(report).resolved is None  # the reference's loader fails


@pytest.mark.parametrize("tables, stage", [
    (("[train]\nce_chunk_size = [8]\n",), None),
    (("[train]\nce_chunk_size = [8]\nloss_fn = \"chunked_cross_entropy\"\n",), STARTUP),
    (("[optimizer]\neps = [1e-8]\nname = \"lion\"\n",), None),
    (("[optimizer]\neps = [1e-8]\n",), STARTUP),
    (("[optimizer]\nmuon_adam_lr = [1e-3]\n",), None),
    (("[optimizer]\nmuon_adam_lr = [1e-3]\nname = \"muon\"\n",), STARTUP),
    (("[checkpoint]\nload_path = 5\n",), STARTUP),
    (("[checkpoint]\nload_path = 0\n",), None),  # falsy: no resume, nothing reads it
    (("[data]\nanneal_weights = \"abc\"\n",), None),
    (("[data]\nanneal_weights = \"abc\"\nanneal_start_step = 10\n",), STARTUP),
    (("[data]\nanneal_weights = [[\"a\", 1.0]]\nanneal_start_step = 10\n",), None),  # dict() accepts pairs
    (("[checkpoint]\nkeep_last_n = [2]\n",), LOOP),
    (("[checkpoint]\nkeep_last_n = [2]\n[checkpoint.dyn_ckpt_window]\nstart = 0\nstop = 8\n",), STARTUP),
    (("[scheduler]\ndecay_steps = [50]\n",), LOOP),
    (("[scheduler]\ndecay_steps = [50]\nwarmup_steps = 0\n",), STARTUP),
    (("[scheduler]\ndecay_steps = [50]\nwarmup_steps = 500\n",), None),  # the warmup never ends
    (("[scheduler]\ndecay_steps = [50]\nname = \"constant\"\n",), None),
    (("[scheduler]\nstable_steps = [50]\nname = \"wsd\"\n",), STARTUP),  # no decay_steps: derived from it
    (("[scheduler]\nstable_steps = [50]\nname = \"wsd\"\ndecay_steps = 20\n",), LOOP),
    (("[model]\nmoe_aux_loss_weight = [0.1]\n",), None),
    (("[model]\nmoe_aux_loss_weight = [0.1]\nnum_experts = 4\n",), LOOP),
    (("[model]\nffn_dim_multiplier = [1.0]\n",), BUILD),
    (("[model]\nffn_dim_multiplier = [1.0]\nffn_hidden_dim = 128\n",), None),
    (("[profiling]\ntrace_dir = 5\n",), None),
    (("[profiling]\ntrace_dir = 5\nenable = true\n",), STARTUP),
])
def test_each_use_is_judged_against_the_rest_of_the_job(tables: tuple[str, ...], stage: str | None) -> None:
    key = next(f"{line.strip('[]')}" for line in tables[0].splitlines() if line.startswith("["))
    name = tables[0].splitlines()[1].split("=")[0].strip()
    findings = about(run(*tables), f"{key}.{name}")
    assert findings == [("KF102", "warning" if stage is None else "error", stage)]


def test_a_multi_gpu_use_needs_the_world_size() -> None:
    table = "[distributed]\nnccl_timeout_sec = [60]\n"
    assert about(run(table), "distributed.nccl_timeout_sec") == [("KF102", "warning", None)]
    assert about(run(table, world_size=1), "distributed.nccl_timeout_sec") == [("KF102", "warning", None)]
    assert about(run(table, world_size=8), "distributed.nccl_timeout_sec") == [("KF102", "error", STARTUP)]


def test_a_string_field_kept_as_is_fails_at_start_up() -> None:
    report = run("[checkpoint]\ndir = 5\n")
    [finding] = [f for f in report.findings if f.key == "checkpoint.dir"]
    assert (finding.severity, finding.stage) == ("error", STARTUP) and "Path(checkpoint.dir)" in finding.message


def test_a_table_field_kept_as_is_fails_at_start_up() -> None:
    report = run('[checkpoint]\ndyn_ckpt_window = "power2"\n')
    assert about(report, "checkpoint.dyn_ckpt_window") == [("KF102", "error", STARTUP)]
    assert explain_report(report).resolved["checkpoint"]["dyn_ckpt_window"] == "power2"


# -- what start-up refuses --------------------------------------------------------------------


@pytest.mark.parametrize("table, key, stage", [
    ("[optimizer]\neps = -1e-8\n", "optimizer.eps", STARTUP),
    ("[optimizer]\neps = nan\n", "optimizer.eps", STARTUP),
    ("[optimizer]\neps = 0.0\n", "optimizer.eps", None),
    ("[optimizer]\neps = -1e-8\nname = \"lion\"\n", "optimizer.eps", None),
    ("[optimizer]\neps = -1e-8\nname = \"schedule_free_adamw\"\n", "optimizer.eps", None),
    ("[optimizer]\neps = -1e-8\nname = \"muon\"\n", "optimizer.eps", STARTUP),
    ("[optimizer]\nlr = nan\n", "optimizer.lr", STARTUP),
    ("[optimizer]\nlr = inf\n", "optimizer.lr", None),
    ("[optimizer]\nlr = nan\nname = \"muon\"\nmuon_adam_lr = 1e-3\n", "optimizer.lr", None),
    ("[optimizer]\nname = \"muon\"\nmuon_adam_lr = -1e-3\n", "optimizer.muon_adam_lr", STARTUP),
    ("[optimizer]\nbetas = [0, 0]\n", "optimizer.betas", STARTUP),
    ("[optimizer]\nbetas = [0.9, 0]\n", "optimizer.betas", STARTUP),
    ("[optimizer]\nbetas = [0, 0]\nname = \"lion\"\n", "optimizer.betas", None),
    ("[train]\nseed = -1\n", "train.seed", STARTUP),
    ("[train]\nseed = 4294967296\n", "train.seed", STARTUP),
    ("[train]\nseed = 4294967295\n", "train.seed", None),
    ("[model]\ninit_std = -0.02\n", "model.init_std", BUILD),
    ("[model]\ninit_std = nan\n", "model.init_std", BUILD),
    ("[model]\ninit_std = 0.0\n", "model.init_std", None),
])
def test_start_up_and_build_refuse_what_torch_refuses(table: str, key: str, stage: str | None) -> None:
    errors = [f for f in run(table).findings if f.is_error and f.key == key]
    assert [f.stage for f in errors] == ([] if stage is None else [stage]), [f.message for f in errors]


def test_a_seed_plus_the_last_pipeline_rank_must_stay_in_range() -> None:
    table = "[train]\nseed = 4294967294\n[distributed]\npp = 4\n[model]\nn_layers = 4\n"
    assert not [f for f in run(table, world_size=1).findings if f.key == "train.seed" and f.is_error]
    errors = [f for f in run(table, world_size=4).findings if f.key == "train.seed" and f.is_error]
    assert [f.stage for f in errors] == [STARTUP] and "pipeline ranks" in errors[0].message


@pytest.mark.parametrize("schedule, accum, key", [
    ("1f1b", 1, "train.grad_accum_steps"),
    ("1f1b", 2, "train.grad_accum_steps"),
    ("1f1b", 4, None),
    ("gpipe", 1, None),
    ("interleaved_1f1b", 4, "distributed.pp_schedule"),
])
def test_the_pipeline_schedule_is_built_at_start_up(schedule: str, accum: int, key: str | None) -> None:
    table = (f'[distributed]\npp = 4\npp_schedule = "{schedule}"\n[train]\ngrad_accum_steps = {accum}\n'
             "[model]\nn_layers = 4\n")
    errors = [f for f in run(table, world_size=4).findings if f.is_error]
    assert [(f.code, f.key, f.stage) for f in errors] == ([] if key is None else [("KF203", key, STARTUP)])


def test_a_huge_parallel_degree_gets_a_world_size_fix_without_counting_to_it() -> None:
    # The fix searches degrees that divide the world size; it used to count up to the degree itself.
    report = run("[distributed]\ntp = 1180591620717411303424\n", world_size=1)
    [finding] = [f for f in report.findings if f.code == "KF200"]
    assert "distributed.tp = 1" in finding.hint
