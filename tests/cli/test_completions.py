"""The shipped completion scripts match the Typer app, and each shell's script actually completes.

bash is driven by sourcing the script and calling its function with COMP_WORDS
and COMP_CWORD set, as readline would; zsh through a pseudo-terminal with
compadd wrapped to print the matches; fish with `complete -C`. A shell that is
not installed skips its tests (the generation tests still run).
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import tomllib
from typer.main import get_command

from kforge_cli.cli import completions as generator
from kforge_cli.cli.app import app
from kforge_cli.config.catalog import all_field_keys
from kforge_cli.rules import all_rules

RULES = all_rules()
REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "kforge_cli" / "completions"
EXAMPLES = REPO / "examples"

CODES_KF30 = [r.code for r in RULES if r.code.startswith("KF30")]
CODES_KF3 = [r.code for r in RULES if r.code.startswith("KF3")]
MO_KEYS = [k for k in all_field_keys() if k.startswith("mo") or k.split(".", 1)[-1].startswith("mo")]
COMMANDS = sorted(get_command(app).commands)  # type: ignore[attr-defined]


# --- generation ----------------------------------------------------------------------------


def test_shipped_scripts_are_what_the_generator_writes_now():
    expected = generator.render_all()
    assert sorted(expected) == ["_kforge", "kforge.bash", "kforge.fish"]
    stale = [name for name, text in expected.items() if (SHIPPED / name).read_text(encoding="utf-8") != text]
    assert stale == [], f"{stale} drifted from the app: run python -m kforge_cli.cli.completions"


def test_check_mode_reports_drift(tmp_path, capsys):
    assert generator.main(["--out-dir", str(tmp_path)]) == 0
    assert generator.main(["--check", "--out-dir", str(tmp_path)]) == 0
    (tmp_path / "kforge.fish").write_text("# edited by hand\n")
    assert generator.main(["--check", "--out-dir", str(tmp_path)]) == 1
    assert "kforge.fish is out of date" in capsys.readouterr().err


def test_the_wheel_ships_the_scripts():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = setuptools["package-data"]["kforge_cli"]
    assert sorted(shipped) == sorted(f"completions/{n}" for n in generator.SCRIPTS.values())
    assert not (REPO / "completions").exists()  # one copy: the package's


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completions_command_prints_the_script(kforge, shell):
    assert kforge("completions", shell, expect=0).stdout == (SHIPPED / generator.SCRIPTS[shell]).read_text()


def test_completions_command_rejects_another_shell(kforge):
    assert "tcsh" in kforge("completions", "tcsh", expect=2).stderr


def test_every_command_and_option_is_in_every_script():
    _, commands = generator.describe_app()
    assert sorted(c.name for c in commands) == COMMANDS
    assert {"validate", "explain", "freeze-plan", "fit", "convert", "rules"} <= set(COMMANDS)
    for name in generator.SCRIPTS.values():
        text = (SHIPPED / name).read_text()
        for command in commands:
            assert command.name in text
            for option in command.options:
                assert option.long.lstrip("-") in text, (name, command.name, option.long)


def test_values_come_from_the_declarations():
    _, commands = generator.describe_app()
    by_name = {c.name: {o.long: o for o in c.options} for c in commands}
    assert by_name["validate"]["--format"].choices == ("text", "concise", "json", "github", "sarif")
    assert by_name["freeze-plan"]["--format"].choices == ("text", "json", "svg")
    assert by_name["validate"]["--select"].values == generator.CODES
    assert by_name["explain"]["--field"].values == generator.KEY
    assert by_name["validate"]["--set"].values == generator.SETTING
    assert by_name["validate"]["--model-ckpt"].values == generator.PATH
    assert {c.name: c.positional for c in commands}["validate"] == generator.CONFIGS
    assert {c.name: c.choices for c in commands}["completions"] == ("bash", "zsh", "fish")


def test_descriptions_keep_abbreviations_whole():
    assert generator.first_sentence("Drop codes (e.g. KF4, i.e. a family). More text.") == \
        "Drop codes (e.g. KF4, i.e. a family)."
    assert generator.first_sentence("Rewrite the legacy \\[model.vlm] table.\n\nDetails.") == \
        "Rewrite the legacy [model.vlm] table."


# --- bash ------------------------------------------------------------------------------------

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


def bash_complete(*words: str) -> list[str]:
    """COMPREPLY for the command line ``words`` (the last one is being completed), as readline sets it up."""
    script = (f"source {SHIPPED / 'kforge.bash'}\n"
              'COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); _kforge\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    done = subprocess.run(["bash", "--norc", "-c", script, "bash", *words], check=False, capture_output=True, text=True,
                          cwd=EXAMPLES, timeout=30)
    assert done.returncode == 0, done.stderr
    return sorted(line for line in done.stdout.splitlines() if line)


@needs_bash
def test_bash_syntax():
    subprocess.run(["bash", "-n", str(SHIPPED / "kforge.bash")], check=True, timeout=30)


@needs_bash
@pytest.mark.parametrize(("words", "expected"), [
    (("kforge", ""), COMMANDS + ["--help", "--traceback", "--version", "-V", "-h"]),
    (("kforge", "fr"), ["freeze-plan"]),
    (("kforge", "validate", "--form"), ["--format"]),
    (("kforge", "validate", "--no-s"), ["--no-strict"]),
    (("kforge", "validate", "--format", ""), ["concise", "github", "json", "sarif", "text"]),
    (("kforge", "--traceback", "validate", "-f", "j"), ["json"]),
    (("kforge", "freeze-plan", "--format", ""), ["json", "svg", "text"]),
    # --format=<TAB> as readline splits it at "=" (COMP_WORDBREAKS) ...
    (("kforge", "validate", "--format", "="), ["concise", "github", "json", "sarif", "text"]),
    (("kforge", "validate", "--format", "=", "j"), ["json"]),
    # ... and as one word, when "=" is not a word break.
    (("kforge", "validate", "--format=j"), ["--format=json"]),
    (("kforge", "validate", "--world-size="), []),
    (("kforge", "validate", "vlm_m"), ["vlm_moma.toml", "vlm_mot.toml"]),
    (("kforge", "validate", "leg"), ["legacy"]),
    (("kforge", "explain", "-"), None),  # checked below: - for stdin is offered
    (("kforge", "rules", "KF30"), CODES_KF30),
    (("kforge", "validate", "--ignore", "KF30"), CODES_KF30),
    (("kforge", "validate", "--select", "KF301,KF3"), [f"KF301,{c}" for c in CODES_KF3 if c != "KF301"]),
    (("kforge", "validate", "--select=KF301,KF3"), [f"--select=KF301,{c}" for c in CODES_KF3 if c != "KF301"]),
    (("kforge", "explain", "--field", "mo"), MO_KEYS),
    (("kforge", "explain", "--field", "vlm.freeze["), ["vlm.freeze[].frozen", "vlm.freeze[].module"]),
    (("kforge", "validate", "--set", "model.d"), ["model.dim="]),
    (("kforge", "validate", "--set", "model.dim", "=", ""), []),
    (("kforge", "validate", "--set", ""), None),
    (("kforge", "completions", ""), ["bash", "fish", "zsh"]),
    (("kforge", "schema", "--"), ["--help", "--output", "--strict"]),
])
def test_bash_completes(words, expected):
    got = bash_complete(*words)
    if expected is not None:
        assert got == sorted(expected)
    elif words[-1] == "-":
        assert "-" in got and "--format" in got and "--field" in got
    else:
        assert "model.dim=" in got and all(k.endswith("=") for k in got)


@needs_bash
def test_bash_field_keys_include_moma_and_model():
    got = bash_complete("kforge", "explain", "--field", "mo")
    assert "model.dim" in got and "vlm.moma_experts_per_modality" in got
    assert all(k.startswith("model") or k.split(".", 1)[1].startswith("mo") for k in got)


# --- zsh -------------------------------------------------------------------------------------

needs_zsh = pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")

# An interactive zsh whose compadd also prints every match between two markers; the markers
# are computed ($((6*7))) so the echo of this text never looks like them.
ZSH_SETUP = r"""
PROMPT='' RPROMPT='' PS2=''
fpath=(%(fpath)s $fpath)
autoload -Uz compinit && compinit -u -D
bindkey '^I' complete-word
zstyle ':completion:*' insert-tab false
_kf_begin() { print -r -- "<<KF$((6*7))B>>" }
_kf_end() { print -r -- "<<KF$((6*7))E>>" }
compprefuncs=(_kf_begin)
comppostfuncs=(_kf_end)
compadd() {
    if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then
        builtin compadd "$@"
        return
    fi
    local -a __kf_hits
    builtin compadd -A __kf_hits "$@"
    (( $#__kf_hits )) && print -rl -- "${__kf_hits[@]}"
    builtin compadd "$@"
}
print -r -- "<<KF$((6*7))R>>"
"""


def zsh_complete(line: str) -> list[str]:
    """What zsh offers when TAB is pressed at the end of ``line``."""
    import pty

    master, slave = pty.openpty()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm", "HOME": str(EXAMPLES)}
    shell = subprocess.Popen(["zsh", "-f", "-i"], stdin=slave, stdout=slave, stderr=slave, cwd=EXAMPLES, env=env,
                             start_new_session=True)
    os.close(slave)
    received = b""

    def read_until(marker: bytes) -> None:
        nonlocal received
        deadline = time.monotonic() + 30
        while marker not in received:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"zsh did not answer: {received[-500:]!r}"
            received += os.read(master, 65536)

    try:
        os.write(master, (ZSH_SETUP % {"fpath": SHIPPED}).encode())
        read_until(b"<<KF42R>>")
        received = b""
        os.write(master, line.encode() + b"\t")
        read_until(b"<<KF42E>>")
    finally:
        shell.kill()
        shell.wait()
        os.close(master)
    text = received.decode(errors="replace").replace("\r", "")
    body = text.split("<<KF42B>>", 1)[1].split("<<KF42E>>", 1)[0]
    return sorted({line.strip() for line in body.splitlines() if line.strip() and "\x1b" not in line})


@needs_zsh
def test_zsh_syntax():
    subprocess.run(["zsh", "-n", str(SHIPPED / "_kforge")], check=True, timeout=30)


@needs_zsh
@pytest.mark.parametrize(("line", "expected"), [
    ("kforge fr", ["freeze-plan"]),
    ("kforge validate --no-s", ["--no-strict"]),
    ("kforge validate --format ", ["concise", "github", "json", "sarif", "text"]),
    ("kforge validate --format=", ["concise", "github", "json", "sarif", "text"]),
    ("kforge validate -f j", ["json"]),
    ("kforge validate vlm_m", ["vlm_moma.toml", "vlm_mot.toml"]),
    ("kforge rules KF30", CODES_KF30),
    ("kforge validate --select KF301,KF30", [c for c in CODES_KF30 if c != "KF301"]),
    ("kforge validate --select=KF301,KF30", [c for c in CODES_KF30 if c != "KF301"]),
    ("kforge explain --field mo", MO_KEYS),
    ("kforge validate --set model.d", ["model.dim"]),
    ("kforge completions ", ["bash", "fish", "zsh"]),
])
def test_zsh_completes(line, expected):
    assert zsh_complete(line) == sorted(expected)


# --- fish ------------------------------------------------------------------------------------

needs_fish = pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")


def fish_complete(line: str) -> list[str]:
    script = f"source {SHIPPED / 'kforge.fish'}; complete -C {line!r}"
    done = subprocess.run(["fish", "--no-config", "-c", script], check=False, capture_output=True, text=True,
                          cwd=EXAMPLES, timeout=30)
    assert done.returncode == 0, done.stderr
    return sorted(line.split("\t")[0] for line in done.stdout.splitlines() if line)


@needs_fish
def test_fish_syntax():
    subprocess.run(["fish", "--no-execute", str(SHIPPED / "kforge.fish")], check=True, timeout=30)


@needs_fish
@pytest.mark.parametrize(("line", "expected"), [
    ("kforge fr", ["freeze-plan"]),
    ("kforge validate --format ", ["concise", "github", "json", "sarif", "text"]),
    ("kforge validate --format=j", ["--format=json"]),
    ("kforge validate vlm_m", ["vlm_moma.toml", "vlm_mot.toml"]),
    ("kforge rules KF30", CODES_KF30),
    ("kforge validate --select KF301,KF30", [f"KF301,{c}" for c in CODES_KF30 if c != "KF301"]),
    ("kforge explain --field moma", [k for k in all_field_keys() if k.startswith("vlm.moma")]),
    ("kforge validate --set model.d", ["model.dim="]),
    ("kforge completions ", ["bash", "fish", "zsh"]),
])
def test_fish_completes(line, expected):
    assert fish_complete(line) == sorted(expected)
