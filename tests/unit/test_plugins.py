"""Plugins through the kforge_cli.plugins entry-point group, loaded lazily by the registry."""

from __future__ import annotations

import copy
import importlib
import json
import subprocess
import sys
import textwrap
import zipfile
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import kforge_cli.plugins as plugins
from kforge_cli.config import vlm as vlm_module
from kforge_cli.config.registry import Component, Registry, RegistryError, registry
from kforge_cli.lint.engine import check_file

# The module, not the `registry` instance that kforge_cli.config re-exports under the same name.
registry_module = importlib.import_module("kforge_cli.config.registry")
PLUGIN_FIXTURE = Path(__file__).resolve().parent.parent / "plugin_fixture"
DEMO = EntryPoint("demo", "kforge_plugin_demo:register", plugins.ENTRY_POINT_GROUP)

QFORMER_CONFIG = (PLUGIN_FIXTURE / "qformer.toml").read_text()


# --- the registry's miss hook ------------------------------------------------------


class Counter:
    def __init__(self, adds: dict[str, str] | None = None) -> None:
        self.calls = 0
        self.adds = adds or {}

    def __call__(self, target: Registry) -> None:
        self.calls += 1
        for category, name in self.adds.items():
            target.register(category, name, object())


def test_hits_never_run_the_hook():
    hook = Counter()
    reg = Registry(on_miss=hook)
    reg.register("optimizer", "adamw", 1)
    assert reg.get("optimizer", "adamw") == 1 and ("optimizer", "adamw") in reg
    assert hook.calls == 0


def test_a_miss_runs_the_hook_once_then_looks_again():
    hook = Counter({"optimizer": "lion"})
    reg = Registry(on_miss=hook)
    assert ("optimizer", "lion") in reg
    assert ("optimizer", "adamx") not in reg
    with pytest.raises(RegistryError, match="Unknown optimizer: 'adamx'. Available: \\['lion'\\]"):
        reg.get("optimizer", "adamx")
    assert hook.calls == 1


def test_get_miss_finds_what_the_hook_registered():
    reg = Registry(on_miss=Counter({"adapter": "qformer_pool"}))
    assert reg.get("adapter", "qformer_pool") is not None


def test_listing_runs_the_hook_so_lists_are_complete():
    hook = Counter({"vision_encoder": "dinov2"})
    reg = Registry(on_miss=hook)
    reg.register("vision_encoder", "random", 1)
    assert reg.list("vision_encoder") == ["random", "dinov2"]
    assert reg.list("vision_encoder") == ["random", "dinov2"] and hook.calls == 1


def test_unhashable_name_is_an_unknown_name_not_a_crash():
    reg = Registry(on_miss=Counter())
    assert (("optimizer", ["adamw"]) in reg) is False
    with pytest.raises(RegistryError):
        reg.get("optimizer", ["adamw"])


def test_hook_may_look_names_up_without_recursing():
    def hook(target: Registry) -> None:
        assert ("optimizer", "nope") not in target
        target.register("optimizer", "late", 1)

    reg = Registry(on_miss=hook)
    assert reg.get("optimizer", "late") == 1


# --- load_plugins ----------------------------------------------------------------------


@pytest.fixture
def plugin_path(monkeypatch, tmp_path):
    """The demo plugin importable, plus a folder for broken ones."""
    monkeypatch.syspath_prepend(str(PLUGIN_FIXTURE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith(("kforge_plugin_demo", "broken_plugin"))]:
        del sys.modules[name]


@pytest.fixture
def clean_registry(monkeypatch):
    """The global registry and arch aliases as they were, after the test."""
    stores = {category: dict(store) for category, store in registry._stores.items()}
    aliases = copy.deepcopy(vlm_module.ARCH_MODULE_ALIASES)
    monkeypatch.setattr(registry, "_on_miss", registry_module._load_plugins)
    yield registry
    registry._stores.clear()
    registry._stores.update(stores)
    vlm_module.ARCH_MODULE_ALIASES.clear()
    vlm_module.ARCH_MODULE_ALIASES.update(aliases)


def entry_points(monkeypatch, *points: EntryPoint) -> None:
    monkeypatch.setattr(plugins, "discover", lambda: list(points))


def write_module(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


def test_demo_plugin_registers_every_kind_of_name(monkeypatch, plugin_path):
    entry_points(monkeypatch, DEMO)
    reg = Registry()
    assert plugins.load_plugins(reg) == []
    assert reg.list("vlm_config") == ["qformer"]
    assert reg.get("optimizer", "adafactor") == Component("adafactor", "Adafactor: factored second moments",
                                                          "kforge-plugin-demo")
    assert ("adapter", "qformer_pool") in reg and ("vision_encoder", "dinov2") in reg


@pytest.mark.parametrize(("body", "error"), [
    ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
    ("def register(registry):\n    raise ValueError('bad arch')\n", "ValueError: bad arch"),
    ("def register(registry):\n    import sys; sys.exit(3)\n", "SystemExit: 3"),
    ("register = 42\n", "TypeError: broken_plugin:register is a int, not a callable"),
    ("def register():\n    pass\n", "TypeError: register() takes 0 positional arguments but 1 was given"),
])
def test_broken_plugin_is_skipped_with_one_warning_and_the_others_still_load(
        monkeypatch, plugin_path, capsys, body, error):
    write_module(plugin_path, "broken_plugin", body)
    broken = EntryPoint("broken", "broken_plugin:register", plugins.ENTRY_POINT_GROUP)
    entry_points(monkeypatch, broken, DEMO)
    reg = Registry()
    failures = plugins.load_plugins(reg)
    assert [(f.name, f.target, f.error) for f in failures] == [("broken", "broken_plugin:register", error)]
    assert reg.list("vlm_config") == ["qformer"]
    err = capsys.readouterr().err
    assert err == f"kforge: warning: plugin 'broken' (broken_plugin:register) failed to load and was skipped: {error}\n"
    assert "Traceback" not in err


def test_missing_module_names_the_plugin(monkeypatch, plugin_path, capsys):
    entry_points(monkeypatch, EntryPoint("ghost", "no_such_module_xyz:register", plugins.ENTRY_POINT_GROUP))
    plugins.load_plugins(Registry())
    assert "plugin 'ghost' (no_such_module_xyz:register) failed to load" in capsys.readouterr().err


def test_duplicate_name_is_a_broken_plugin_not_a_crash(monkeypatch, plugin_path, capsys):
    write_module(plugin_path, "broken_plugin", """\
        def register(registry):
            registry.register_component("optimizer", "adamw", "my adamw")
        """)
    entry_points(monkeypatch, EntryPoint("dup", "broken_plugin:register", plugins.ENTRY_POINT_GROUP))
    reg = Registry()
    reg.register_component("optimizer", "adamw", "built in")
    plugins.load_plugins(reg)
    assert reg.get("optimizer", "adamw").doc == "built in"
    assert "ValueError: optimizer/adamw is already registered" in capsys.readouterr().err


def test_disabled_by_environment(monkeypatch, plugin_path):
    entry_points(monkeypatch, DEMO)
    monkeypatch.setenv(plugins.DISABLE_ENV, "1")
    reg = Registry()
    assert plugins.load_plugins(reg) == [] and reg.list("vlm_config") == []


# --- the cheap pre-check before importlib.metadata ----------------------------------


def dist_info(site: Path, name: str, entry_points_txt: str | None) -> None:
    folder = site / f"{name}-1.0.dist-info"
    folder.mkdir(parents=True)
    if entry_points_txt is not None:
        (folder / "entry_points.txt").write_text(entry_points_txt)


def test_precheck_finds_the_group_only_where_it_is_declared(tmp_path):
    site = tmp_path / "site"
    dist_info(site, "other", "[console_scripts]\nother = other:main\n")
    dist_info(site, "bare", None)
    assert plugins._may_declare_plugins([str(site), str(tmp_path / "missing")]) is False
    dist_info(site, "demo", "[kforge_cli.plugins]\ndemo = demo:register\n")
    assert plugins._may_declare_plugins([str(site)]) is True


def test_precheck_defers_to_importlib_metadata_for_zip_files_on_the_path(tmp_path):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("x.py", "")
    assert plugins._may_declare_plugins([str(archive)]) is True


def test_discover_skips_importlib_metadata_when_nothing_declares_the_group(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    monkeypatch.delitem(sys.modules, "importlib.metadata", raising=False)
    assert plugins.discover() == []
    assert "importlib.metadata" not in sys.modules


def test_discover_reads_real_entry_points(monkeypatch, tmp_path):
    dist_info(tmp_path, "kforge_plugin_demo", "[kforge_cli.plugins]\nzeta = z:register\nalpha = a:register\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    assert [(ep.name, ep.value) for ep in plugins.discover()] == [("alpha", "a:register"), ("zeta", "z:register")]


# --- end to end through the global registry (in-process) -----------------------------------


def test_plugin_arch_validates_through_the_global_registry(monkeypatch, plugin_path, clean_registry, tmp_path):
    entry_points(monkeypatch, DEMO)
    config = tmp_path / "qformer.toml"
    config.write_text(QFORMER_CONFIG)
    report = check_file(str(config))
    assert [f.code for f in report.findings if f.is_error] == []
    assert type(report.load.job.vlm).__name__ == "QFormerConfig"
    assert report.load.job.vlm.module_patterns["queries"] == ["adapter.queries", "adapter.queries.*"]


def test_typo_in_plugin_arch_gets_a_did_you_mean(monkeypatch, plugin_path, clean_registry, tmp_path):
    entry_points(monkeypatch, DEMO)
    config = tmp_path / "qformer.toml"
    config.write_text(QFORMER_CONFIG.replace('arch = "qformer"', 'arch = "qformr"'))
    arch = [f for f in check_file(str(config)).findings if f.key == "vlm.arch"]
    assert [(f.code, f.hint) for f in arch] == [("KF103", "did you mean 'qformer'?")]


def test_builtin_names_never_trigger_discovery(monkeypatch, clean_registry, tmp_path):
    called = []
    monkeypatch.setattr(plugins, "discover", lambda: called.append(1) or [])
    config = tmp_path / "text.toml"
    config.write_text('[model]\ndim = 256\nn_heads = 4\nn_kv_heads = 4\n[optimizer]\nname = "lion"\n')
    check_file(str(config))
    assert ("optimizer", "adamw") in registry and registry.get("loss", "cross_entropy")
    assert called == []


def test_validating_a_vlm_config_does_not_import_importlib_metadata():
    # The process boundary is the point: which modules a real run imports.
    example = Path(__file__).resolve().parents[2] / "examples" / "vlm_joint_decoder.toml"
    code = ("import sys; from kforge_cli.cli.main import main; rc = main(['validate', sys.argv[1]]);"
            "print(rc, 'importlib.metadata' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(example)], capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines()[-1] == "0 False", out.stderr


def test_broken_plugin_during_validate_is_one_stderr_line_not_a_crash(monkeypatch, plugin_path, clean_registry,
                                                                       tmp_path, capsys):
    from kforge_cli.cli.main import main

    write_module(plugin_path, "broken_plugin", "raise ImportError('needs torch-xla')\n")
    entry_points(monkeypatch, EntryPoint("xla", "broken_plugin:register", plugins.ENTRY_POINT_GROUP), DEMO)
    config = tmp_path / "qformer.toml"
    config.write_text(QFORMER_CONFIG)
    assert main(["validate", "-f", "json", str(config)]) == 0  # the healthy plugin still serves its arch
    out, err = capsys.readouterr()
    assert err == ("kforge: warning: plugin 'xla' (broken_plugin:register) failed to load and was skipped: "
                   "ImportError: needs torch-xla\n")
    assert json.loads(out)["files"][0]["valid"] is True
