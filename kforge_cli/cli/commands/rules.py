"""`kforge rules`: every rule code with its name, severity, stages, meaning and an example."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer

from kforge_cli.cli.options import EXIT_STATUS, format_option

if TYPE_CHECKING:
    from rich.table import Table

    from kforge_cli.rules import Rule

FORMATS = ("text", "json")

HELP = ("List every rule code kforge reports, with its name, usual severity, the trainer stage where it fails, "
        "its meaning and an example.\n\n"
        "Give a code (KF301), a prefix (KF3) or a name (freeze-unknown-alias) to show only those. The same codes "
        "and prefixes work in --select / --ignore, [tool.kforge] and `# kforge: ignore[...]` comments.")


def rules(
    code: str | None = typer.Argument(None, metavar="[CODE]", show_default=False,
                                         help="A rule code, code prefix or rule name."),
    output_format: str = format_option(FORMATS),
) -> None:
    from kforge_cli.cli.options import check_format, usage_error
    from kforge_cli.cli.output import print_json, stdout_console
    from kforge_cli.rules import all_rules

    chosen_format = check_format(output_format, FORMATS)
    catalog = all_rules()
    chosen = catalog if code is None else _matching(code.strip(), catalog)
    if not chosen:
        usage_error(f"no rule matches {code!r}", _suggestion(code or "", catalog))
    if chosen_format == "json":
        print_json({"version": 1, "rules": [rule.to_json() for rule in chosen]})
    elif code is not None and len(chosen) == 1:
        _render_one(chosen[0])
    else:
        from kforge_cli.cli.output import emit

        emit(stdout_console(), _table(chosen))


def _matching(query: str, catalog: Sequence[Rule]) -> list[Rule]:
    upper = query.upper()
    if upper.startswith("KF"):
        return [rule for rule in catalog if rule.code.startswith(upper)]
    return [rule for rule in catalog if rule.name == query.lower()]


def _suggestion(query: str, catalog: Sequence[Rule]) -> str:
    from kforge_cli.findings import close_matches

    candidates = [rule.code for rule in catalog] + [rule.name for rule in catalog]
    close = close_matches(query, candidates, n=1)
    return f"did you mean {close[0]!r}?" if close else "run `kforge rules` to list every code"


def _stages(rule: Rule) -> str:
    from kforge_cli.rules.rule import STAGE_WORDS

    return ", ".join(STAGE_WORDS[s] for s in rule.stages) or "-"


def _table(chosen: Sequence[Rule]) -> Table:
    from rich.table import Table
    from rich.text import Text

    from kforge_cli.cli.reporters import SEVERITY_STYLE

    table = Table(header_style="bold")
    table.add_column("Code", no_wrap=True, style="bold")
    table.add_column("Severity", no_wrap=True)
    table.add_column("Rule", ratio=3)
    table.add_column("Example", ratio=2)
    for rule in chosen:
        # Text, not markup: catalog entries mention TOML tables such as [vlm].
        table.add_row(rule.code, Text(rule.severity, SEVERITY_STYLE.get(rule.severity, "")),
                      Text.assemble((rule.name, "bold"), "\n", rule.summary, ("\nfails " + _stages(rule), "dim")
                                    if rule.stages else ""),
                      Text(rule.example))
    return table


def _render_one(rule: Rule) -> None:
    from rich.text import Text

    from kforge_cli.cli.output import stdout_console
    from kforge_cli.cli.reporters import SEVERITY_STYLE

    console = stdout_console()
    console.print(Text.assemble((rule.code, "bold"), "  ", rule.name, "  ",
                                (rule.severity, SEVERITY_STYLE.get(rule.severity, ""))))
    console.print(Text(rule.summary))
    if rule.stages:
        console.print(Text.assemble(("Fails: ", "dim"), _stages(rule)))
    checks = [c for c in rule.checks if c.doc]
    if checks or rule.emitted_by:
        console.print(Text("Checked by:", style="dim"))
        if rule.emitted_by:
            console.print(Text(f"  - {rule.emitted_by}"))
        for check in checks:
            console.print(Text(f"  - {check.doc}"))
    console.print(Text.assemble(("Example: ", "dim"), rule.example))


def register(app: typer.Typer) -> None:
    app.command("rules", help=HELP, epilog=EXIT_STATUS)(rules)
