"""Property-based tests over generated job configs, valid and broken, across every section.

- validate never crashes (exit 0 or 1, never 3, never a traceback) in every format;
- its verdict does not depend on key order or comments;
- what a config resolves to survives resolved -> TOML -> load (explain --format json);
- convert leaves a current-layout file alone, and a legacy rewrite of it resolves the same.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import random
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kforge_cli.cli.main import main
from kforge_cli.config.fields import field_default
from kforge_cli.config.job import JobConfig
from kforge_cli.config.registry import registry

# --- the schema, read from the dataclasses ------------------------------------------------


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return rest[0] if len(rest) == 1 else hint
    return hint


_JOB_HINTS = typing.get_type_hints(JobConfig)
SECTION_CLASSES = {f.name: _unwrap_optional(_JOB_HINTS[f.name]) for f in dataclasses.fields(JobConfig)}
ARCHES = {name: registry.get_vlm_config(name) for name in ("joint_decoder", "cross_attention", "mot", "moma")}
VLM_ONLY = ("vision_encoder", "adapter", "vlm", "video")
ALIASES = ["transformer", "vision_encoder", "adapter", "cross_attention", "mot", "moma", "transformer.layers.0.*",
           "adaptr", "*"]
MODALITIES = ["image", "text", "audio", "video"]

WRONG_TYPES = st.sampled_from([{"bad": 1}, "text", [1, 2], [], -1, 10**12, 1.5, True, "1e3"])
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=10)
SMALL_INTS = st.sampled_from([0, 1, 2, 3, 4, 8, 16, 32, 64, 128, 256, 512, 576, 1000, -1]) | st.integers(-2, 600)


def _freeze_specs() -> st.SearchStrategy:
    return st.lists(st.fixed_dictionaries({"module": st.sampled_from(ALIASES)},
                                          optional={"frozen": st.booleans()}), max_size=3)


def _field_values(cls: type, f: dataclasses.Field, hint: Any) -> st.SearchStrategy:
    """Values of the right shape (valid or out of range) for one field."""
    meta = f.metadata or {}
    names = list(meta.get("choices") or ())
    if meta.get("registry"):
        names += registry.list(meta["registry"])
    if names:
        return st.sampled_from(sorted(set(map(str, names)))) | st.sampled_from(["bogus", names[0] + "x"])
    name, hint = f.name, _unwrap_optional(hint)
    if name == "freeze":
        return _freeze_specs()
    if name == "freeze_schedule":
        stage = st.fixed_dictionaries({"start_step": st.integers(-2, 60), "specs": _freeze_specs()})
        return st.lists(stage, max_size=3)
    if name == "module_patterns":
        return st.dictionaries(st.sampled_from(ALIASES[:6]),
                               st.lists(st.sampled_from(["transformer", "transformer.*", "adapter.*", "x"]),
                                        min_size=1, max_size=2), max_size=3)
    if name.endswith("_modalities"):
        return st.lists(st.sampled_from(MODALITIES), max_size=4)
    if name == "moma_experts_per_modality":
        return st.dictionaries(st.sampled_from(MODALITIES), st.integers(-1, 8), max_size=3)
    if name == "betas":
        return st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=3)
    if hint is bool:
        return st.booleans()
    if hint is int:
        return SMALL_INTS
    if hint is float:
        return st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0, 1e-4, -1.0]) | st.floats(-5, 5, allow_nan=False)
    if hint is str:
        return TEXT
    # Nested tables and mixtures (dyn_ckpt_window, datasets, phases, ...): their default, or nothing.
    default = field_default(f)
    return st.just(default) if isinstance(default, (list, dict)) and not default else st.nothing()


def _section_fields(cls: type) -> dict[str, st.SearchStrategy]:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name == "arch":
            continue
        values = _field_values(cls, f, hints[f.name])
        if not values.is_empty:
            out[f.name] = values
    return out


FIELD_VALUES = {section: _section_fields(cls) for section, cls in SECTION_CLASSES.items() if section != "vlm"}
FIELD_VALUES.update({f"vlm:{arch}": _section_fields(cls) for arch, cls in ARCHES.items()})

# Small valid starting points, so a good share of generated configs is valid.
MODEL = {"dim": 64, "n_layers": 4, "n_heads": 4, "n_kv_heads": 4, "vocab_size": 1000, "max_seq_len": 600}
TEXT_BASE = {"model": MODEL, "train": {"seq_len": 600, "max_steps": 40}, "scheduler": {"warmup_steps": 5},
             "data": {"dataset_path": "/data"}}
VLM_BASE = {"model": MODEL, "vision_encoder": {"type": "random", "feature_dim": 32, "num_tokens": 16},
            "train": {"seq_len": 600, "max_steps": 40}, "scheduler": {"warmup_steps": 5},
            "data": {"hf_dataset_name": "coco", "tokenizer_path": "gpt2"}}


@st.composite
def job_configs(draw) -> dict[str, Any]:
    arch = draw(st.sampled_from([None, *ARCHES]))
    config = copy.deepcopy(TEXT_BASE if arch is None else VLM_BASE)
    if arch is not None:
        config["vlm"] = {"arch": arch, "max_text_len": 584}
    sections = [s for s in SECTION_CLASSES if s != "vlm" and (arch is not None or s not in VLM_ONLY)]
    for _ in range(draw(st.integers(0, 6))):
        section = draw(st.sampled_from(sections + (["vlm"] if arch else [])))
        fields = FIELD_VALUES[f"vlm:{arch}" if section == "vlm" else section]
        name = draw(st.sampled_from(sorted(fields)))
        broken = draw(st.integers(0, 4)) == 0
        value = draw(WRONG_TYPES if broken else fields[name])
        config.setdefault(section, {})[name] = value
    if draw(st.integers(0, 9)) == 0:  # an unknown key, often a near miss of a real one
        section = draw(st.sampled_from(sorted(config)))
        config[section][draw(st.sampled_from(["dimm", "n_head", "lr_", "unknown"]))] = 1
    if draw(st.integers(0, 9)) == 0:
        config.pop(draw(st.sampled_from(sorted(config))))
    return config


# --- running kforge in-process ---------------------------------------------------------------


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("properties")
    (folder / ".git").mkdir()  # keep [tool.kforge] discovery inside this folder
    return folder


def write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def validate_json(path: str) -> dict[str, Any]:
    code, out, err = run("validate", "-f", "json", path)
    assert code in (0, 1), err
    return json.loads(out)["files"][0]


def explain_resolved(path: str) -> dict[str, Any]:
    code, out, err = run("explain", "-f", "json", path)
    assert code in (0, 1), err
    return json.loads(out)["configs"][0]["resolved"]


PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- properties --------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(config=job_configs(), output_format=st.sampled_from(["text", "json", "github", "sarif"]),
       world_size=st.sampled_from([None, "1", "8", "6"]))
def test_validate_never_crashes(workdir, config, output_format, world_size):
    path = write(workdir, "job.toml", tomli_w.dumps(config))
    args = ["validate", "-f", output_format, path] + (["--world-size", world_size] if world_size else [])
    code, out, err = run(*args)
    assert code in (0, 1), f"exit {code}\n{err}"
    assert "Traceback" not in err and "internal error" not in err
    if output_format in ("json", "sarif"):
        json.loads(out)


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: _shuffled(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def _commented(text: str, rng: random.Random) -> str:
    out = ["# generated config", ""]
    for line in text.split("\n")[:-1]:  # not splitlines(): strings may hold U+0085 and friends
        if rng.random() < 0.3:
            out.append("   # a comment line with = [brackets] and \"quotes\"")
        out.append(line + ("  # trailing comment" if line.strip() and rng.random() < 0.4 else ""))
    return "\n".join(out) + "\n"


def _verdict(report: dict[str, Any]) -> tuple[bool, list[tuple]]:
    return report["valid"], sorted((f["code"], f["severity"], f["key"] or "", f["message"])
                                   for f in report["findings"])


@PROPERTY_SETTINGS
@given(config=job_configs(), seed=st.integers(0, 2**16))
def test_verdict_is_stable_under_key_order_and_comments(workdir, config, seed):
    rng = random.Random(seed)
    original = validate_json(write(workdir, "a.toml", tomli_w.dumps(config)))
    variant = validate_json(write(workdir, "a.toml", _commented(tomli_w.dumps(_shuffled(config, rng)), rng)))
    assert _verdict(variant) == _verdict(original)


def _as_toml_data(value: Any) -> Any:
    """Resolved JSON -> TOML data: TOML has no null, so unset values are left out."""
    if isinstance(value, dict):
        return {k: _as_toml_data(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_as_toml_data(v) for v in value]
    return value


@settings(PROPERTY_SETTINGS, max_examples=100)
@given(config=job_configs())
def test_resolved_config_round_trips_through_toml(workdir, config):
    resolved = explain_resolved(write(workdir, "a.toml", tomli_w.dumps(config)))
    if resolved is None:  # the loader rejected the file (e.g. an unknown key): nothing resolved
        return
    again = explain_resolved(write(workdir, "b.toml", tomli_w.dumps(_as_toml_data(resolved))))
    assert again == resolved


# --- convert ---------------------------------------------------------------------------------------

import kforge_cli.convert as legacy  # noqa: E402 - grouped with the tests that use it

LEGACY_NAMES = {new: old for old, new in legacy.LEGACY_FIELD_MAP.items()}


def _to_legacy(config: dict[str, Any]) -> dict[str, Any] | None:
    """The same job in the pre-flatten [model.vlm] layout, or None if it has no legacy spelling."""
    old = copy.deepcopy(config)
    table = {}
    for section in ("vision_encoder", "adapter", "vlm"):
        for key in list(old.get(section, {})):
            name = LEGACY_NAMES.get((section, key))
            if name is None:
                if section != "vlm":
                    continue  # e.g. adapter.type: stays in its current section
                name = key
            table[name] = old[section].pop(key)
        if section in old and not old[section]:
            del old[section]
    if not table or not isinstance(old.get("model"), dict):
        return None
    old["model"]["vlm"] = table
    return old


@settings(PROPERTY_SETTINGS, max_examples=100)
@given(config=job_configs())
def test_convert_leaves_current_layout_untouched(config):
    text = tomli_w.dumps(config)
    result = legacy.convert_text(text)
    assert result.changed is False and result.text == text


@settings(PROPERTY_SETTINGS, max_examples=100)
@given(config=job_configs().filter(lambda c: "vlm" in c))
def test_legacy_layout_converts_to_the_same_resolved_config(workdir, config):
    old = _to_legacy(config)
    if old is None:
        return
    try:
        converted = legacy.convert_text(tomli_w.dumps(old))
    except legacy.ConversionError as refused:  # refusing is allowed; converting wrongly is not
        assert refused.message
        return
    assert converted.changed
    expected = explain_resolved(write(workdir, "flat.toml", tomli_w.dumps(config)))
    assert explain_resolved(write(workdir, "converted.toml", converted.text)) == expected
