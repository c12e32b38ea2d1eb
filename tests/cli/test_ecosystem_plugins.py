"""A real plugin distribution, pip-installed into a throw-away virtual environment.

This is the one test where the process boundary and the packaging are the point:
the entry point must be found through installed metadata, as for a user.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

PLUGIN_FIXTURE = Path(__file__).resolve().parent.parent / "plugin_fixture"
QFORMER_CONFIG = (PLUGIN_FIXTURE / "qformer.toml").read_text()


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KFORGE_NO_PLUGINS")}
    env.update(NO_COLOR="1", COLUMNS="100", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1")
    return subprocess.run(args, capture_output=True, text=True, timeout=240, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> Path:
    """A venv that sees this environment's packages (kforge, typer, setuptools) plus the plugin."""
    root = tmp_path_factory.mktemp("plugin_venv")
    env_dir = root / "venv"
    try:
        venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    except Exception as exc:
        pytest.skip(f"cannot create a virtual environment here: {exc}")
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = _run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    # --system-site-packages exposes the base interpreter's packages, but the test
    # runner may itself be a venv (kforge is installed there): chain its site dirs.
    parent_sites = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    lines = [f"import site; site.addsitedir({p!r})" for p in dict.fromkeys(parent_sites)]
    Path(purelib, "_kforge_test_parent_env.pth").write_text("\n".join(lines) + "\n")
    # Built from a copy: an in-tree build would leave build/ and *.egg-info in tests/.
    source = root / "plugin_src"
    shutil.copytree(PLUGIN_FIXTURE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    installed = _run(str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", str(source))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return python


def test_plugin_arch_validates_in_a_fresh_environment(plugin_env, tmp_path):
    config = tmp_path / "qformer.toml"
    config.write_text(QFORMER_CONFIG)
    done = _run(str(plugin_env), "-m", "kforge_cli", "validate", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓" in done.stdout and done.stderr == ""


def test_typo_in_plugin_arch_fails_with_did_you_mean(plugin_env, tmp_path):
    config = tmp_path / "typo.toml"
    config.write_text(QFORMER_CONFIG.replace('arch = "qformer"', 'arch = "qformr"'))
    done = _run(str(plugin_env), "-m", "kforge_cli", "validate", "-f", "json", str(config), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    arch = [f for f in json.loads(done.stdout)["files"][0]["findings"] if f["key"] == "vlm.arch"]
    assert arch[0]["code"] == "KF103" and arch[0]["hint"] == "did you mean 'qformer'?"
    assert "'qformer'" in arch[0]["message"]  # the plugin's arch is listed among the registered ones


def test_without_the_plugin_the_arch_is_unknown(kforge, tmp_path):
    config = tmp_path / "qformer.toml"
    config.write_text(QFORMER_CONFIG)
    findings = kforge("validate", "-f", "json", config, expect=1).json()["files"][0]["findings"]
    assert "vlm.arch" in {f["key"] for f in findings}
