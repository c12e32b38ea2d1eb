"""The one TOML scanner (config.toml_source): strings, keys, statements, positions.

It must agree with tomllib on every escape and string form, since both the
finding positions and the legacy-layout conversion rely on it.
"""

from __future__ import annotations

import sys

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kforge_cli.config.toml_source import (
    TomlScanner,
    format_path,
    scan_positions,
    scan_statements,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@pytest.mark.parametrize("literal", [
    '"plain"',
    '"escaped \\" quote"',
    '"ends in a backslash \\\\"',
    '"\\u00e9 \\U0001F600 \\t \\n \\b \\f \\r \\\\ \\""',
    "'literal \\'",
    '"""multi\nline"""',
    '"""escaped \\""" triple"""',
    '"""one quote before the end""""',
    '"""two quotes before the end"""""',
    '"""line-ending backslash \\\n   continues"""',
    '"""\\\\"""',
    "'''literal ''multi'' line\n'''",
    "'''two quotes before the end'''''",
    '""',
    '""""""',
])
def test_string_end_agrees_with_tomllib(literal):
    text = f"key = {literal} # trailing\n"
    expected = tomllib.loads(text)["key"]
    start = text.index("= ") + 2
    end = TomlScanner(text).string_end(start)
    assert text[end:] == " # trailing\n"
    assert tomllib.loads(f"key = {text[start:end]}")["key"] == expected


@pytest.mark.parametrize("key", [
    '"a\\u0062"', '"\\\\"', '"a\\"b"', "'lit\\'", '"tab\\there"', '"\\U0001F600"', '"dotted.name"', "bare-key_1",
])
def test_key_names_are_decoded_as_tomllib_decodes_them(key):
    text = f"{key} = 1\n"
    (name,) = tomllib.loads(text)
    [statement] = scan_statements(text)
    assert statement.names == (name,)
    assert scan_positions(text) == {name: (1, 1)}


def test_an_escaped_triple_quote_does_not_end_a_multiline_string():
    text = 'a = """x \\""" y"""\nb = 1\n[t]\nc = 2\n'
    assert tomllib.loads(text) == {"a": 'x """ y', "b": 1, "t": {"c": 2}}
    assert scan_positions(text) == {"a": (1, 1), "b": (2, 1), "t": (3, 1), "t.c": (4, 1)}


def test_a_string_that_looks_like_a_table_is_not_one():
    text = 'title = """\n[model.vlm]\nx = 1\n"""\n[real]\n'
    kinds = [(s.kind, s.names) for s in scan_statements(text)]
    assert kinds == [("entry", ("title",)), ("header", ("real",))]


def test_statements_cover_the_text_and_describe_each_line():
    text = (
        "# top\n"
        "\n"
        "  [ model . \"vlm\" ]   # header comment\n"
        "arch = \"mot\"  # trailing\n"
        "freeze = [\n"
        "  # inside\n"
        "  {module = \"adapter\", frozen = true},\n"
        "]\n"
        "[[stages]]\n"
        "x.y = 1979-05-27 07:32:00Z\n"
    )
    statements = scan_statements(text)
    assert "".join(text[s.start:s.end] for s in statements) == text
    assert [s.kind for s in statements] == ["comment", "blank", "header", "entry", "entry", "header", "entry"]
    header, arch, freeze, stages, dated = statements[2:]
    assert header.names == ("model", "vlm") and text[header.first] == "["
    assert text[header.comment_start:header.end] == "# header comment\n"
    assert text[header.key_start:header.syntax_end] == 'model . "vlm" ]'
    assert arch.table == ("model", "vlm") and arch.line == 4
    assert text[arch.value_start:arch.value_end] == '"mot"'
    assert text[arch.comment_start:arch.end] == "# trailing\n"
    assert freeze.line == 5 and text[freeze.end - 2:freeze.end] == "]\n" and freeze.comment_start == -1
    assert stages.is_array and stages.names == ("stages",)
    assert dated.names == ("x", "y") and text[dated.value_start:dated.value_end] == "1979-05-27 07:32:00Z"


def test_inline_pairs():
    text = 'vlm = { arch = "mot", "quoted key" = [1, {a = 2}], sub.key = "}" }\n'
    [entry] = scan_statements(text)
    pairs = TomlScanner(text).inline_pairs(entry.value_start)
    assert [tuple(p.name for p in pair.keys) for pair in pairs] == [("arch",), ("quoted key",), ("sub", "key")]
    assert [text[pair.keys[0].start:pair.value_end] for pair in pairs] == [
        'arch = "mot"', '"quoted key" = [1, {a = 2}]', 'sub.key = "}"']


def test_positions_of_array_tables_and_nested_values():
    text = (
        "[vlm]\n"
        "[[vlm.freeze_schedule]]\n"
        "start_step = 1\n"
        "specs = [ {module = \"a\"},\n"
        "  {module = \"b\"} ]\n"
        "[[vlm.freeze_schedule]]\n"
        "start_step = 2\n"
    )
    positions = scan_positions(text)
    assert positions["vlm.freeze_schedule[0]"] == (2, 1)
    assert positions["vlm.freeze_schedule[1]"] == (6, 1)
    assert positions["vlm.freeze_schedule[0].specs[1].module"] == (5, 4)
    assert positions["vlm.freeze_schedule[1].start_step"] == (7, 1)


def test_deep_nesting_does_not_overflow_the_stack():
    depth = 5_000  # far beyond the recursion limit
    text = "a = " + "[" * depth + "]" * depth + "\nb = 1\n"
    positions = scan_positions(text)
    assert positions["b"] == (2, 1)


# -- properties ----------------------------------------------------------------------------------

_KEYS = st.text(alphabet=st.sampled_from(list("ab_-1 .\"'\\é\t#[]=")), min_size=1, max_size=5)
_SCALARS = st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=False),
                     st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(_KEYS, inner, max_size=3)),
                       max_leaves=10)


def _paths(value, prefix=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_KEYS, _VALUES, max_size=5), st.booleans())
def test_property_every_written_key_has_a_position(document, multiline_strings):
    text = tomli_w.dumps(document, multiline_strings=multiline_strings)
    data = tomllib.loads(text)
    positions = scan_positions(text)
    for path in _paths(data):
        key = format_path(path)
        # A table written only through its children ([a.b] defines a) is found through them.
        assert key in positions or any(k.startswith((f"{key}.", f"{key}[")) for k in positions), key
    statements = scan_statements(text)
    assert "".join(text[s.start:s.end] for s in statements) == text
