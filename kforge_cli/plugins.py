"""Third-party arches, adapters, vision encoders and optimizers, through entry points.

A plugin is an installed distribution that declares an entry point in the
``kforge_cli.plugins`` group, e.g. in its pyproject.toml::

    [project.entry-points."kforge_cli.plugins"]
    qformer = "kforge_qformer:register"

The entry point names a callable that kforge calls once with its registry::

    from dataclasses import dataclass
    from kforge_cli.config.fields import setting
    from kforge_cli.config.vlm import ARCH_MODULE_ALIASES, VLMConfig, module_patterns_for

    def register(registry):
        ARCH_MODULE_ALIASES["qformer"] = {"qformer": ["adapter.queries", "adapter.queries.*"]}

        @registry.register_vlm_config("qformer")
        @record
        class QFormerConfig(VLMConfig):
            arch: str = setting("qformer", "VLM architecture", registry="vlm_config")
            qformer_queries: int = setting(32, "learned queries")
            module_patterns: dict = setting(factory=lambda: module_patterns_for("qformer"))

        registry.register_component("adapter", "qformer_pool", "Q-Former pooling",
                                    origin="kforge-qformer")

Plugins are loaded lazily: the registry calls :func:`load_plugins` the first
time a name lookup misses (or a full listing is needed), so a config that only
names built-in components never pays for plugin discovery. A plugin that fails
to import or raises is skipped with one warning line on stderr naming it; the
names it would have registered are then reported as unknown, as without it.
Set ``KFORGE_NO_PLUGINS=1`` to load none.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from kforge_cli.records import record

if TYPE_CHECKING:
    from kforge_cli.config.registry import Registry

ENTRY_POINT_GROUP = "kforge_cli.plugins"
DISABLE_ENV = "KFORGE_NO_PLUGINS"


@record(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded; kforge carries on without it."""

    name: str
    distribution: str | None
    target: str
    error: str

    def message(self) -> str:
        origin = f"{self.distribution}, {self.target}" if self.distribution else self.target
        return (f"kforge: warning: plugin {self.name!r} ({origin}) failed to load and was skipped: "
                f"{self.error}")


def load_plugins(registry: Registry | None = None) -> list[PluginFailure]:
    """Call every ``kforge_cli.plugins`` entry point with ``registry``; return the failures."""
    if registry is None:
        from kforge_cli.config.registry import registry as default_registry

        registry = default_registry
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return []
    found = []
    for entry_point in discover():
        failure = _call(entry_point, registry)
        if failure is not None:
            sys.stderr.write(failure.message() + "\n")
            found.append(failure)
    return found


def discover() -> list[Any]:
    """The installed entry points of the plugin group, in a stable order."""
    if not _may_declare_plugins(sys.path):
        return []
    from importlib.metadata import entry_points

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.name, ep.value))


def _call(entry_point: Any, registry: Registry) -> PluginFailure | None:
    try:
        plugin = entry_point.load()
        if not callable(plugin):
            raise TypeError(f"{entry_point.value} is a {type(plugin).__name__}, not a callable")
        plugin(registry)
    except (Exception, SystemExit) as exc:
        dist = getattr(entry_point, "dist", None)
        return PluginFailure(entry_point.name, getattr(dist, "name", None), entry_point.value,
                             f"{type(exc).__name__}: {exc}")
    return None


def _may_declare_plugins(search_path: list[str]) -> bool:
    """Cheap pre-check: could any installed distribution declare the plugin group?

    Importing importlib.metadata costs ~17 ms, ten times this scan of the
    entry_points.txt files it would read; so it is imported only when one of
    them names the group (or when a zip or egg file is on the path, which only
    importlib.metadata can look inside).
    """
    for entry in search_path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            if os.path.isfile(entry):
                return True
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(entry, name, "entry_points.txt"), encoding="utf-8",
                          errors="replace") as handle:
                    if ENTRY_POINT_GROUP in handle.read():
                        return True
            except OSError:
                continue
    return False
