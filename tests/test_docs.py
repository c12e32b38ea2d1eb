"""What README.md and docs/ promise, held to the code: outputs, generated parts, rule citations."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from kforge_cli.rules import all_rules

REPO = Path(__file__).resolve().parent.parent
RULES = {rule.code: rule for rule in all_rules()}
CITED_DOCS = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
_CODE = re.compile(r"\bKF\d{3}\b")
_WORD = re.compile(r"[a-z][a-z_]{4,}")


def _update_docs():
    spec = importlib.util.spec_from_file_location("update_docs", REPO / "scripts" / "update_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["update_docs"] = module
    spec.loader.exec_module(module)
    return module


def test_shown_outputs_generated_parts_and_rules_doc_are_current(capsys):
    sys_argv = sys.argv
    sys.argv = ["update_docs.py", "--check"]
    try:
        code = _update_docs().main()
    finally:
        sys.argv = sys_argv
    assert code == 0, capsys.readouterr().out + "\nrun: python scripts/update_docs.py"


def test_every_shown_output_names_an_existing_example():
    shown = [s for path in _update_docs().DOCS for s in _update_docs().shown_outputs(path)]
    assert len(shown) >= 8
    for item in shown:
        for word in item.command.split():
            if word.startswith("examples/"):
                assert (REPO / word).exists(), (item.path.name, word)


def test_readme_stays_short_and_links_resolve():
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) <= 12_000
    for target in re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)(?:#[\w-]+)?\)", readme):
        assert (REPO / target).is_file(), target


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    tests = next(line for line in ci.splitlines() if "python -m pytest" in line)
    assert tests.strip() in readme


def _keywords(code: str) -> set[str]:
    rule = RULES[code]
    text = f"{rule.name.replace('-', ' ')} {rule.summary}".lower()
    return {w[:5] for w in _WORD.findall(text)}


def _prose(text: str) -> str:
    """The text a reader takes as a claim: without fenced blocks (real output, examples) and `code spans`."""
    text = re.sub(r"^```.*?^```$", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def _sentences(text: str):
    for paragraph in re.split(r"\n\s*\n", _prose(text)):
        yield from re.split(r"(?<=[.;:!?])\s+(?=[A-Z`(])|\n\s*[-|*] ", paragraph)


@pytest.mark.parametrize("path", CITED_DOCS, ids=lambda p: p.name)
def test_a_cited_code_means_what_its_rule_means(path):
    if path.name == "rules.md":
        pytest.skip("generated from the rules themselves")
    for sentence in _sentences(path.read_text()):
        for code in _CODE.findall(sentence):
            assert code in RULES, f"{path.name} cites {code}, which is not a rule: {sentence!r}"
            words = {w[:5] for w in _WORD.findall(sentence.lower())}
            assert words & _keywords(code), (
                f"{path.name} cites {code} ({RULES[code].name}) in a sentence that shares no word with its "
                f"meaning: {sentence.strip()!r}")


def test_codes_are_written_only_where_rules_are_defined():
    literal = re.compile(r'"KF\d{3}"')
    offenders = []
    for path in (REPO / "kforge_cli").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if literal.search(line) and not re.match(r'\s*"KF\d{3}", "[a-z0-9-]+", (ERROR|WARNING|INFO),', line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []
