"""What a rule is: one code, its documentation, and the checks that report it.

A ``Rule`` is created once, in one of the ``kforge_cli.rules`` modules, and is
the only place its code, name, severity, summary and example are written.
Findings are made through it (``RULE.finding(...)``), so a code never appears
as a string anywhere else. Checks attach to it with ``@RULE.check(...)``; each
declares the trainer stage where the problem surfaces and the config keys it
reads, which lets the engine skip a check whose inputs were already rejected.

Rules reported while reading a file (unknown keys, wrong types, field
constraints) have no engine check: the loader emits them, and ``emitted_at``
documents the stage.

This module depends on ``kforge_cli.findings`` only, so the config layer can
import the rules it reports without a cycle.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import field
from typing import Any

from kforge_cli.findings import ERROR, INFO, SEVERITIES, WARNING, Finding
from kforge_cli.records import record

# Where in the trainer's life a problem surfaces, in the order it meets them.
LOAD = "loader"
VALIDATE = "job validation"
BUILD = "model build"
STARTUP = "trainer startup"
LOOP = "training loop"
CHECKPOINT = "checkpoint load"
STAGES = (LOAD, VALIDATE, BUILD, STARTUP, LOOP, CHECKPOINT)

# How docs and messages say when a stage happens.
STAGE_WORDS = {
    LOAD: "at load",
    VALIDATE: "at validation",
    BUILD: "at model build",
    STARTUP: "at start-up",
    LOOP: "in the training loop",
    CHECKPOINT: "when resuming from a checkpoint",
}

# What a check may ask the engine for besides the loaded job.
NEEDS_MANIFEST = "manifest"  # the model's parameter list (pure Python)
NEEDS_PLAN = "plan"  # the freeze plan over that list
NEEDS_WORLD_SIZE = "world_size"
NEEDS_CHECKPOINT = "checkpoint"  # --model-ckpt was given and could be read
NEEDS_MEMORY = "memory"  # a memory prediction (world size and GPU known)
NEEDS = frozenset({NEEDS_MANIFEST, NEEDS_PLAN, NEEDS_WORLD_SIZE, NEEDS_CHECKPOINT, NEEDS_MEMORY})

CheckFunction = Callable[[Any], Iterable[Finding]]


@record(frozen=True, eq=False)
class Check:
    """One way a rule is checked: a function over the engine's subject."""

    rule: Rule
    function: CheckFunction
    stage: str | None  # None: a warning that no trainer stage raises
    reads: tuple[str, ...]  # dotted config keys (or key prefixes) the function reads
    needs: frozenset[str]

    @property
    def name(self) -> str:
        return self.function.__name__

    @property
    def doc(self) -> str:
        text = (self.function.__doc__ or "").strip()
        return text.splitlines()[0] if text else ""

    def run(self, subject: Any) -> list[Finding]:
        out = []
        for finding in self.function(subject):
            if finding.code != self.rule.code:
                raise AssertionError(f"check {self.name} of {self.rule.code} reported {finding.code}")
            if finding.stage is None and finding.severity == ERROR and self.stage is not None:
                finding = finding.with_stage(self.stage)
            out.append(finding)
        return out


_BY_CODE: dict[str, Rule] = {}


class Rule:
    """A rule code and everything known about it."""

    def __init__(self, code: str, name: str, severity: str, summary: str, example: str, *,
                 emitted_at: Iterable[str] = (), emitted_by: str = "", reads: Iterable[str] = (),
                 suppressible: bool = True) -> None:
        if severity not in SEVERITIES:
            raise ValueError(f"{code}: unknown severity {severity!r}")
        if code in _BY_CODE:
            raise ValueError(f"rule {code} is defined twice")
        self.code = code
        self.name = name
        self.severity = severity
        self.summary = summary
        self.example = example
        # Stages where something other than an engine check reports the rule
        # (the loader, the model builder), and what that something is.
        self.emitted_at = tuple(emitted_at)
        self.emitted_by = emitted_by
        self.emitted_reads = tuple(reads)
        self.suppressible = suppressible
        self.checks: list[Check] = []
        _BY_CODE[code] = self

    def __repr__(self) -> str:
        return f"Rule({self.code} {self.name})"

    # -- documentation --------------------------------------------------------------

    @property
    def stages(self) -> tuple[str, ...]:
        """Every trainer stage at which this rule can be reported, in the trainer's order."""
        found = set(self.emitted_at) | {c.stage for c in self.checks if c.stage is not None}
        return tuple(s for s in STAGES if s in found)

    @property
    def reads(self) -> tuple[str, ...]:
        keys = list(self.emitted_reads)
        for check in self.checks:
            keys.extend(k for k in check.reads if k not in keys)
        return tuple(keys)

    @property
    def help_text(self) -> str:
        return f"{self.summary} Example: {self.example}"

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "severity": self.severity, "summary": self.summary,
                "example": self.example, "stages": list(self.stages), "reads": list(self.reads)}

    # -- reporting --------------------------------------------------------------------

    def finding(self, message: str, key: str | None = None, hint: str | None = None, *,
                severity: str | None = None, stage: str | None = None, **data: Any) -> Finding:
        severity = severity or self.severity
        return Finding(self.code, severity, message, key=key, hint=hint,
                       stage=stage if severity == ERROR else None, data=data)

    def check(self, *, stage: str | None, reads: Iterable[str] = (),
              needs: Iterable[str] = ()) -> Callable[[CheckFunction], CheckFunction]:
        """Attach the decorated function as a check of this rule."""
        wanted = frozenset(needs)
        if not wanted <= NEEDS:
            raise ValueError(f"{self.code}: unknown needs {sorted(wanted - NEEDS)}")

        def attach(function: CheckFunction) -> CheckFunction:
            self.checks.append(Check(self, function, stage, tuple(reads), wanted))
            return function

        return attach


@record
class Subject:
    """What checks look at: the loaded job and whatever the engine derived from it.

    The loader fills ``job`` only; the engine adds the file's raw tables, the
    world size and, when a check needs them, the manifest, freeze plan,
    checkpoint and memory prediction.
    """

    job: Any
    data: Mapping[str, Any] = field(default_factory=dict)
    world_size: int | None = None
    manifest: Any = None
    plan: Any = None
    checkpoint: Any = None
    memory: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


def touches(read: str, bad: str) -> bool:
    """Whether a check reading ``read`` depends on the rejected key ``bad`` (or the other way round)."""
    if read == bad:
        return True
    shorter, longer = (read, bad) if len(read) < len(bad) else (bad, read)
    return longer.startswith(shorter) and longer[len(shorter)] in ".["


class KeyIndex:
    """Rejected keys, indexed so that ``touches(read, any rejected key)`` is a few set lookups.

    A hostile file can reject hundreds of thousands of keys; comparing each check's
    reads against each of them was quadratic.
    """

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self.keys: set[str] = set()
        self.ancestors: set[str] = set()
        self.add(keys)

    def add(self, keys: Iterable[str]) -> None:
        for key in keys:
            if key not in self.keys:
                self.keys.add(key)
                self.ancestors.update(_ancestors(key))

    def touches(self, read: str) -> bool:
        return (read in self.keys or read in self.ancestors
                or any(prefix in self.keys for prefix in _ancestors(read)))

    def __bool__(self) -> bool:
        return bool(self.keys)


_PART_END = re.compile(r"(?<=.)[.\[]")


def _ancestors(key: str) -> Iterator[str]:
    """Every proper prefix of ``key`` that ends where a part ends (before "." or "[")."""
    for match in _PART_END.finditer(key):
        yield key[:match.start()]


def blocked(check: Check, bad: Collection[str] | KeyIndex) -> bool:
    index = bad if isinstance(bad, KeyIndex) else KeyIndex(bad)
    return bool(index) and any(index.touches(read) for read in check.reads)


def run_checks(checks: Iterable[Check], subject: Subject, bad: Collection[str]) -> list[Finding]:
    """Run each check whose inputs were not rejected, in order."""
    index = KeyIndex(bad)
    out: list[Finding] = []
    for check in checks:
        if not blocked(check, index):
            out.extend(check.run(subject))
    return out


def rule_for(code: str) -> Rule | None:
    """The rule with this code among those defined so far (see ``kforge_cli.rules.all_rules``)."""
    return _BY_CODE.get(code)


def defined_rules() -> list[Rule]:
    return sorted(_BY_CODE.values(), key=lambda r: r.code)


__all__ = [
    "BUILD", "CHECKPOINT", "ERROR", "INFO", "LOAD", "LOOP", "NEEDS_CHECKPOINT", "NEEDS_MANIFEST", "NEEDS_MEMORY",
    "NEEDS_PLAN", "NEEDS_WORLD_SIZE", "STAGES", "STAGE_WORDS", "STARTUP", "VALIDATE", "WARNING", "Check", "Rule",
    "Subject", "blocked", "defined_rules", "rule_for", "run_checks", "touches",
]
