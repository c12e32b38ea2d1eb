"""`kforge convert`: flags, exit codes, safe writes, and the shared legacy fixtures."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kforge_cli.convert import convert_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "legacy"

LEGACY = (
    "# a small legacy config\n"
    "[model]\n"
    "dim = 64\n"
    "\n"
    "[model.vlm]\n"
    'arch = "joint_decoder"\n'
    'vision_encoder = "random"  # stub encoder\n'
    "# 8x8 patches\n"
    "num_tokens = 64\n"
    "\n"
    "[train]\n"
    "seq_len = 128\n"
)
CONVERTED = (
    "# a small legacy config\n"
    "[model]\n"
    "dim = 64\n"
    "\n"
    "[vision_encoder]\n"
    'type = "random"  # stub encoder\n'
    "# 8x8 patches\n"
    "num_tokens = 64\n"
    "\n"
    "[vlm]\n"
    'arch = "joint_decoder"\n'
    "\n"
    "[train]\n"
    "seq_len = 128\n"
)
CURRENT = '[model]\ndim = 64\n\n[vision_encoder]\ntype = "random"\n\n[vlm]\narch = "mot"\n'
CONFLICTING = '[model.vlm]\nvision_encoder = "random"\n\n[vision_encoder]\ntype = "clip"\n'


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(LEGACY)
    return path


@pytest.fixture
def current(tmp_path: Path) -> Path:
    path = tmp_path / "current.toml"
    path.write_text(CURRENT)
    return path


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".kforge-tmp"))


# -- printing ---------------------------------------------------------------------


def test_prints_the_converted_text(kforge, legacy):
    run = kforge("convert", legacy, expect=0)
    assert run.stdout == CONVERTED
    assert legacy.read_text() == LEGACY


def test_current_file_is_printed_byte_identical(kforge, current):
    assert kforge("convert", current, expect=0).stdout == CURRENT


def test_several_files_get_separators(kforge, legacy, current):
    run = kforge("convert", legacy, current, expect=0)
    assert run.stdout == f"# ==> {legacy} <==\n{CONVERTED}# ==> {current} <==\n{CURRENT}"


def test_diff(kforge, legacy, current):
    run = kforge("convert", "--diff", legacy, current, expect=0)
    assert run.stdout.startswith(f"--- {legacy}\n+++ {legacy}\n@@ ")
    assert "\n-[model.vlm]\n" in run.stdout and "\n+[vlm]\n" in run.stdout
    assert '\n-vision_encoder = "random"  # stub encoder\n' in run.stdout
    assert '\n+type = "random"  # stub encoder\n' in run.stdout
    assert str(current) not in run.stdout  # nothing to show for a current file
    assert legacy.read_text() == LEGACY


def test_diff_applies_with_patch(kforge, legacy, tmp_path):
    patch = subprocess.run(["which", "patch"], capture_output=True, check=False)
    if patch.returncode:
        pytest.skip("patch(1) is not installed")
    run = kforge("convert", "--diff", legacy, expect=0)
    subprocess.run(["patch", "-s", str(legacy)], input=run.stdout, text=True, check=True)
    assert legacy.read_text() == CONVERTED


def test_diff_marks_a_missing_final_newline(kforge, tmp_path):
    path = tmp_path / "x.toml"
    path.write_text('[model.vlm]\narch = "mot"')
    run = kforge("convert", "--diff", path, expect=0)
    assert '-arch = "mot"\n\\ No newline at end of file\n' in run.stdout


# -- --check -------------------------------------------------------------------


def test_check_reports_files_that_need_converting(kforge, legacy, current):
    before = legacy.stat().st_mtime_ns
    run = kforge("convert", "--check", legacy, current, expect=1)
    assert f"would convert {legacy}" in run.stderr
    assert f"would convert {current}" not in run.stderr
    assert "1 file(s) need converting, 1 already current" in run.stderr
    assert run.stdout == ""
    assert legacy.read_text() == LEGACY and legacy.stat().st_mtime_ns == before


def test_check_passes_on_current_files(kforge, current):
    run = kforge("convert", "--check", current, expect=0)
    assert "0 file(s) need converting" in run.stderr


def test_check_with_diff(kforge, legacy):
    run = kforge("convert", "--check", "--diff", legacy, expect=1)
    assert "+[vlm]" in run.stdout
    assert legacy.read_text() == LEGACY


# -- -o ---------------------------------------------------------------------


def test_output_file(kforge, legacy, tmp_path):
    os.chmod(legacy, 0o640)
    out = tmp_path / "new.toml"
    run = kforge("convert", legacy, "-o", out, expect=0)
    assert out.read_text() == CONVERTED
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert run.stdout == ""
    assert f"converted {legacy} -> {out}" in run.stderr
    assert legacy.read_text() == LEGACY
    assert leftovers(tmp_path) == []


def test_output_refuses_to_overwrite_without_force(kforge, legacy, tmp_path):
    out = tmp_path / "new.toml"
    out.write_text("keep me\n")
    run = kforge("convert", legacy, "-o", out, expect=1)
    assert "already exists" in run.stderr and "--force" in run.stderr
    assert out.read_text() == "keep me\n"
    kforge("convert", legacy, "-o", out, "--force", expect=0)
    assert out.read_text() == CONVERTED


def test_output_of_a_current_file_is_a_copy(kforge, current, tmp_path):
    out = tmp_path / "copy.toml"
    kforge("convert", current, "--output", out, expect=0)
    assert out.read_bytes() == current.read_bytes()


def test_output_into_a_missing_directory(kforge, legacy, tmp_path):
    run = kforge("convert", legacy, "-o", tmp_path / "nope" / "x.toml", expect=1)
    assert "cannot write" in run.stderr


# -- --in-place ---------------------------------------------------------------


def test_in_place_keeps_a_backup_and_the_mode(kforge, legacy, tmp_path):
    os.chmod(legacy, 0o600)
    run = kforge("convert", "--in-place", legacy, expect=0)
    assert legacy.read_text() == CONVERTED
    assert Path(f"{legacy}.bak").read_text() == LEGACY
    assert stat.S_IMODE(legacy.stat().st_mode) == 0o600
    assert "original kept as" in run.stderr
    assert leftovers(tmp_path) == []


def test_in_place_without_backup(kforge, legacy):
    kforge("convert", "--in-place", "--no-backup", legacy, expect=0)
    assert legacy.read_text() == CONVERTED
    assert not Path(f"{legacy}.bak").exists()


def test_in_place_refuses_to_overwrite_a_backup(kforge, legacy, current):
    backup = Path(f"{legacy}.bak")
    backup.write_text("older backup\n")
    current_before = current.read_bytes()
    run = kforge("convert", "--in-place", legacy, current, expect=1)
    assert f"{backup} already exists" in run.stderr
    assert legacy.read_text() == LEGACY and backup.read_text() == "older backup\n"
    assert current.read_bytes() == current_before
    kforge("convert", "--in-place", "--force", legacy, expect=0)
    assert legacy.read_text() == CONVERTED and backup.read_text() == LEGACY


def test_in_place_leaves_current_files_alone(kforge, current):
    before = current.stat().st_mtime_ns
    run = kforge("convert", "--in-place", current, expect=0)
    assert current.read_text() == CURRENT and current.stat().st_mtime_ns == before
    assert not Path(f"{current}.bak").exists()
    assert "left unchanged" in run.stderr


def test_in_place_writes_through_a_symlink(kforge, legacy, tmp_path):
    link = tmp_path / "link.toml"
    link.symlink_to(legacy)
    kforge("convert", "--in-place", "--no-backup", link, expect=0)
    assert link.is_symlink()
    assert legacy.read_text() == CONVERTED


def test_in_place_several_files(kforge, tmp_path):
    paths = []
    for n in range(3):
        path = tmp_path / f"job{n}.toml"
        path.write_text(LEGACY)
        paths.append(path)
    kforge("convert", "--in-place", *paths, expect=0)
    assert all(p.read_text() == CONVERTED for p in paths)


# -- interrupted writes ------------------------------------------------------------


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_a_failed_write_leaves_the_original_untouched(kforge, legacy, tmp_path, monkeypatch, failing):
    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, boom)
    run = kforge("convert", "--in-place", "--no-backup", legacy, expect=1)
    monkeypatch.undo()
    assert "No space left on device" in run.stderr
    assert legacy.read_text() == LEGACY
    assert leftovers(tmp_path) == []


def test_an_interrupt_mid_write_leaves_the_original_untouched(kforge, legacy, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    kforge("convert", "--in-place", legacy, expect=130)
    monkeypatch.undo()
    assert legacy.read_text() == LEGACY
    assert leftovers(tmp_path) == []


# -- unreadable inputs and conflicts -------------------------------------------------


@pytest.mark.parametrize("name, content, words", [
    ("missing.toml", None, "no such file"),
    ("binary.toml", b"\x00\x01\x02[model]", "binary file"),
    ("latin1.toml", "[model]\nname = 'caf\xe9'\n".encode("latin-1"), "not UTF-8"),
    ("broken.toml", b"[model.vlm]\narch = \n", "not valid TOML"),
])
def test_unreadable_input_is_reported_and_the_rest_still_runs(kforge, legacy, tmp_path, name, content, words):
    bad = tmp_path / name
    if content is not None:
        bad.write_bytes(content)
    run = kforge("convert", bad, legacy, expect=1)
    assert f"{bad}: " in run.stderr and words in run.stderr
    assert CONVERTED in run.stdout
    assert "Traceback" not in run.stderr


def test_a_directory_is_walked_for_job_configs(kforge, legacy, tmp_path):
    nested = tmp_path / "configs" / "vlm"
    nested.mkdir(parents=True)
    (nested / "job.toml").write_text(LEGACY)
    (tmp_path / "configs" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    run = kforge("convert", "--check", tmp_path / "configs", expect=1)
    assert "job.toml" in run.stdout + run.stderr
    assert "pyproject.toml" not in run.stdout + run.stderr


def test_an_empty_directory_converts_nothing(kforge, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    run = kforge("convert", "--check", empty, expect=0)
    assert "no job config found" in run.stderr


def test_invalid_toml_names_the_line(kforge, tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text("[model.vlm]\narch = \n")
    run = kforge("convert", "--check", bad, expect=1)
    assert "line 2" in run.stderr


def test_conflict_writes_nothing(kforge, tmp_path):
    path = tmp_path / "mixed.toml"
    path.write_text(CONFLICTING)
    out = tmp_path / "out.toml"
    run = kforge("convert", path, "-o", out, expect=1)
    assert "model.vlm.vision_encoder" in run.stderr and "vision_encoder.type" in run.stderr
    assert "line 2" in run.stderr and "line 5" in run.stderr
    assert not out.exists()
    kforge("convert", "--in-place", path, expect=1)
    assert path.read_text() == CONFLICTING and not Path(f"{path}.bak").exists()
    kforge("convert", "--check", path, expect=1)


# -- usage errors ------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["-o", "out.toml", "a.toml", "b.toml"],
    ["-o", "out.toml", "--in-place", "a.toml"],
    ["--check", "-o", "out.toml", "a.toml"],
    ["--check", "--in-place", "a.toml"],
    ["--no-backup", "a.toml"],
    ["--force", "a.toml"],
    ["--bogus", "a.toml"],
    [],
])
def test_usage_errors_exit_2_and_touch_nothing(kforge, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    Path("a.toml").write_text(LEGACY)
    Path("b.toml").write_text(LEGACY)
    kforge("convert", *args, expect=2)
    assert not Path("out.toml").exists()
    assert Path("a.toml").read_text() == LEGACY


# -- stdin -----------------------------------------------------------------------------


@pytest.fixture
def stdin(monkeypatch):
    def feed(data: str | bytes) -> None:
        raw = data.encode() if isinstance(data, str) else data
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))

    return feed


def test_stdin_is_converted_to_stdout(kforge, stdin):
    stdin(LEGACY)
    run = kforge("convert", "-", expect=0)
    assert run.stdout == CONVERTED


def test_stdin_filename_names_it_in_messages(kforge, stdin):
    stdin(LEGACY)
    run = kforge("convert", "--check", "-", "--stdin-filename", "configs/job.toml", expect=1)
    assert "would convert configs/job.toml" in run.stderr
    stdin("[model.vlm]\narch = \n")
    run = kforge("convert", "-", "--stdin-filename", "configs/job.toml", expect=1)
    assert "configs/job.toml: not valid TOML at line 2" in run.stderr
    stdin(b"\xff[model]\n")
    run = kforge("convert", "-", expect=1)
    assert "<stdin>: not UTF-8" in run.stderr


def test_stdin_diff_and_output_file(kforge, stdin, tmp_path):
    stdin(LEGACY)
    run = kforge("convert", "--diff", "-", "--stdin-filename", "job.toml", expect=0)
    assert run.stdout.startswith("--- job.toml\n+++ job.toml\n")
    stdin(LEGACY)
    out = tmp_path / "out.toml"
    kforge("convert", "-", "-o", out, expect=0)
    assert out.read_text() == CONVERTED


def test_stdin_beside_files(kforge, stdin, current):
    stdin(LEGACY)
    run = kforge("convert", current, "-", expect=0)
    assert run.stdout == f"# ==> {current} <==\n{CURRENT}# ==> <stdin> <==\n{CONVERTED}"


@pytest.mark.parametrize("args", [
    ["--in-place", "-"],
    ["--in-place", "a.toml", "-"],
    ["-", "-"],
    ["--stdin-filename", "x.toml", "a.toml"],
])
def test_stdin_usage_errors_are_one_line(kforge, stdin, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    Path("a.toml").write_text(LEGACY)
    stdin(LEGACY)
    run = kforge("convert", *args, expect=2)
    assert len(run.stderr.strip().splitlines()) == (2 if "--stdin-filename" in args else 1), run.stderr
    assert run.stdout == ""
    assert Path("a.toml").read_text() == LEGACY


# -- the shared fixtures and the examples -------------------------------------------


def _fixture_names(shared_fixtures: Path) -> list[str]:
    return sorted(p.name[: -len(".legacy.toml")]
                  for p in (shared_fixtures / "legacy").glob("*.legacy.toml"))


def test_shared_legacy_fixtures_match_the_hand_migrated_files(kforge, shared_fixtures, tmp_path):
    names = _fixture_names(shared_fixtures)
    assert names, "no legacy fixtures found"
    for name in names:
        source = shared_fixtures / "legacy" / f"{name}.legacy.toml"
        flat = shared_fixtures / "legacy" / f"{name}.flat.toml"
        out = tmp_path / f"{name}.toml"
        kforge("convert", source, "-o", out, expect=0)
        converted = out.read_text()
        assert tomllib.loads(converted) == tomllib.loads(flat.read_text()), name
        kept = {line.strip() for line in converted.splitlines()}
        for line in source.read_text().splitlines():
            if line.strip().startswith("#"):
                assert line.strip() in kept, (name, line)
        kforge("convert", "--check", source, expect=1)
        kforge("convert", "--check", out, expect=0)


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.legacy.toml")))
def test_examples_convert_and_check(kforge, tmp_path, example):
    out = tmp_path / example.replace(".legacy", "")
    kforge("convert", EXAMPLES / example, "-o", out, expect=0)
    assert out.read_text() == convert_text((EXAMPLES / example).read_text()).text
    kforge("convert", "--check", out, expect=0)


def test_importing_the_command_module_stays_cheap():
    # Only what this module itself would pull in: the package __init__ also
    # imports the other commands, which answer for their own imports.
    code = (
        "import sys, kforge_cli.cli.commands.convert\n"
        "print('kforge_cli.convert' in sys.modules)\n"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"
