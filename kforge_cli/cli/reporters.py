"""Rendering findings: text (Rich), concise one-liners, JSON, GitHub annotations (SARIF in ``sarif``).

Every string that can come from a user's file goes through ``display`` /
``display_path`` first, so no format can be made to print a control sequence,
a forged workflow command or an undecodable byte.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kforge_cli.cli.output import display, display_path, emit, unwrapped, wrap_words
from kforge_cli.findings import ERROR, INFO, WARNING, Finding

if TYPE_CHECKING:
    from rich.console import Console

    from kforge_cli.lint.engine import FileReport

SEVERITY_STYLE = {ERROR: "bold red", WARNING: "yellow", INFO: "cyan"}


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def verdict_text(report: FileReport) -> Any:
    from rich.text import Text

    errors, warnings = report.errors, report.warnings
    counts = ", ".join(p for p in (plural(errors, "error") if errors else "",
                                   plural(warnings, "warning") if warnings else "") if p)
    path = display_path(report.path)
    if report.valid:
        return Text.assemble(("\u2713 ", "bold green"), (path, "bold"),
                             (f"  valid{', ' + counts if counts else ''}", "green"))
    reason = counts if errors else f"{counts} (strict)"
    return Text.assemble(("\u2717 ", "bold red"), (path, "bold"), (f"  invalid: {reason}", "red"))


class Hanging:
    """Text word-wrapped under a fixed indent; never split inside a word, never wrapped when unwrapped()."""

    def __init__(self, text: Any, indent: int) -> None:
        self.text = text
        self.indent = indent

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.text import Text

        width = None if unwrapped(console) else max(20, options.max_width - self.indent)
        plain = self.text.plain
        start = 0
        for line in wrap_words(plain, width):
            end = start + len(line)
            piece = self.text[start:end]
            piece.rstrip()
            yield Text(" " * self.indent) + piece
            start = end + 1  # the space the wrap consumed

    def __rich_measure__(self, console: Any, options: Any) -> Any:
        from rich.measure import Measurement

        longest = max((len(w) for w in self.text.plain.split(" ")), default=0)
        return Measurement(self.indent + min(longest, 20), self.indent + len(self.text.plain))


# A fix the previous finding already gave is not printed again (twenty unknown keys of one
# section share the list of its valid keys).
SAME_FIX = "as above"


def finding_lines(finding: Finding, indent: str = "  ", previous: Finding | None = None) -> list[Any]:
    from rich.text import Text

    where = f"{finding.line}:{finding.column or 1}" if finding.line else "-"
    severity = (f"{finding.severity:<8}", SEVERITY_STYLE.get(finding.severity, ""))
    head = Text.assemble(indent, (f"{where:<6} ", "dim"), severity,
                         (f"{finding.code}  ", "bold"), (display(finding.key or ""), "magenta"))
    if finding.stage and finding.severity == ERROR:
        head.append(f"  (fails at: {finding.stage})", style="dim")
    # Wrapped message lines stay under the message, not at column 0.
    pad = len(indent) + 15
    lines: list[Any] = [head, Hanging(Text(display(finding.message)), pad)]
    if finding.hint:
        repeated = previous is not None and previous.hint == finding.hint and len(finding.hint) > len(SAME_FIX)
        lines.append(Hanging(Text.assemble(("fix: ", "green"), SAME_FIX if repeated else display(finding.hint)), pad))
    return lines


def print_findings(console: Console, findings: Sequence[Finding], indent: str = "  ") -> None:
    previous = None
    for finding in findings:
        for line in finding_lines(finding, indent, previous):
            emit(console, line)
        previous = finding


def render_text(console: Console, reports: Sequence[FileReport], *, show_suppressed: bool = False) -> None:
    from rich.text import Text

    for report in reports:
        emit(console, verdict_text(report))
        print_findings(console, report.findings)
        if show_suppressed and report.suppressed:
            emit(console, Text(f"  suppressed by comments ({len(report.suppressed)}):", style="dim"))
            print_findings(console, report.suppressed, indent="    ")
    if len(reports) > 1:
        emit(console, Text(summary_line(reports), style="bold"))


def summary_line(reports: Sequence[FileReport]) -> str:
    invalid = sum(1 for r in reports if not r.valid)
    errors = sum(r.errors for r in reports)
    warnings = sum(r.warnings for r in reports)
    return (f"{plural(len(reports), 'file')}: {invalid} invalid, {plural(errors, 'error')}, "
            f"{plural(warnings, 'warning')}")


def render_concise(reports: Sequence[FileReport], *, show_suppressed: bool = False) -> str:
    """``path:line:col: CODE severity message``: what vim, emacs and VS Code problem matchers parse."""
    out = []
    for report in reports:
        path = display_path(report.path)
        shown = [*report.findings, *(report.suppressed if show_suppressed else ())]
        for f in shown:
            message = display(f.message) + (f" (fix: {display(f.hint)})" if f.hint else "")
            if f in report.suppressed:
                message += " [suppressed]"
            out.append(f"{path}:{f.line or 1}:{f.column or 1}: {f.code} {f.severity} {message}")
    return "".join(line + "\n" for line in out)


def json_path(path: str) -> str:
    """A path as JSON can carry it: undecodable bytes escaped rather than emitted as lone surrogates."""
    return os.fsencode(path).decode("utf-8", "backslashreplace") if _has_surrogates(path) else path


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def validate_document(reports: Sequence[FileReport], *, show_suppressed: bool = False) -> dict[str, Any]:
    files = []
    for r in reports:
        entry: dict[str, Any] = {"path": json_path(r.path), "valid": r.valid,
                                 "findings": [f.to_json() for f in r.findings]}
        if show_suppressed:
            entry["suppressed"] = [f.to_json() for f in r.suppressed]
        files.append(entry)
    return {
        "version": 1,
        "files": files,
        "summary": {"files": len(reports), "errors": sum(r.errors for r in reports),
                    "warnings": sum(r.warnings for r in reports)},
    }


def _escape_annotation(text: str, *, property_value: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property_value:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def render_github(reports: Sequence[FileReport]) -> str:
    """GitHub Actions workflow commands: one annotation per finding, every value escaped."""
    level = {ERROR: "error", WARNING: "warning", INFO: "notice"}
    out = []
    for report in reports:
        for f in report.findings:
            props = [f"file={_escape_annotation(display(report.path), property_value=True)}"]
            if f.line:
                props += [f"line={f.line}", f"col={f.column or 1}"]
            title = f"{f.code} {display(f.key)}" if f.key else f.code
            props.append(f"title={_escape_annotation(title, property_value=True)}")
            message = display(f.message) + (f" (fix: {display(f.hint)})" if f.hint else "")
            out.append(f"::{level.get(f.severity, 'notice')} {','.join(props)}::{_escape_annotation(message)}")
    return "\n".join(out) + ("\n" if out else "")
