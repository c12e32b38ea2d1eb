#!/usr/bin/env python3
"""Start-up time and peak memory of the kforge commands, against the imports they cannot avoid.

Every measurement is a fresh subprocess (what a user or a pre-commit hook pays),
repeated --runs times, interleaved so that drift in machine load hits every row
alike. Targets are judged on the fastest run of each row: start-up is CPU-bound,
so interference (another process, a VM's scheduler) only ever adds time, and the
minimum is the run it touched least. The median and the CPU time (user + system,
from wait4) are shown beside it. Two installs are measured: the interpreter running this script (it must
have torch, for the meta-device model) and an install without torch (default
`.venv-notorch/bin/python`, the one `.ci/run` builds; create it with
`python3 -m venv .venv-notorch && .venv-notorch/bin/pip install .`).

Each ratio is taken against a baseline measured with the same interpreter, so
the two installs are never compared with each other. Targets (exit 1 when one
is missed):

- validate, every rule, 7B freeze-schedule config, without torch: < 2x `import typer, rich.console`;
- validate with torch installed: < 2x the same import (validate never imports torch);
- freeze-plan with torch (meta-device model): < 1.3x `import torch`, peak RSS < 400 MiB;
- freeze-plan without torch (parameter manifest): < 2x the typer + rich import;
- fit of a job that fits, with and without torch: < 2x the typer + rich import (a job
  that does not fit makes fit search for changes: shown, not a target);
- validate of 100 configs in one call: < 10x the typer + rich import.

    python benchmarks/bench_cli.py [--runs 10] [--without-torch PYTHON] [--json] [--as-is]
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
# The reference's 7B cross-attention job with a three-stage freeze schedule (a recorded fixture).
VLM_7B = REPO / "tests" / "cases" / "fixtures" / "configs" / "r_vlm_7b_freeze_schedule.toml"
TEXT_70B = EXAMPLES / "llama_70b.toml"
DEFAULT_WITHOUT_TORCH = REPO / ".venv-notorch" / "bin" / "python"
IMPORT_UI = "import typer, rich.console"
MIB = 1024


@dataclass
class Measurement:
    install: str  # "torch" or "no torch"
    label: str
    command: list[str]
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    peak_rss_kib: list[int] = field(default_factory=list)
    exit_codes: set[int] = field(default_factory=set)

    @property
    def key(self) -> tuple[str, str]:
        return self.install, self.label

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_seconds)

    @property
    def peak_mib(self) -> float:
        return max(self.peak_rss_kib) / MIB


@dataclass(frozen=True)
class Target:
    name: str
    ratio: Callable[[dict[tuple[str, str], Measurement]], float]
    limit: float
    unit: str = "x"


def run_once(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int, int]:
    """Wall time, CPU time, peak RSS (KiB) and exit code of one fresh process."""
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, cpu, usage.ru_maxrss, os.waitstatus_to_exitcode(status)  # ru_maxrss is KiB on Linux


def has_torch(python: str) -> bool:
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def hundred_configs(folder: Path) -> list[str]:
    """100 distinct configs: the examples, each copy with its own seed."""
    sources = [p for p in sorted(EXAMPLES.glob("*.toml")) if p.name != "broken.toml"]
    paths = []
    for i in range(100):
        source = sources[i % len(sources)]
        path = folder / f"{source.stem}_{i:03d}.toml"
        path.write_text(f"# copy {i}\n" + source.read_text())
        paths.append(str(path))
    return paths


def bench_env(folder: Path, as_is: bool) -> dict[str, str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}
    env.pop("PYTHONPATH", None)
    if not as_is:
        # Measure what an installed kforge costs: bytecode cached, as pip leaves it. (Under
        # PYTHONDONTWRITEBYTECODE an editable checkout recompiles every module on every start.)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
    return env


def plan_for(install: str, python: str, many: list[str]) -> list[Measurement]:
    # -I: the installed package, never a kforge_cli found in the working directory.
    kforge = [python, "-I", "-m", "kforge_cli"]
    rows = [Measurement(install, f"python -c '{IMPORT_UI}'", [python, "-c", IMPORT_UI])]
    if install == "torch":
        rows.append(Measurement(install, "python -c 'import torch'", [python, "-c", "import torch"]))
    rows += [
        Measurement(install, "validate (7B freeze schedule)", [*kforge, "validate", str(VLM_7B)]),
        Measurement(install, "freeze-plan (7B freeze schedule)", [*kforge, "freeze-plan", str(VLM_7B)]),
        Measurement(install, "freeze-plan (70B text)", [*kforge, "freeze-plan", str(TEXT_70B)]),
        Measurement(install, "fit (70B, fits 32 x H200)",
                    [*kforge, "fit", str(TEXT_70B), "--gpu", "H200", "--world-size", "32"]),
        # Out of memory on one GPU: fit predicts ~18 changes and runs validate on those it would show.
        Measurement(install, "fit (7B, OOM on 1 x H100: searches changes)",
                    [*kforge, "fit", str(VLM_7B), "--gpu", "H100"]),
        Measurement(install, "explain (7B freeze schedule)", [*kforge, "explain", str(VLM_7B)]),
    ]
    if install == "no torch":
        rows.append(Measurement(install, "validate (100 configs)", [*kforge, "validate", *many]))
    return rows


def measure(runs: int, as_is: bool, without_torch: str | None) -> tuple[list[Measurement], list[str]]:
    notes = []
    folder = Path(tempfile.mkdtemp(prefix="kforge-bench-"))
    (folder / ".git").mkdir()  # no [tool.kforge] lookup above this folder
    env = bench_env(folder, as_is)
    try:
        many = hundred_configs(folder)
        plan = plan_for("torch", sys.executable, many)
        if without_torch:
            plan += plan_for("no torch", without_torch, many)
        else:
            notes.append(f"no install without torch at {DEFAULT_WITHOUT_TORCH}: its rows and targets are skipped")
        for m in plan:  # one warm-up each: page cache and bytecode
            run_once(m.command, folder, env)
        for _ in range(runs):
            for m in plan:
                seconds, cpu, rss, code = run_once(m.command, folder, env)
                m.seconds.append(seconds)
                m.cpu_seconds.append(cpu)
                m.peak_rss_kib.append(rss)
                m.exit_codes.add(code)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return plan, notes


def _over(numerator: tuple[str, str], denominator: tuple[str, str]) -> Callable[[dict], float]:
    return lambda by: by[numerator].best / by[denominator].best


def _ui(install: str) -> tuple[str, str]:
    return install, f"python -c '{IMPORT_UI}'"


TARGETS = [
    Target("validate without torch < 2x typer+rich import",
           _over(("no torch", "validate (7B freeze schedule)"), _ui("no torch")), 2.0),
    Target("validate with torch installed < 2x typer+rich import",
           _over(("torch", "validate (7B freeze schedule)"), _ui("torch")), 2.0),
    Target("freeze-plan with torch < 1.3x torch import",
           _over(("torch", "freeze-plan (7B freeze schedule)"), ("torch", "python -c 'import torch'")), 1.3),
    Target("freeze-plan with torch: peak RSS < 400 MiB",
           lambda by: by[("torch", "freeze-plan (7B freeze schedule)")].peak_mib, 400, " MiB"),
    Target("freeze-plan without torch < 2x typer+rich import",
           _over(("no torch", "freeze-plan (7B freeze schedule)"), _ui("no torch")), 2.0),
    Target("fit without torch < 2x typer+rich import",
           _over(("no torch", "fit (70B, fits 32 x H200)"), _ui("no torch")), 2.0),
    Target("fit with torch installed < 2x typer+rich import",
           _over(("torch", "fit (70B, fits 32 x H200)"), _ui("torch")), 2.0),
    # Each further config costs under a tenth of the typer + rich import.
    Target("validate of 100 configs < 10x typer+rich import",
           _over(("no torch", "validate (100 configs)"), _ui("no torch")), 10.0),
]


def evaluate(plan: list[Measurement]) -> list[tuple[Target, float | None]]:
    by = {m.key: m for m in plan}
    results: list[tuple[Target, float | None]] = []
    for target in TARGETS:
        try:
            results.append((target, target.ratio(by)))
        except KeyError:  # a row of an install that was not measured
            results.append((target, None))
    return results


def table(plan: list[Measurement], runs: int, as_is: bool) -> str:
    rows = ["| install | command | best (ms) | median (ms) | CPU median (ms) | × typer+rich import (best) "
            "| peak RSS (MiB) | exit |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    by = {m.key: m for m in plan}
    for m in plan:
        base = by[_ui(m.install)].best
        rows.append(f"| {m.install} | {m.label} | {m.best * 1000:.0f} | {m.median * 1000:.0f} | "
                    f"{m.cpu_median * 1000:.0f} | {m.best / base:.2f} | {m.peak_mib:.0f} | "
                    f"{','.join(map(str, sorted(m.exit_codes)))} |")
    bytecode = "environment as is" if as_is else "bytecode cached (PYTHONPYCACHEPREFIX)"
    return "\n".join(rows) + (f"\n\n{runs} runs each, Python {sys.version.split()[0]}, "
                              f"{os.cpu_count()} CPUs, {bytecode}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per command")
    parser.add_argument("--without-torch", metavar="PYTHON",
                        help=f"interpreter of a kforge install without torch (default: {DEFAULT_WITHOUT_TORCH})")
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON instead")
    parser.add_argument("--as-is", action="store_true",
                        help="keep the environment's bytecode settings (default: cache bytecode in a temp dir)")
    args = parser.parse_args(argv)
    if not has_torch(sys.executable):
        parser.error("run this script with an interpreter that has torch (pip install -e '.[torch]')")
    if not VLM_7B.is_file():
        parser.error(f"{VLM_7B} is missing")
    without_torch = args.without_torch or (str(DEFAULT_WITHOUT_TORCH) if DEFAULT_WITHOUT_TORCH.exists() else None)
    if without_torch and has_torch(without_torch):
        parser.error(f"{without_torch} has torch installed; --without-torch needs an install without it")
    plan, notes = measure(args.runs, args.as_is, without_torch)
    results = evaluate(plan)
    missed = [target for target, value in results if value is not None and value >= target.limit]
    if args.json:
        print(json.dumps({"runs": args.runs, "notes": notes,
                          "results": [{"install": m.install, "label": m.label, "seconds": m.seconds,
                                       "cpu_seconds": m.cpu_seconds,
                                       "peak_rss_kib": m.peak_rss_kib, "exit_codes": sorted(m.exit_codes)}
                                      for m in plan],
                          "targets": [{"name": t.name, "value": value, "limit": t.limit,
                                       "met": None if value is None else value < t.limit}
                                      for t, value in results]}, indent=2))
    else:
        print(table(plan, args.runs, args.as_is))
        for target, value in results:
            if value is None:
                print(f"- [ ] {target.name}: not measured")
            else:
                mark = "x" if value < target.limit else " "
                shown = f"{value:.2f}x" if target.unit == "x" else f"{value:.0f}{target.unit}"
                print(f"- [{mark}] {target.name}: {shown} (target < {target.limit:g}{target.unit})")
        for note in notes:
            print(f"- note: {note}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
