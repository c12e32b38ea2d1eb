"""Meta-model parity with the parameter lists recorded from the reference trainer."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from recorded import CONFIGS as FIXTURES

from kforge_cli.manifest import build_manifest
from kforge_cli.model import build_meta_model


def _cases_with_parameters() -> list[str]:
    names = []
    for expected in sorted(FIXTURES.glob("*.expected.json")):
        if "parameters" in json.loads(expected.read_text()):
            names.append(expected.name.removesuffix(".expected.json"))
    return names


def job_from_resolved(resolved: dict) -> SimpleNamespace:
    """Sections become attribute namespaces; field values (dicts included) stay as they are."""
    return SimpleNamespace(**{
        section: SimpleNamespace(**fields) if isinstance(fields, dict) else fields
        for section, fields in resolved.items()
    })


CASES = _cases_with_parameters()


def test_fixture_directory_has_parameter_cases() -> None:
    assert CASES


@pytest.mark.parametrize("build", [build_meta_model, build_manifest], ids=["meta", "manifest"])
@pytest.mark.parametrize("case", CASES)
def test_parameters_match_reference(case: str, build) -> None:
    expected = json.loads((FIXTURES / f"{case}.expected.json").read_text())
    resolved = json.loads((FIXTURES / f"{case}.resolved.json").read_text())

    meta = build(job_from_resolved(resolved))

    built = [[p.name, list(p.shape)] for p in meta.parameters]
    assert built == expected["parameters"]  # names, shapes and named_parameters() order
    assert sorted(meta.frozen_at_construction()) == sorted(expected["frozen_at_construction"])
    assert meta.unknown == []
    assert all(p.numel == _product(p.shape) for p in meta.parameters)


def _product(shape: tuple[int, ...]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total
