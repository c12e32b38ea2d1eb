"""One module per subcommand; each exposes ``register(app)``."""

from __future__ import annotations

from kforge_cli.cli.commands import (
    completions,
    convert,
    explain,
    fit,
    freeze_plan,
    rules,
    schema,
    validate,
)

COMMANDS = [
    validate.register,
    explain.register,
    freeze_plan.register,
    fit.register,
    convert.register,
    rules.register,
    schema.register,
    completions.register,
]
