"""A JSON Schema (draft 2020-12) of the job file, derived from the field declarations.

Editors that read JSON Schema (Taplo / Even Better TOML, and anything else that
validates TOML through it) then flag in place what ``kforge validate`` rejects as
the file is loaded: an unknown key (KF101), a value of a type the loader cannot
coerce (KF102), a value outside an enum or a registry (KF103). Everything comes
from the same declarations the loader and ``explain --field`` read
(``config.catalog``); no field is listed here.

Two levels of strictness:

- the default mirrors validate: a config it accepts is accepted, so values the
  loader coerces with a warning (``256.0`` or ``"256"`` for an integer, ``"yes"``
  for a boolean, a bare string for a list of strings) pass;
- ``strict=True`` wants every value in its declared type, so it also rejects
  those coercions (validate's KF401 and wrong-type warnings, which fail
  ``validate --strict``).

What JSON Schema cannot state stays in the descriptions, and in validate:
relations between fields (``divisible by model.n_heads``), constraints that hold
only under a condition (``when model.num_experts > 0``), cross-section rules.
Numeric ranges are keywords (``minimum``, ``exclusiveMinimum``...).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import MISSING
from typing import Any, Union

from kforge_cli import __version__
from kforge_cli.config.catalog import (
    FieldEntry,
    field_choices,
    field_of,
    inner_dataclass,
    sections,
    type_text,
    vlm_classes,
)
from kforge_cli.config.fields import FieldSpec, field_default, requirement_text, spec_of
from kforge_cli.config.job import JobConfig
from kforge_cli.config.registry import registry
from kforge_cli.config.resolved import to_plain
from kforge_cli.config.vlm import FreezeSpec, VLMConfig
from kforge_cli.rules.rule import LOAD, STAGE_WORDS, STARTUP

DIALECT = "https://json-schema.org/draft/2020-12/schema"

# What Python's int() and float() accept in a string, which the loader then
# converts (with a warning). Underscores may separate digits, as in Python.
_DIGITS = r"\d(_?\d)*"
INT_TEXT = rf"^\s*[+-]?{_DIGITS}\s*$"
FLOAT_TEXT = (rf"^\s*[+-]?(({_DIGITS}(\.({_DIGITS})?)?|\.{_DIGITS})([eE][+-]?{_DIGITS})?"
              r"|[iI][nN][fF]([iI][nN][iI][tT][yY])?|[nN][aA][nN])\s*$")


class _Builder:
    def __init__(self, strict: bool) -> None:
        self.strict = strict

    # -- values --------------------------------------------------------------------------

    def value(self, hint: Any, spec: FieldSpec, path: str, enum: list[str] | None = None) -> dict[str, Any]:
        """The schema of the value at ``path`` (a canonical key), of type ``hint``."""
        origin = typing.get_origin(hint)
        if origin is Union or origin is types.UnionType:
            # An unset optional cannot be written in TOML: only the other type can.
            inner = [a for a in typing.get_args(hint) if a is not type(None)]
            return self.value(inner[0], spec, path, enum) if len(inner) == 1 else {}
        if enum is not None:
            return {"type": "string", "enum": enum}
        cls, shape = inner_dataclass(hint)
        if cls is not None:
            if shape == "[]":
                return {"type": "array", "items": self.table(cls, path + "[]")}
            return self.table(cls, path)
        if origin is tuple:
            return self.tuple_schema(hint, spec, path)
        if origin is list:
            return self.list_schema(hint, path)
        if origin is dict:
            return self.dict_schema(hint)
        if hint is bool:
            return {"type": "boolean"} if self.strict else {}
        if hint is int:
            return self.number(spec, integer=True)
        if hint is float:
            return self.number(spec, integer=False)
        if hint is str:
            # A non-string where no lookup reads it is kept with a warning.
            return {"type": "string"} if self.strict else {}
        return {}

    def number(self, spec: FieldSpec, integer: bool) -> dict[str, Any]:
        bounds = _bounds(spec)
        if self.strict:
            return {"type": "integer" if integer else "number", **bounds}
        # Booleans and numeric strings are converted with a warning; other strings are rejected.
        out: dict[str, Any] = {"type": (["integer"] if integer else []) + ["number", "boolean", "string"],
                               "pattern": INT_TEXT if integer else FLOAT_TEXT}
        if bounds and integer:
            # A fractional float is truncated before the check: only whole numbers are bounded here.
            out.update({"if": {"type": "integer"}, "then": bounds})
        else:
            out.update(bounds)
        return out

    def tuple_schema(self, hint: Any, spec: FieldSpec, path: str) -> dict[str, Any]:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            # A variable-length tuple: the loader checks every entry's type.
            element = {"type": "string"} if args[0] is str else self.value(args[0], FieldSpec(), path + "[]")
            return {"type": "array", "items": element}
        # A fixed-size tuple of numbers (optimizer.betas): no coercion, exactly len(args) numbers.
        item: dict[str, Any] = {"type": "number"}
        if spec.items is not None:
            item.update(_interval(spec.items))
        return {"type": "array", "items": item, "minItems": len(args), "maxItems": len(args)}

    def list_schema(self, hint: Any, path: str) -> dict[str, Any]:
        (element,) = typing.get_args(hint) or (Any,)
        if element is str:
            # A single value is wrapped into a list, and a non-string entry kept, both with a warning.
            return {"type": "array", "items": {"type": "string"}} if self.strict else {}
        return {"type": "array", "items": self.value(element, FieldSpec(), path + "[]")}

    def dict_schema(self, hint: Any) -> dict[str, Any]:
        _, value_type = typing.get_args(hint) or (Any, Any)
        if typing.get_origin(value_type) is list:
            # A bare string is iterated character by character: a warning, not an error.
            patterns = {"type": "array", "items": {"type": "string"}}
            return {"type": "object",
                    "additionalProperties": patterns if self.strict else {"type": ["array", "string"]}}
        if value_type in (int, float):
            return {"type": "object", "additionalProperties": {"type": "number"}}
        return {"type": "object"}

    # -- tables --------------------------------------------------------------------------

    def table(self, cls: type, prefix: str) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        out: dict[str, Any] = {"type": "object"}
        doc = _class_doc(cls)
        if doc:
            out["description"] = doc
        out["properties"] = {f.name: self.field(f, hints[f.name], prefix, strings_checked=cls is FreezeSpec)
                             for f in dataclasses.fields(cls)}
        required = [f.name for f in dataclasses.fields(cls) if field_default(f) is MISSING]
        if required:
            out["required"] = required
        out["additionalProperties"] = False
        return out

    def field(self, f: dataclasses.Field, hint: Any, prefix: str, arches: tuple[str, ...] | None = None,
              default: Any = MISSING, strings_checked: bool = False) -> dict[str, Any]:
        spec = spec_of(f)
        key = f"{prefix}.{f.name}"
        enum = _enum(FieldEntry(key, prefix.split(".", 1)[0], f.name, hint, f, (), arches))
        if strings_checked and hint is str:
            # The loader reads a freeze spec by hand and rejects a module that is not a string.
            value: dict[str, Any] = {"type": "string"}
        elif spec.used and not self.strict:
            # The loader keeps such a value as it is, and the trainer fails where it uses one of another
            # type (validate warns when the run never does): only the declared type is offered.
            value = _Builder(strict=True).value(hint, spec, key, enum)
        else:
            value = self.value(hint, spec, key, enum)
        described = [describe(f, hint, spec, prefix, arches), value.pop("description", "")]
        if "[" not in key:
            described.append(f"See `kforge explain --field {key}`.")
        out = {"description": " ".join(filter(None, described)), **value}
        written = field_default(f) if default is MISSING else default
        if written is not MISSING and written is not None and not _is_table(written):
            out["default"] = to_plain(written)
        if spec.registry and enum is None:
            names = sorted(registry.list(spec.registry))
            if names:
                out["examples"] = names
        return out

    # -- the job -------------------------------------------------------------------------

    def vlm(self, doc: str) -> dict[str, Any]:
        """[vlm]: every arch's fields, each allowed only with its arch (if/then on arch)."""
        classes = vlm_classes()
        every = [arch for arch, _ in classes]
        default_arch = _default_of(VLMConfig, "arch")  # what an omitted arch means
        declared: dict[str, tuple[dataclasses.Field, Any, list[str]]] = {}
        for arch, cls in classes:
            hints = typing.get_type_hints(cls)
            for f in dataclasses.fields(cls):
                declared.setdefault(f.name, (f, hints[f.name], []))[2].append(arch)
        properties: dict[str, Any] = {}
        for name, (f, hint, owners) in declared.items():
            defaults = {repr(to_plain(_default_of(cls, name))) for arch, cls in classes if arch in owners}
            default = default_arch if name == "arch" else MISSING if len(defaults) == 1 else None
            arches = tuple(owners) if len(owners) < len(every) else None
            properties[name] = self.field(f, hint, "vlm", arches, default)
        properties["arch"].pop("examples", None)
        properties["arch"].update(type="string", enum=every)
        properties["arch"]["description"] += f' Omitted, it is "{default_arch}".'
        branches = []
        for arch, cls in classes:
            own: dict[str, Any] = {}
            for f in dataclasses.fields(cls):
                value = field_default(f)
                per_arch = "default" not in properties[f.name] and f.name != "arch" and value is not MISSING
                own[f.name] = {"default": to_plain(value)} if per_arch else True
            condition: dict[str, Any] = {"properties": {"arch": {"const": arch}}}
            if arch != default_arch:
                condition["required"] = ["arch"]
            branches.append({"if": condition, "then": {"properties": own, "additionalProperties": False}})
        return {"description": _sentence(doc) + " Which fields are accepted depends on vlm.arch.",
                "type": "object", "properties": properties, "additionalProperties": False, "allOf": branches}

    def job(self) -> dict[str, Any]:
        hints = typing.get_type_hints(JobConfig)
        properties: dict[str, Any] = {}
        for name, f in sections().items():
            doc = _sentence(spec_of(f).doc)
            if name == "vlm":
                properties[name] = self.vlm(doc)
                continue
            cls, _ = inner_dataclass(hints[name])
            if cls is None:
                continue
            table = self.table(cls, name)
            table["description"] = " ".join(filter(None, (doc, table.get("description"))))
            properties[name] = {"description": table.pop("description"), **table}
        schema: dict[str, Any] = {
            "$schema": DIALECT,
            "title": "KempnerForge job config",
            "description": (
                f"A KempnerForge training-job TOML file, as kforge {__version__} checks it. Generated by "
                "`kforge schema` from kforge's field declarations"
                + (" (strict: values the loader only coerces with a warning are rejected)" if self.strict else
                   "; values the loader coerces with a warning are accepted")
                + ". Relations between fields and cross-section rules are stated in the descriptions and "
                "checked by `kforge validate`."),
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        return schema


def job_schema(strict: bool = False) -> dict[str, Any]:
    """The JSON Schema of a job file for the sections, arches and registry names known now."""
    return _Builder(strict).job()


# -- pieces ---------------------------------------------------------------------------------


def _enum(entry: FieldEntry) -> list[str] | None:
    """The only values accepted, when the loader (or the section's construction) rejects all others."""
    spec = entry.spec
    if spec.when is not None:
        return None
    if spec.registry and not spec.enum and spec.looked_up not in (LOAD, STARTUP):
        return None  # looked up only under some condition: another name may never be read
    names, _ = field_choices(entry)
    return names


def _bounds(spec: FieldSpec) -> dict[str, Any]:
    if spec.when is not None:
        return {}
    out: dict[str, Any] = {}
    for keyword, limit in (("exclusiveMinimum", spec.gt), ("minimum", spec.ge), ("exclusiveMaximum", spec.lt),
                           ("maximum", spec.le)):
        if limit is not None and not isinstance(limit, str):
            out[keyword] = _plain_number(limit)
    if spec.interval is not None:
        out.update(_interval(spec.interval))
    if out and spec.allow:
        return {"anyOf": [{"enum": list(spec.allow)}, out]}
    return out


def _interval(interval: Any) -> dict[str, Any]:
    return {"minimum" if interval.lo_closed else "exclusiveMinimum": _plain_number(interval.lo),
            "maximum" if interval.hi_closed else "exclusiveMaximum": _plain_number(interval.hi)}


def _plain_number(value: float) -> int | float:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _default_of(cls: type, name: str) -> Any:
    f = field_of(cls, name)
    return MISSING if f is None else field_default(f)


def _is_table(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _class_doc(cls: type) -> str:
    doc = cls.__doc__ or ""
    if doc.startswith(cls.__name__ + "("):
        return ""  # the signature dataclasses write when a class has no docstring
    return _sentence(doc.strip().split("\n\n")[0])


def _sentence(text: str) -> str:
    text = " ".join(text.split()).replace("``", "`")
    if not text:
        return ""
    if re.match(r"[a-z][a-z-]*(\s|,|;|$)", text):  # a word, not a name such as torch.distributed
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def describe(f: dataclasses.Field, hint: Any, spec: FieldSpec, prefix: str,
             arches: tuple[str, ...] | None = None) -> str:
    """The field's doc, type and unit, then what it must be in words (relations and conditions included)."""
    parts = [_sentence(spec.doc)] if spec.doc else []
    kind = type_text(hint)
    parts.append(_sentence(kind + (f", in {spec.unit}" if spec.unit else "")))
    phrases = [p for p in requirement_text(spec, prefix) if not (p.startswith("one of") and spec.when is None)]
    if phrases:
        condition = f" when {spec.when.text}" if spec.when is not None else ""
        parts.append(_sentence(f"must be {' and '.join(phrases)}{condition}"))
    if spec.registry:
        when = STAGE_WORDS.get(spec.looked_up or "", "")
        parts.append(_sentence(f"names a registered {spec.registry}" + (f", looked up {when}" if when else "")))
    if arches:
        parts.append(_sentence("only with vlm.arch = " + " or ".join(f'"{a}"' for a in arches)))
    return " ".join(parts)
