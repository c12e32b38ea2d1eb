"""Rendering validate results: text (Rich), JSON, GitHub annotations, SARIF."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kforge_cli.findings import ERROR, INFO, WARNING, Finding

if TYPE_CHECKING:
    from rich.console import Console

    from kforge_cli.lint.engine import FileReport

_STYLE = {ERROR: "bold red", WARNING: "yellow", INFO: "cyan"}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def verdict_text(report: FileReport, strict: bool) -> Any:
    from rich.text import Text

    errors, warnings = report.errors, report.warnings
    counts = ", ".join(p for p in (_plural(errors, "error") if errors else "",
                                   _plural(warnings, "warning") if warnings else "") if p)
    if report.valid(strict):
        return Text.assemble(("✓ ", "bold green"), (report.path, "bold"),
                             (f"  valid{', ' + counts if counts else ''}", "green"))
    reason = counts if errors else f"{counts} (--strict)"
    return Text.assemble(("✗ ", "bold red"), (report.path, "bold"), (f"  invalid: {reason}", "red"))


class Hanging:
    """Text wrapped under a fixed indent, without the trailing padding rich.Padding adds."""

    def __init__(self, text: Any, indent: int) -> None:
        self.text = text
        self.indent = indent

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.text import Text

        width = max(20, options.max_width - self.indent)
        for line in self.text.wrap(console, width):
            line.rstrip()
            yield Text(" " * self.indent) + line


def finding_lines(finding: Finding, indent: str = "  ") -> list[Any]:
    from rich.text import Text

    where = f"{finding.line}:{finding.column or 1}" if finding.line else "-"
    head = Text.assemble(indent, (f"{where:<7}", "dim"), (f"{finding.severity:<8}", _STYLE.get(finding.severity, "")),
                         (f"{finding.code}  ", "bold"), (finding.key or "", "magenta"))
    if finding.stage and finding.severity == ERROR:
        head.append(f"  (fails at: {finding.stage})", style="dim")
    # Wrapped message lines stay under the message, not at column 0.
    pad = len(indent) + 15
    lines = [head, Hanging(Text(finding.message), pad)]
    if finding.hint:
        lines.append(Hanging(Text.assemble(("fix: ", "green"), finding.hint), pad))
    return lines


def render_text(console: Console, reports: Sequence[FileReport], strict: bool) -> None:
    from rich.text import Text

    for report in reports:
        console.print(verdict_text(report, strict))
        for finding in report.findings:
            for line in finding_lines(finding):
                console.print(line)
    if len(reports) > 1:
        invalid = sum(1 for r in reports if not r.valid(strict))
        errors = sum(r.errors for r in reports)
        warnings = sum(r.warnings for r in reports)
        console.print(Text(f"{_plural(len(reports), 'file')}: {invalid} invalid, {_plural(errors, 'error')}, "
                           f"{_plural(warnings, 'warning')}", style="bold"))


def validate_document(reports: Sequence[FileReport], strict: bool) -> dict[str, Any]:
    return {
        "version": 1,
        "files": [{"path": r.path, "valid": r.valid(strict),
                   "findings": [f.to_json() for f in r.findings]} for r in reports],
        "summary": {"files": len(reports), "errors": sum(r.errors for r in reports),
                    "warnings": sum(r.warnings for r in reports)},
    }


def _escape_annotation(text: str, *, property_value: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property_value:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def render_github(reports: Sequence[FileReport]) -> str:
    """GitHub Actions workflow commands: one annotation per finding."""
    level = {ERROR: "error", WARNING: "warning", INFO: "notice"}
    out = []
    for report in reports:
        for f in report.findings:
            props = [f"file={_escape_annotation(report.path, property_value=True)}"]
            if f.line:
                props += [f"line={f.line}", f"col={f.column or 1}"]
            title = f"{f.code} {f.key}" if f.key else f.code
            props.append(f"title={_escape_annotation(title, property_value=True)}")
            message = f.message + (f" (fix: {f.hint})" if f.hint else "")
            out.append(f"::{level.get(f.severity, 'notice')} {','.join(props)}::{_escape_annotation(message)}")
    return "\n".join(out) + ("\n" if out else "")
