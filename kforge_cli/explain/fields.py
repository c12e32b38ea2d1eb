"""`kforge explain --field KEY`: everything about one config key, derived where it can be.

A key's entry combines its declaration (type, default, unit, choices and
constraints, from ``config.catalog``), the rules that check it (every engine
check that reads the key, and the load-time rules its declaration implies,
each with its code and stage) and the notes in ``explain.notes``. Nothing here
states a rule code by hand.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any

from kforge_cli.config.catalog import (
    FieldEntry,
    canonical_key,
    default_text,
    field_catalogue,
    field_choices,
    field_of,
    format_value,
    inner_dataclass,
    lookup_key,
    sections,
    suggest_keys,
    type_text,
    vlm_classes,
)
from kforge_cli.config.fields import requirement_text
from kforge_cli.explain.notes import NOTES
from kforge_cli.records import record
from kforge_cli.rules import Rule, all_checks
from kforge_cli.rules.loading import INVALID_VALUE
from kforge_cli.rules.rule import LOAD, STAGE_WORDS


class UnknownFieldError(KeyError):
    def __init__(self, key: str, suggestions: list[str]) -> None:
        super().__init__(key)
        self.key = key
        self.suggestions = suggestions

    def __str__(self) -> str:
        return f"unknown config key {self.key!r}"


@record(frozen=True)
class Citation:
    """A rule that checks the key: what it checks and when the trainer meets it."""

    code: str
    name: str
    severity: str
    stage: str | None
    text: str

    @property
    def sentence(self) -> str:
        when = STAGE_WORDS.get(self.stage or "", "")
        kind = "" if self.severity == "error" else f"{self.severity} "
        text = self.text.rstrip(".")
        if self.severity == "error" and when:
            return f"{text}; rejected {when} ({self.code} {self.name})."
        return f"{text} ({kind}{self.code} {self.name})."

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "severity": self.severity, "stage": self.stage,
                "text": self.text}


@record
class FieldSummary:
    name: str
    type: str
    default: str
    doc: str
    arches: list[str] | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@record
class FieldDoc:
    key: str
    kind: str  # "section" or "field"
    doc: str
    type: str | None = None
    default: str | None = None  # as written in TOML; "unset" / "required" in words
    defaults_by_arch: dict[str, str] | None = None
    choices: list[str] | None = None
    choices_enforced: str | None = None  # how other values are treated
    unit: str | None = None
    checks: list[Citation] = field(default_factory=list)
    notes: tuple[str, ...] = ()
    arches: list[str] | None = None  # vlm fields only
    all_arches: bool = False
    fields: list[FieldSummary] = field(default_factory=list)

    @property
    def rules(self) -> list[str]:
        """The checks as sentences, then the notes."""
        return [c.sentence for c in self.checks] + list(self.notes)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "kind": self.kind, "doc": self.doc, "type": self.type, "default": self.default,
            "defaults_by_arch": self.defaults_by_arch, "choices": self.choices,
            "choices_enforced": self.choices_enforced, "unit": self.unit,
            "checks": [c.to_json() for c in self.checks], "notes": list(self.notes), "rules": self.rules,
            "arches": self.arches, "fields": [f.to_json() for f in self.fields],
        }


def _cite(rule: Rule, stage: str | None, text: str, severity: str | None = None) -> Citation:
    return Citation(rule.code, rule.name, severity or rule.severity, stage, text)


def _declared(entry: FieldEntry) -> list[Citation]:
    """The load-time checks the field's declaration implies."""
    spec = entry.spec
    out = []
    if spec.looked_up and spec.registry:
        out.append(_cite(INVALID_VALUE, spec.looked_up, f"Must name a registered {spec.registry}"))
    elif spec.choices is not None:
        out.append(_cite(INVALID_VALUE, LOAD, "Must be one of the allowed values"))
    phrases = [p for p in requirement_text(spec, entry.parent) if not p.startswith("one of")]
    if phrases:
        condition = f"When {spec.when.text}: must" if spec.when is not None else "Must"
        out.append(_cite(INVALID_VALUE, LOAD, f"{condition} be {' and '.join(phrases)}"))
    return out


def _reading(key: str) -> list[Citation]:
    """Every engine check that reads ``key`` itself (not just its whole section)."""
    out, seen = [], set()
    for check in all_checks():
        if key in check.reads and check.doc:
            ident = (check.rule.code, check.doc)
            if ident not in seen:
                seen.add(ident)
                out.append(_cite(check.rule, check.stage, check.doc))
    return out


def describe_field(key: str) -> FieldDoc:
    """Documentation of one config key or section; raises UnknownFieldError with suggestions."""
    entries = field_catalogue()
    tables = sections()
    wanted = canonical_key(key)
    if wanted in tables:
        from kforge_cli.config.fields import spec_of

        return _describe_section(wanted, spec_of(tables[wanted]).doc, entries)
    found = lookup_key(key, entries)
    if found is None:
        raise UnknownFieldError(key, suggest_keys(key, list(tables) + list(entries)))
    entry = entries[found]
    choices, enforced = field_choices(entry)
    doc = FieldDoc(
        key=entry.key, kind="field", doc=entry.doc, type=type_text(entry.hint), default=default_text(entry.field),
        choices=choices, choices_enforced=enforced, unit=entry.spec.unit,
        checks=_declared(entry) + _reading(entry.key), notes=NOTES.get(entry.key, ()),
    )
    if entry.arches is not None:
        every = [arch for arch, _ in vlm_classes()]
        doc.arches = [a for a in every if a in entry.arches]
        doc.all_arches = set(doc.arches) == set(every)
        by_arch = {}
        for arch, cls in vlm_classes():
            f = field_of(cls, entry.name)
            if f is not None and "[]" not in entry.key and entry.key.count(".") == 1:
                by_arch[arch] = default_text(f)
        if len(set(by_arch.values())) > 1:
            doc.defaults_by_arch = by_arch
            if entry.name == "arch":
                doc.default = format_value("joint_decoder")  # what the loader picks when arch is omitted
                doc.defaults_by_arch = None
    inner, shape = inner_dataclass(entry.hint)
    if inner is not None:
        doc.fields = _summaries(entry.key + shape, entries)
    return doc


def _summaries(prefix: str, entries: dict[str, FieldEntry]) -> list[FieldSummary]:
    out = []
    every = [arch for arch, _ in vlm_classes()]
    for key, entry in entries.items():
        if not key.startswith(prefix + ".") or "." in key[len(prefix) + 1:]:
            continue
        arches = None
        if entry.arches is not None and set(entry.arches) != set(every):
            arches = [a for a in every if a in entry.arches]
        default = default_text(entry.field)
        if entry.name == "arch" and prefix == "vlm":
            default = format_value("joint_decoder")  # what the loader picks when arch is omitted
        elif len({default_text(field_of(cls, entry.name)) for cls in entry.owners}) > 1:
            default = "depends on vlm.arch"
        out.append(FieldSummary(entry.name, type_text(entry.hint), default, entry.doc, arches))
    return out


def _describe_section(name: str, doc: str, entries: dict[str, FieldEntry]) -> FieldDoc:
    out = FieldDoc(key=name, kind="section", doc=doc, type="table", checks=_reading(name),
                   notes=NOTES.get(name, ()), fields=_summaries(name, entries))
    if name == "vlm":
        out.fields.sort(key=lambda s: s.arches is not None)  # shared fields first, then per arch
        every = [arch for arch, _ in vlm_classes()]
        out.arches, out.all_arches = every, True
    return out
