"""``[tool.kforge]`` settings and rule selection (``select`` / ``ignore``).

Discovery works like ruff's: walking up from a config file's directory, the
first ``pyproject.toml`` that has a ``[tool.kforge]`` table applies (one without
it is skipped). The walk ends after the repository root (a directory holding
``.git``, ``.hg`` or ``.svn``) or at the filesystem root::

    [tool.kforge]
    select = ["KF"]             # rule codes or code prefixes to report (default: all)
    ignore = ["KF4", "KF30"]    # ... and those to drop
    strict = true               # warnings fail the check too
    world-size = 32             # as --world-size
    gpu = "H200"                # as --gpu (memory rules)

Selection is layered: the file's table, then the command line's ``--select`` /
``--ignore``. A layer with ``select`` starts from nothing; one without it keeps
what the previous layer enabled. Within a layer the most specific matching
prefix decides, and ``ignore`` wins a tie; so ``--select KF401`` re-enables one
rule that the file ignores as part of ``KF4``. KF001 (a file that cannot be read)
and the other rules marked not suppressible are always reported: an unreadable
input must fail the check.

Pure Python: no typer, rich or torch. The engine applies these settings, so
every command sees the same findings for the same file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import field
from typing import Any

from kforge_cli.findings import close_matches, shown
from kforge_cli.records import record

PYPROJECT = "pyproject.toml"
VCS_MARKERS = (".git", ".hg", ".svn")
SETTING_KEYS = ("select", "ignore", "strict", "world-size", "gpu")
# pyproject.toml files are small; the cap keeps a symlink to /dev/zero or a huge file harmless.
MAX_PYPROJECT_BYTES = 8 * 1024 * 1024
_SELECTOR = re.compile(r"KF\d{0,3}")


class SettingsError(ValueError):
    """An invalid ``[tool.kforge]`` table, an unreadable pyproject.toml, or a bad rule selector."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@record(frozen=True)
class SelectionLayer:
    select: tuple[str, ...] | None = None  # None: keep what earlier layers enabled
    ignore: tuple[str, ...] = ()

    def decide(self, code: str, enabled_before: bool) -> bool:
        selected = max((len(p) for p in self.select or () if code.startswith(p)), default=-1)
        ignored = max((len(p) for p in self.ignore if code.startswith(p)), default=-1)
        if selected < 0 and ignored < 0:
            return enabled_before if self.select is None else False
        return selected > ignored


def _list_hint(key: str, value: Any) -> str:
    # A lone string is the usual slip: offer the list it was meant to be.
    if isinstance(value, str) and len(value) <= 200:
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if parts:
            return f"write {key} = [{', '.join(repr(part).replace(chr(39), chr(34)) for part in parts)}]"
    return f'write {key} as a list of codes or prefixes, e.g. {key} = ["KF4", "KF30"]'


def selectable(code: str) -> bool:
    """False for rules that no selection or suppression may hide (an unreadable input must fail)."""
    from kforge_cli.rules import find_rule

    rule = find_rule(code)
    return rule is None or rule.suppressible


@record(frozen=True)
class RuleSelection:
    layers: tuple[SelectionLayer, ...] = ()

    def enabled(self, code: str) -> bool:
        if not selectable(code):
            return True
        enabled = True
        for layer in self.layers:
            enabled = layer.decide(code, enabled)
        return enabled


@record(frozen=True)
class Settings:
    path: str | None = None  # the pyproject.toml they come from; None: no settings file
    selection: SelectionLayer = field(default_factory=SelectionLayer)
    strict: bool | None = None
    world_size: int | None = None
    gpu: str | None = None
    # Set when the pyproject.toml holding them is unreadable or invalid: reported on every file it governs.
    problem: SettingsError | None = None


def parse_selectors(values: Iterable[str], origin: str) -> tuple[str, ...]:
    """Comma-separated or repeated codes / prefixes -> normalized selectors."""
    values = list(values)
    if not values:
        return ()
    from kforge_cli.rules import all_rules

    codes = [rule.code for rule in all_rules()]
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            selector = part.strip().upper()
            if not selector:
                continue
            if not _SELECTOR.fullmatch(selector) or not any(c.startswith(selector) for c in codes):
                raise SettingsError(f"{origin}: {shown(part.strip())} is not a rule code or a prefix of one",
                                    "use codes like KF301 or prefixes like KF4; `kforge rules` lists them")
            if selector not in out:
                out.append(selector)
    return tuple(out)


def cli_layer(select: Iterable[str], ignore: Iterable[str]) -> SelectionLayer:
    chosen = parse_selectors(select, "--select")
    return SelectionLayer(select=chosen or None, ignore=parse_selectors(ignore, "--ignore"))


def settings_from_table(table: Any, origin: str) -> Settings:
    """Validate a ``[tool.kforge]`` table; every problem is a SettingsError naming the key."""
    where = f"{origin}: [tool.kforge]"
    if not isinstance(table, dict):
        raise SettingsError(f"{where} must be a table, not {type(table).__name__}",
                            'write it as a [tool.kforge] section, e.g. ignore = ["KF4"]')
    for key in table:
        if key not in SETTING_KEYS:

            close = close_matches(str(key).replace("_", "-"), SETTING_KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(SETTING_KEYS)}"
            raise SettingsError(f"{where} has an unknown key {shown(key)}", hint)
    selectors = {}
    for key in ("select", "ignore"):
        value = table.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{where}.{key} must be a list of rule codes, not {shown(value)}",
                                _list_hint(key, value))
        selectors[key] = parse_selectors(value, f"{where}.{key}")
    strict = table.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise SettingsError(f"{where}.strict must be true or false, not {shown(strict)}", "write strict = true")
    world_size = table.get("world-size")
    if world_size is not None and (not isinstance(world_size, int) or isinstance(world_size, bool)
                                   or world_size < 1):
        raise SettingsError(f"{where}.world-size must be a positive integer, not {shown(world_size)}",
                            "write the number of GPUs, e.g. world-size = 8")
    gpu = table.get("gpu")
    if gpu is not None:
        from kforge_cli.fit import UnknownGPUError, lookup_gpu

        if not isinstance(gpu, str):
            raise SettingsError(f"{where}.gpu must be a GPU name, not {shown(gpu)}", 'write e.g. gpu = "H200"')
        try:
            lookup_gpu(gpu)
        except UnknownGPUError as exc:
            raise SettingsError(f"{where}.gpu = {shown(gpu)} is not a GPU kforge knows",
                                f"use one of: {', '.join(exc.known)}") from None
    layer = SelectionLayer(select=selectors.get("select"), ignore=selectors.get("ignore", ()))
    return Settings(path=origin, selection=layer, strict=strict, world_size=world_size, gpu=gpu)


class SettingsFinder:
    """Finds the settings of each config file; caches per directory for one invocation."""

    def __init__(self) -> None:
        self._by_directory: dict[str, Settings] = {}

    def for_config(self, config_path: str) -> Settings:
        return self._for_directory(os.path.dirname(os.path.abspath(config_path)))

    def _for_directory(self, directory: str) -> Settings:
        visited = []
        found = self._by_directory.get(directory)
        while found is None:
            visited.append(directory)
            found = _read_pyproject(os.path.join(directory, PYPROJECT))
            if found is not None:
                break
            parent = os.path.dirname(directory)
            if parent == directory or any(os.path.exists(os.path.join(directory, m)) for m in VCS_MARKERS):
                found = Settings()
                break
            directory = parent
            found = self._by_directory.get(directory)
        for seen in visited:
            self._by_directory[seen] = found
        return found


def _read_pyproject(path: str) -> Settings | None:
    """The settings in ``path``; None when it does not exist or has no [tool.kforge] table.

    A pyproject.toml that exists but cannot be used (not a regular file, too
    large, not UTF-8 or TOML, an invalid table) yields Settings carrying the
    problem, so every file it governs reports it instead of being checked
    with settings silently dropped.
    """
    from kforge_cli.config.toml_source import parse_toml_bytes
    from kforge_cli.safe_io import UnreadableFile, read_capped

    if not os.path.lexists(path):
        return None
    try:
        raw = read_capped(path, MAX_PYPROJECT_BYTES, what="pyproject.toml")
    except UnreadableFile as exc:
        if not os.path.exists(path) and not os.path.islink(path):
            return None
        return Settings(path=path, problem=SettingsError(
            f"{exc}, so its [tool.kforge] settings cannot be read", exc.hint or "fix or remove the file"))
    if b"kforge" not in raw:  # cheap skip for the many pyproject.toml files that never mention us
        return None
    source, failure = parse_toml_bytes(path, raw)
    if failure is not None:
        return Settings(path=path, problem=SettingsError(
            f"{path} cannot be parsed, so its [tool.kforge] settings cannot be read: {failure.message}",
            failure.hint))
    assert source is not None
    tool = source.data.get("tool")
    if not isinstance(tool, dict) or "kforge" not in tool:
        return None
    try:
        return settings_from_table(tool["kforge"], path)
    except SettingsError as exc:
        return Settings(path=path, problem=exc)
