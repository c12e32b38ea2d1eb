"""Suppression comments: ``# kforge: ignore[KF405]`` on a line, ``# kforge: ignore-file[KF405]`` for the file.

A trailing ``# kforge: ignore[CODES]`` hides that line's findings of those codes
(``# kforge: ignore`` without a list hides all of them); ``# kforge: ignore-file``
anywhere does the same for the whole file. Codes may be prefixes (``KF4``), as
in ``--ignore``. A rule that is not suppressible (an unreadable file) is never
hidden. A suppression that hides nothing is reported itself (KF002), the way
ruff reports an unused ``noqa``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import field

from kforge_cli.findings import Finding
from kforge_cli.lint.settings import selectable
from kforge_cli.records import record
from kforge_cli.rules.loading import UNUSED_SUPPRESSION

_DIRECTIVE = re.compile(r"#\s*kforge\s*:\s*(ignore-file|ignore)\b\s*(?:\[([^\]]*)\])?", re.IGNORECASE)
_CODE = re.compile(r"KF\d{0,3}")


@record
class Suppression:
    line: int
    column: int
    file_level: bool
    codes: tuple[str, ...] | None  # None: every code
    invalid: tuple[str, ...] = ()  # entries that are not codes or prefixes
    used: set[str] = field(default_factory=set)  # the codes (or "*") that hid something

    def covers(self, finding: Finding) -> str | None:
        """The entry of this suppression that hides ``finding``, if any."""
        if not selectable(finding.code):
            return None
        if not self.file_level and finding.line != self.line:
            return None
        if self.codes is None:
            return "*"
        matches = [c for c in self.codes if finding.code.startswith(c)]
        return max(matches, key=len) if matches else None

    @property
    def label(self) -> str:
        kind = "ignore-file" if self.file_level else "ignore"
        return f"# kforge: {kind}" + (f"[{', '.join(self.codes)}]" if self.codes is not None else "")


def parse_suppressions(comments: Sequence[tuple[int, int, str]]) -> list[Suppression]:
    out = []
    for line, column, text in comments:
        match = _DIRECTIVE.search(text)
        if not match:
            continue
        file_level = match.group(1).lower() == "ignore-file"
        listed = match.group(2)
        codes: tuple[str, ...] | None = None
        invalid: tuple[str, ...] = ()
        if listed is not None:
            entries = [e.strip().upper() for e in listed.split(",") if e.strip()]
            codes = tuple(e for e in entries if _CODE.fullmatch(e))
            invalid = tuple(e for e in entries if not _CODE.fullmatch(e))
        out.append(Suppression(line, column + match.start(), file_level, codes, invalid))
    return out


@record
class Applied:
    kept: list[Finding]
    suppressed: list[Finding]
    unused: list[Finding]  # KF002 findings for suppressions that hid nothing


def apply_suppressions(findings: Sequence[Finding], suppressions: Sequence[Suppression],
                       known_codes: Sequence[str]) -> Applied:
    kept: list[Finding] = []
    hidden: list[Finding] = []
    for finding in findings:
        by = None
        for suppression in suppressions:
            entry = suppression.covers(finding)
            if entry is not None:
                suppression.used.add(entry)
                by = suppression
        (hidden if by is not None else kept).append(finding)
    return Applied(kept, hidden, _unused(suppressions, known_codes))


def _unused(suppressions: Sequence[Suppression], known_codes: Sequence[str]) -> list[Finding]:
    out = []
    for s in suppressions:
        problems = []
        if s.codes is None:
            if "*" not in s.used:
                problems.append("it hides nothing: no finding is reported on this line" if not s.file_level
                                else "it hides nothing: the file has no finding")
        else:
            unknown = [c for c in s.codes if not any(k.startswith(c) for k in known_codes)]
            idle = [c for c in s.codes if c not in s.used and c not in unknown]
            if unknown:
                problems.append(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a rule code")
            if idle:
                where = "in this file" if s.file_level else "on this line"
                problems.append(f"{', '.join(idle)} {'does' if len(idle) == 1 else 'do'} not fire {where}")
        if s.invalid:
            problems.append(f"{', '.join(s.invalid)} {'is' if len(s.invalid) == 1 else 'are'} not a rule code")
        if problems:
            out.append(UNUSED_SUPPRESSION.finding(
                f"unused suppression {s.label}: {'; '.join(problems)}", None,
                "remove the comment, or the codes that no longer fire").at(s.line, s.column))
    return out
