"""Numbers at the edges, in every numeric field: a finding or a verdict, never an exception.

Huge integers (past 64 bits and past what Python will print), NaN, +-infinity and -0.0 go
into each integer and float field of the catalogue, one at a time, in a config that is
valid otherwise; the engine must answer with findings that are bounded and say which key
is wrong, and never with KF000 (an internal error).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import tomllib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kforge_cli.config.catalog import field_catalogue, type_text
from kforge_cli.lint.engine import Options, check_file

REPO = Path(__file__).resolve().parents[2]
# One valid base config per arch, so that every vlm.* field is set where it is accepted.
BASES = {
    None: REPO / "examples" / "vlm_cross_attention_freeze_schedule.toml",
    "cross_attention": REPO / "examples" / "vlm_cross_attention_freeze_schedule.toml",
    "joint_decoder": REPO / "examples" / "vlm_joint_decoder.toml",
    "mot": REPO / "examples" / "vlm_mot.toml",
    "moma": REPO / "examples" / "vlm_moma.toml",
}
NUMERIC = {"integer": int, "integer, or unset": int, "number": float, "number, or unset": float}
# Fields of tables inside arrays ([[data.phases]], freeze stages) have their own tests (tests/rules).
FIELDS = sorted((entry.key, NUMERIC[type_text(entry.hint)], entry.arches)
                for entry in field_catalogue().values() if type_text(entry.hint) in NUMERIC and "[]" not in entry.key)
EDGES: list[Any] = [math.nan, math.inf, -math.inf, -0.0, 2**64, -(2**64), 2**4000, 1e308, 5e-324]
# Room for every finding a bad number can cause, but nowhere near output that scales with the input.
MESSAGE_LIMIT = 2_000


def config_with(key: str, value: Any, arches: tuple[str, ...] | None) -> str:
    base = BASES[arches[0] if arches else None]
    data = tomllib.loads(base.read_text())
    table = data
    *parents, name = key.split(".")
    for part in parents:
        table = table.setdefault(part, {})
    table[name] = value
    return tomli_w.dumps(data)


def check(key: str, value: Any, arches: tuple[str, ...] | None, tmp: Path):
    path = tmp / "job.toml"
    return check_file(str(path), Options(), text=config_with(key, value, arches))


def test_the_catalogue_has_the_numeric_fields_this_test_is_about():
    keys = {key for key, _, _ in FIELDS}
    assert {"model.dim", "optimizer.lr", "train.max_steps", "vlm.max_text_len", "model.num_experts"} <= keys
    assert len(FIELDS) > 60


@pytest.mark.parametrize(("key", "kind", "arches"), FIELDS, ids=[key for key, _, _ in FIELDS])
def test_every_edge_value_is_a_verdict(key, kind, arches, tmp_path):
    for value in EDGES:
        report = check(key, value, arches, tmp_path)
        codes = [f.code for f in report.findings]
        assert "KF000" not in codes, (key, value, report.findings)
        assert all(len(f.message) + len(f.hint or "") < MESSAGE_LIMIT for f in report.findings), (key, value)
        if kind is int and isinstance(value, float) and not math.isfinite(value):
            # NaN and infinity cannot be an integer: the file is wrong, at that key.
            assert not report.valid, (key, value)
            assert any(f.key == key for f in report.findings if f.severity == "error"), (key, value)


@pytest.mark.parametrize("value", [2**4000, -(2**4000), math.inf, math.nan], ids=["huge", "-huge", "inf", "nan"])
def test_every_numeric_field_at_once(value, tmp_path):
    # Products of two hostile sizes must not overflow a message either.
    for arch in ("cross_attention", "joint_decoder", "mot", "moma"):
        data = tomllib.loads(BASES[arch].read_text())
        for key, _kind, arches in FIELDS:
            if arches and arch not in arches:
                continue
            *parents, name = key.split(".")
            table = data
            for part in parents:
                table = table.setdefault(part, {})
            table[name] = value
        report = check_file(str(tmp_path / "job.toml"), Options(), text=tomli_w.dumps(data))
        assert "KF000" not in [f.code for f in report.findings], (arch, report.findings)
        assert not report.valid
        assert all(len(f.message) < MESSAGE_LIMIT * 3 for f in report.findings)


numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**300), max_value=2**300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(EDGES),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=numbers)
def test_any_number_in_any_numeric_field_is_a_verdict(field, value, tmp_path):
    key, _, arches = field
    report = check(key, value, arches, tmp_path)
    assert "KF000" not in [f.code for f in report.findings], (key, value, report.findings)
    assert all(len(f.message) < MESSAGE_LIMIT for f in report.findings), (key, value)
