"""Every config key, walked from the section dataclasses: type, default, arches, declaration.

The one introspection of the schema that `explain --field`, `kforge schema` and
the shell completions share. Keys are canonical: ``model.dim``,
``vlm.freeze[].module``, ``checkpoint.dyn_ckpt_window.stop``.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import MISSING
from functools import lru_cache
from typing import Any, Union

from kforge_cli.config.fields import FieldSpec, field_default, spec_of
from kforge_cli.config.job import JobConfig
from kforge_cli.config.registry import registry
from kforge_cli.config.resolved import to_plain
from kforge_cli.config.vlm import FreezeSpec, FreezeStage
from kforge_cli.findings import close_matches
from kforge_cli.records import record


@record(frozen=True)
class FieldEntry:
    key: str  # canonical key
    section: str  # top-level section
    name: str
    hint: Any  # the type hint
    field: dataclasses.Field
    owners: tuple[type, ...]  # the dataclasses that declare it (one per arch for vlm.*)
    arches: tuple[str, ...] | None  # vlm.* only: the arches that accept the field

    @property
    def spec(self) -> FieldSpec:
        return spec_of(self.field)

    @property
    def doc(self) -> str:
        return self.spec.doc

    @property
    def parent(self) -> str:
        return self.key.rsplit(".", 1)[0]


def inner_dataclass(hint: Any) -> tuple[type | None, str]:
    """The dataclass a field holds and how: ("", a table), ("[]", an array of tables)."""
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        for arg in typing.get_args(hint):
            if arg is not type(None):
                return inner_dataclass(arg)
        return None, ""
    if origin in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if len(args) == 1 and isinstance(args[0], type) and dataclasses.is_dataclass(args[0]):
            return args[0], "[]"
        return None, ""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint, ""
    return None, ""


def vlm_classes() -> list[tuple[str, type]]:
    return [(arch, registry.get_vlm_config(arch)) for arch in registry.list_vlm_configs()]


def sections() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(JobConfig)}


@lru_cache(maxsize=4)
def _walk(arches: tuple[str, ...]) -> dict[str, FieldEntry]:
    entries: dict[str, FieldEntry] = {}

    def add(prefix: str, section: str, cls: type, arch: str | None) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = f"{prefix}.{f.name}"
            known = entries.get(key)
            if known is None:
                entries[key] = FieldEntry(key, section, f.name, hints[f.name], f, (cls,), (arch,) if arch else None)
            elif arch and known.arches is not None and arch not in known.arches:
                entries[key] = dataclasses.replace(known, owners=known.owners + (cls,),
                                                   arches=known.arches + (arch,))
            inner, shape = inner_dataclass(hints[f.name])
            if inner is not None:
                add(key + shape, section, inner, arch)

    job_hints = typing.get_type_hints(JobConfig)
    for f in dataclasses.fields(JobConfig):
        if f.name == "vlm":
            for arch in arches:
                add("vlm", "vlm", registry.get_vlm_config(arch), arch)
        else:
            inner, _ = inner_dataclass(job_hints[f.name])
            if inner is not None:
                add(f.name, f.name, inner, None)
    return entries


def field_catalogue() -> dict[str, FieldEntry]:
    """Every field key, in declaration order, for the arches registered now (plugins may add some)."""
    return dict(_walk(tuple(registry.list_vlm_configs())))


def all_field_keys() -> list[str]:
    """Every documented key: sections, then their fields (canonical spelling)."""
    return list(sections()) + list(field_catalogue())


def canonical_key(key: str) -> str:
    key = key.strip().strip("[]")
    return re.sub(r"\[\d*\]", "[]", key)


def lookup_key(key: str, entries: dict[str, FieldEntry]) -> str | None:
    wanted = canonical_key(key)
    if wanted in entries:
        return wanted
    # "data.datasets.path" and "vlm.freeze.module" name an entry's field without the brackets.
    loose = {k.replace("[]", ""): k for k in entries}
    return loose.get(wanted.replace("[]", ""))


def suggest_keys(key: str, candidates: list[str]) -> list[str]:
    wanted = canonical_key(key)
    tail = wanted.rsplit(".", 1)[-1]
    same_name = [c for c in candidates if c.replace("[]", "").rsplit(".", 1)[-1] == tail]
    if same_name:
        return same_name[:4]
    close = close_matches(wanted, candidates, n=3, cutoff=0.6)
    if close:
        return close
    tails = {c.rsplit(".", 1)[-1]: c for c in candidates}
    return [tails[t] for t in close_matches(tail, list(tails), n=3, cutoff=0.7)]


def format_value(value: Any) -> str:
    """A plain value as TOML would spell it ("unset" for None)."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{" + ", ".join(f"{_toml_key(k)} = {format_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _toml_key(key: Any) -> str:
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else format_value(text)


_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string"}
_PLURALS = {"boolean": "booleans", "integer": "integers", "number": "numbers", "string": "strings"}


def type_text(hint: Any) -> str:
    """A type hint in TOML words: "integer, or unset", "array of strings", ..."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Union or origin is types.UnionType:
        inner = [a for a in args if a is not type(None)]
        text = " or ".join(type_text(a) for a in inner)
        return f"{text}, or unset" if len(inner) < len(args) else text
    if hint in _SCALARS:
        return _SCALARS[hint]
    if hint is FreezeSpec:
        return "table {module = string, frozen = boolean}"
    if hint is FreezeStage:
        return "table {start_step = integer, specs = [...]}"
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return "table"
    if origin in (list, tuple):
        items = [a for a in args if a is not Ellipsis]
        if origin is tuple and Ellipsis not in args and items and len(set(items)) == 1:
            element = type_text(items[0])
            return f"array of {len(items)} {_PLURALS.get(element, element)}"
        if len(items) == 1:
            element = type_text(items[0])
            if element.startswith("table"):
                return f"array of {element.replace('table', 'tables', 1)}"
            return f"array of {_PLURALS.get(element, element)}"
        return "array"
    if origin is dict:
        value = type_text(args[1]) if len(args) == 2 else "value"
        return f"table of name = {value}"
    return getattr(hint, "__name__", str(hint))


def default_text(f: dataclasses.Field | None) -> str:
    if f is None:
        return ""
    default = field_default(f)
    if default is MISSING:
        return "required"
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return "(defaults)"
    return format_value(to_plain(default))


def field_choices(entry: FieldEntry) -> tuple[list[str] | None, str | None]:
    """The allowed values of a field, and how other values are treated."""
    spec = entry.spec
    if spec.registry:
        names = registry.list(spec.registry)
        if spec.choices:
            names = [c for c in spec.choices if c in names] or list(spec.choices)
        how = "enum: anything else is rejected at load" if spec.enum else f"registered {spec.registry} names"
        return [str(n) for n in names], how
    if spec.choices:
        how = "enum: anything else is rejected at load" if spec.enum else "checked when the section is built"
        return [str(c) for c in spec.choices], how
    return None, None


def field_of(cls: type, name: str) -> dataclasses.Field | None:
    return next((f for f in dataclasses.fields(cls) if f.name == name), None)
