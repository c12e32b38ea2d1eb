#!/usr/bin/env python3
"""Start-up and run time of the kforge commands, against the imports they cannot avoid.

Every measurement is a fresh subprocess (what a user or a pre-commit hook pays),
repeated --runs times; the table shows the median wall time, its ratio to
`python -c "import typer, rich.console"` and to `python -c "import torch"` on
this machine, and the peak RSS. Commands that are not available yet are
skipped. Targets (checked at the end, exit 1 when one is missed):

- validate of 100 configs in one call < 3x validate of one config;
- validate of one config < 2x the typer + rich import;
- freeze-plan < 1.3x the torch import.

    python benchmarks/bench_cli.py [--runs 10] [--json] [--as-is]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
VLM_7B = EXAMPLES / "vlm_joint_decoder.toml"
TEXT_70B = EXAMPLES / "llama_70b.toml"
KFORGE = [sys.executable, "-m", "kforge_cli"]


@dataclass
class Measurement:
    label: str
    command: list[str]
    seconds: list[float] = field(default_factory=list)
    peak_rss_kb: list[int] = field(default_factory=list)
    exit_codes: set[int] = field(default_factory=set)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rss_mb(self) -> float:
        return max(self.peak_rss_kb) / 1024


def run_once(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, int]:
    """Wall time, peak RSS (KiB) and exit code of one fresh process."""
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_maxrss, child.returncode  # ru_maxrss is KiB on Linux


def available(command: str) -> bool:
    done = subprocess.run([*KFORGE, command, "--help"], capture_output=True, text=True, cwd=REPO)
    return done.returncode == 0 and "Usage" in done.stdout


def hundred_configs(folder: Path) -> list[str]:
    """100 distinct valid configs: the examples, each with its own seed."""
    sources = [p for p in sorted(EXAMPLES.glob("*.toml")) if p.name != "broken.toml"]
    paths = []
    for i in range(100):
        source = sources[i % len(sources)]
        path = folder / f"{source.stem}_{i:03d}.toml"
        text = source.read_text()
        path.write_text(text.replace("[train]\n", f"[train]\nseed = {1000 + i}\n", 1) if "seed =" not in text
                        else text)
        paths.append(str(path))
    return paths


def bench_env(folder: Path, as_is: bool) -> dict[str, str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}
    if not as_is:
        # Measure what an installed kforge costs: with bytecode cached, as pip leaves it.
        # (With PYTHONDONTWRITEBYTECODE, an editable checkout recompiles every module on
        # every start while site-packages keeps its .pyc files: an unfair comparison.)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
    return env


def measure(runs: int, as_is: bool) -> tuple[list[Measurement], list[str]]:
    skipped = []
    folder = Path(tempfile.mkdtemp(prefix="kforge-bench-"))
    (folder / ".git").mkdir()  # no [tool.kforge] lookup beyond this folder
    env = bench_env(folder, as_is)
    try:
        many = hundred_configs(folder)
        plan = [
            Measurement("python -c 'import typer, rich.console'",
                        [sys.executable, "-c", "import typer, rich.console"]),
            Measurement("python -c 'import torch'", [sys.executable, "-c", "import torch"]),
            Measurement("kforge validate (1 config)", [*KFORGE, "validate", str(VLM_7B)]),
            Measurement("kforge validate (100 configs)", [*KFORGE, "validate", *many]),
        ]
        if available("freeze-plan"):
            plan += [Measurement("kforge freeze-plan (7B VLM)", [*KFORGE, "freeze-plan", str(VLM_7B)]),
                     Measurement("kforge freeze-plan (70B text)", [*KFORGE, "freeze-plan", str(TEXT_70B)])]
        else:
            skipped.append("freeze-plan")
        if available("explain"):
            plan.append(Measurement("kforge explain (7B VLM)", [*KFORGE, "explain", str(VLM_7B)]))
        else:
            skipped.append("explain")
        for m in plan:  # one warm-up each: page cache and .pyc files
            run_once(m.command, folder, env)
        for _ in range(runs):  # interleaved, so drift in machine load hits every row alike
            for m in plan:
                seconds, rss, code = run_once(m.command, folder, env)
                m.seconds.append(seconds)
                m.peak_rss_kb.append(rss)
                m.exit_codes.add(code)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return plan, skipped


def table(plan: list[Measurement], runs: int, as_is: bool) -> str:
    typer_rich, torch = plan[0].median, plan[1].median
    rows = ["| command | median (ms) | × typer+rich import | × torch import | peak RSS (MB) | exit |",
            "| --- | ---: | ---: | ---: | ---: | --- |"]
    for m in plan:
        rows.append(f"| {m.label} | {m.median * 1000:.0f} | {m.median / typer_rich:.2f} | "
                    f"{m.median / torch:.2f} | {m.rss_mb:.0f} | {','.join(map(str, sorted(m.exit_codes)))} |")
    bytecode = "environment as is" if as_is else "bytecode cached (PYTHONPYCACHEPREFIX)"
    return "\n".join(rows) + (f"\n\nmedian of {runs} runs each, Python {sys.version.split()[0]}, "
                              f"{os.cpu_count()} CPUs, {bytecode}\n")


def targets(plan: list[Measurement]) -> list[tuple[str, float, float, bool]]:
    by = {m.label: m.median for m in plan}
    typer_rich, torch = plan[0].median, plan[1].median
    one, hundred = by["kforge validate (1 config)"], by["kforge validate (100 configs)"]
    checks = [("validate 100 configs < 3x validate 1", hundred / one, 3.0),
              ("validate 1 config < 2x typer+rich import", one / typer_rich, 2.0)]
    for label in ("kforge freeze-plan (7B VLM)", "kforge freeze-plan (70B text)"):
        if label in by:
            checks.append((f"{label[7:]} < 1.3x torch import", by[label] / torch, 1.3))
    return [(name, ratio, limit, ratio < limit) for name, ratio, limit in checks]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per command (median reported)")
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON instead")
    parser.add_argument("--as-is", action="store_true",
                        help="keep the environment's bytecode settings (default: cache bytecode in a temp dir)")
    args = parser.parse_args(argv)
    plan, skipped = measure(args.runs, args.as_is)
    checks = targets(plan)
    if args.json:
        print(json.dumps({"runs": args.runs, "skipped": skipped,
                          "results": [{"label": m.label, "seconds": m.seconds, "peak_rss_kb": m.peak_rss_kb,
                                       "exit_codes": sorted(m.exit_codes)} for m in plan],
                          "targets": [{"name": n, "ratio": r, "limit": lim, "met": ok}
                                      for n, r, lim, ok in checks]}, indent=2))
    else:
        print(table(plan, args.runs, args.as_is))
        for name, ratio, limit, ok in checks:
            print(f"- [{'x' if ok else ' '}] {name}: {ratio:.2f}x (target < {limit}x)")
        for command in skipped:
            print(f"- skipped: `kforge {command}` is not available yet")
    return 0 if all(ok for *_, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
