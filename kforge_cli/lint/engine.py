"""Runs every rule on a job file, in the order the reference trainer would meet them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kforge_cli.config.fields import Checker
from kforge_cli.config.job import validate_rules
from kforge_cli.config.loader import LoadResult, Override, load_job, locate
from kforge_cli.findings import ERROR, INFO, WARNING, Finding, unique

_SEVERITY_RANK = {ERROR: 0, WARNING: 1, INFO: 2}


@dataclass
class FileReport:
    path: str
    load: LoadResult
    findings: list[Finding] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    # Judged strictly whatever the caller asks (a [tool.kforge] strict = true next to the file).
    strict: bool = False

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == WARNING)

    def valid(self, strict: bool = False) -> bool:
        return self.errors == 0 and (not (strict or self.strict) or self.warnings == 0)


def check_file(path: str, *, world_size: int | None = None,
               overrides: Sequence[str | Override] = (), deep: bool = False,
               model_ckpt: str | None = None) -> FileReport:
    load = load_job(path, overrides)
    report = FileReport(path=path, load=load, findings=list(load.findings))
    job = load.job
    if job is None:
        return report
    bad = set(load.bad_keys) | {f.key for f in load.findings if f.is_error and f.key}
    data = load.source.data if load.source else {}

    from kforge_cli.lint.advice import advice, startup_rules
    from kforge_cli.lint.build_rules import build_rules, first_step_rules

    for stage, run in (
        ("job validation", lambda c: validate_rules(job, c, world_size, bad)),
        ("model build", lambda c: build_rules(job, c, bad)),
        ("trainer startup", lambda c: startup_rules(job, c, bad)),
        ("training loop", lambda c: first_step_rules(job, c)),
        (None, lambda c: advice(job, data, c)),
    ):
        checker = Checker("", stage=stage or "")
        run(checker)
        report.findings.extend(checker.findings)

    plan = None
    if deep:
        from kforge_cli.lint.deep import deep_check

        known = {f.key for f in report.findings if f.is_error and f.key}
        result = deep_check(job, model_ckpt=model_ckpt, known_error_keys=known)
        report.extras["deep"] = result
        report.findings.extend(result.findings)
        plan = result.plan
    if plan is None:
        # Without a plan, the freeze rules that need no parameters still run.
        checker = Checker("", stage="training loop")
        _freeze_config_rules(job, checker, bad)
        report.findings.extend(checker.findings)

    if load.source is not None:
        report.findings = locate(report.findings, load.source)
    report.findings = _ordered(unique(report.findings))
    return report


def _freeze_config_rules(job: Any, c: Checker, bad: set[str]) -> None:
    if job.vlm is None or any(k.startswith("vlm.freeze") for k in bad):
        return
    from kforge_cli.lint.freeze_rules import needs_freeze_engine, nothing_trainable_rule

    nothing_trainable_rule(job, c)
    if not needs_freeze_engine(job.vlm, job.train.max_steps):
        return  # every spec is a known alias in a reachable stage: nothing for KF301/302/306
    try:
        from kforge_cli.freeze.plan import config_freeze_findings
    except ImportError:  # the freeze engine lands separately
        return
    c.findings.extend(config_freeze_findings(job.vlm, job.train.max_steps,
                                             dyn_ckpt_covers_step0=job.checkpoint.covers_step0()))


def _ordered(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (_SEVERITY_RANK.get(f.severity, 3),
                                           f.line if f.line is not None else 1 << 30, f.column or 0))
