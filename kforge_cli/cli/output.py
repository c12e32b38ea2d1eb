"""Consoles and small rendering helpers shared by every subcommand."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape


def _width() -> int | None:
    # COLUMNS pins the width (golden tests, CI logs); otherwise Rich asks the terminal.
    value = os.environ.get("COLUMNS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def stdout_console() -> Console:
    # Created per invocation so in-process tests that swap sys.stdout are honoured.
    return Console(file=sys.stdout, width=_width(), highlight=False, soft_wrap=False)


def stderr_console() -> Console:
    return Console(file=sys.stderr, width=_width(), highlight=False, soft_wrap=False)


def print_json(document: Any) -> None:
    import json

    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")


def fail(message: str, hint: str | None = None) -> None:
    """One clear line on stderr for problems that are not findings (usage-level)."""
    console = stderr_console()
    console.print(f"[bold red]kforge:[/] {escape(message)}", markup=True)
    if hint:
        console.print(f"  [dim]hint:[/] {escape(hint)}", markup=True)
