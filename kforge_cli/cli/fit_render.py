"""Rendering `kforge fit`: the per-GPU memory table, a capacity bar, throughput and suggestions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field
from typing import Any

from kforge_cli.cli.output import display_path
from kforge_cli.findings import Finding
from kforge_cli.records import record

# One letter per term, so the bar says what dominates even without colour.
TERM_STYLE = {
    "parameters": ("P", "blue"),
    "gradients": ("G", "cyan"),
    "optimizer_state": ("O", "magenta"),
    "gradient_accumulation": ("A", "red"),
    "activations": ("X", "yellow"),
    "logits_and_loss": ("L", "bright_red"),
    "fsdp_unsharded": ("F", "green"),
    "other": ("o", "white"),
}
VERDICT_STYLE = {"fits": "bold green", "tight": "bold yellow", "oom": "bold red"}
BAR_WIDTH = 50


@record
class FitReport:
    """One file: its prediction (None when the job cannot be predicted) and every finding of the file."""

    path: str
    prediction: Any  # kforge_cli.fit.FitPrediction | None
    findings: list[Finding] = field(default_factory=list)
    suggestions: list[Any] = field(default_factory=list)
    reason: str | None = None  # why there is no prediction


def fit_document(reports: Sequence[FitReport]) -> dict[str, Any]:
    from kforge_cli.cli.reporters import json_path

    plans = []
    for r in reports:
        findings = [f.to_json() for f in r.findings]
        if r.prediction is None:
            plans.append({"path": json_path(r.path), "gpu": None, "world_size": None, "layout": None,
                          "memory": None, "verdict": None, "confidence": None, "throughput": None,
                          "findings": findings, "reason": r.reason})
            continue
        entry = r.prediction.to_json(json_path(r.path), findings)
        entry["confidence_reasons"] = list(r.prediction.confidence_reasons)
        entry["notes"] = list(r.prediction.notes)
        entry["per_stage"] = [{"rank": s.rank, "label": s.label, "moment": s.moment,
                               "peak_gib": round(s.peak_gib, 2),
                               "breakdown": {t: round(v, 2) for t, v in s.breakdown.items()}}
                              for s in r.prediction.memory.per_stage]
        entry["suggestions"] = [{"overrides": s.overrides, "world_size": s.world_size,
                                 "peak_gib": round(s.peak_gib, 2), "high_gib": round(s.high_gib, 2),
                                 "verdict": s.verdict, "relative_speed": round(s.relative_speed, 3)}
                                for s in r.suggestions]
        plans.append(entry)
    return {"version": 1, "plans": plans}


def _gib(value: float) -> str:
    return f"{value:.1f}"


def _header(report: FitReport) -> Any:
    from rich.text import Text

    fit = report.prediction
    text = Text.assemble((display_path(report.path), "bold"))
    if fit is None:
        text.append(f"  no prediction: {report.reason or 'the job cannot be built'}", style="red")
        return text
    memory = fit.memory
    text.append(f"  {fit.verdict}", style=VERDICT_STYLE.get(fit.verdict, ""))
    text.append(f"  {_gib(memory.peak_gib)} GiB of {_gib(fit.gpu.capacity_gib)} GiB per GPU "
                f"({_gib(memory.low_gib)}-{_gib(memory.high_gib)})", style="bold")
    text.append(f"  {fit.world_size} x {fit.gpu.name}, {fit.confidence} confidence", style="dim")
    return text


def _layout_text(fit: Any) -> str:
    layout = fit.layout
    degrees = [f"{name} {value}" for name, value in layout.as_dict().items() if value > 1] or ["one GPU"]
    flavour = []
    if layout.fsdp:
        flavour.append(f"FSDP over {layout.fsdp_shard}")
    if layout.sequence_parallel:
        flavour.append("sequence parallel")
    return " \u00b7 ".join(degrees) + (f"  ({', '.join(flavour)})" if flavour else "")


def _breakdown_table(fit: Any) -> Any:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    ranks = fit.memory.per_stage
    worst = fit.memory.worst
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("term", no_wrap=True)
    for rank in ranks:
        title = "GiB" if len(ranks) == 1 else f"{rank.label}\nGiB"
        table.add_column(Text(title, justify="right"), justify="right", no_wrap=True)
    table.add_column(Text("share", justify="right"), justify="right", no_wrap=True)
    for term, gib in worst.breakdown.items():
        letter, style = TERM_STYLE.get(term, ("?", ""))
        share = gib / worst.peak_gib if worst.peak_gib else 0.0
        table.add_row(Text.assemble((letter, style), f" {term.replace('_', ' ')}"),
                      *[_gib(rank.breakdown.get(term, 0.0)) for rank in ranks], f"{share:.0%}")
    table.add_section()
    table.add_row(Text("peak", style="bold"), *[Text(_gib(rank.peak_gib), style="bold") for rank in ranks], "")
    return table


def _moments(fit: Any) -> str:
    ranks = fit.memory.per_stage
    if len(ranks) == 1:
        return f"the peak is reached at {ranks[0].moment}"
    return "; ".join(f"{rank.label}: at {rank.moment}" for rank in ranks)


def capacity_bar(fit: Any, width: int = BAR_WIDTH) -> Any:
    """The worst rank's peak against the capacity, one letter per term; '!' past the capacity."""
    from rich.text import Text

    capacity = fit.gpu.capacity_gib
    worst = fit.memory.worst
    scale = width / max(capacity, worst.peak_gib)
    bar = Text("[")
    used = 0.0
    drawn = 0
    for term, gib in worst.breakdown.items():
        used += gib
        cells = round(used * scale) - drawn
        letter, style = TERM_STYLE.get(term, ("?", ""))
        for _ in range(max(0, cells)):
            past = drawn >= round(capacity * scale)
            bar.append("!" if past else letter, style="bold red" if past else style)
            drawn += 1
    bar.append("." * max(0, width - drawn), style="dim")
    bar.append("]")
    share = worst.peak_gib / capacity if capacity else 0.0
    bar.append(f" {share:.0%} of capacity", style=VERDICT_STYLE.get(fit.verdict, ""))
    return bar


def _throughput_text(fit: Any) -> str:
    tput = fit.throughput
    parts = [f"{tput.flops_per_token / 1e9:.2f} GFLOPs/token (the trainer's formula)"]
    if tput.tokens_per_second is not None:
        low, high = tput.tokens_per_second
        parts.append(f"{low:,.0f}-{high:,.0f} tokens/s")
    if tput.mfu_pct is not None:
        parts.append(f"MFU {tput.mfu_pct[0]:.0f}-{tput.mfu_pct[1]:.0f}%")
    return " \u00b7 ".join(parts)


def print_fit(console: Any, reports: Sequence[FitReport]) -> None:
    from rich.padding import Padding
    from rich.text import Text

    from kforge_cli.cli.reporters import print_findings

    for i, report in enumerate(reports):
        if i:
            console.print()
        console.print(_header(report))
        fit = report.prediction
        if fit is not None:
            console.print(Padding(Text.assemble(("layout  ", "bold"), _layout_text(fit)), (0, 0, 0, 2)))
            console.print(Padding(capacity_bar(fit), (0, 0, 0, 2)))
            console.print(Padding(_breakdown_table(fit), (0, 0, 0, 2)))
            console.print(Padding(Text(_moments(fit), style="dim"), (0, 0, 0, 2)))
            console.print(Padding(Text.assemble(("speed  ", "bold"), _throughput_text(fit)), (0, 0, 0, 2)))
            for reason in fit.confidence_reasons:
                console.print(Padding(Text.assemble(("low confidence: ", "dim"), reason), (0, 0, 0, 2)))
            for note in fit.notes:
                console.print(Padding(Text.assemble(("note: ", "dim"), note), (0, 0, 0, 2)))
            if report.suggestions:
                console.print(Padding(Text("changes that fit, fastest first:", style="bold"), (0, 0, 0, 2)))
                for s in report.suggestions:
                    change = (f"--world-size {s.world_size}" if s.world_size else
                              "--set " + " --set ".join(s.overrides))
                    speed = "" if s.world_size else f", speed x{s.relative_speed:.2f}"
                    console.print(Padding(Text.assemble(
                        (change, "cyan"), f"  -> {_gib(s.peak_gib)} GiB (up to {_gib(s.high_gib)}){speed}"),
                        (0, 0, 0, 4)))
            elif fit.verdict != "fits":
                console.print(Padding(Text("no change kforge tries (activation checkpointing, batch size vs "
                                           "grad_accum_steps, tp, pp, more GPUs) fits", style="yellow"),
                                      (0, 0, 0, 2)))
        if report.findings:
            console.print()
            print_findings(console, report.findings)
