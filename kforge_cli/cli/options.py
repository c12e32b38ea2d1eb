"""Option handling shared by the subcommands."""

from __future__ import annotations

from typing import Any

import typer


def parse_overrides(values: list[str]) -> list[Any]:
    """``--set KEY=VALUE`` values, parsed as the trainer parses them; a malformed one is a usage error."""
    from kforge_cli.cli.exitcodes import ExitCode
    from kforge_cli.cli.output import fail
    from kforge_cli.config.loader import OverrideError, parse_override

    try:
        return [parse_override(value) for value in values]
    except OverrideError as exc:
        fail(str(exc))
        raise typer.Exit(ExitCode.USAGE) from None
