"""Rendering freeze plans: Rich tables (text and SVG) and the freeze-plan JSON document.

The ``freeze-plan`` command builds one ``PlanReport`` per file and hands the
list to ``print_reports`` (text), ``plans_document`` (JSON) or ``plans_svg``.
Everything here is deterministic for a given width with colour off, which the
golden tests rely on.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import field
from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from kforge_cli.cli.output import (
    MAX_ENTRIES_SHOWN,
    MAX_ROWS_SHOWN,
    MAX_STAGES_SHOWN,
    NaturalWidth,
    clip,
    display,
    display_path,
    emit,
    more_text,
)
from kforge_cli.cli.reporters import json_path
from kforge_cli.findings import Finding
from kforge_cli.freeze.plan import (
    EMPTY,
    FROZEN,
    PARTIAL,
    TRAINABLE,
    UNKNOWN,
    FreezePlan,
    PlanRow,
    RowCell,
    StagePlan,
    row_cells,
    state_at_step,
)
from kforge_cli.freeze.units import human_count, plural
from kforge_cli.records import record

_STATE_STYLE = {FROZEN: "cyan", TRAINABLE: "green", PARTIAL: "yellow", UNKNOWN: "magenta", EMPTY: "dim"}


@record
class PlanReport:
    """One file's result: its plan (None when it could not be planned) and every finding of the file."""

    path: str
    plan: FreezePlan | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return any(f.is_error for f in self.findings)


# --- JSON -----------------------------------------------------------------------------


def plan_to_json(plan: FreezePlan, path: str, *, step: int | None = None,
                 findings: Sequence[Finding] = ()) -> dict[str, Any]:
    """The DESIGN freeze-plan object for one file (extra keys are additive)."""
    out: dict[str, Any] = {
        "path": json_path(path),
        "arch": plan.arch,
        "total_params": plan.total_numel,
        "parameters": [_param_json(p) for p in plan.params],
        "stages": [_stage_json(s) for s in plan.stages],
        "findings": [f.to_json() for f in findings],
        "max_steps": plan.max_steps,
        "optimizer_params": len(plan.optimizer_param_names),
        "unknown": [{"prefix": u.prefix, "reason": u.reason} for u in plan.unknown],
        "notes": list(plan.notes),
    }
    if plan.saved_step is not None:
        out["saved_step"] = plan.saved_step
    if step is not None:
        at = state_at_step(plan, step)
        out["at_step"] = {"step": step, "stage_start_step": at.stage.start_step, "reached": at.reached,
                          "frozen": at.frozen, "fresh_run_frozen": at.fresh_run_frozen,
                          "resume_frozen": at.resume_frozen}
    return out


def _param_json(p: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.name, "shape": list(p.shape), "numel": p.numel,
                           "frozen_at_construction": p.frozen_at_construction}
    if p.stand_in:
        out["stand_in"] = True
    return out


def _stage_json(s: StagePlan) -> dict[str, Any]:
    return {
        "start_step": s.start_step,
        "end_step": s.end_step,
        "specs": [{"module": spec.module, "frozen": spec.frozen, "source": spec.key} for spec in s.specs],
        "frozen": list(s.frozen),
        "trainable_numel": s.trainable_numel,
        "frozen_numel": s.frozen_numel,
        "reached": s.reached,
        "fresh_run_frozen": s.fresh_run_frozen,
        "resume_frozen": s.resume_frozen,
    }


def failed_plan_json(path: str, findings: Sequence[Finding]) -> dict[str, Any]:
    """The plan object of a file that could not be planned (unreadable, invalid, unbuildable)."""
    return {"path": json_path(path), "arch": None, "total_params": 0, "parameters": [], "stages": [],
            "findings": [f.to_json() for f in findings]}


def plans_document(reports: Sequence[PlanReport], *, step: int | None = None) -> dict[str, Any]:
    plans = []
    for r in reports:
        if r.plan is None:
            plans.append(failed_plan_json(r.path, r.findings))
        else:
            plans.append(plan_to_json(r.plan, r.path, step=step, findings=r.findings))
    return {"version": 1, "plans": plans}


# --- text -----------------------------------------------------------------------------


def _header(report: PlanReport) -> Text:
    plan = report.plan
    text = Text.assemble((display_path(report.path), "bold"))
    if plan is None:
        text.append("  could not be planned", style="red")
        return text
    parts = [plan.arch or "text-only",
             f"{plural(len(plan.params), 'parameter')}, {human_count(plan.total_numel)} elements"]
    if plan.max_steps is not None:
        parts.append(f"max_steps {plan.max_steps}")
    text.append("  " + "  \u00b7  ".join(parts), style="dim")
    return text


def _stage_heading(plan: FreezePlan, index: int) -> Text:
    stage = plan.stages[index]
    label = "step" if stage.end_step == stage.start_step else "steps"
    return Text(f"{label} {stage.step_range}", style="bold")


def _stage_changes(plan: FreezePlan, index: int) -> Text:
    """What a stage does and what to know about it: a body cell, so every stage's list starts on one line."""
    stage = plan.stages[index]
    lines: list[tuple[str, str]] = []
    for spec in stage.specs[:MAX_ENTRIES_SHOWN]:
        verb = "freeze" if spec.frozen else "unfreeze"
        lines.append((f"{verb} {clip(spec.module)}", "dim"))
    if len(stage.specs) > MAX_ENTRIES_SHOWN:
        lines.append((more_text(len(stage.specs) - MAX_ENTRIES_SHOWN, "changes"), "dim"))
    if not stage.reached and stage.start_step > 0:
        lines.append(("never reached", "red"))
    if stage.fresh_run_frozen is not None and stage.fresh_run_frozen != stage.frozen:
        lines.append(("! fresh run differs", "yellow"))
    if stage.resume_frozen is not None and stage.resume_frozen != stage.frozen:
        lines.append(("! resume differs", "yellow"))
    if plan.saved_step is not None and plan.saved_stage_index == index:
        lines.append((f"\u25c6 checkpoint @{plan.saved_step}", "bold magenta"))
    text = Text()
    for i, (line, style) in enumerate(lines):
        text.append(("\n" if i else "") + line, style=style)
    return text


# No word of a stage's changes is cut across lines unless it is longer than this.
_LONGEST_UNBROKEN_WORD = 24


def _cell_text(cell: RowCell) -> Text:
    style = _STATE_STYLE[cell.state]
    if cell.state == EMPTY:
        return Text("\u2014", style="dim")
    text = Text(cell.state, style=style)
    if cell.total_count:
        if cell.state == PARTIAL:
            text.append(f"\n{cell.frozen_count}/{cell.total_count} frozen")
            text.append(f"\n{human_count(cell.frozen_numel)}/{human_count(cell.total_numel)}")
        else:
            text.append(f"\n{cell.total_count} \u00b7 {human_count(cell.total_numel)}")
    if cell.has_unknown:
        text.append("\n+ not built" if cell.total_count else "\nnot built", style="dim")
    return text


def _totals_text(trainable_numel: int, total_numel: int, trainable_count: int, total_count: int,
                 has_unknown: bool = False) -> Text:
    share = f"{100 * trainable_numel / total_numel:.1f}%" if total_numel else "\u2014"
    text = Text.assemble((f"{human_count(trainable_numel)} \u00b7 {share}", "bold"),
                         f"\n{trainable_count}/{total_count} params")
    if has_unknown:
        text.append("\nbuilt parts only", style="dim")
    return text


def plan_table(plan: FreezePlan) -> Table:
    """One column per stage, one row per alias and top-level module, and a totals row."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
    table.add_column("", no_wrap=True)
    shown = len(_shown_stages(plan))
    changes = [_stage_changes(plan, i) for i in range(shown)]
    for i, change in enumerate(changes):
        longest_word = max((len(word) for word in change.plain.split()), default=0)
        table.add_column(_stage_heading(plan, i), min_width=max(11, min(longest_word, _LONGEST_UNBROKEN_WORD)),
                         overflow="fold")
    if any(change.plain for change in changes):
        table.add_row(Text("changes", style="dim italic"), *changes)
        table.add_section()
    _add_row_groups(table, plan, lambda i, row: row.cells[:shown])
    table.add_section()
    table.add_row(Text("trainable", style="bold"),
                  *[_totals_text(s.trainable_numel, s.trainable_numel + s.frozen_numel,
                                 s.trainable_count, s.trainable_count + s.frozen_count, bool(plan.unknown))
                    for s in plan.stages[:shown]])
    return table


def _shown_stages(plan: FreezePlan) -> list[Any]:
    """The stages a table has columns for: every one, up to MAX_STAGES_SHOWN."""
    return plan.stages[:MAX_STAGES_SHOWN]


def _more_stages_note(plan: FreezePlan) -> Text | None:
    hidden = len(plan.stages) - MAX_STAGES_SHOWN
    if hidden <= 0:
        return None
    first = plan.stages[MAX_STAGES_SHOWN].start_step
    return Text(f"\u2026 and {hidden:,} more stages from step {first} on, not shown: `--step N` shows the state at "
                "any step, `--format json` lists every stage", style="yellow")


def _add_row_groups(table: Table, plan: FreezePlan,
                    cells_of: Callable[[int, PlanRow], Sequence[RowCell | None]]) -> None:
    """Aliases, then top-level modules, each group under a dim title."""
    first = True
    for kind, title in (("alias", "aliases"), ("module", "modules")):
        rows = [(i, r) for i, r in enumerate(plan.rows) if r.kind == kind]
        if not rows:
            continue
        if not first:
            table.add_section()
        first = False
        table.add_row(Text(title, style="dim italic"))
        for i, row in rows[:MAX_ROWS_SHOWN]:
            table.add_row(Text(f" {clip(row.label)}"),
                          *[Text("not reached", style="dim") if c is None else _cell_text(c)
                            for c in cells_of(i, row)])
        if len(rows) > MAX_ROWS_SHOWN:
            table.add_row(Text(f" {more_text(len(rows) - MAX_ROWS_SHOWN, title)}", style="yellow"))


def params_table(plan: FreezePlan, step: int | None = None) -> Table:
    """Every parameter with its state per stage (or, with ``step``, plan/fresh/resume at it)."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    # Names stay whole (the table is printed at its natural width): a grep for a full name must find it.
    table.add_column("parameter", no_wrap=True)
    table.add_column("shape", no_wrap=True)
    table.add_column("numel", justify="right", no_wrap=True)
    optimizer = set(plan.optimizer_param_names)
    columns: list[tuple[str, set[str] | None, set[str]]]
    if step is None:
        columns = [(s.step_range, set(s.frozen),
                    _differing(s.frozen, s.fresh_run_frozen) | _differing(s.frozen, s.resume_frozen))
                   for s in _shown_stages(plan)]
    else:
        at = state_at_step(plan, step)
        columns = [("plan", set(at.frozen), set())]
        columns.append(("fresh run", set(at.fresh_run_frozen) if at.fresh_run_frozen is not None else None,
                        set()))
        columns.append(("resumed", set(at.resume_frozen), set()))
    for title, _, _ in columns:
        table.add_column(title, no_wrap=True)
    table.add_column("optimizer", no_wrap=True)
    for p in plan.params:
        name = Text(display(p.name) + (" [ckpt]" if p.stand_in else ""), style="dim" if p.stand_in else "")
        cells = []
        for _, frozen, differs in columns:
            if frozen is None:
                cells.append(Text("not reached", style="dim"))
                continue
            state = FROZEN if p.name in frozen else TRAINABLE
            cells.append(Text(("frozen" if state == FROZEN else "train") + ("!" if p.name in differs else ""),
                              style=_STATE_STYLE[state]))
        in_opt = p.name in optimizer
        table.add_row(name, "\u00d7".join(map(str, p.shape)) or "scalar", f"{p.numel:,}", *cells,
                      Text("yes" if in_opt else "no", style="" if in_opt else "yellow"))
    return table


def _differing(plan_frozen: list[str], other: list[str] | None) -> set[str]:
    return set() if other is None else set(plan_frozen) ^ set(other)


def step_table(plan: FreezePlan, step: int) -> Table:
    """The state at one step: plan, fresh run and resume side by side, per alias and module."""
    at = state_at_step(plan, step)
    names = [p.name for p in plan.params]
    numels = [p.numel for p in plan.params]
    views: list[tuple[str, list[str] | None]] = [
        (f"plan (stage {at.stage.step_range})", at.frozen),
        ("fresh run", at.fresh_run_frozen),
        (f"resumed at {step}", at.resume_frozen),
    ]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("", no_wrap=True)
    for title, _ in views:
        table.add_column(Text(title, style="bold"), min_width=11)
    unknown = [at.unknown_frozen, at.fresh_run_unknown_frozen, at.resume_unknown_frozen]
    per_view = [None if frozen is None else row_cells(plan, frozen, u)
                for (_, frozen), u in zip(views, unknown)]
    _add_row_groups(table, plan, lambda i, _row: [None if cells is None else cells[i] for cells in per_view])
    table.add_section()
    totals = []
    total_numel = sum(numels)
    for _, frozen in views:
        if frozen is None:
            totals.append(Text("not reached", style="dim"))
            continue
        frozen_set = set(frozen)
        trainable = [i for i, n in enumerate(names) if n not in frozen_set]
        totals.append(_totals_text(sum(numels[i] for i in trainable), total_numel,
                                   len(trainable), len(names), bool(plan.unknown)))
    table.add_row(Text("trainable", style="bold"), *totals)
    return table


def finding_renderables(findings: Sequence[Finding], indent: str = "  ") -> list[RenderableType]:
    from kforge_cli.cli.reporters import finding_lines

    return [line for i, f in enumerate(findings)
            for line in finding_lines(f, indent, findings[i - 1] if i else None)]


def report_renderables(report: PlanReport, *, params: bool = False,
                       step: int | None = None) -> list[RenderableType | NaturalWidth]:
    out: list[RenderableType | NaturalWidth] = [_header(report)]
    plan = report.plan
    if plan is not None:
        if step is not None:
            at = state_at_step(plan, step)
            reach = "" if at.reached else "  (a fresh run never reaches this step)"
            out.append(Text(f"state at step {step}: stage {at.stage.step_range}{reach}", style="bold"))
        if params:
            out.append(NaturalWidth(params_table(plan, step)))
            out.append(Padding(Text("optimizer: held by the optimizer (trainable after the build-time freeze)"
                                    + ("" if step is not None else
                                       "; '!': a fresh or resumed run ends differently at that stage"),
                                    style="dim"), (0, 0, 0, 2)))
        elif step is not None:
            out.append(step_table(plan, step))
        else:
            out.append(plan_table(plan))
        more = _more_stages_note(plan) if step is None else None
        if more is not None:
            out.append(Padding(more, (0, 0, 0, 2)))
        if not params and step is None:
            out.append(Padding(Text("cells: state, then parameters \u00b7 elements; '!' marks a boundary where "
                                    "the trainer ends differently (see findings)", style="dim"), (0, 0, 0, 2)))
        for note in plan.notes:
            out.append(Padding(Text.assemble(("note: ", "dim"), display(note)), (0, 0, 0, 2)))
    findings = report.findings
    if findings:
        out.append(Text(""))
        out.extend(finding_renderables(findings))
    return out


def print_reports(console: Console, reports: Sequence[PlanReport], *, params: bool = False,
                  step: int | None = None) -> None:
    for i, report in enumerate(reports):
        if i:
            console.print()
        for renderable in report_renderables(report, params=params, step=step):
            emit(console, renderable)


def recording_console(width: int = 100) -> Console:
    """A colourless, fixed-width console writing to memory (golden tests, SVG export)."""
    return Console(file=io.StringIO(), width=width, record=True, color_system=None, no_color=True,
                   force_terminal=False, force_jupyter=False, force_interactive=False,
                   legacy_windows=False, emoji=False, highlight=False, soft_wrap=False)


def render_text(reports: Sequence[PlanReport], *, width: int = 100, params: bool = False,
                step: int | None = None) -> str:
    console = recording_console(width)
    print_reports(console, reports, params=params, step=step)
    return console.export_text(styles=False)


def plans_svg(reports: Sequence[PlanReport], *, width: int = 100, params: bool = False,
              step: int | None = None, title: str = "kforge freeze-plan") -> str:
    # Colour stays on for the SVG: it is a picture, not a terminal.
    console = Console(file=io.StringIO(), width=width, record=True, color_system="truecolor",
                      force_terminal=True, legacy_windows=False, emoji=False, highlight=False)
    print_reports(console, reports, params=params, step=step)
    return console.export_svg(title=title)
