"""TOML text (+ ``--set`` overrides) -> JobConfig, with every finding on the way.

The reference builds a default JobConfig, overlays the file, then overlays the
command-line overrides; each overlay constructs every section again, and any
section that fails its checks aborts the load. kforge follows the same layers
and the same coercions, but records a finding where the reference would raise
and keeps going, so one run reports every problem in the file.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import shlex
import types
import typing
from collections.abc import Sequence
from dataclasses import field
from typing import Any, Union

from kforge_cli.config.fields import (
    close_match,
    compared_at_construction,
    field_default,
    loader_converts,
    spec_of,
    value_kind,
)
from kforge_cli.config.job import JobConfig, construction_checks
from kforge_cli.config.registry import registry
from kforge_cli.config.section import collecting
from kforge_cli.config.toml_source import TomlSource, parse_toml_text, read_toml
from kforge_cli.config.vlm import (
    RESERVED_ARCHS,
    FreezeSpec,
    FreezeStage,
    JointDecoderConfig,
    VLMConfig,
    arch_fields,
    built_arch,
    reserved_arch_message,
    unknown_arch_message,
)
from kforge_cli.findings import WARNING, Finding, shown, unique
from kforge_cli.records import record
from kforge_cli.rules.loading import (
    ARCH_OVERRIDE_KEEPS_MODEL,
    INVALID_VALUE,
    LEGACY_LAYOUT,
    LOSSY_COERCION,
    MISSING_REQUIRED,
    MODULE_PATTERNS_TRAP,
    UNKNOWN_KEY,
    WRONG_TYPE,
)
from kforge_cli.rules.rule import LOAD, Rule, Subject, run_checks

FILE, OVERRIDE, DEFAULT = "file", "override", "default"

# Sentinel: the reference would raise on this value; the previous value stays.
_REJECTED = object()
# Unknown keys that get a typo search for their fix; the output shows no more of them anyway
# (the engine's MAX_FINDINGS_PER_RULE), and the search per key adds up on a hostile file.
DETAILED_UNKNOWN_KEYS = 20
# Past this many a file's unknown keys are only counted: their findings would never be shown.
REPORTED_UNKNOWN_KEYS = 1000


@record(frozen=True)
class _AsIs:
    """A value the reference's loader stores unconverted (a list for a number, a number for a path).

    The section decides: when its construction compares the field the load
    fails (``problem``), else the value is kept and fails where it is used.
    """

    value: Any
    problem: str
    hint: str

# Registry-named string fields: a non-string there fails the lookup (an error);
# any other string field merely holds a value of the wrong type (a warning).
_NAME_FIELDS = {"type", "name", "loss_fn", "model_type", "moe_router", "arch", "dataset_type",
                "sampling_policy", "strategy", "sdpa_backend", "moe_bias_schedule", "wsd_decay_type",
                "activation", "split"}


@record
class LoadResult:
    path: str
    source: TomlSource | None
    job: JobConfig | None
    findings: list[Finding] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    bad_keys: set[str] = field(default_factory=set)
    # The --set overrides as the nested table the second overlay applies.
    overrides: dict[str, Any] = field(default_factory=dict)
    # Values stored as is although they are not of the field's type (the reference
    # keeps them; the rules say where the trainer uses them). Their keys are also
    # in bad_keys unless the field is a string, which checks only pass along.
    as_is: dict[str, Any] = field(default_factory=dict)

    @property
    def readable(self) -> bool:
        return self.source is not None

    @property
    def has_errors(self) -> bool:
        return any(f.is_error for f in self.findings)


@record
class Override:
    key: str
    value: Any
    text: str


class OverrideError(ValueError):
    pass


def parse_override(text: str) -> Override:
    """``KEY=VALUE`` as the reference parses ``--KEY=VALUE``: a Python literal, else a string."""
    spec = text[2:] if text.startswith("--") else text
    if "=" in spec:
        key, raw = spec.split("=", 1)
    else:
        key, raw = spec, "true"  # a bare flag means true, as in the reference
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise OverrideError(f"--set {shown(text)}: expected KEY=VALUE with a dotted key, e.g. model.dim=512")
    import ast

    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        value = raw
    return Override(key, value, text)


def overrides_to_tree(overrides: Sequence[Override]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for item in overrides:
        node = tree
        parts = item.key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = item.value
    return tree


def load_job(path: str, overrides: Sequence[str | Override] = ()) -> LoadResult:
    source, failure = read_toml(path)
    if failure is not None:
        return LoadResult(path=path, source=None, job=None, findings=[failure])
    assert source is not None  # read_toml/parse_toml_text return exactly one of source and failure
    return _load_source(source, overrides)


def load_job_text(text: str, path: str = "<text>", overrides: Sequence[str | Override] = ()) -> LoadResult:
    source, failure = parse_toml_text(path, text)
    if failure is not None:
        return LoadResult(path=path, source=None, job=None, findings=[failure])
    assert source is not None  # read_toml/parse_toml_text return exactly one of source and failure
    return _load_source(source, overrides)


def _load_source(source: TomlSource, overrides: Sequence[str | Override]) -> LoadResult:
    result = LoadResult(path=source.path, source=source, job=None)
    parsed = [o if isinstance(o, Override) else parse_override(o) for o in overrides]
    result.overrides = overrides_to_tree(parsed)

    job = _Layer(FILE, result).overlay(JobConfig(), source.data)
    if parsed:
        job = _Layer(OVERRIDE, result).overlay(job, result.overrides)
        _explain_unrescued(result, parsed)
    result.job = job
    _explain_inherited_kv_heads(result)
    result.findings = locate(unique(result.findings), source)
    return result


def locate(findings: list[Finding], source: TomlSource) -> list[Finding]:
    """Attach the TOML line/column of each finding's key (or its anchor, or nearest ancestor)."""
    out = []
    for finding in findings:
        if finding.line is None and finding.data.get("origin") != OVERRIDE:
            line, col = source.position(finding.key)
            anchor = finding.data.get("anchor")
            if line is None and anchor:
                line, col = source.position(anchor)
            finding = finding.at(line, col)
        out.append(finding)
    return out


class _Layer:
    """One overlay (the file, or the overrides) onto the current JobConfig."""

    def __init__(self, origin: str, result: LoadResult) -> None:
        self.origin = origin
        self.result = result
        self._unknown_count = 0
        self._unreported = 0

    # -- reporting -----------------------------------------------------------

    def _add(self, finding: Finding) -> None:
        if self.origin == OVERRIDE:
            finding = dataclasses.replace(finding, data={**finding.data, "origin": OVERRIDE})
        self.result.findings.append(finding)

    def error(self, rule: Rule, key: str, message: str, hint: str | None = None, **data: Any) -> None:
        self._add(rule.finding(message, key, hint, stage=LOAD, **data))

    def warn(self, rule: Rule, key: str, message: str, hint: str | None = None, **data: Any) -> None:
        self._add(rule.finding(message, key, hint, severity=WARNING, **data))

    def reject(self, key: str) -> object:
        self.result.bad_keys.add(key)
        return _REJECTED

    # -- the job and its sections -----------------------------------------------

    def overlay(self, job: JobConfig, data: dict[str, Any]) -> JobConfig:
        self._reject_unknown(JobConfig, data, "")
        values: dict[str, Any] = {}
        hints = _type_hints(JobConfig)
        for f in dataclasses.fields(JobConfig):
            current = getattr(job, f.name)
            if f.name not in data:
                values[f.name] = current
                continue
            raw = data[f.name]
            inner = _dataclass_in(hints[f.name])
            if isinstance(raw, dict) and inner is not None:
                values[f.name] = self.section(inner, raw, current, f.name)
                self.result.sources[f.name] = self.origin
            else:
                self.error(WRONG_TYPE, f.name, f"[{f.name}] must be a table, got {_kind(raw)}",
                           f"write it as a [{f.name}] section with key = value lines")
                self.reject(f.name)
                values[f.name] = current
        with collecting():
            new_job = JobConfig(**values)
        for finding in run_checks(construction_checks(), Subject(job=new_job), self.result.bad_keys):
            self._add(finding)
        return new_job

    def section(self, cls: type, raw: dict[str, Any], base: Any, key: str) -> Any:
        if issubclass(cls, VLMConfig):
            cls = self._vlm_class(raw, base, key)
        known = {f.name for f in dataclasses.fields(cls)}
        self._reject_unknown(cls, raw, key)
        hints = _type_hints(cls)
        values: dict[str, Any] = {}
        held: dict[str, _AsIs] = {}
        for f in dataclasses.fields(cls):
            if base is not None and hasattr(base, f.name):
                values[f.name] = getattr(base, f.name)
            else:
                values[f.name] = field_default(f)
            if f.name in raw and f.name in known:
                sub = _join(key, f.name)
                value = self.coerce(hints[f.name], f, raw[f.name], sub)
                if isinstance(value, _AsIs):
                    held[f.name] = value
                elif value is not _REJECTED:
                    values[f.name] = value
                    self._clear_as_is(sub)
                if value is not _REJECTED and key and "." not in key and "[" not in key:
                    self.result.sources[sub] = self.origin
        with collecting():
            obj = cls(**values)
        self._keep_as_is(obj, held, hints, key)
        for finding in obj.check(prefix=key):
            self._add(finding)
        return obj

    def _keep_as_is(self, obj: Any, held: dict[str, _AsIs], hints: dict[str, Any], key: str) -> None:
        """Store the unconverted values the section's construction does not compare."""
        fields_ = {f.name: f for f in dataclasses.fields(obj)}
        for name, value in held.items():
            sub = _join(key, name)
            if compared_at_construction(spec_of(fields_[name]), obj):
                # Its check compares the value: the reference's loader fails with a TypeError.
                self.error(WRONG_TYPE, sub, value.problem, value.hint)
                self.reject(sub)
                continue
            setattr(obj, name, value.value)
            self.result.as_is[sub] = value.value
            if str not in value_kind(hints[name])[0]:
                self.result.bad_keys.add(sub)

    def _clear_as_is(self, key: str) -> None:
        # An override replaced a value the file held as is.
        if self.result.as_is.pop(key, _REJECTED) is not _REJECTED:
            self.result.bad_keys.discard(key)

    def _vlm_class(self, raw: dict[str, Any], base: Any, key: str) -> type:
        arch = raw.get("arch", getattr(base, "arch", "joint_decoder"))
        if base is not None:
            # The reference merges overrides into the existing subclass instance: the
            # arch string changes, the class (and with it the model built) does not.
            cls = type(base)
            new, built = raw.get("arch"), built_arch(base)
            if ("arch" in raw and new != built and isinstance(new, str) and new not in RESERVED_ARCHS
                    and ("vlm_config", new) in registry):
                self.warn(ARCH_OVERRIDE_KEEPS_MODEL, _join(key, "arch"),
                          f"vlm.arch = {shown(new)} rewrites only the arch string: the reference keeps the "
                          f"{cls.__name__} built from the file, so the trainer builds the {built} model (its "
                          f"parameters and vlm.module_patterns) and starts; only the ModalityStrategy of the "
                          f"forward pass follows {shown(new)}",
                          f"to train a {new} model, set vlm.arch = {json.dumps(new)} in the file itself")
            return cls
        if isinstance(arch, str) and arch in RESERVED_ARCHS:
            self.error(INVALID_VALUE, _join(key, "arch"), reserved_arch_message(arch),
                       f"pick one of {sorted(registry.list_vlm_configs())}")
        else:
            try:
                return registry.get_vlm_config(arch)
            except KeyError:
                pass
            names = sorted(registry.list_vlm_configs())
            close = close_match(arch, names)
            self.error(INVALID_VALUE, _join(key, "arch"), unknown_arch_message(arch),
                       f"did you mean {close!r}?" if close else f"pick one of {names}")
        self.reject(_join(key, "arch"))
        self._unknown_arch = True
        return JointDecoderConfig

    def _reject_unknown(self, cls: type, raw: dict[str, Any], key: str) -> None:
        self._reject_unknown_keys(cls, raw, key)
        if self._unreported:
            where = f"[{key}]" if key else "the file"
            self.error(UNKNOWN_KEY, key, f"\u2026 and {self._unreported:,} more unknown keys in {where}",
                       "remove them", omitted=self._unreported)
            self._unreported = 0

    def _reject_unknown_keys(self, cls: type, raw: dict[str, Any], key: str) -> None:
        known = {f.name for f in dataclasses.fields(cls)}
        grouped = self._reject_misplaced_groups(cls, [n for n in raw if n not in known], key)
        for name in raw:
            if name in known or name in grouped:
                continue
            sub = _join(key, name)
            if issubclass(cls, VLMConfig) and getattr(self, "_unknown_arch", False):
                # The arch is already wrong; only flag keys no arch accepts.
                if any(name in fields_ for fields_ in arch_fields().values()):
                    continue
            if key == "model" and name == "vlm":
                self.error(LEGACY_LAYOUT, "model.vlm",
                           "[model.vlm] is the legacy VLM layout; the reference rejects it as an unknown "
                           "key of ModelConfig",
                           f"run `kforge convert --in-place {shlex.quote(self.result.path)}` to move it to "
                           "[vision_encoder] / [adapter] / [vlm]")
                self.reject(sub)
                continue
            self._unknown_count += 1
            if self._unknown_count > REPORTED_UNKNOWN_KEYS:
                self._unreported += 1  # counted in one finding, see _reject_unknown
                continue
            if self._unknown_count > DETAILED_UNKNOWN_KEYS:
                # Past this many, only a count reaches the output: skip the typo search.
                self.error(UNKNOWN_KEY, sub, _unknown_message(cls, key, name), "remove it")
                self.reject(sub)
                continue
            hint, intended = _unknown_hint(cls, key, name)
            if intended is None:
                self.error(UNKNOWN_KEY, sub, _unknown_message(cls, key, name), hint)
            else:
                # What the typo meant kept its default: findings about it follow from this one.
                self.error(UNKNOWN_KEY, sub, _unknown_message(cls, key, name), hint, explains=[intended])
                self.result.bad_keys.add(intended)
            self.reject(sub)

    def _reject_misplaced_groups(self, cls: type, unknown: list[str], key: str) -> set[str]:
        """Several unknown keys that are all fields of one other section: one finding for the group.

        A model preset written without its [model] header, or a block of optimizer
        keys pasted under [train], is one mistake, not a dozen.
        """
        if len(unknown) < 2 or issubclass(cls, VLMConfig):
            return set()
        homes: dict[str, list[str]] = {}
        for name in unknown:
            owners = [section for section, names in _section_fields().items()
                      if name in names and section != key]
            if len(owners) == 1:
                homes.setdefault(owners[0], []).append(name)
        grouped: set[str] = set()
        for section, names in homes.items():
            if len(names) < 2:
                continue
            shown_names = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            where = "top-level keys" if not key else f"keys of [{key}]"
            consequence = ("without a [" + section + "] header above them the reference's loader rejects each "
                           "one as an unknown section" if not key else
                           f"the reference's loader rejects each one as an unknown key of [{key}]")
            hint = (f"add a [{section}] header above them" if not key else f"move them under [{section}]")
            self.error(UNKNOWN_KEY, _join(key, names[0]),
                       f"the {len(names)} {where} {shown_names} are fields of [{section}]: {consequence}",
                       hint, explains=[f"{section}.{n}" for n in names])
            for name in names:
                self.reject(_join(key, name))
                self.result.bad_keys.add(f"{section}.{name}")
            grouped.update(names)
        return grouped

    # -- values -------------------------------------------------------------------

    def coerce(self, hint: Any, f: dataclasses.Field | None, value: Any, key: str) -> Any:
        spec = spec_of(f) if f is not None else None
        origin = typing.get_origin(hint)
        if origin is Union or origin is types.UnionType:
            if value is None:
                return None
            options = [a for a in typing.get_args(hint) if a is not type(None)]
            if len(options) != 1:
                return value
            hint, origin = options[0], typing.get_origin(options[0])
        name = key.rsplit(".", 1)[-1]
        if spec is not None and spec.used and not loader_converts(hint, value):
            _, kind = value_kind(hint)
            return _AsIs(value, f"{key} must be {kind}, got {_kind(value)}", f"write {name} as {kind}")
        if spec is not None and spec.enum and spec.choices:
            choices = spec.choices
            if isinstance(value, str) and value in choices:
                return value
            close = close_match(value, [str(c) for c in choices])
            self.error(INVALID_VALUE, key, f"{key} = {shown(value)} is not one of {list(choices)}",
                       f"did you mean {close!r}?" if close else f"use one of {list(choices)}")
            return self.reject(key)
        inner = _dataclass_in(hint)
        if inner is not None:
            if isinstance(value, dict):
                return self.section(inner, value, None, key)
            self.error(WRONG_TYPE, key, f"{key} must be a table, got {_kind(value)}",
                       f"write it as [{key}] with key = value lines")
            return self.reject(key)
        if origin is tuple:
            return self._coerce_tuple(hint, value, key)
        if origin is list:
            return self._coerce_list(hint, value, key)
        if origin is dict:
            return self._coerce_dict(hint, value, key)
        if hint is bool:
            return self._coerce_bool(value, key)
        if hint is int:
            return self._coerce_int(value, key)
        if hint is float:
            return self._coerce_float(value, key)
        if hint is str and not isinstance(value, str):
            if name in _NAME_FIELDS or (spec is not None and spec.registry):
                return value  # the section rule reports the failed lookup
            self.warn(WRONG_TYPE, key, f"{key} should be a string, got {_kind(value)}; the reference keeps it "
                      "as is and fails later where it is used", f'quote it: {name} = "{value}"')
        return value

    def _coerce_bool(self, value: Any, key: str) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            result = value.lower() in ("true", "1", "yes")
            spelled_out = value.lower() in ("true", "1", "yes", "false", "0", "no")
            if self.origin == OVERRIDE and spelled_out:
                return result  # --set train.compile_model=true: the command line has only strings
            fix = (f"write --set {key}={result}" if self.origin == OVERRIDE else
                   f"write {key.rsplit('.', 1)[-1]} = {str(result).lower()} (a TOML boolean)")
            self.warn(LOSSY_COERCION, key,
                      f"{key} = {shown(value)} is a string; the reference reads it as {shown(result)}"
                      + ("" if spelled_out else " (anything but 'true', '1' or 'yes' counts as false)"), fix)
            return result
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            result = bool(value)
            self.warn(LOSSY_COERCION, key,
                      f"{key} = {shown(value)} is a number; the reference reads it as {shown(result)}",
                      f"write {key.rsplit('.', 1)[-1]} = {str(result).lower()}")
            return result
        result = bool(value)
        self.warn(LOSSY_COERCION, key, f"{key} is {_kind(value)}; the reference reads it as bool(...) = {result}",
                  f"write {key.rsplit('.', 1)[-1]} = true or false")
        return result

    def _coerce_int(self, value: Any, key: str) -> Any:
        name = key.rsplit(".", 1)[-1]
        if isinstance(value, bool):
            self.warn(LOSSY_COERCION, key,
                      f"{key} = {str(value).lower()} is a boolean used as the integer {int(value)}",
                      f"write {name} = {int(value)}")
            return value
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                self.error(WRONG_TYPE, key, f"{key} = {value} cannot be converted to an integer",
                           f"write {name} as an integer")
                return self.reject(key)
            result = int(value)
            if result == value:
                self.warn(LOSSY_COERCION, key,
                          f"{key} = {shown(value)} is a float; the reference converts it to {shown(result)}",
                          f"write {name} = {shown(result)}")
            else:
                self.warn(LOSSY_COERCION, key,
                          f"{key} = {shown(value)} is a float; the reference truncates it to {shown(result)}",
                          f"write the integer you mean, e.g. {name} = {shown(round(value))}")
            return result
        if isinstance(value, str):
            try:
                result = int(value)
            except ValueError:
                self.error(WRONG_TYPE, key, f"{key} = {shown(value)} is not an integer (the reference's int() fails)",
                           f"write --set {key}=<integer>" if self.origin == OVERRIDE else
                           f"write {name} as an integer without quotes")
                return self.reject(key)
            if self.origin == OVERRIDE:
                return result  # the command line has only strings: converting one is no loss
            self.warn(LOSSY_COERCION, key,
                      f"{key} = {shown(value)} is a string; the reference converts it to {shown(result)}",
                      f"write {name} = {shown(result)} (no quotes)")
            return result
        # The reference keeps such a value as is and fails only where it is used.
        self.error(WRONG_TYPE, key, f"{key} must be an integer, got {_kind(value)}", f"write {name} as an integer",
                   kept=True)
        return self.reject(key)

    def _coerce_float(self, value: Any, key: str) -> Any:
        name = key.rsplit(".", 1)[-1]
        if isinstance(value, bool):
            self.warn(LOSSY_COERCION, key, f"{key} = {str(value).lower()} is a boolean used as {float(value)}",
                      f"write {name} = {float(value)}")
            return float(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                self.warn(WRONG_TYPE, key, f"{key} = {value} is not a finite number; the reference accepts it",
                          f"write a finite value for {name}")
            return value
        if isinstance(value, int):
            try:
                return float(value)
            except OverflowError:
                self.error(WRONG_TYPE, key, f"{key} = {shown(value)} is too large for a float (the reference's "
                           "float() raises OverflowError at load)", f"write {name} as a realistic number")
                return self.reject(key)
        if isinstance(value, str):
            try:
                result = float(value)
            except ValueError:
                self.error(WRONG_TYPE, key, f"{key} = {shown(value)} is not a number (the reference's float() fails)",
                           f"write --set {key}=<number>" if self.origin == OVERRIDE else
                           f"write {name} as a number without quotes")
                return self.reject(key)
            if self.origin == OVERRIDE:
                # --set lr=inf reaches here as a string (not a Python literal): judge the number.
                return self._coerce_float(result, key)
            self.warn(LOSSY_COERCION, key,
                      f"{key} = {shown(value)} is a string; the reference converts it to {shown(result)}",
                      f"write {name} = {shown(result)} (no quotes)")
            return result
        self.error(WRONG_TYPE, key, f"{key} must be a number, got {_kind(value)}", f"write {name} as a number",
                   kept=True)
        return self.reject(key)

    def _coerce_tuple(self, hint: Any, value: Any, key: str) -> Any:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            self.error(WRONG_TYPE, key, f"{key} must be an array, got {_kind(value)}",
                       f"write {key.rsplit('.', 1)[-1]} = [ ... ]")
            return self.reject(key)
        if len(args) == 2 and args[1] is Ellipsis:
            element = args[0]
            if element is FreezeSpec:
                return tuple(self._freeze_spec(item, f"{key}[{i}]") for i, item in enumerate(value))
            if element is str:
                for i, item in enumerate(value):
                    if not isinstance(item, str):
                        self.error(WRONG_TYPE, f"{key}[{i}]", f"{key}[{i}] must be a string, got {_kind(item)}",
                                   "quote each entry")
                        return self.reject(key)
            return tuple(value)
        # Fixed-size numeric tuple (optimizer.betas): the reference converts the
        # container only; its elements must already be numbers for the checks.
        if any(not isinstance(item, (int, float)) or isinstance(item, bool) for item in value):
            self.error(WRONG_TYPE, key, f"{key} must hold numbers, got {shown(list(value))}",
                       f"write {key.rsplit('.', 1)[-1]} = [0.9, 0.95]")
            return self.reject(key)
        if len(value) != len(args):
            self.error(WRONG_TYPE, key, f"{key} must have exactly {len(args)} values, got {len(value)}",
                       f"write {key.rsplit('.', 1)[-1]} = [0.9, 0.95]")
            return self.reject(key)
        return tuple(value)

    def _coerce_list(self, hint: Any, value: Any, key: str) -> Any:
        (element,) = typing.get_args(hint) or (Any,)
        name = key.rsplit(".", 1)[-1]
        if not isinstance(value, list):
            if _dataclass_in(element) is not None or element in (FreezeSpec, FreezeStage):
                self.error(WRONG_TYPE, key, f"{key} must be an array of tables, got {_kind(value)} (the reference "
                           "wraps it in a list without converting it, and fails when it is used)",
                           f"write {name} = [{{ ... }}] or use [[{key}]] tables")
                return self.reject(key)
            self.warn(LOSSY_COERCION, key, f"{key} is a single value; the reference wraps it into [{shown(value)}]",
                      f"write {name} = [{shown(value)}]")
            return [value]
        if element is FreezeSpec:
            return [self._freeze_spec(item, f"{key}[{i}]") for i, item in enumerate(value)]
        if element is FreezeStage:
            return [self._freeze_stage(item, f"{key}[{i}]") for i, item in enumerate(value)]
        inner = _dataclass_in(element)
        if inner is not None:
            out = []
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    out.append(self.section(inner, item, None, f"{key}[{i}]"))
                else:
                    self.error(WRONG_TYPE, f"{key}[{i}]", f"{key}[{i}] must be a table, got {_kind(item)}",
                               f"use [[{key}]] tables")
                    self.reject(f"{key}[{i}]")
            return out
        if element is str:
            for i, item in enumerate(value):
                if not isinstance(item, str):
                    self.warn(WRONG_TYPE, f"{key}[{i}]", f"{key}[{i}] should be a string, got {_kind(item)}",
                              "quote each entry")
        return value

    def _coerce_dict(self, hint: Any, value: Any, key: str) -> Any:
        if not isinstance(value, dict):
            self.error(WRONG_TYPE, key, f"{key} must be a table, got {_kind(value)}",
                       f"write it as [{key}] with key = value lines")
            return self.reject(key)
        _, value_type = typing.get_args(hint) or (Any, Any)
        for sub, item in value.items():
            if typing.get_origin(value_type) is list and not isinstance(item, list):
                if isinstance(item, str):
                    # freeze_params runs list(patterns): one fnmatch pattern per character.
                    effect = ("a '*' among them matches every parameter, so the alias selects the whole model"
                              if "*" in item else "single characters match no parameter name, so the alias "
                              "selects nothing")
                    self.warn(MODULE_PATTERNS_TRAP, f"{key}.{sub}",
                              f"{key}.{sub} is a string; the reference iterates it character by character: "
                              f"{effect}", f"write {sub} = [{json.dumps(item)}]")
                # Any other value the reference keeps as it is: list() of a table gives its keys, and a
                # number fails only when a freeze spec names the alias (the freeze and advice rules say so).
            elif value_type in (int, float) and (not isinstance(item, (int, float)) or isinstance(item, bool)):
                self.error(WRONG_TYPE, f"{key}.{sub}", f"{key}.{sub} must be a number, got {_kind(item)}",
                           f"write {sub} = <number>")
        return value

    def _freeze_spec(self, item: Any, key: str) -> Any:
        if isinstance(item, FreezeSpec):
            return item
        if not isinstance(item, dict):
            self.error(WRONG_TYPE, key, f"{key} must be a table like {{module = \"vision_encoder\", frozen = true}}, "
                       f"got {_kind(item)} (the reference fails when the model is built)",
                       f'write {{module = "{item}", frozen = true}}' if isinstance(item, str) else
                       'write {module = "<alias or pattern>", frozen = true}')
            return item
        self._reject_unknown(FreezeSpec, item, key)
        if "module" not in item:
            self.error(MISSING_REQUIRED, key, f"{key} has no module (FreezeSpec requires it)",
                       'add module = "<alias or pattern>"')
            return self.reject(key)
        module = item["module"]
        if not isinstance(module, (str, int, float)):
            # A number or boolean is kept as is and fails only when the spec is applied (the freeze
            # rules say when); an array or table cannot even be looked up among the aliases.
            self.error(WRONG_TYPE, f"{key}.module", f"{key}.module must be a string, got {_kind(module)}",
                       'write module = "<alias or pattern>"')
        frozen = True
        if "frozen" in item:
            frozen = self._coerce_bool(item["frozen"], f"{key}.frozen")
        return FreezeSpec(module=module, frozen=frozen)

    def _freeze_stage(self, item: Any, key: str) -> Any:
        if isinstance(item, FreezeStage):
            return item
        if not isinstance(item, dict):
            self.error(WRONG_TYPE, key, f"{key} must be a table with start_step and specs, got {_kind(item)}",
                       "use [[vlm.freeze_schedule]] tables with start_step = N and specs = [...]")
            return item
        self._reject_unknown(FreezeStage, item, key)
        missing = [n for n in ("start_step", "specs") if n not in item]
        if missing:
            self.error(MISSING_REQUIRED, key, f"{key} is missing {' and '.join(missing)} (FreezeStage requires both)",
                       "write start_step = N and specs = [{module = \"...\", frozen = true}]")
            return self.reject(key)
        start = self._coerce_int(item["start_step"], f"{key}.start_step")
        if start is _REJECTED:
            return _REJECTED
        specs = self._coerce_tuple(tuple[FreezeSpec, ...], item["specs"], f"{key}.specs")
        if specs is _REJECTED:
            return _REJECTED
        return FreezeStage(start_step=start, specs=specs)


# -- helpers -------------------------------------------------------------------

_HINTS: dict[type, dict[str, Any]] = {}


def _type_hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _dataclass_in(hint: Any) -> type | None:
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        for arg in typing.get_args(hint):
            if isinstance(arg, type) and dataclasses.is_dataclass(arg):
                return arg
        return None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and hint not in (FreezeSpec, FreezeStage):
        return hint
    return None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array of tables" if value and all(isinstance(v, dict) for v in value) else "an array"
    if isinstance(value, str):
        return f"the string {shown(value)}"
    if isinstance(value, (int, float)):
        return f"the number {shown(value)}"
    return f"a {type(value).__name__}"


@functools.cache  # the job's sections are fixed; asked once per unknown key
def _section_fields() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    hints = _type_hints(JobConfig)
    for f in dataclasses.fields(JobConfig):
        inner = _dataclass_in(hints[f.name])
        if inner is not None:
            out[f.name] = {g.name for g in dataclasses.fields(inner)}
    return out


@functools.cache
def _field_names(cls: type) -> list[str]:
    return sorted(f.name for f in dataclasses.fields(cls))


def _unknown_message(cls: type, key: str, name: str) -> str:
    if not key:
        return f"unknown section [{name}]"
    label = cls.__name__
    return f"unknown key {key}.{name} ({label} has no field {shown(name)})"


def _unknown_hint(cls: type, key: str, name: str) -> tuple[str, str | None]:
    """The fix for an unknown key, and the key it most likely meant (its value then never arrived)."""
    known = _field_names(cls)
    if not key:
        close = close_match(name, known)
        return (f"did you mean [{close}]?", close) if close else (f"sections: {', '.join(known)}", None)
    if issubclass(cls, VLMConfig):
        owners = [arch for arch, names in arch_fields().items() if name in names]
        if owners:
            return (f"{name} belongs to vlm.arch = {owners[0]!r}; this file's arch is {cls().arch!r} "
                    f"(set arch = {owners[0]!r} or remove {name})", None)
    elsewhere = sorted(section for section, names in _section_fields().items()
                       if name in names and section != key)
    if elsewhere:
        return f"{name} belongs to [{elsewhere[0]}]: move it there", f"{elsewhere[0]}.{name}"
    close = close_match(name, known)
    if close:
        return f"did you mean {key}.{close}?", f"{key}.{close}"
    return f"valid keys of [{key}]: {', '.join(known)}", None


def _explain_unrescued(result: LoadResult, overrides: Sequence[Override]) -> None:
    """The reference validates the file before applying overrides; say so where it matters."""
    touched = {o.key for o in overrides}
    for i, finding in enumerate(result.findings):
        if finding.is_error and finding.data.get("origin") != OVERRIDE and finding.key in touched:
            result.findings[i] = dataclasses.replace(
                finding, hint=(finding.hint or "") + " (--set cannot rescue it: the reference loads and checks "
                "the file on its own before applying overrides)")


def _explain_inherited_kv_heads(result: LoadResult) -> None:
    if result.sources.get("model.n_kv_heads") in (FILE, OVERRIDE):
        return
    for i, finding in enumerate(result.findings):
        if finding.key == "model.n_kv_heads" and finding.is_error and "model.n_heads" in finding.message:
            job = result.job
            kv = job.model.n_kv_heads if job else "?"
            heads = job.model.n_heads if job else "?"
            result.findings[i] = dataclasses.replace(
                finding,
                message=finding.message + " — model.n_kv_heads is not set in the file, so it keeps the value "
                f"{kv} that the default ModelConfig resolved before the file was applied",
                hint=f"set model.n_kv_heads explicitly (e.g. model.n_kv_heads = {heads} for plain multi-head "
                "attention)")
