"""`kforge rules`: every rule code with its name, severity, meaning and an example."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    from rich.table import Table

    from kforge_cli.lint.catalog import Rule


class RulesFormat(str, Enum):
    text = "text"
    json = "json"


HELP = ("List every rule code kforge reports, with its name, usual severity, meaning and an example.\n\n"
        "Give a code (KF301), a prefix (KF3) or a name (freeze-unknown-alias) to show only those. "
        "The same codes and prefixes work in validate's --select / --ignore and in \\[tool.kforge].")


def rules(
    code: Optional[str] = typer.Argument(None, metavar="[CODE]", show_default=False,
                                         help="A rule code, code prefix or rule name."),
    output_format: RulesFormat = typer.Option(RulesFormat.text, "--format", "-f", case_sensitive=False,
                                              help="Output format."),
) -> None:
    from kforge_cli.cli.exitcodes import ExitCode
    from kforge_cli.cli.output import fail, print_json, stdout_console
    from kforge_cli.lint.catalog import RULES

    chosen = list(RULES) if code is None else _matching(code.strip(), RULES)
    if not chosen:
        fail(f"no rule matches {code!r}", _suggestion(code, RULES))
        raise typer.Exit(ExitCode.USAGE)
    if output_format is RulesFormat.json:
        print_json({"version": 1, "rules": [_as_json(rule) for rule in chosen]})
    elif code is not None and len(chosen) == 1:
        _render_one(chosen[0])
    else:
        stdout_console().print(_table(chosen))


def _matching(query: str, catalog: tuple[Rule, ...]) -> list[Rule]:
    upper = query.upper()
    if upper.startswith("KF"):
        return [rule for rule in catalog if rule.code.startswith(upper)]
    return [rule for rule in catalog if rule.name == query.lower()]


def _suggestion(query: str, catalog: tuple[Rule, ...]) -> str:
    import difflib

    candidates = [rule.code for rule in catalog] + [rule.name for rule in catalog]
    close = difflib.get_close_matches(query, candidates, n=1)
    return f"did you mean {close[0]!r}?" if close else "run `kforge rules` to list every code"


def _as_json(rule: Rule) -> dict[str, str]:
    return {"code": rule.code, "name": rule.name, "severity": rule.severity,
            "summary": rule.summary, "example": rule.example}


def _table(chosen: list[Rule]) -> Table:
    from rich.table import Table
    from rich.text import Text

    from kforge_cli.cli.reporters import _STYLE as severity_style  # validate's colours

    table = Table(header_style="bold")
    table.add_column("Code", no_wrap=True, style="bold")
    table.add_column("Severity", no_wrap=True)
    table.add_column("Rule", ratio=3, overflow="fold")
    table.add_column("Example", ratio=2, overflow="fold")
    for rule in chosen:
        # Text, not markup: catalog entries mention TOML tables such as [vlm].
        table.add_row(rule.code, Text(rule.severity, severity_style.get(rule.severity, "")),
                      Text.assemble((rule.name, "bold"), "\n", rule.summary), Text(rule.example))
    return table


def _render_one(rule: Rule) -> None:
    from rich.text import Text

    from kforge_cli.cli.output import stdout_console
    from kforge_cli.cli.reporters import _STYLE as severity_style

    console = stdout_console()
    console.print(Text.assemble((rule.code, "bold"), "  ", rule.name, "  ",
                                (rule.severity, severity_style.get(rule.severity, ""))))
    console.print(Text(rule.summary))
    console.print(Text.assemble(("Example: ", "dim"), rule.example))


def register(app: typer.Typer) -> None:
    app.command("rules", help=HELP)(rules)
