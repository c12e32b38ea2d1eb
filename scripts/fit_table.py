#!/usr/bin/env python3
"""Print kforge fit's predictions against every published KempnerForge measurement.

Usage: python scripts/fit_table.py [tests/cases/fit/published.json]

Reads the rows of published.json (each a job, a world size, a GPU and what was
measured), predicts each with ``kforge_cli.fit.predict`` and prints a Markdown
table of predicted vs measured rank-0 peak memory (error in %), verdicts and
MFU, followed by the median and maximum error over the rows the accuracy
targets apply to. ``--compact`` prints the short table the README shows. No
torch needed: the parameters come from kforge's manifest.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CASES = ROOT / "tests" / "cases" / "fit" / "published.json"


@dataclass
class Outcome:
    row: dict[str, Any]
    rank0_gib: float | None
    worst_gib: float | None
    verdict: str | None
    confidence: str | None
    mfu: tuple[float, float] | None
    error: str | None = None

    @property
    def measured_gib(self) -> float | None:
        return self.row["measured"]["peak_gib"]

    @property
    def error_pct(self) -> float | None:
        if self.rank0_gib is None or self.measured_gib is None:
            return None
        return 100.0 * (self.rank0_gib - self.measured_gib) / self.measured_gib


def load_rows(path: Path = DEFAULT_CASES) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["rows"]


def predict_row(row: dict[str, Any]) -> Outcome:
    import tomli_w

    from kforge_cli.config import load_job_text
    from kforge_cli.fit import lookup_gpu, predict
    from kforge_cli.manifest import build_manifest

    loaded = load_job_text(tomli_w.dumps(row["job"]), path=row["id"])
    if loaded.job is None or loaded.has_errors:
        messages = "; ".join(f.message for f in loaded.findings if f.is_error)
        return Outcome(row, None, None, None, None, None, error=f"config does not load: {messages}")
    meta = build_manifest(loaded.job)
    result = predict(loaded.job, meta.parameters, gpu=lookup_gpu(row["gpu"]), world_size=row["world_size"])
    return Outcome(row, result.memory.rank0.peak_gib, result.memory.worst.peak_gib, result.verdict,
                   result.confidence, result.throughput.mfu_pct)


def evaluate(path: Path = DEFAULT_CASES) -> list[Outcome]:
    return [predict_row(row) for row in load_rows(path)]


def target_errors(outcomes: list[Outcome]) -> list[float]:
    return [abs(o.error_pct) for o in outcomes if o.row.get("memory_target") and o.error_pct is not None]


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "" if value is None else format(value, spec)


def markdown(outcomes: list[Outcome]) -> str:
    header = ("| id | GPUs | measured GiB | predicted rank 0 | worst rank | error % | verdict (measured) "
              "| confidence | MFU % measured | MFU % predicted | source |")
    lines = [header,
             "|---|---:|---:|---:|---:|---:|---|---|---:|---|---|"]
    for o in outcomes:
        measured = o.row["measured"]
        seen = "oom" if measured["oom"] else "ran"
        verdict = o.error or f"{o.verdict} ({seen})"
        mfu = "" if o.mfu is None else f"{o.mfu[0]:.0f}-{o.mfu[1]:.0f}"
        mark = "" if o.row.get("memory_target") else " *"
        lines.append(f"| {o.row['id']}{mark} | {o.row['world_size']} | {_fmt(measured['peak_gib'])} | "
                     f"{_fmt(o.rank0_gib)} | {_fmt(o.worst_gib)} | {_fmt(o.error_pct, '+.1f')} | {verdict} | "
                     f"{o.confidence or ''} | {_fmt(measured['mfu_pct'])} | {mfu} | {o.row['source']} |")
    errors = target_errors(outcomes)
    if errors:
        lines.append("")
        lines.append(f"Memory targets (rows without *): {len(errors)} rows, median |error| "
                     f"{statistics.median(errors):.1f}%, max |error| {max(errors):.1f}%.")
    return "\n".join(lines)


def compact_markdown(outcomes: list[Outcome]) -> str:
    """The rows the accuracy targets apply to: job, GPUs, measured and predicted peak, error."""
    lines = ["| published run (H200) | GPUs | measured GiB | predicted GiB | error |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for o in outcomes:
        if o.row.get("memory_target") and o.error_pct is not None:
            lines.append(f"| {o.row['id']} | {o.row['world_size']} | {_fmt(o.measured_gib)} | {_fmt(o.rank0_gib)} "
                         f"| {_fmt(o.error_pct, '+.1f')}% |")
    errors = target_errors(outcomes)
    ooms = [o for o in outcomes if o.row["measured"]["oom"] and o.row["class"] != "moe"]
    caught = sum(1 for o in ooms if o.verdict == "oom")
    lines += ["", f"Median error {statistics.median(errors):.1f}%, largest {max(errors):.1f}%, over {len(errors)} "
              f"dense and VLM runs; {caught} of {len(ooms)} documented out-of-memory layouts (MoE aside) "
              "come out `oom`; "
              "MoE peaks are under-predicted by about half, so MoE results are low confidence."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    compact = "--compact" in argv
    args = [a for a in argv[1:] if a != "--compact"]
    outcomes = evaluate(Path(args[0]) if args else DEFAULT_CASES)
    print(compact_markdown(outcomes) if compact else markdown(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
