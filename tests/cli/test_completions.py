"""completions/ matches the Typer app, and each shell's script actually completes."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kforge_cli.rules import all_rules

RULES = all_rules()

REPO = Path(__file__).resolve().parents[2]
COMPLETIONS = REPO / "completions"
EXAMPLES = REPO / "examples"


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_completions", REPO / "scripts" / "gen_completions.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator():
    return load_generator()


def test_completions_are_up_to_date(generator):
    expected = generator.render_all()
    assert sorted(expected) == ["_kforge", "kforge.bash", "kforge.fish"]
    stale = [name for name, text in expected.items()
             if not (COMPLETIONS / name).is_file() or (COMPLETIONS / name).read_text() != text]
    assert stale == [], f"completions/{stale} drifted from the app: run python scripts/gen_completions.py"


def test_check_mode_reports_drift(generator, tmp_path, capsys):
    assert generator.main(["--out-dir", str(tmp_path)]) == 0
    assert generator.main(["--check", "--out-dir", str(tmp_path)]) == 0
    (tmp_path / "kforge.fish").write_text("# edited by hand\n")
    assert generator.main(["--check", "--out-dir", str(tmp_path)]) == 1
    assert "kforge.fish is out of date" in capsys.readouterr().err


def test_every_command_and_option_is_in_every_script(generator):
    root, commands = generator.describe_app()
    assert {c.name for c in commands} >= {"validate", "explain", "freeze-plan", "convert", "rules"}
    for name in ("kforge.bash", "_kforge", "kforge.fish"):
        text = (COMPLETIONS / name).read_text()
        for command in commands:
            assert command.name in text
            for option in command.options:
                assert option.long.lstrip("-") in text, (name, command.name, option.long)


def test_descriptions_keep_abbreviations_whole(generator):
    assert generator.first_sentence("Drop codes (e.g. KF4, i.e. a family). More text.") == \
        "Drop codes (e.g. KF4, i.e. a family)."
    assert generator.first_sentence("Rewrite the legacy \\[model.vlm] table.\n\nDetails.") == \
        "Rewrite the legacy [model.vlm] table."


# --- the scripts, run by their shells ------------------------------------------------------


def bash_complete(*words: str) -> list[str]:
    script = (f"source {COMPLETIONS / 'kforge.bash'}\n"
              'COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); _kforge\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    done = subprocess.run(["bash", "-c", script, "bash", *words], capture_output=True, text=True,
                          cwd=EXAMPLES, timeout=30)
    assert done.returncode == 0, done.stderr
    return sorted(line for line in done.stdout.splitlines() if line)


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


@needs_bash
def test_bash_syntax():
    subprocess.run(["bash", "-n", str(COMPLETIONS / "kforge.bash")], check=True, timeout=30)


@needs_bash
@pytest.mark.parametrize(("words", "expected"), [
    (("kforge", ""), ["--help", "--traceback", "--version", "-h", "convert", "explain", "freeze-plan", "rules",
                      "validate"]),
    (("kforge", "fr"), ["freeze-plan"]),
    (("kforge", "validate", "--form"), ["--format"]),
    (("kforge", "validate", "--format", ""), ["github", "json", "sarif", "text"]),
    (("kforge", "--traceback", "validate", "-f", "j"), ["json"]),
    (("kforge", "validate", "vlm_m"), ["vlm_moma.toml", "vlm_mot.toml"]),
    (("kforge", "validate", "--no-s"), ["--no-strict"]),
    (("kforge", "rules", "KF30"), [r.code for r in RULES if r.code.startswith("KF30")]),
    (("kforge", "validate", "--ignore", "KF40"), [r.code for r in RULES if r.code.startswith("KF40")]),
    (("kforge", "validate", "--set", ""), []),
])
def test_bash_completes(words, expected):
    assert bash_complete(*words) == sorted(expected)


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_syntax():
    subprocess.run(["zsh", "-n", str(COMPLETIONS / "_kforge")], check=True, timeout=30)


needs_fish = pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")


def fish_complete(line: str) -> list[str]:
    script = f"source {COMPLETIONS / 'kforge.fish'}; complete -C {line!r}"
    done = subprocess.run(["fish", "--no-config", "-c", script], capture_output=True, text=True,
                          cwd=EXAMPLES, timeout=30)
    assert done.returncode == 0, done.stderr
    return sorted(line.split("\t")[0] for line in done.stdout.splitlines() if line)


@needs_fish
def test_fish_syntax():
    subprocess.run(["fish", "--no-execute", str(COMPLETIONS / "kforge.fish")], check=True, timeout=30)


@needs_fish
@pytest.mark.parametrize(("line", "expected"), [
    ("kforge fr", ["freeze-plan"]),
    ("kforge validate --format ", ["github", "json", "sarif", "text"]),
    ("kforge validate vlm_m", ["vlm_moma.toml", "vlm_mot.toml"]),
    ("kforge rules KF50", [r.code for r in RULES if r.code.startswith("KF50")]),
])
def test_fish_completes(line, expected):
    assert fish_complete(line) == sorted(expected)
