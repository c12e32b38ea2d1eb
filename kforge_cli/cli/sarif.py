"""SARIF 2.1.0 for code-scanning: one run, stable rule ids, help text per rule."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kforge_cli import __version__
from kforge_cli.cli.output import display
from kforge_cli.findings import ERROR, INFO, WARNING
from kforge_cli.rules import all_rules

if TYPE_CHECKING:
    from kforge_cli.lint.engine import FileReport

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {ERROR: "error", WARNING: "warning", INFO: "note"}


def _uri(path: str) -> str:
    # A relative URI reference (RFC 3986) is what code scanning resolves against the checkout.
    from urllib.parse import quote

    raw = os.fsencode(path)
    rel = os.path.relpath(raw) if os.path.isabs(raw) else raw
    # Percent-encode the bytes, so a name that is not UTF-8 is still a valid, exact URI.
    return quote(rel.replace(os.fsencode(os.sep), b"/"), safe="/")


def sarif_document(reports: Sequence[FileReport]) -> dict[str, Any]:
    rules = [{
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.summary},
        "help": {"text": rule.help_text, "markdown": f"**{rule.code}** {rule.summary}\n\nExample: `{rule.example}`"},
        "defaultConfiguration": {"level": _LEVEL.get(rule.severity, "warning")},
        "properties": {"stages": list(rule.stages)},
    } for rule in all_rules()]
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    results = []
    for report in reports:
        for f in report.findings:
            region: dict[str, Any] = {}
            if f.line:
                region = {"startLine": f.line, "startColumn": f.column or 1}
            location: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": _uri(report.path)}}}
            if region:
                location["physicalLocation"]["region"] = region
            if f.key:
                location["logicalLocations"] = [{"fullyQualifiedName": display(f.key), "kind": "member"}]
            text = display(f.message) + (f" Fix: {display(f.hint)}" if f.hint else "")
            result: dict[str, Any] = {"ruleId": f.code, "level": _LEVEL.get(f.severity, "warning"),
                                      "message": {"text": text}, "locations": [location]}
            if f.code in index:
                result["ruleIndex"] = index[f.code]
            results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "kforge", "version": __version__, "rules": rules}},
            "results": results,
        }],
    }
