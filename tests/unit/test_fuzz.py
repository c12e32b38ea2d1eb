"""Fuzzing validate with mutated bytes of real configs.

Whatever the bytes: exit 0 or 1 (never 3), no traceback, JSON that parses, and
every line/column a finding carries points inside the file.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recorded import CONFIGS

from kforge_cli.cli.main import main

REPO = Path(__file__).resolve().parents[2]
SEEDS = sorted(REPO.glob("examples/*.toml")) + sorted(CONFIGS.glob("[rfpm]_*.toml"))
SEED_BYTES = [p.read_bytes() for p in SEEDS]

PAYLOADS = [b'"', b"'", b"[", b"]", b"[[", b"]]", b"{", b"}", b"=", b"\n", b"\\", b'"""', b"\x00", b"\xff\xfe",
            b"\r", b"#", b".", b",", b"\t", b"-", b"1e999", b"nan", b"inf", b"0x", b"\xe2\x80\xa8", b"\xc3"]


def flip_bit(data: bytes, at: int, bit: int) -> bytes:
    if not data:
        return data
    at %= len(data)
    return data[:at] + bytes([data[at] ^ (1 << bit % 8)]) + data[at + 1:]


def truncate(data: bytes, at: int, _: int) -> bytes:
    return data[: at % (len(data) + 1)]


def insert(data: bytes, at: int, which: int) -> bytes:
    at %= len(data) + 1
    return data[:at] + PAYLOADS[which % len(PAYLOADS)] + data[at:]


def insert_random(data: bytes, at: int, which: int) -> bytes:
    at %= len(data) + 1
    noise = bytes((which * 2654435761 >> shift) & 0xFF for shift in range(0, 24, 3))
    return data[:at] + noise + data[at:]


def duplicate_line(data: bytes, at: int, times: int) -> bytes:
    lines = data.split(b"\n")
    i = at % len(lines)
    return b"\n".join(lines[: i + 1] + [lines[i]] * (1 + times % 3) + lines[i + 1:])


def delete_line(data: bytes, at: int, _: int) -> bytes:
    lines = data.split(b"\n")
    del lines[at % len(lines)]
    return b"\n".join(lines)


def swap_lines(data: bytes, at: int, other: int) -> bytes:
    lines = data.split(b"\n")
    i, j = at % len(lines), other % len(lines)
    lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


def nest_value(data: bytes, at: int, depth: int) -> bytes:
    """Wrap the value of one `key = value` line in many brackets or inline tables."""
    lines = data.split(b"\n")
    candidates = [i for i, line in enumerate(lines) if b" = " in line and not line.lstrip().startswith(b"#")]
    if not candidates:
        return data
    i = candidates[at % len(candidates)]
    key, _, value = lines[i].partition(b" = ")
    depth = [3, 60, 999, 1001, 5000][depth % 5]
    opener, closer = (b"[", b"]") if depth % 2 else (b"{a = ", b"}")
    lines[i] = key + b" = " + opener * depth + value + closer * depth
    return b"\n".join(lines)


def swap_value_type(data: bytes, at: int, which: int) -> bytes:
    lines = data.split(b"\n")
    candidates = [i for i, line in enumerate(lines) if b" = " in line and not line.lstrip().startswith(b"#")]
    if not candidates:
        return data
    i = candidates[at % len(candidates)]
    key, _, _ = lines[i].partition(b" = ")
    # Integers stay moderate here: giant ones are fed to validate under a memory cap in
    # tests/cli/test_hardening.py, since in-process they could exhaust this machine's memory.
    value = [b"-1", b"0", b"1e400", b"65537", b'"x"', b"true", b"{}", b"[]", b"1979-05-27",
             b"-0.0", b"'''a\nb'''"][which % 11]
    lines[i] = key + b" = " + value
    return b"\n".join(lines)


MUTATIONS = [flip_bit, truncate, insert, insert_random, duplicate_line, delete_line, swap_lines, nest_value,
             swap_value_type]


@st.composite
def mutated_configs(draw) -> bytes:
    data = draw(st.sampled_from(SEED_BYTES))
    for _ in range(draw(st.integers(1, 4))):
        mutate = draw(st.sampled_from(MUTATIONS))
        data = mutate(data, draw(st.integers(0, 1 << 20)), draw(st.integers(0, 255)))
    return data


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / ".git").mkdir()
    return folder


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def check_positions(data: bytes, findings: list[dict]) -> None:
    lines = data.split(b"\n")
    for finding in findings:
        line, column = finding["line"], finding["column"]
        if line is None:
            assert column is None, finding
            continue
        assert 1 <= line <= len(lines), (finding, len(lines))
        if column is not None:
            assert 1 <= column <= len(lines[line - 1]) + 1, (finding, lines[line - 1][:200])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=mutated_configs(), text_too=st.booleans())
def test_mutated_config_never_crashes_validate(workdir, data, text_too):
    path = workdir / "fuzzed.toml"
    path.write_bytes(data)
    code, out, err = run("validate", "-f", "json", str(path))
    assert code in (0, 1), f"exit {code}: {err}"
    assert err == "", err
    (report,) = json.loads(out)["files"]
    assert report["valid"] == (code == 0)
    check_positions(data, report["findings"])
    if text_too:  # Rich rendering of whatever text the findings quote
        code_text, _, err_text = run("validate", str(path))
        assert (code_text, err_text) == (code, "")


def test_mutations_change_the_input():
    seed = SEED_BYTES[0]
    assert {m.__name__ for m in MUTATIONS if m(seed, 7, 3) != seed} == {m.__name__ for m in MUTATIONS}
