"""Bad input end to end, and nothing lost when convert --in-place is killed.

Every bad input gets a finding and exit 1, never a traceback, and the other
files of the same call are still checked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import typing
from pathlib import Path

import pytest
import tomli_w

from kforge_cli.config.job import JobConfig

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
GOOD = REPO / "examples" / "vlm_joint_decoder.toml"
# Every section present, so a wrong type can be planted in each.
EVERY_SECTION = REPO / "examples" / "vlm_cross_attention.toml"


def make_missing(folder: Path) -> Path:
    return folder / "missing.toml"


def make_fifo(folder: Path) -> Path:
    # A named pipe never gets a writer: reading it would block forever.
    os.mkfifo(folder / "pipe.toml")
    return folder / "pipe.toml"


def make_binary(folder: Path) -> Path:
    path = folder / "binary.toml"
    path.write_bytes(bytes(range(256)) * 8)
    return path


def make_not_utf8(folder: Path) -> Path:
    path = folder / "latin1.toml"
    path.write_bytes('[model]\ndim = 256\n# réglé pour 8 GPU\n'.encode("latin-1"))
    return path


def make_syntax_error(folder: Path) -> Path:
    path = folder / "syntax.toml"
    path.write_text('[model]\ndim = 256\nn_heads = "8\n')
    return path


def make_huge(folder: Path) -> Path:
    path = folder / "huge.toml"
    line = b"# " + b"x" * 97 + b"\n"
    with path.open("wb") as handle:
        handle.write(b"[model]\ndim = 256\n")
        for _ in range(50):
            handle.write(line * 10_486)  # ~1 MiB per write, 50 MiB in all
    return path


def make_deep_arrays(folder: Path) -> Path:
    path = folder / "deep_arrays.toml"
    path.write_text("[model]\ndim = " + "[" * 10_000 + "1" + "]" * 10_000 + "\n")
    return path


def make_deep_inline_tables(folder: Path) -> Path:
    path = folder / "deep_tables.toml"
    path.write_text("[vlm]\nmodule_patterns = " + "{a = " * 10_000 + "1" + "}" * 10_000 + "\n")
    return path


def make_deep_headers(folder: Path) -> Path:
    path = folder / "deep_headers.toml"
    path.write_text("[" + ".".join(["model"] * 10_000) + "]\ndim = 1\n")
    return path


def make_symlink_loop(folder: Path) -> Path:
    path = folder / "loop.toml"
    os.symlink(path.name, path)
    return path


def make_unreadable(folder: Path) -> Path:
    path = folder / "locked.toml"
    path.write_text(GOOD.read_text())
    path.chmod(0)
    return path


BAD_INPUTS = [make_missing, make_fifo, make_binary, make_not_utf8, make_syntax_error, make_huge,
              make_deep_arrays, make_deep_inline_tables, make_deep_headers, make_symlink_loop,
              pytest.param(make_unreadable, marks=pytest.mark.skipif(
                  os.name != "posix" or os.geteuid() == 0, reason="root reads chmod 000 files"))]


@pytest.fixture
def folder(tmp_path) -> Path:
    (tmp_path / ".git").mkdir()  # keep [tool.kforge] discovery inside the test folder
    return tmp_path


class Hung(BaseException):
    """Raised by the hang guard's alarm: not an Exception, so no handler inside kforge swallows it."""


HANG_SECONDS = 60


@pytest.fixture
def hang_guard():
    """Turns a hang (a read that blocks forever, a quadratic parse) into a failure instead of a stuck run."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def give_up(signum, frame):
        raise Hung(f"no answer within {HANG_SECONDS} s: kforge hangs on this input")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("make", BAD_INPUTS, ids=lambda m: getattr(m, "__name__", "param")[5:])
def test_bad_input_is_a_finding_and_the_other_files_are_still_checked(kforge, folder, make, hang_guard):
    bad = make(folder)
    run = kforge("validate", "-f", "json", bad, GOOD, expect=1)
    assert run.stderr == ""
    first, second = run.json()["files"]
    assert first["path"] == str(bad) and first["valid"] is False
    assert any(f["severity"] == "error" for f in first["findings"])
    assert second["valid"] is True
    text = kforge("validate", bad, GOOD, expect=1)
    assert "Traceback" not in text.stdout + text.stderr and "internal error" not in text.stderr
    assert f"✓ {GOOD}" in text.stdout


def test_every_bad_input_in_one_call(kforge, folder):
    bad = [make(folder) for make in BAD_INPUTS if callable(make)]
    doc = kforge("validate", "-f", "json", *bad, GOOD, expect=1).json()
    assert [f["valid"] for f in doc["files"]] == [False] * len(bad) + [True]
    assert doc["summary"]["files"] == len(bad) + 1


# --- a key of the wrong type in every section ----------------------------------------------------


def _numeric_field(section: str) -> str:
    """A field of ``section`` that holds a plain int or float (no choices, no registry)."""
    hint = typing.get_type_hints(JobConfig)[section]
    cls = next(a for a in typing.get_args(hint) if a is not type(None)) if typing.get_args(hint) else hint
    if section == "vlm":
        from kforge_cli.config.vlm import CrossAttentionConfig as cls
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if hints[f.name] in (int, float) and not (f.metadata or {}).get("choices"):
            return f.name
    raise AssertionError(f"no numeric field in [{section}]")


SECTIONS = [f.name for f in dataclasses.fields(JobConfig)]


@pytest.mark.parametrize("wrong", ['{bad = 1}', '"not a number"', "[1, 2]", "1979-05-27"])
@pytest.mark.parametrize("section", SECTIONS)
def test_wrong_type_in_every_section(kforge, folder, section, wrong):
    name = _numeric_field(section)
    data = tomllib.loads(EVERY_SECTION.read_text())
    data.setdefault(section, {}).pop(name, None)
    data[section] = {name: "PLANTED", **data[section]}
    text = tomli_w.dumps(data).replace('"PLANTED"', wrong)
    path = folder / f"wrong_{section}.toml"
    path.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith(f"{name} = {wrong}"))
    doc = kforge("validate", "-f", "json", path, GOOD, expect=1).json()
    planted = [f for f in doc["files"][0]["findings"] if f["key"] == f"{section}.{name}"]
    assert [(f["code"], f["severity"], f["line"]) for f in planted] == [("KF102", "error", line)]
    assert doc["files"][1]["valid"] is True


# --- giant integers, under a memory cap -----------------------------------------------------------

GIANT = 10**23


def _giant_cases() -> list[tuple[str, str, str]]:
    cases = []
    for example in ("vlm_cross_attention.toml", "vlm_moma.toml", "text_7b.toml"):
        data = tomllib.loads((REPO / "examples" / example).read_text())
        for section, table in data.items():
            for key, value in table.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    cases.append((example, section, key))
    return cases


GIANT_CASES = _giant_cases()
KNOWN_GIANT_CRASHES: dict[tuple[str, str, str], str] = {}

GIANT_DRIVER = textwrap.dedent("""
    import json, resource, sys
    cap = 1 << 30  # 1 GiB of address space: a runaway allocation fails fast instead of swapping
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    from kforge_cli.cli.main import main
    codes = {}
    for path in sys.argv[1:]:
        codes[path] = int(main(["validate", "-f", "json", path]))
    print("CODES " + json.dumps(codes), file=sys.stderr)
""")


@pytest.fixture(scope="module")
def giant_exit_codes(tmp_path_factory) -> dict[str, int]:
    if sys.platform != "linux":
        pytest.skip("the memory cap uses Linux RLIMIT_AS")
    folder = tmp_path_factory.mktemp("giant")
    (folder / ".git").mkdir()
    paths = []
    for example, section, key in GIANT_CASES:
        data = tomllib.loads((REPO / "examples" / example).read_text())
        data[section][key] = GIANT
        path = folder / f"{example[:-5]}.{section}.{key}.toml"
        path.write_text(tomli_w.dumps(data))
        paths.append(str(path))
    done = subprocess.run([sys.executable, "-c", GIANT_DRIVER, *paths], capture_output=True, text=True,
                          timeout=240, cwd=folder)
    line = next(row for row in done.stderr.splitlines() if row.startswith("CODES "))
    return {Path(p).name: code for p, code in json.loads(line[6:]).items()}


@pytest.mark.parametrize(("example", "section", "key"), [
    pytest.param(*case, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GIANT_CRASHES[case]))
    if case in KNOWN_GIANT_CRASHES else case for case in GIANT_CASES])
def test_giant_integer_is_a_finding_not_a_crash(giant_exit_codes, example, section, key):
    assert giant_exit_codes[f"{example[:-5]}.{section}.{key}.toml"] in (0, 1)


# --- convert --in-place, killed at random points ------------------------------------------------

KILL_DRIVER = textwrap.dedent("""
    import os, sys
    from kforge_cli.cli.main import main
    folder, legacy = sys.argv[1], open(sys.argv[2], "rb").read()
    print("ready", flush=True)
    for i in range(10_000):
        target = os.path.join(folder, f"job{i % 3}.toml")
        with open(target + ".staging", "wb") as handle:  # the driver's own reset is a rename too
            handle.write(legacy)
        os.replace(target + ".staging", target)
        main(["convert", "--in-place", "--force", target])
""")


@pytest.fixture(scope="module")
def large_legacy(tmp_path_factory, shared_fixtures) -> tuple[Path, bytes, bytes]:
    """A ~2 MB legacy config (long comment block), and what converting it yields."""
    from kforge_cli.convert import convert_text

    source = (shared_fixtures / "legacy" / "vlm_7b_cross_attn.legacy.toml").read_text()
    text = source + "".join(f"# training note {i:06d}: " + "lorem ipsum " * 5 + "\n" for i in range(25_000))
    converted = convert_text(text)
    assert converted.changed
    path = tmp_path_factory.mktemp("legacy") / "large.legacy.toml"
    path.write_text(text)
    return path, text.encode(), converted.text.encode()


def _kill_once(workdir: Path, legacy_path: Path, rng: random.Random, on_temp_file: bool) -> None:
    child = subprocess.Popen([sys.executable, "-c", KILL_DRIVER, str(workdir), str(legacy_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=workdir)
    try:
        assert child.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + rng.uniform(0.05, 0.6)
        while time.monotonic() < deadline or on_temp_file:
            if on_temp_file and any(name.endswith(".kforge-tmp") for name in os.listdir(workdir)):
                time.sleep(rng.uniform(0, 0.003))  # somewhere in write / fsync / rename
                break
            if time.monotonic() > deadline + 5:
                break
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_convert_in_place_killed_at_any_point_leaves_old_or_new(tmp_path, large_legacy):
    legacy_path, old, new = large_legacy
    rng = random.Random(20240601)
    workdir = tmp_path / "run"
    workdir.mkdir()
    for attempt in range(16):
        _kill_once(workdir, legacy_path, rng, on_temp_file=attempt % 2 == 0)
        for name in sorted(os.listdir(workdir)):
            path = workdir / name
            if name.endswith((".kforge-tmp", ".staging")):
                continue  # scratch files of an interrupted write; the targets are what matter
            content = path.read_bytes()
            if name.endswith(".bak"):
                assert content == old, f"attempt {attempt}: {name} is not the original"
            else:
                assert content in (old, new), f"attempt {attempt}: {name} is half-written ({len(content)} bytes)"
