"""`describe_field`: the field catalogue, the derived rule citations and the notes."""

from __future__ import annotations

import dataclasses

import pytest

from kforge_cli.config.job import JobConfig
from kforge_cli.explain import UnknownFieldError, all_field_keys, describe_field, format_value, type_text
from kforge_cli.explain.notes import NOTES

# Plugins may register more arches in the shared registry; these are the reference's own.
BUILTIN_ARCHES = ["joint_decoder", "cross_attention", "mot", "moma"]


def builtin(key: str) -> bool:
    arches = describe_field(key).arches
    return arches is None or bool(set(arches) & set(BUILTIN_ARCHES))


def test_every_note_names_a_real_field():
    assert set(NOTES) - set(all_field_keys()) == set()


def test_every_field_has_a_doc():
    undocumented = [k for k in all_field_keys() if "." in k and builtin(k) and not describe_field(k).doc]
    assert undocumented == []


def test_every_section_is_documented():
    for f in dataclasses.fields(JobConfig):
        doc = describe_field(f.name)
        assert doc.kind == "section" and doc.doc and doc.fields, f.name


def test_freeze_doc():
    doc = describe_field("vlm.freeze")
    assert (doc.kind, doc.type, doc.default) == (
        "field", "array of tables {module = string, frozen = boolean}", '[{module = "vision_encoder", frozen = true}]')
    assert doc.all_arches and doc.arches[:4] == BUILTIN_ARCHES
    assert any("KF301" in rule and "accepts only aliases" in rule for rule in doc.rules)
    assert [(f.name, f.default) for f in doc.fields] == [("module", "required"), ("frozen", "true")]


def test_n_kv_heads_doc_states_the_inherited_32_quirk():
    doc = describe_field("model.n_kv_heads")
    assert (doc.type, doc.default) == ("integer, or unset", "unset")
    text = " ".join(doc.rules)
    assert "keeps 32" in text and "divisor of model.n_heads" in text and "KF204" in text


def test_cross_attention_cadence_doc_is_arch_specific():
    doc = describe_field("vlm.cross_attention_every_n_layers")
    assert (doc.default, doc.arches, doc.all_arches) == ("4", ["cross_attention"], False)
    assert any("KF402" in rule for rule in doc.rules)


def test_pool_window_doc():
    doc = describe_field("adapter.pool_window")
    assert (doc.type, doc.default) == ("integer", "2")
    assert any("attentional_pool" in rule and "divisible" in rule for rule in doc.rules)


def test_enum_and_registry_choices():
    norm = describe_field("model.norm_type")
    assert norm.choices == ["rmsnorm", "layernorm"] and norm.choices_enforced.startswith("enum")
    arch = describe_field("vlm.arch")
    assert arch.choices[:4] == BUILTIN_ARCHES
    assert arch.default == '"joint_decoder"' and arch.defaults_by_arch is None
    assert describe_field("vision_encoder.type").choices[:3] == ["random", "siglip2", "clip"]


def test_module_patterns_default_depends_on_the_arch():
    doc = describe_field("vlm.module_patterns")
    assert set(BUILTIN_ARCHES) <= set(doc.defaults_by_arch)
    assert "cross_attention = " in doc.defaults_by_arch["cross_attention"]
    assert "cross_attention" not in doc.defaults_by_arch["joint_decoder"]


def test_vlm_section_lists_shared_fields_then_each_arch():
    doc = describe_field("vlm")
    names = [f.name for f in doc.fields]
    assert names[:5] == ["arch", "max_text_len", "freeze", "freeze_schedule", "module_patterns"]
    by_name = {f.name: f for f in doc.fields}
    assert by_name["mot_image_n_heads"].arches == ["mot"] and by_name["arch"].arches is None
    assert by_name["module_patterns"].default == "depends on vlm.arch"
    assert by_name["arch"].default == '"joint_decoder"'


@pytest.mark.parametrize("spelling, canonical", [
    ("data.datasets.path", "data.datasets[].path"),
    ("data.datasets[0].weight", "data.datasets[].weight"),
    ("vlm.freeze_schedule[1].specs[0].module", "vlm.freeze_schedule[].specs[].module"),
    ("checkpoint.dyn_ckpt_window.stop", "checkpoint.dyn_ckpt_window.stop"),
    (" model.dim ", "model.dim"),
])
def test_nested_keys_accept_index_and_bracket_free_spellings(spelling, canonical):
    assert describe_field(spelling).key == canonical


@pytest.mark.parametrize("key, suggestion", [
    ("n_kv_heads", "model.n_kv_heads"),
    ("modle.dim", "model.dim"),
    ("vlm.cross_atention_every_n_layers", "vlm.cross_attention_every_n_layers"),
    ("vlm.pool_window", "adapter.pool_window"),
])
def test_unknown_keys_get_suggestions(key, suggestion):
    with pytest.raises(UnknownFieldError) as info:
        describe_field(key)
    assert info.value.suggestions[0] == suggestion


def test_a_name_in_several_sections_suggests_all_of_them():
    with pytest.raises(UnknownFieldError) as info:
        describe_field("interval")
    assert set(info.value.suggestions) == {"eval.interval", "checkpoint.interval"}


@pytest.mark.parametrize("value, text", [
    (None, "unset"), (True, "true"), (3, "3"), (1e-08, "1e-08"), ('say "hi"', '"say \\"hi\\""'),
    ([0.9, 0.95], "[0.9, 0.95]"), ({"image": 4, "text": 4}, "{image = 4, text = 4}"),
    ({"a.b": ["x"]}, '{"a.b" = ["x"]}'), ({}, "{}"),
])
def test_format_value(value, text):
    assert format_value(value) == text


def test_type_text():
    assert type_text(int | None) == "integer, or unset"
    assert type_text(tuple[float, float]) == "array of 2 numbers"
    assert type_text(tuple[str, ...]) == "array of strings"
    assert type_text(dict[str, list[str]]) == "table of name = array of strings"
