"""Declaring a config field once: default, doc, allowed values and constraints.

Every section is a plain dataclass whose fields are made with ``setting(...)``.
The declaration is the single source for the loader (coercion, enums), the
field checks the reference runs when it constructs the section (ranges,
divisibility, registry names), `explain --field` (the sentences that state
them), and the JSON Schema. Comparisons keep the reference's own form: a
one-sided bound is violated by ``value <= 0`` (so NaN passes, as it does in the
trainer), an interval by ``not (lo <= value < hi)`` (so NaN fails).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass
from typing import Any, Union

from kforge_cli.findings import Finding, close_matches, shown
from kforge_cli.records import record
from kforge_cli.rules.loading import INVALID_VALUE
from kforge_cli.rules.rule import LOAD, Rule


def is_number(value: Any) -> bool:
    """A real number as the reference's comparisons see it (bool counts, like Python)."""
    return isinstance(value, (int, float))


@record(frozen=True)
class Condition:
    """A constraint applies only when this holds (e.g. MoE knobs when num_experts > 0)."""

    text: str  # as the docs and messages say it: "model.num_experts > 0"
    holds: Callable[[Any], bool]


@record(frozen=True)
class JobCondition:
    """Something about the whole job (and the world size) that a use of a field depends on.

    ``holds`` gets what the rule checks see: an object with ``job`` and
    ``world_size`` (None when not given). ``reads`` names the keys it reads.
    """

    text: str  # as messages say it: "optimizer.name is adamw or muon"
    holds: Callable[[Any], bool]
    reads: tuple[str, ...] = ()


@record(frozen=True)
class Use:
    """Where the trainer first uses a field's value in a way that a value of another type breaks.

    The reference's loader stores a value it does not convert (a list for a
    number, a number for a path) as is, and a field whose construction checks
    do not compare it fails only where the trainer uses it. A field declaring
    ``used`` is loaded the same way; the first of its uses whose ``when`` holds
    says where the run fails, and when none holds the value is never used.
    """

    stage: str | None  # None: no stage of a normal run reaches the use
    does: str  # what the trainer does with it, e.g. "init_distributed seeds the RNGs with it"
    when: JobCondition | None = None

    def holds(self, subject: Any) -> bool:
        return self.when is None or bool(self.when.holds(subject))


@record(frozen=True)
class Interval:
    """``[lo, hi)`` style range; checked as ``not (lo <= v < hi)``, which NaN violates."""

    lo: float
    hi: float
    lo_closed: bool
    hi_closed: bool

    @classmethod
    def parse(cls, text: str) -> Interval:
        match = re.fullmatch(r"\s*([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])\s*", text)
        if not match:
            raise ValueError(f"not an interval: {text!r}")
        return cls(float(match.group(2)), float(match.group(3)), match.group(1) == "[", match.group(4) == "]")

    def contains(self, value: float) -> bool:
        above = self.lo <= value if self.lo_closed else self.lo < value
        below = value <= self.hi if self.hi_closed else value < self.hi
        return above and below

    def __str__(self) -> str:
        return (f"{'[' if self.lo_closed else '('}{_number(self.lo)}, {_number(self.hi)}"
                f"{']' if self.hi_closed else ')'}")


@record(frozen=True)
class FieldSpec:
    """Everything kforge knows about one field besides its type and default."""

    doc: str = ""
    unit: str | None = None
    choices: tuple[Any, ...] | None = None
    enum: bool = False  # an Enum/Literal in the reference: the loader itself rejects other values
    registry: str | None = None  # registry category the value names
    looked_up: str | None = None  # stage at which that registry lookup happens (None: conditional/never)
    gt: float | str | None = None  # str: the name of a sibling field
    ge: float | str | None = None
    lt: float | str | None = None
    le: float | str | None = None
    interval: Interval | None = None
    items: Interval | None = None  # each element of a fixed-size numeric tuple
    allow: tuple[Any, ...] = ()  # always valid, whatever the bounds say (dp_shard = -1)
    divisible_by: str | None = None  # sibling field that must divide this one
    divides: str | None = None  # sibling field this one must divide
    when: Condition | None = None
    fix: str | None = None  # a better hint than the derived one
    # Where the trainer uses a value the loader keeps as is (see Use); empty: such a
    # value is rejected at load.
    used: tuple[Use, ...] = ()

    # Cached: the engine asks for every field of every section of every file.
    @functools.cached_property
    def has_constraints(self) -> bool:
        return any(v is not None for v in (self.gt, self.ge, self.lt, self.le, self.interval, self.items,
                                           self.divisible_by, self.divides)) or (
            self.choices is not None and not self.enum) or self.looked_up == LOAD


def setting(default: Any = MISSING, doc: str = "", *, factory: Callable[[], Any] | None = None,
            choices: tuple[Any, ...] | None = None, enum: bool = False, unit: str | None = None,
            registry: str | None = None, looked_up: str | None = None,
            gt: float | str | None = None, ge: float | str | None = None, lt: float | str | None = None,
            le: float | str | None = None, interval: str | None = None, items: str | None = None,
            allow: tuple[Any, ...] = (), divisible_by: str | None = None, divides: str | None = None,
            when: Condition | None = None, fix: str | None = None, used: tuple[Use, ...] = ()) -> Any:
    """A dataclass field with kforge metadata.

    ``choices`` with ``enum=True`` is an Enum/Literal in the reference (the loader
    rejects other values); without it the section's construction checks them.
    ``registry`` names the registry category the value is looked up in, and
    ``looked_up`` when (``LOAD`` here, ``STARTUP`` by the engine). ``used`` lists
    where the trainer uses a value of another type that its loader keeps as is.
    """
    spec = FieldSpec(doc=doc, unit=unit, choices=choices, enum=enum, registry=registry, looked_up=looked_up,
                     gt=gt, ge=ge, lt=lt, le=le, interval=Interval.parse(interval) if interval else None,
                     items=Interval.parse(items) if items else None, allow=allow, divisible_by=divisible_by,
                     divides=divides, when=when, fix=fix, used=used)
    metadata = {"kforge": spec}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


_EMPTY = FieldSpec()


def value_kind(hint: Any) -> tuple[tuple[type, ...], str]:
    """The Python types a value declared as ``hint`` has, and how messages name them."""
    origin = typing.get_origin(hint)
    optional = False
    if origin is Union or origin is types.UnionType:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(options) < len(typing.get_args(hint))
        hint = options[0] if len(options) == 1 else Any
        origin = typing.get_origin(hint)
    kinds: tuple[Any, ...]
    if hint is int:
        kinds, text = (int,), "an integer"
    elif hint is float:
        kinds, text = (int, float), "a number"
    elif hint is str:
        kinds, text = (str,), "a string"
    elif hint is dict or origin is dict or (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
        kinds, text = (dict if origin is dict or hint is dict else hint,), "a table"
    else:
        kinds, text = (object,), "a value of its declared type"
    return (*kinds, type(None)) if optional else kinds, text


def loader_converts(hint: Any, value: Any) -> bool:
    """Whether the reference's loader converts ``value`` for a field declared ``hint`` (or fails trying).

    It turns strings and floats into integers, strings and integers into
    floats, and tables into sections; any other value it stores as is.
    """
    kinds, _ = value_kind(hint)
    if isinstance(value, kinds):
        return True
    if int in kinds or float in kinds:
        return isinstance(value, (int, float, str))
    return any(isinstance(k, type) and dataclasses.is_dataclass(k) for k in kinds) and isinstance(value, dict)


def compared_at_construction(spec: FieldSpec, section: Any) -> bool:
    """Whether the section's construction compares the field (a value of another type then fails at load)."""
    return spec.has_constraints and (spec.when is None or spec.when.holds(section))


def spec_of(f: dataclasses.Field) -> FieldSpec:
    return f.metadata.get("kforge", _EMPTY) if f.metadata else _EMPTY


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


# -- constraint evaluation -------------------------------------------------------------------


def _number(value: float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


@dataclass(frozen=True, slots=True)  # many instances: the generated __init__ is faster
class _Bound:
    op: str  # ">", ">=", "<", "<="
    limit: float | str

    def violated(self, value: float, limit: float) -> bool:
        # The reference's guard is the negated comparison, so NaN never violates a one-sided bound.
        if self.op == ">":
            return value <= limit
        if self.op == ">=":
            return value < limit
        if self.op == "<":
            return value >= limit
        return value > limit


def _bounds(spec: FieldSpec) -> tuple[_Bound, ...]:
    cached = _BOUNDS.get(id(spec))
    if cached is None or cached[0] is not spec:
        pairs = ((">", spec.gt), (">=", spec.ge), ("<", spec.lt), ("<=", spec.le))
        cached = _BOUNDS[id(spec)] = (spec, tuple(_Bound(op, limit) for op, limit in pairs if limit is not None))
    return cached[1]


# FieldSpecs are declared once, at import; their bounds are derived once too.
_BOUNDS: dict[int, tuple[FieldSpec, tuple[_Bound, ...]]] = {}


def requirement_text(spec: FieldSpec, prefix: str = "") -> list[str]:
    """What the field's constraints require, as phrases: ["positive", "<= model.num_experts"]."""
    out = []
    for bound in _bounds(spec):
        out.append(_bound_phrase(bound, prefix, spec))
    if spec.interval is not None:
        out.append(f"in {spec.interval}")
    if spec.items is not None:
        out.append(f"each value in {spec.items}")
    if spec.divisible_by:
        out.append(f"divisible by {_join(prefix, spec.divisible_by)}")
    if spec.divides:
        out.append(f"a divisor of {_join(prefix, spec.divides)}")
    if spec.choices is not None and not spec.enum and not spec.registry:
        out.append("one of " + ", ".join(map(str, spec.choices)))
    return out


def _bound_phrase(bound: _Bound, prefix: str, spec: FieldSpec) -> str:
    if isinstance(bound.limit, str):
        words = {">": "greater than", ">=": ">=", "<": "less than", "<=": "<="}[bound.op]
        return f"{words} {_join(prefix, bound.limit)}"
    if bound.limit == 0 and bound.op in (">", ">="):
        text = "positive" if bound.op == ">" else "non-negative"
    else:
        text = f"{bound.op} {_number(bound.limit)}"
    if spec.allow:
        return " or ".join(_number(a) if is_number(a) else repr(a) for a in spec.allow) + f" or {text}"
    return text


def _describe(value: Any) -> str:
    return shown(value)


def field_findings(section: Any, prefix: str) -> tuple[list[Finding], set[str]]:
    """The declared constraints of ``section``'s fields that its values violate.

    Returns the findings and the names of the fields that broke a constraint of
    their own (a relation between two fields is not judged when either is bad).
    """
    findings: list[Finding] = []
    failed: set[str] = set()
    deferred: list[tuple[dataclasses.Field, FieldSpec]] = []
    for f in dataclasses.fields(section):
        spec = spec_of(f)
        if not compared_at_construction(spec, section):
            continue
        value = getattr(section, f.name)
        key = _join(prefix, f.name)
        if spec.looked_up == LOAD and spec.registry:
            unknown = _registry_miss(spec.registry, key, value)
            if unknown is not None:
                failed.add(f.name)
                findings.append(unknown)
            continue
        problem = _own_problem(spec, value)
        if problem is not None:
            failed.add(f.name)
            findings.append(_violation(key, value, spec, problem, spec.fix or _derived_fix(key, spec, prefix)))
        elif spec.divisible_by or spec.divides or any(isinstance(b.limit, str) for b in _bounds(spec)):
            deferred.append((f, spec))
    for f, spec in deferred:
        value = getattr(section, f.name)
        key = _join(prefix, f.name)
        problem, hint = _relation_problem(section, spec, value, key, prefix, failed)
        if problem is not None:
            findings.append(_violation(key, value, spec, problem, spec.fix or hint))
    return findings, failed


def _registry_miss(category: str, key: str, value: Any) -> Finding | None:
    from kforge_cli.config.registry import registry

    if (category, value) in registry:
        return None
    names = sorted(registry.list(category))
    close = close_match(value, names)
    return INVALID_VALUE.finding(f"Unknown {key}: {_describe(value)}. Registered: {names}.", key,
                                 f"did you mean {close!r}?" if close else f"use one of {names}", stage=LOAD)


def close_match(name: Any, candidates: list[str]) -> str | None:
    """The candidate a typo most likely meant, if any is close enough."""
    if not isinstance(name, str):
        return None

    found = close_matches(name, candidates, n=1, cutoff=0.7)
    return found[0] if found else None


def _own_problem(spec: FieldSpec, value: Any) -> str | None:
    if spec.choices is not None and not spec.enum and not spec.registry:
        if not isinstance(value, str) or value not in spec.choices:
            return "one of " + ", ".join(map(repr, spec.choices))
        return None
    if spec.items is not None:
        if isinstance(value, (tuple, list)) and all(is_number(v) for v in value):
            if not all(spec.items.contains(v) for v in value):
                return f"each value in {spec.items}"
        return None
    if not is_number(value) or value in spec.allow:
        return None
    for bound in _bounds(spec):
        if not isinstance(bound.limit, str) and bound.violated(value, bound.limit):
            return _bound_phrase(bound, "", spec)
    if spec.interval is not None and not spec.interval.contains(value):
        return f"in {spec.interval}"
    return None


def _relation_problem(section: Any, spec: FieldSpec, value: Any, key: str, prefix: str,
                      failed: set[str]) -> tuple[str | None, str]:
    if not is_number(value):
        return None, ""
    for bound in _bounds(spec):
        if not isinstance(bound.limit, str) or bound.limit in failed:
            continue
        other = getattr(section, bound.limit)
        if is_number(other) and bound.violated(value, other):
            phrase = _bound_phrase(bound, prefix, spec)
            return f"{phrase} ({_describe(other)})", f"make {key} {phrase}, or change {_join(prefix, bound.limit)}"
    for partner, whole_is_self in ((spec.divisible_by, True), (spec.divides, False)):
        if not partner or partner in failed:
            continue
        other = getattr(section, partner)
        if not (isinstance(value, int) and isinstance(other, int)):
            continue
        whole, part = (value, other) if whole_is_self else (other, value)
        if part == 0 or whole % part == 0:
            continue
        partner_key = _join(prefix, partner)
        if whole_is_self:
            return f"divisible by {partner_key} ({other})", divisor_hint(partner_key, whole, part)
        return f"a divisor of {partner_key} ({other})", divisor_hint(key, whole, part)
    return None, ""


def divisor_hint(key: str, whole: int, part: int) -> str:
    """Suggest the divisors of ``whole`` nearest to ``part`` as values for ``key``."""
    if whole <= 0:
        return f"choose {key} so that it divides {whole}"
    divisors = [d for d in range(1, min(whole, 4096) + 1) if whole % d == 0]
    near = sorted(sorted(divisors, key=lambda d: (abs(d - part), d))[:3])
    return f"choose {key} from the divisors of {whole}, e.g. {', '.join(map(str, near))}"


def _violation(key: str, value: Any, spec: FieldSpec, problem: str, hint: str) -> Finding:
    condition = f" when {spec.when.text}" if spec.when is not None else ""
    return INVALID_VALUE.finding(f"{key} must be {problem}{condition} (got {_describe(value)})", key, hint,
                                 stage=LOAD)


def _derived_fix(key: str, spec: FieldSpec, prefix: str) -> str:
    if spec.choices is not None and not spec.enum:
        return f"use one of {', '.join(map(repr, spec.choices))}"
    phrases = requirement_text(spec, prefix)
    return f"set {key} to a value that is {' and '.join(phrases)}" if phrases else f"fix {key}"


# -- section checkers --------------------------------------------------------------------------


@record
class Checker:
    """Collects the findings of one section's hand-written rules under a dotted prefix."""

    prefix: str
    stage: str = LOAD
    findings: list[Finding] = dataclasses.field(default_factory=list)

    def key(self, name: str | None) -> str:
        if not name:
            return self.prefix
        return _join(self.prefix, name)

    def report(self, rule: Rule, name: str | None, message: str, hint: str | None = None,
               **data: Any) -> None:
        self.findings.append(rule.finding(message, self.key(name), hint, stage=self.stage, **data))

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.findings)
