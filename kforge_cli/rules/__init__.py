"""Every rule kforge reports, one object per code (see ``rule.py``).

The modules below each define a group of rules and attach their checks. Only
``rule`` and ``loading`` are imported eagerly (the config layer reports those);
``all_rules()`` imports the rest on demand, so a command pays for the checks it
runs and the config layer never imports the checks that import it.
"""

from __future__ import annotations

import importlib

from kforge_cli.rules.rule import Check, Rule, defined_rules, rule_for

# In the order the trainer meets them; the engine runs checks in this order within a stage.
RULE_MODULES = ("loading", "job", "build", "startup", "freeze", "checkpoint", "memory", "advice")


def load_rule_modules() -> None:
    for name in RULE_MODULES:
        importlib.import_module(f"kforge_cli.rules.{name}")


def all_rules() -> list[Rule]:
    """Every rule, sorted by code."""
    load_rule_modules()
    return defined_rules()


def all_checks() -> list[Check]:
    """Every engine check, grouped by rule module in RULE_MODULES order, then definition order."""
    load_rule_modules()
    rules = defined_rules()
    # Asked once per file: sorted once, again only when a rule or its checks list changes (a plugin, a test).
    key = tuple((id(rule), id(rule.checks), len(rule.checks)) for rule in rules)
    cached = _sorted_checks.get(key)
    if cached is None:
        order = {name: i for i, name in enumerate(RULE_MODULES)}
        checks = [check for rule in rules for check in rule.checks]
        cached = sorted(checks, key=lambda c: order.get(c.function.__module__.rsplit(".", 1)[-1], len(order)))
        _sorted_checks.clear()
        _sorted_checks[key] = cached
    return list(cached)


_sorted_checks: dict[tuple[tuple[int, int, int], ...], list[Check]] = {}


def find_rule(code: str) -> Rule | None:
    load_rule_modules()
    return rule_for(code)


__all__ = ["Check", "Rule", "all_checks", "all_rules", "find_rule", "load_rule_modules"]
