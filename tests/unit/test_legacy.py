"""The legacy [model.vlm] layout and its text-preserving conversion."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kforge_cli.convert import (
    LEGACY_FIELD_MAP,
    Conflict,
    ConversionConflict,
    ConversionError,
    Move,
    TomlSyntaxError,
    convert_text,
    legacy_target,
    needs_conversion,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "legacy"


def converted(text: str) -> str:
    result = convert_text(text)
    assert result.changed
    # Every conversion must be a fixed point: running it again changes nothing.
    again = convert_text(result.text)
    assert not again.changed and again.text == result.text
    assert not needs_conversion(result.text)
    return result.text


def comment_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


# -- the field map -------------------------------------------------------------


def test_field_map_renames_the_encoder_and_adapter_fields():
    assert LEGACY_FIELD_MAP["vision_encoder"] == ("vision_encoder", "type")
    assert LEGACY_FIELD_MAP["vision_encoder_path"] == ("vision_encoder", "path")
    assert LEGACY_FIELD_MAP["feature_dim"] == ("vision_encoder", "feature_dim")
    assert LEGACY_FIELD_MAP["num_tokens"] == ("vision_encoder", "num_tokens")
    assert LEGACY_FIELD_MAP["adapter_hidden_dim"] == ("adapter", "hidden_dim")
    assert LEGACY_FIELD_MAP["adapter_activation"] == ("adapter", "activation")


def test_field_map_keeps_arch_level_fields_under_vlm():
    arch_level = {
        "arch", "max_text_len", "freeze", "freeze_schedule", "module_patterns",
        "cross_attention_every_n_layers", "cross_attention_n_heads", "cross_attention_n_kv_heads",
        "mot_modalities", "mot_image_n_heads", "mot_image_n_kv_heads",
        "mot_warm_start_from_text", "mot_warm_start_path",
    }
    assert arch_level | {
        "vision_encoder", "vision_encoder_path", "feature_dim", "num_tokens",
        "adapter_hidden_dim", "adapter_activation",
    } == set(LEGACY_FIELD_MAP)
    for name in arch_level:
        assert LEGACY_FIELD_MAP[name] == ("vlm", name)


def test_unknown_legacy_fields_keep_their_name_under_vlm():
    assert legacy_target("moma_capacity_factor") == ("vlm", "moma_capacity_factor")


# -- exact output for every legacy shape ----------------------------------------


def test_header_table_is_replaced_in_place():
    text = (
        "[model]\n"
        "dim = 8\n"
        "\n"
        "[model.vlm]\n"
        'arch = "cross_attention"\n'
        'vision_encoder = "random"\n'
        "# ViT-L dims\n"
        "feature_dim = 1024\n"
        "num_tokens = 256\n"
        "\n"
        "[train]\n"
        "seq_len = 512\n"
    )
    assert converted(text) == (
        "[model]\n"
        "dim = 8\n"
        "\n"
        "[vision_encoder]\n"
        'type = "random"\n'
        "# ViT-L dims\n"
        "feature_dim = 1024\n"
        "num_tokens = 256\n"
        "\n"
        "[vlm]\n"
        'arch = "cross_attention"\n'
        "\n"
        "[train]\n"
        "seq_len = 512\n"
    )


def test_adapter_section_only_when_adapter_keys_exist_and_inline_comments_stay():
    text = (
        "[model.vlm]   # the VLM\n"
        'vision_encoder = "siglip2"\n'
        'vision_encoder_path = "google/siglip2-base-patch16-224"  # HF id\n'
        "adapter_hidden_dim = 4096    # wide\n"
        'adapter_activation = "silu"\n'
        "max_text_len = 2048\n"
    )
    assert converted(text) == (
        "[vision_encoder]\n"
        'type = "siglip2"\n'
        'path = "google/siglip2-base-patch16-224"  # HF id\n'
        "\n"
        "[adapter]\n"
        "hidden_dim = 4096    # wide\n"
        'activation = "silu"\n'
        "\n"
        "[vlm]   # the VLM\n"
        "max_text_len = 2048\n"
    )


def test_nested_subtables_are_renamed_where_they_stand():
    text = (
        "[model.vlm]\n"
        'arch = "mot"\n'
        'vision_encoder = "random"\n'
        "\n"
        "# unfreeze the adapter later\n"
        "[[model.vlm.freeze_schedule]]\n"
        "start_step = 10\n"
        '[[model.vlm.freeze_schedule.specs]]\n'
        'module = "adapter"\n'
        "frozen = false\n"
        "\n"
        "[model.vlm.module_patterns]  # aliases\n"
        'mot = ["transformer.layers.*"]\n'
    )
    assert converted(text) == (
        "[vision_encoder]\n"
        'type = "random"\n'
        "\n"
        "[vlm]\n"
        'arch = "mot"\n'
        "\n"
        "# unfreeze the adapter later\n"
        "[[vlm.freeze_schedule]]\n"
        "start_step = 10\n"
        '[[vlm.freeze_schedule.specs]]\n'
        'module = "adapter"\n'
        "frozen = false\n"
        "\n"
        "[vlm.module_patterns]  # aliases\n"
        'mot = ["transformer.layers.*"]\n'
    )


def test_dotted_keys_inside_model_move_after_the_model_table():
    text = (
        "[model]\n"
        "dim = 8\n"
        "# the arch\n"
        'vlm.arch = "mot"   # MoT\n'
        'vlm.vision_encoder = "random"\n'
        'vlm.module_patterns.mot = ["transformer.layers.*"]\n'
        "n_layers = 2\n"
        "\n"
        "[train]\n"
        "seq_len = 4\n"
    )
    assert converted(text) == (
        "[model]\n"
        "dim = 8\n"
        "n_layers = 2\n"
        "\n"
        "[vision_encoder]\n"
        'type = "random"\n'
        "\n"
        "[vlm]\n"
        "# the arch\n"
        'arch = "mot"   # MoT\n'
        'module_patterns.mot = ["transformer.layers.*"]\n'
        "\n"
        "[train]\n"
        "seq_len = 4\n"
    )


def test_inline_table_inside_model_is_split_into_sections():
    text = (
        "[model]\n"
        "dim = 8\n"
        "# VLM settings\n"
        'vlm = { arch = "cross_attention", vision_encoder = "random", feature_dim = 16, '
        'adapter_hidden_dim = 32, freeze = [{module = "vision_encoder", frozen = true}] }  # inline\n'
        "n_layers = 2\n"
    )
    assert converted(text) == (
        "[model]\n"
        "dim = 8\n"
        "n_layers = 2\n"
        "\n"
        "[vision_encoder]\n"
        'type = "random"\n'
        "feature_dim = 16\n"
        "\n"
        "[adapter]\n"
        "hidden_dim = 32\n"
        "\n"
        "[vlm]  # inline\n"
        "# VLM settings\n"
        'arch = "cross_attention"\n'
        'freeze = [{module = "vision_encoder", frozen = true}]\n'
    )


def test_root_level_dotted_keys():
    text = 'model.dim = 8\nmodel.vlm.arch = "mot"\nmodel.vlm.vision_encoder = "random"\n\n[train]\nx = 1\n'
    assert converted(text) == (
        'model.dim = 8\n\n[vision_encoder]\ntype = "random"\n\n[vlm]\narch = "mot"\n\n[train]\nx = 1\n'
    )


def test_quoted_keys_indentation_multiline_values_and_strings_that_look_like_tables():
    text = (
        'title = """\n'
        "[model.vlm]\n"
        'vision_encoder = "x"\n'
        '"""\n'
        "[ model . \"vlm\" ]\n"
        "  \"vision_encoder\" = 'random'   # quoted\n"
        "  freeze = [\n"
        "    # freeze the encoder\n"
        '    {module = "vision_encoder", frozen = true},  # yes\n'
        "  ]\n"
        '  vision_encoder_path = "a#b"  # hash inside the string\n'
    )
    assert converted(text) == (
        'title = """\n'
        "[model.vlm]\n"
        'vision_encoder = "x"\n'
        '"""\n'
        "[vision_encoder]\n"
        "  type = 'random'   # quoted\n"
        '  path = "a#b"  # hash inside the string\n'
        "\n"
        "[vlm]\n"
        "  freeze = [\n"
        "    # freeze the encoder\n"
        '    {module = "vision_encoder", frozen = true},  # yes\n'
        "  ]\n"
    )


def test_empty_legacy_table_still_marks_a_vlm_run():
    assert converted("[model]\ndim = 8\n\n[model.vlm]\n\n[train]\nx = 1\n") == (
        "[model]\ndim = 8\n\n[vlm]\n\n[train]\nx = 1\n"
    )


def test_crlf_line_endings_are_kept():
    text = '[model]\r\ndim = 1\r\n\r\n[model.vlm]\r\narch = "mot"\r\nvision_encoder = "random"\r\n'
    assert converted(text) == (
        '[model]\r\ndim = 1\r\n\r\n[vision_encoder]\r\ntype = "random"\r\n\r\n[vlm]\r\narch = "mot"\r\n'
    )


def test_file_without_final_newline():
    text = '[model.vlm]\narch = "mot"\nvision_encoder = "random"'
    assert converted(text) == '[vision_encoder]\ntype = "random"\n\n[vlm]\narch = "mot"\n'


# -- comments ----------------------------------------------------------------


def test_comment_placement_rules():
    text = (
        "[model.vlm]\n"
        "# about the whole table\n"
        "\n"
        "# above arch\n"
        'arch = "mot"\n'
        "# right below arch, so it stays with arch\n"
        "\n"
        'vision_encoder = "random"\n'
        "\n"
        "# floating at the end\n"
        "\n"
        "# directly above [train]\n"
        "[train]\n"
    )
    out = converted(text)
    assert out == (
        "[vision_encoder]\n"
        'type = "random"\n'
        "\n"
        "[vlm]\n"
        "# about the whole table\n"
        "# above arch\n"
        'arch = "mot"\n'
        "# right below arch, so it stays with arch\n"
        "\n"
        "# floating at the end\n"
        "\n"
        "# directly above [train]\n"
        "[train]\n"
    )
    assert sorted(comment_lines(out)) == sorted(comment_lines(text))


def test_removing_dotted_keys_does_not_double_blank_lines():
    text = "[model]\ndim = 8\n\nvlm.arch = \"mot\"\n\nn_layers = 2\n"
    assert converted(text) == "[model]\ndim = 8\n\nn_layers = 2\n\n[vlm]\narch = \"mot\"\n"


def test_blank_lines_between_key_groups_are_kept_inside_a_section():
    text = "[model.vlm]\narch = \"mot\"\n\n# limits\nmax_text_len = 64\n"
    assert converted(text) == "[vlm]\narch = \"mot\"\n\n# limits\nmax_text_len = 64\n"


# -- merging with the current layout ------------------------------------------------


def test_same_value_in_both_layouts_is_merged_without_duplication():
    text = (
        "[model.vlm]\n"
        'arch = "mot"\n'
        'vision_encoder = "random"  # same as below\n'
        "feature_dim = 16\n"
        "\n"
        "[vision_encoder]\n"
        'type = "random"\n'
        "num_tokens = 4\n"
    )
    out = converted(text)
    assert out == (
        "[vlm]\n"
        'arch = "mot"\n'
        "\n"
        "[vision_encoder]\n"
        'type = "random"\n'
        "num_tokens = 4\n"
        "# same as below\n"
        "feature_dim = 16\n"
    )
    assert tomllib.loads(out)["vision_encoder"] == {"type": "random", "num_tokens": 4, "feature_dim": 16}


def test_keys_join_an_existing_vlm_table():
    text = '[model.vlm]\nvision_encoder = "random"\nmax_text_len = 64\n\n[vlm]\narch = "mot"\n'
    assert converted(text) == (
        '[vision_encoder]\ntype = "random"\n\n[vlm]\narch = "mot"\nmax_text_len = 64\n'
    )


def test_equal_subtable_is_dropped_but_its_comments_stay():
    text = (
        "[model.vlm]\n"
        'vision_encoder = "random"\n'
        "\n"
        "[model.vlm.module_patterns]\n"
        "# kept\n"
        'adapter = ["adapter.*"]\n'
        "\n"
        "[vlm.module_patterns]\n"
        'adapter = ["adapter.*"]\n'
    )
    out = converted(text)
    assert "# kept" in out
    assert out.count('adapter = ["adapter.*"]') == 1
    assert tomllib.loads(out)["vlm"] == {"module_patterns": {"adapter": ["adapter.*"]}}


def test_conflicting_values_are_refused_with_both_keys_and_lines():
    text = (
        "[model.vlm]\n"
        'arch = "mot"\n'
        'vision_encoder = "random"\n'
        "\n"
        "[vision_encoder]\n"
        'type = "siglip2"\n'
        "\n"
        "[vlm]\n"
        'arch = "mot"\n'
    )
    with pytest.raises(ConversionConflict) as caught:
        convert_text(text)
    conflict = caught.value
    assert conflict.conflicts == [
        Conflict("model.vlm.vision_encoder", "vision_encoder.type", "random", "siglip2", 3)
    ]
    assert "model.vlm.vision_encoder" in conflict.message
    assert "vision_encoder.type" in conflict.message
    assert "(line 3)" in conflict.message and "(line 6)" in conflict.message


def test_conflict_compares_types_strictly():
    with pytest.raises(ConversionConflict):
        convert_text("[model.vlm]\nnum_tokens = 256\n\n[vision_encoder]\nnum_tokens = 256.0\n")


def test_conflicts_on_whole_subtables():
    text = (
        "[[model.vlm.freeze_schedule]]\nstart_step = 5\nspecs = []\n\n"
        "[vlm]\nfreeze_schedule = [{start_step = 6, specs = []}]\n"
    )
    with pytest.raises(ConversionConflict) as caught:
        convert_text(text)
    assert caught.value.conflicts[0].legacy_key == "model.vlm.freeze_schedule"


# -- no-ops and refusals -------------------------------------------------------------


def test_current_layout_is_returned_byte_identical():
    text = (
        "# current\n[model]\ndim = 8\n\n[vision_encoder]\ntype = \"random\"\n\n"
        "[vlm]   # spacing kept\narch = \"mot\"\n"
    )
    result = convert_text(text)
    assert result.text == text and not result.changed and result.moves == []
    assert not needs_conversion(text)


def test_text_without_vlm_is_not_even_parsed():
    result = convert_text("this is [not toml")
    assert not result.changed and result.text == "this is [not toml"


def test_needs_conversion():
    assert needs_conversion("[model.vlm]\narch = 'mot'\n")
    assert needs_conversion("[model]\nvlm.arch = 'mot'\n")
    assert not needs_conversion("[vlm]\narch = 'mot'\n")


def test_moves_list_every_legacy_field_with_its_line():
    result = convert_text('[model]\nx = 1\n[model.vlm]\narch = "mot"\nadapter_activation = "relu"\n')
    assert result.moves == [
        Move("model.vlm.arch", "vlm.arch", 4),
        Move("model.vlm.adapter_activation", "adapter.activation", 5),
    ]


def test_invalid_toml_reports_the_position():
    with pytest.raises(TomlSyntaxError) as caught:
        convert_text("[model.vlm]\narch = \n")
    assert caught.value.line == 2
    with pytest.raises(TomlSyntaxError):
        needs_conversion("[model.vlm\n")


@pytest.mark.parametrize("text, words", [
    ('model = { dim = 8, vlm = { arch = "mot" } }\n', "inline [model]"),
    ('[[model.vlm]]\narch = "mot"\n', "array of tables"),
    ('[model]\nvlm = "mot"\n', "not a table"),
    ('vision_encoder = { type = "random" }\n[model.vlm]\nfeature_dim = 3\n', "inline table"),
    ('vision_encoder.type = "random"\n[model.vlm]\nfeature_dim = 3\n', "dotted keys"),
])
def test_shapes_that_cannot_be_moved_faithfully_are_refused(text, words):
    with pytest.raises(ConversionError) as caught:
        convert_text(text)
    assert words in caught.value.message


def test_duplicate_equal_value_into_inline_section_is_fine():
    out = converted('vlm = { arch = "mot" }\n[model.vlm]\narch = "mot"  # dup\n')
    assert tomllib.loads(out) == {"vlm": {"arch": "mot"}}
    assert "# dup" in out


# -- the example configs ---------------------------------------------------------


def test_examples_convert_to_the_expected_sections():
    mot = tomllib.loads(converted((EXAMPLES / "vlm_mot_staged.legacy.toml").read_text()))
    assert "vlm" not in mot["model"]
    assert mot["vision_encoder"] == {
        "type": "siglip2", "path": "google/siglip2-so400m-patch14-384", "num_tokens": 0,
    }
    assert mot["adapter"] == {"hidden_dim": 4096, "activation": "gelu"}
    assert mot["vlm"]["arch"] == "mot"
    assert mot["vlm"]["freeze_schedule"] == [
        {"start_step": 3000, "specs": [{"module": "adapter", "frozen": True}]}
    ]
    ca = tomllib.loads(converted((EXAMPLES / "vlm_cross_attn_dotted.legacy.toml").read_text()))
    assert ca["vision_encoder"] == {"type": "random", "feature_dim": 768, "num_tokens": 196}
    assert ca["vlm"] == {
        "arch": "cross_attention", "cross_attention_every_n_layers": 2, "max_text_len": 512,
    }
    assert "adapter" not in ca


# -- property: generated legacy configs ------------------------------------------------

_SAFE_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x7f"),
    max_size=12,
)
_COMMENT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"),
                           blacklist_characters="\x7f"),
    max_size=20,
).map(lambda s: "# " + s.strip())
_VALUES = {
    "arch": st.sampled_from(["joint_decoder", "cross_attention", "mot"]),
    "vision_encoder": st.sampled_from(["random", "siglip2", "clip"]),
    "vision_encoder_path": _SAFE_TEXT,
    "feature_dim": st.integers(0, 4096),
    "num_tokens": st.integers(0, 1024),
    "adapter_hidden_dim": st.integers(0, 8192),
    "adapter_activation": st.sampled_from(["gelu", "silu", "relu"]),
    "max_text_len": st.integers(1, 4096),
    "cross_attention_every_n_layers": st.integers(1, 8),
    "mot_modalities": st.lists(st.sampled_from(["image", "text", "video"]), max_size=3),
    "mot_warm_start_from_text": st.booleans(),
    "freeze": st.lists(
        st.fixed_dictionaries({"module": st.sampled_from(["vision_encoder", "adapter"]),
                               "frozen": st.booleans()}),
        max_size=2,
    ),
    "future_field": st.floats(allow_nan=False, allow_infinity=False, width=32),
}


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return str(value)


@st.composite
def legacy_configs(draw):
    shape = draw(st.sampled_from(["header", "dotted", "inline", "root"]))
    names = draw(st.lists(st.sampled_from(sorted(_VALUES)), unique=True,
                          min_size=0 if shape == "header" else 1, max_size=len(_VALUES)))
    values = {name: draw(_VALUES[name]) for name in names}
    maybe_comment = st.one_of(st.none(), _COMMENT)

    legacy: list[str] = []
    for name, value in values.items():
        above = draw(maybe_comment)
        inline = draw(maybe_comment)
        if draw(st.booleans()):
            legacy.append("")
        if above:
            legacy.append(above)
        key = {"header": name, "dotted": f"vlm.{name}", "root": f"model.vlm.{name}"}.get(shape, name)
        legacy.append(f"{key} = {_toml_value(value)}" + (f"  {inline}" if inline else ""))

    lines = [draw(maybe_comment) or "# job"]
    if shape == "root":
        # Dotted keys at the root define [model]; a [model] header would redefine it.
        lines += ["model.dim = 64", *legacy, "model.n_layers = 2"]
    else:
        lines += ["[model]", "dim = 64"]
        if shape == "dotted":
            lines += legacy
        elif shape == "inline":
            pairs = ", ".join(f"{n} = {_toml_value(v)}" for n, v in values.items())
            lines.append(f"vlm = {{ {pairs} }}")
        lines.append("n_layers = 2")
    if shape == "header":
        lines += ["", "[model.vlm]" + (f"  {draw(_COMMENT)}" if draw(st.booleans()) else ""), *legacy]
    if shape != "inline" and draw(st.booleans()):  # an inline table cannot gain sub-tables
        lines += ["", draw(_COMMENT), "[[model.vlm.freeze_schedule]]", "start_step = 10",
                  'specs = [{module = "adapter", frozen = true}]']
    lines += ["", draw(maybe_comment) or "# training", "[train]", "seq_len = 64", ""]
    return "\n".join(lines), values


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(legacy_configs())
def test_property_generated_legacy_configs(case):
    text, values = case
    before = tomllib.loads(text)
    result = convert_text(text)
    after = tomllib.loads(result.text)
    assert "vlm" not in after.get("model", {})
    assert "vlm" in after
    for name, value in values.items():
        section, target = legacy_target(name)
        assert after[section][target] == value
        assert type(after[section][target]) is type(value)
    if "freeze_schedule" in before["model"]["vlm"]:
        assert after["vlm"]["freeze_schedule"] == before["model"]["vlm"]["freeze_schedule"]
    assert after["train"] == before["train"]
    assert after["model"] == {k: v for k, v in before["model"].items() if k != "vlm"}
    kept = comment_lines(result.text)
    for line in comment_lines(text):
        assert line in kept
        kept.remove(line)
    assert ("adapter" in after) == any(LEGACY_FIELD_MAP.get(n, ("vlm",))[0] == "adapter" for n in values)
    assert not needs_conversion(result.text)
    assert convert_text(result.text).text == result.text
