"""Rendering for `kforge explain`: Rich text, the JSON document, and `--field` docs.

Imported lazily by the command so every other kforge command starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kforge_cli.cli.output import (
    MAX_CELL_CHARS,
    MAX_ENTRIES_SHOWN,
    MAX_ROWS_SHOWN,
    MAX_STAGES_SHOWN,
    clip,
    display,
    display_path,
    emit,
    more_text,
)
from kforge_cli.findings import shown

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from kforge_cli.explain import (
        ArchView,
        Explanation,
        FieldDoc,
        ParamCounts,
        TokenBudgetView,
    )

_SOURCE_LABEL = {"file": "file", "override": "--set", "default": "default"}
_SETTING_WIDTH = 38
_FREEZE_FIELDS = {"freeze": "spec", "freeze_schedule": "stage"}


def run_explain(inputs: list[Any], options: Any, as_json: bool, show_all: bool) -> int:
    """Explain every input with the engine; returns the exit status."""
    from kforge_cli.cli.options import exit_status, run_engine
    from kforge_cli.explain import explain_report

    reports = run_engine(inputs, options)
    explanations = [explain_report(report) for report in reports]
    if as_json:
        from kforge_cli.cli.output import print_json

        print_json(_document(explanations))
    else:
        from kforge_cli.cli.output import emit, stdout_console

        console = stdout_console()
        for i, explanation in enumerate(explanations):
            if i:
                console.print()
            _render(console, explanation, show_all)
        if len(explanations) > 1:
            console.print()
            emit(console, _summary_text(explanations))
    return exit_status(reports)


def explain_field(key: str, inputs: list[Any], options: Any, as_json: bool) -> int:
    return _explain_field(key, inputs, options, as_json)


# --------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------


def _document(explanations: list[Explanation]) -> dict[str, Any]:
    from kforge_cli.cli.reporters import json_path

    return {
        "version": 1,
        "configs": [{**e.to_json(), "path": json_path(e.path)} for e in explanations],
        "summary": {"files": len(explanations), "invalid": sum(1 for e in explanations if not e.valid),
                    "errors": sum(e.errors for e in explanations),
                    "warnings": sum(e.warnings for e in explanations)},
    }


# --------------------------------------------------------------------------------------
# Text: one file
# --------------------------------------------------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _counts(e: Explanation) -> str:
    parts = [_plural(e.errors, "error")] if e.errors else []
    if e.warnings:
        parts.append(_plural(e.warnings, "warning"))
    return ", ".join(parts)


def _header(e: Explanation) -> Text:
    from rich.text import Text

    counts = _counts(e)
    if not e.readable:
        verdict = "unreadable"
    elif not e.accepted:
        verdict = f"rejected at load: {counts}"
    elif e.valid:
        verdict = "valid" + (f", {counts}" if counts else "")
    elif e.errors:
        verdict = f"invalid: {counts}"
    else:
        verdict = "invalid: the model cannot be built" + (f"; {counts}" if counts else "")
    kind = None
    if e.accepted:
        kind = "text-only job" if e.arch is None else f"{e.arch.arch} VLM"
        if e.token_budget is not None and e.token_budget.frames > 1:
            kind += " (video)"
    mark, style = ("✓ ", "bold green") if e.valid else ("✗ ", "bold red")
    text = Text.assemble((mark, style), (display_path(e.path), "bold"))
    if kind:
        text.append(f"  {kind}", style="cyan")
    text.append(f"  {verdict}", style="green" if e.valid else "red")
    return text


def _render(console: Console, e: Explanation, show_all: bool) -> None:
    from rich.padding import Padding
    from rich.text import Text

    emit(console, _header(e))
    if e.accepted:
        _print_block(console, "Config", _config_table(e, show_all), _config_footer(e, show_all))
        if e.arch is not None:
            _print_block(console, "Architecture", _arch_table(e.arch))
        if e.token_budget is not None:
            _print_block(console, "Token budget (positions per sample)", _budget_table(e.token_budget))
        if e.params is not None:
            _print_block(console, "Parameters", _params_table(e.params))
    elif e.readable:
        console.print(Padding(Text("The reference's loader rejects this file, so there is no resolved config to "
                                   "explain; fix the errors below first.", style="dim"), (0, 0, 0, 2)))
    _print_findings(console, e)


def _print_block(console: Console, title: str, table: Any, footer: list[Text] | None = None) -> None:
    from rich.padding import Padding
    from rich.text import Text

    console.print()
    emit(console, Text(title, style="bold"))
    emit(console, Padding(table, (0, 0, 0, 2)))
    for line in footer or []:
        emit(console, Padding(line, (0, 0, 0, 2)))


def _grid(*columns: dict[str, Any], gap: int = 2) -> Table:
    from rich.table import Table

    table = Table(box=None, show_header=False, padding=(0, gap, 0, 0), pad_edge=False, expand=False)
    for options in columns:
        table.add_column(**options)
    return table


def _setting_text(section: str, row: Any, show_all: bool) -> str:
    """The row as TOML would write it, "name = value"."""
    from kforge_cli.explain import format_value

    text = clip(f"{row.name} = {format_value(row.value)}", 2 * MAX_CELL_CHARS)
    if not show_all and section == "vlm" and row.name in _FREEZE_FIELDS and len(text) > _SETTING_WIDTH:
        # The Architecture block lists them spec by spec.
        return f"{row.name} = ({_plural(len(row.value), _FREEZE_FIELDS[row.name])}, below)"
    return text


def _config_table(e: Explanation, show_all: bool) -> Table:
    from rich.text import Text

    shown = []
    for section in e.sections:
        picked = (section.rows if show_all else section.set_rows) or []
        if picked:
            shown.append((section, [(row, _setting_text(section.name, row, show_all)) for row in picked]))
    if not shown:
        table = _grid({"no_wrap": True})
        table.add_row(Text("every field is at its default"))
        return table
    settings = [text for _, rows in shown for _, text in rows]
    setting_width = min(_SETTING_WIDTH, max([len(t) for t in settings] + [len(s.name) + 2 for s, _ in shown]))
    source_width = max(len(_SOURCE_LABEL.get(row.source, row.source)) for _, rows in shown for row, _ in rows)
    # One line per field unless the value is long; `--field KEY` and JSON carry the whole doc.
    table = _grid({"width": setting_width, "overflow": "fold"}, {"width": source_width, "no_wrap": True},
                  {"ratio": 1, "no_wrap": True, "overflow": "ellipsis", "style": "dim"})
    table.expand = True
    for i, (section, rows) in enumerate(shown):
        if i:
            table.add_row("", "", "")
        table.add_row(Text(f"[{section.name}]", style="bold"), "", Text(section.doc))
        for row, text in rows:
            table.add_row(Text(text), Text(_SOURCE_LABEL.get(row.source, row.source),
                                           style="dim" if row.source == "default" else ""), Text(row.doc))
    return table


def _config_footer(e: Explanation, show_all: bool) -> list[Text]:
    from rich.text import Text

    unset = [s.name for s in e.sections if s.rows is None]
    defaults = [s.name for s in e.sections if s.rows is not None and not s.set_rows]
    lines = []
    if defaults and not show_all:
        lines.append(Text(f"all defaults: {', '.join(defaults)}", style="dim"))
    if unset:
        lines.append(Text(f"not set: {', '.join(unset)}", style="dim"))
    if not show_all:
        lines.append(Text("fields at their defaults are hidden; --all lists every field", style="dim"))
    return lines


def _patterns_text(patterns: list[str]) -> str:
    # The default aliases pair a module with everything under it: say so in words.
    if len(patterns) == 2 and isinstance(patterns[0], str) and patterns[1] == patterns[0] + ".*":
        return clip(f"{patterns[0]} and everything below it")
    # An entry the file wrote as a number is kept as is by the reference (the freeze rules say where it fails).
    entries = [p if isinstance(p, str) else shown(p) for p in patterns[:MAX_ENTRIES_SHOWN]]
    if len(patterns) > MAX_ENTRIES_SHOWN:
        entries.append(more_text(len(patterns) - MAX_ENTRIES_SHOWN, "patterns"))
    return clip(", ".join(entries), 2 * MAX_CELL_CHARS)


def _arch_table(arch: ArchView) -> Table:
    from rich.text import Text

    from kforge_cli.explain import format_value

    table = _grid({"no_wrap": True, "style": "bold"}, {"ratio": 1})
    table.add_row("arch", Text(f"{arch.arch}: {arch.description}" if arch.description else arch.arch))
    if arch.image_tokens_in_residual:
        stream = "image + text: every image token takes a sequence position, ahead of the text"
    else:
        stream = "text only: images enter as key/value inputs of the cross-attention blocks"
    table.add_row("residual stream", Text(stream))
    ca = arch.cross_attention
    if ca is not None:
        if ca.blocks:
            after = ", ".join(str(i) for i in ca.after_layers)
            if ca.blocks > len(ca.after_layers):
                after += ", ..."
            layout = (f"{_plural(ca.blocks, 'block')}, one after every {ca.every_n_layers} text layers: after "
                      f"layer{'s' if ca.blocks > 1 else ''} {after} (0-based)")
        else:
            layout = (f"no block: cross_attention_every_n_layers = {ca.every_n_layers} exceeds the text layers, "
                      "so images never reach the model")
        table.add_row("cross-attention", Text(layout))
        if ca.n_heads is not None:
            table.add_row("", Text(f"{ca.n_heads} query heads, {ca.n_kv_heads} key/value heads, head dim "
                                   f"{ca.head_dim}"))
    if arch.modalities is not None:
        per = "separate attention and FFN weights per modality" if arch.image_heads is not None else \
            "shared attention, one expert group per modality"
        table.add_row("modalities", Text(display(f"{', '.join(map(str, arch.modalities))}: {per}")))
        if arch.image_heads is not None:
            table.add_row("", Text(f"image stream: {arch.image_heads[0]} query heads, {arch.image_heads[1]} "
                                   "key/value heads"))
    if arch.moma_experts is not None:
        capacity = arch.moma_capacity or {}
        parts = [f"{m} {n}" + (f" (capacity factor {capacity[m]:g})" if m in capacity else "")
                 for m, n in arch.moma_experts.items()]
        table.add_row("experts", Text(display("; ".join(parts))))
        table.add_row("", Text(f"gumbel noise {'on' if arch.moma_gumbel_noise else 'off'} in training"))
    aliases = list(arch.module_aliases.items())
    width = min(max((len(a) for a, _ in aliases[:MAX_ROWS_SHOWN]), default=0), MAX_CELL_CHARS)
    for i, (alias, patterns) in enumerate(aliases[:MAX_ROWS_SHOWN]):
        table.add_row("freeze aliases" if i == 0 else "",
                      Text.assemble((clip(alias).ljust(width), "magenta"), "  ", _patterns_text(patterns)))
    if len(aliases) > MAX_ROWS_SHOWN:
        table.add_row("", Text(more_text(len(aliases) - MAX_ROWS_SHOWN, "aliases"), style="yellow"))
    if arch.dropped_aliases:
        table.add_row("", Text(f"vlm.module_patterns leaves out {', '.join(arch.dropped_aliases)}: freeze specs "
                               "naming them become raw patterns", style="yellow"))
    stages = [("at build", arch.freeze)] + [(f"step {s['start_step']}", s["specs"])
                                            for s in arch.freeze_schedule[:MAX_STAGES_SHOWN]]
    for i, (when, specs) in enumerate(stages):
        parts = [f"{clip(s['module'])} {'frozen' if s['frozen'] else 'trainable'}"
                 if isinstance(s, dict) else clip(format_value(s)) for s in specs[:MAX_ENTRIES_SHOWN]]
        if len(specs) > MAX_ENTRIES_SHOWN:
            parts.append(more_text(len(specs) - MAX_ENTRIES_SHOWN, "specs"))
        table.add_row("freeze" if i == 0 else "", Text.assemble((f"{when}: ", "bold"), ", ".join(parts) or "nothing"))
    hidden = len(arch.freeze_schedule) - MAX_STAGES_SHOWN
    if hidden > 0:
        table.add_row("", Text(f"\u2026 and {hidden:,} more stages (kforge freeze-plan --step N shows any step)",
                               style="yellow"))
    return table


def _fit_text(available: int, required: int | None, pending: str) -> Text:
    from rich.text import Text

    if required is None:
        return Text.assemble(str(available), (f"  {pending}", "dim"))
    slack = available - required
    if slack > 0:
        return Text.assemble(str(available), ("  fits, ", "green"), (f"{slack} spare", "green"))
    if slack == 0:
        return Text.assemble(str(available), ("  fits exactly", "green"))
    return Text.assemble(str(available), (f"  {-slack} short of {required}", "bold red"))


def _budget_table(b: TokenBudgetView) -> Table:
    from rich.text import Text

    table = _grid({"no_wrap": True, "style": "bold"}, {"ratio": 1})
    if b.encoder_tokens is None:
        table.add_row("image tokens", Text(b.unknown_reason or "unknown"))
    else:
        line = f"{b.encoder_tokens} per frame ({b.encoder_tokens_from})"
        if b.tokens_per_frame is None:
            line += f"; {b.unknown_reason}"
        elif b.tokens_per_frame != b.encoder_tokens:
            line += f" -> {b.tokens_per_frame} after the {b.adapter} adapter"
        else:
            line += f", kept by the {b.adapter} adapter"
        if b.frames > 1 and b.visual_tokens is not None:
            line += f" x {b.frames} frames = {b.visual_tokens}"
        table.add_row("image tokens", Text(line))
    text = f"{b.max_text_len} text (vlm.max_text_len)"
    needed = f" = {b.required} needed" if b.required is not None else ""
    if not b.image_tokens_in_residual:
        line = f"{text}{needed}; no image token in the stream"
    elif b.residual_image_tokens is None:
        line = f"? image + {text}"
    else:
        line = f"{b.residual_image_tokens} image + {text}{needed}"
    table.add_row("sequence", Text(line))
    pending_model = "checked when the model is built" if b.required is None else ""
    pending_train = "not checked until the encoder's token count is known" if b.required is None else ""
    table.add_row("model.max_seq_len", _fit_text(b.model_max_seq_len, b.required, pending_model))
    table.add_row("train.seq_len", _fit_text(b.train_seq_len, b.required, pending_train))
    return table


def _count_cells(n: int | None) -> tuple[Text, Text]:
    from rich.text import Text

    from kforge_cli.freeze.units import human_count

    if n is None:
        return Text("?"), Text("")
    return Text(f"{n:,}"), Text(human_count(n) if n >= 1000 else "", style="dim")


def _params_table(p: ParamCounts) -> Any:
    from rich.text import Text

    if p.error is not None:
        lines = Text.assemble(("the model cannot be built: ", "bold red"), p.error.message)
        if p.error.key:
            lines.append(f" ({p.error.key})", style="magenta")
        if p.error.hint:
            lines.append("\n")
            lines.append_text(Text.assemble(("fix: ", "green"), p.error.hint))
        return lines
    table = _grid({"no_wrap": True}, {"justify": "right", "no_wrap": True}, {"justify": "right", "no_wrap": True},
                  {"ratio": 1, "style": "dim"})

    def row(label: str, n: int | None, note: str = "", unknown_prefix: str | None = None) -> None:
        exact, human = _count_cells(n)
        reason = p.unknown_reason(unknown_prefix) if unknown_prefix else None
        if n is None and reason:
            note = f"unknown: {reason}"
        table.add_row(Text(label), exact, human, Text(note))

    if p.is_vlm:
        row("vision encoder", p.vision_encoder, "parameter-free" if p.vision_encoder == 0 else "", "vision_encoder")
        row("adapter", p.adapter, "", "adapter")
        row("transformer", p.transformer, "text backbone")
        if p.cross_attention is not None:
            row("  cross-attention", p.cross_attention, "part of the transformer")
    else:
        row("transformer", p.transformer, "text backbone")
    missing = [u.prefix for u in p.unknown]
    row("total", p.total, f"without {', '.join(missing)}" if missing else "")
    if not p.frozen_at_step_0:
        trainable_note = "everything" if not missing else "every built parameter"
    else:
        from kforge_cli.freeze.units import human_count

        by = [what for what, n in (("vlm.freeze", p.frozen_by_specs), ("the model itself", p.frozen_at_construction))
              if n]
        trainable_note = f"{human_count(p.frozen_at_step_0)} frozen at build by {' and '.join(by)}"
    # An unbuilt component that no spec freezes trains too, but its count is unknown.
    training = [u.prefix for u in p.unknown if u.frozen_at_step_0 is False]
    unsure = [u.prefix for u in p.unknown if u.frozen_at_step_0 is None]
    if training:
        trainable_note += f"; the unbuilt {' and '.join(training)} also train{'s' if len(training) == 1 else ''}"
    if unsure:
        trainable_note += f"; the unbuilt {' and '.join(unsure)} may also train"
    row("trainable at step 0", p.trainable_at_step_0, trainable_note)
    for stage in p.later_stages[:MAX_STAGES_SHOWN]:
        total = stage.trainable + stage.frozen
        share = f"{100 * stage.trainable / total:.1f}% of the built parameters" if total else ""
        row(f"  from step {stage.start_step}", stage.trainable, share)
    hidden = len(p.later_stages) - MAX_STAGES_SHOWN
    if hidden > 0:
        table.add_row(Text(f"  \u2026 and {hidden:,} more stages", style="yellow"), "", "", "")
    return table


def _print_findings(console: Console, e: Explanation) -> None:
    from rich.text import Text

    from kforge_cli.cli.output import emit
    from kforge_cli.cli.reporters import print_findings

    console.print()
    if not e.findings:
        emit(console, Text.assemble(("Findings", "bold"), ("  none", "green")))
        return
    emit(console, Text("Findings", style="bold"))
    print_findings(console, e.findings)


def _summary_text(explanations: list[Explanation]) -> Text:
    from rich.text import Text

    invalid = sum(1 for e in explanations if not e.valid)
    return Text(f"{_plural(len(explanations), 'file')}: {invalid} invalid, "
                f"{_plural(sum(e.errors for e in explanations), 'error')}, "
                f"{_plural(sum(e.warnings for e in explanations), 'warning')}", style="bold")


# --------------------------------------------------------------------------------------
# --field KEY
# --------------------------------------------------------------------------------------


def _explain_field(key: str, inputs: list[Any], options: Any, as_json: bool) -> int:
    from kforge_cli.cli.exitcodes import ExitCode
    from kforge_cli.cli.output import fail
    from kforge_cli.explain import UnknownFieldError, describe_field

    try:
        doc = describe_field(key)
    except UnknownFieldError as exc:
        first, *others = exc.suggestions or [""]
        hint = (f"did you mean {first}?" + (f" (also close: {', '.join(others)})" if others else "") if first
                else "run `kforge explain --field SECTION` (e.g. model, vlm) to list a section's keys")
        fail(f"--field {key!r}: no such config key", hint)
        return ExitCode.USAGE
    values = [_field_value(item, doc.key, options) for item in inputs]
    if as_json:
        from kforge_cli.cli.output import print_json

        document: dict[str, Any] = {"version": 1, "field": doc.to_json()}
        if inputs:
            document["values"] = values
        print_json(document)
    else:
        from kforge_cli.cli.output import stdout_console

        console = stdout_console()
        _render_field(console, doc)
        if values:
            _render_values(console, values)
    return ExitCode.FINDINGS if any(v["value"] is None and not v["loaded"] for v in values) else ExitCode.OK


def _field_value(item: Any, key: str, options: Any) -> dict[str, Any]:
    """The resolved value of ``key`` in one file (a "[]" key shows its whole array)."""
    from kforge_cli.cli.reporters import json_path
    from kforge_cli.config.loader import load_job, load_job_text
    from kforge_cli.config.resolved import resolved_dict
    from kforge_cli.rules.rule import LOAD

    out: dict[str, Any] = {"path": json_path(item.path), "loaded": False, "key": key, "value": None, "source": None}
    if item.problem is not None:
        out["error"] = item.problem
        return out
    load = (load_job_text(item.text, item.path, options.overrides) if item.text is not None
            else load_job(item.path, options.overrides))
    loaded = load.job is not None and not any(f.is_error and f.stage == LOAD for f in load.findings)
    out["loaded"] = loaded
    if not loaded:
        errors = [f for f in load.findings if f.is_error]
        out["error"] = errors[0].message if errors else "cannot be loaded"
        return out
    assert load.job is not None
    shown = key.split("[]", 1)[0]
    value: Any = resolved_dict(load.job)
    for part in shown.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    parts = shown.split(".")
    out.update(key=shown, value=value,
               source=load.sources.get(".".join(parts[:2]), "default") if len(parts) >= 2 else None)
    return out


def _render_field(console: Console, doc: FieldDoc) -> None:
    from rich.padding import Padding
    from rich.text import Text

    title = f"[{doc.key}]" if doc.kind == "section" else doc.key
    console.print(Text.assemble((title, "bold"), ("  " + doc.doc if doc.doc else "", "")))
    table = _grid({"no_wrap": True, "style": "bold"}, {"ratio": 1})
    if doc.kind == "field":
        table.add_row("type", Text(doc.type or ""))
        if doc.defaults_by_arch:
            by_arch = _grid({"no_wrap": True, "style": "magenta"}, {"ratio": 1})
            for arch, value in doc.defaults_by_arch.items():
                by_arch.add_row(arch, Text(value))
            table.add_row("default", Text("depends on vlm.arch"))
            table.add_row("", by_arch)
        else:
            table.add_row("default", Text(doc.default or ""))
        if doc.unit:
            table.add_row("unit", Text(doc.unit))
        if doc.choices is not None:
            table.add_row("allowed", Text(", ".join(doc.choices) + (f"  ({doc.choices_enforced})"
                                                                     if doc.choices_enforced else "")))
    if doc.arches is not None and doc.kind == "field":
        table.add_row("arches", Text("every arch" if doc.all_arches else ", ".join(doc.arches) + " only"))
    if doc.rules:
        rules = _grid({"no_wrap": True}, {"ratio": 1}, gap=1)
        for rule in doc.rules:
            rules.add_row("-", Text(rule))
        table.add_row("rules", rules)
    elif doc.kind == "field":
        table.add_row("rules", Text("no check beyond its type", style="dim"))
    console.print(Padding(table, (0, 0, 0, 2)))
    if doc.fields:
        console.print()
        is_array = doc.kind == "field" and (doc.type or "").startswith("array")
        console.print(Text("each entry" if is_array else "fields", style="bold"))
        # Name, default and doc; `--field KEY` on one of them gives its type and rules.
        fields = _grid({"no_wrap": True}, {"max_width": 24, "no_wrap": True, "overflow": "ellipsis"},
                       {"ratio": 1, "style": "dim"})
        group: tuple[str, ...] | None = ()
        for summary in doc.fields:
            arches = tuple(summary.arches) if summary.arches else None
            if arches != group and arches is not None:
                fields.add_row(Text(f"{', '.join(arches)} only", style="bold magenta"), "", "")
            group = arches
            fields.add_row(Text(f"  {summary.name}" if arches else summary.name), Text(summary.default),
                           Text(summary.doc))
        console.print(Padding(fields, (0, 0, 0, 2)))


def _render_values(console: Console, values: list[dict[str, Any]]) -> None:
    from rich.padding import Padding
    from rich.text import Text

    from kforge_cli.explain import format_value

    console.print()
    console.print(Text("in your files", style="bold"))
    table = _grid({"no_wrap": True}, {"max_width": 60, "overflow": "fold"}, {"no_wrap": True, "style": "dim"})
    for v in values:
        if not v["loaded"]:
            table.add_row(Text(display_path(v["path"])), Text(display(f"cannot be loaded: {v.get('error', '')}"),
                                                              style="red"), "")
            continue
        source = _SOURCE_LABEL.get(v["source"], "") if v["source"] else ""
        table.add_row(Text(display_path(v["path"])), Text(clip(format_value(v["value"]), 2 * MAX_CELL_CHARS)),
                      Text(source))
    console.print(Padding(table, (0, 0, 0, 2)))
