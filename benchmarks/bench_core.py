#!/usr/bin/env python3
"""In-process speed of the core steps whose tests check what they do, not how fast.

Each step runs once to warm up, then --runs times; the table shows the median and the
target (exit 1 when one is missed):

- the freeze plan of 1,200 parameters with 50 base specs and 30 stages of 5 specs < 2 s;
- reading each recorded checkpoint (DCP run directory, torch.save file) < 50 ms;
- building a 70B text model on the meta device < 5 s (skipped without torch).

    python benchmarks/bench_core.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
CHECKPOINTS = REPO / "tests" / "cases" / "fixtures" / "checkpoints"
LLAMA_70B = {"dim": 8192, "n_layers": 80, "n_heads": 64, "n_kv_heads": 8, "vocab_size": 128256,
             "ffn_dim_multiplier": 1.3, "max_seq_len": 8192}


def plan_of_many_specs() -> Callable[[], object]:
    from kforge_cli.config.section import collecting
    from kforge_cli.config.vlm import FreezeSpec, FreezeStage, resolve_arch_class
    from kforge_cli.freeze.plan import ParamRecord, plan_freeze

    names = [f"transformer.layers.{i}.p{j}.weight" for i in range(100) for j in range(12)]
    params = [ParamRecord(n, (64, 64)) for n in names]
    patterns = {f"l{i}": [f"transformer.layers.{i}.*"] for i in range(100)}
    patterns["transformer"] = ["transformer", "transformer.*"]
    base = [FreezeSpec(f"l{i}", i % 3 == 0) for i in range(0, 100, 2)]
    schedule = [FreezeStage(10 * k + 1, tuple(FreezeSpec(f"l{(k * 7 + j) % 100}", (k + j) % 2 == 0)
                                              for j in range(5))) for k in range(30)]
    with collecting():
        vlm = resolve_arch_class("joint_decoder")(freeze=base, freeze_schedule=schedule, module_patterns=patterns)
    return lambda: plan_freeze(params, vlm, 400)


def read(path: Path) -> Callable[[], object]:
    from kforge_cli.checkpoint import read_checkpoint

    return lambda: read_checkpoint(path)


def meta_70b() -> Callable[[], object] | None:
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    from kforge_cli.model import build_meta_model

    return lambda: build_meta_model(SimpleNamespace(model=SimpleNamespace(**LLAMA_70B)))


def median_seconds(step: Callable[[], object], runs: int) -> float:
    step()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per step (median reported)")
    args = parser.parse_args(argv)
    steps: list[tuple[str, Callable[[], object] | None, float]] = [
        ("freeze plan: 1,200 parameters, 50 specs + 30 stages", plan_of_many_specs(), 2.0),
        ("read checkpoint: DCP run directory (5 MB shard)", read(CHECKPOINTS / "jd_run"), 0.05),
        ("read checkpoint: torch.save file (1.6 MB)", read(CHECKPOINTS / "jd_model.pt"), 0.05),
        ("meta-device build: 70B text model", meta_70b(), 5.0),
    ]
    print("| step | median (ms) | target (ms) | met |\n| --- | ---: | ---: | --- |")
    missed = 0
    for label, step, target in steps:
        if step is None:
            print(f"| {label} | skipped (no torch) | {target * 1000:.0f} | |")
            continue
        seconds = median_seconds(step, args.runs)
        met = seconds < target
        missed += not met
        print(f"| {label} | {seconds * 1000:.1f} | {target * 1000:.0f} | {'yes' if met else 'NO'} |")
    print(f"\nmedian of {args.runs} runs after one warm-up, Python {sys.version.split()[0]}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
