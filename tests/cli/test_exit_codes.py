"""Exit codes when things go wrong inside kforge: a bug (3), an interruption (130), a closed pipe.

A bug inside one file's check is that file's KF000 finding: the other files of the call are still
checked and reported, the call exits 3 and says so in one line on stderr (the traceback only with
--traceback, accepted anywhere on the command line). Ctrl-C exits 130 with one line; output piped
into a reader that stops early (`| head -1`) is not an error and prints no traceback.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kforge_cli.rules import find_rule

REPO = Path(__file__).resolve().parents[2]
GOOD = REPO / "examples" / "vlm_joint_decoder.toml"
BROKEN = REPO / "examples" / "broken.toml"  # errors of its own, which must still be reported
PLANTED = 4242  # train.seed of the file whose check hits the planted bug
ENGINE_COMMANDS = {  # command -> its JSON document's list of per-file entries
    "validate": "files", "explain": "configs", "freeze-plan": "plans", "fit": "plans"}


class PlantedBug(ZeroDivisionError):
    pass


@pytest.fixture
def folder(tmp_path) -> Path:
    (tmp_path / ".git").mkdir()  # no [tool.kforge] table of this repository applies
    return tmp_path


@pytest.fixture
def buggy(folder, monkeypatch) -> Path:
    """A valid config whose check hits a bug planted in a rule's check (KF202's); the others are unaffected."""
    rule = find_rule("KF202")

    def planted(check):
        def run_or_fail(subject):
            if subject.job.train.seed == PLANTED:
                raise PlantedBug("planted in a rule check")
            return check.function(subject)
        return dataclasses.replace(check, function=run_or_fail)

    monkeypatch.setattr(rule, "checks", [planted(check) for check in rule.checks])
    path = folder / "buggy.toml"
    path.write_text(GOOD.read_text().replace("[train]\n", f"[train]\nseed = {PLANTED}\n", 1))
    assert "seed =" not in GOOD.read_text()
    return path


def _one_line(stderr: str) -> str:
    assert stderr.endswith("\n") and stderr.count("\n") == 1, stderr
    return stderr


# -- exit 3: a bug ----------------------------------------------------------------------------------


def test_a_bug_in_one_files_check_is_that_files_finding_and_exit_3(kforge, buggy):
    run = kforge("validate", "--format", "json", GOOD, buggy, BROKEN, expect=3)
    line = _one_line(run.stderr)
    assert str(buggy) in line and "PlantedBug" in line and "bug in kforge" in line
    assert "Traceback" not in run.stderr
    good, bug, broken = run.json()["files"]
    assert good["path"] == str(GOOD) and good["valid"] is True
    (finding,) = bug["findings"]
    assert (finding["code"], finding["severity"], bug["valid"]) == ("KF000", "error", False)
    assert "PlantedBug: planted in a rule check" in finding["message"] and finding["hint"]
    # The file after the buggy one is checked exactly as it is without the bug.
    alone = kforge("validate", "--format", "json", BROKEN, expect=1).json()["files"][0]
    assert broken == alone and broken["findings"]


@pytest.mark.parametrize("command", sorted(ENGINE_COMMANDS))
def test_every_command_reports_the_bug_the_same_way(kforge, buggy, command):
    run = kforge(command, "--format", "json", GOOD, buggy, expect=3)
    assert "PlantedBug" in _one_line(run.stderr)
    entries = run.json()[ENGINE_COMMANDS[command]]
    assert [entry["path"] for entry in entries] == [str(GOOD), str(buggy)]
    assert [f["code"] for f in entries[1]["findings"]] == ["KF000"]


def test_the_text_report_shows_the_bug_as_the_files_finding(kforge, buggy):
    run = kforge("validate", GOOD, buggy, expect=3)
    assert "KF000" in run.stdout and "PlantedBug" in run.stdout and f"✓ {GOOD}" in run.stdout
    _one_line(run.stderr)


@pytest.mark.parametrize("where", ["first", "after the command", "between the paths", "last"])
def test_traceback_flag_anywhere_prints_the_traceback(kforge, buggy, where):
    args = ["validate", "--format", "json", str(GOOD), str(buggy)]
    at = {"first": 0, "after the command": 1, "between the paths": 4, "last": len(args)}[where]
    args.insert(at, "--traceback")
    run = kforge(*args, expect=3)
    assert "Traceback (most recent call last)" in run.stderr
    assert "PlantedBug: planted in a rule check" in run.stderr and "run_or_fail" in run.stderr
    assert run.stderr.splitlines()[-1].startswith(f"kforge: internal error while checking {buggy}")
    assert [f["valid"] for f in run.json()["files"]] == [True, False]
    assert "KFORGE_TRACEBACK" not in os.environ  # the switch ends with the call


def test_a_bug_outside_the_checks_is_one_line_and_exit_3(kforge, monkeypatch):
    from kforge_cli.cli import reporters

    def broken_reporter(*args, **kwargs):
        raise PlantedBug("planted in the JSON reporter")

    monkeypatch.setattr(reporters, "validate_document", broken_reporter)
    run = kforge("validate", "--format", "json", GOOD, expect=3)
    line = _one_line(run.stderr)
    assert line.startswith("kforge: internal error (PlantedBug: planted in the JSON reporter)")
    assert "--traceback" in line and run.stdout == ""
    run = kforge("validate", "--format", "json", GOOD, "--traceback", expect=3)
    assert "Traceback (most recent call last)" in run.stderr and "broken_reporter" in run.stderr


# -- exit 130: Ctrl-C -------------------------------------------------------------------------------

def _interrupt_during(command: str, monkeypatch) -> list[str]:
    """Arguments of a run of ``command`` that is interrupted while it works (as Ctrl-C would)."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    if command == "convert":
        from kforge_cli import convert

        monkeypatch.setattr(convert, "convert_text", interrupted)
        return ["convert", str(REPO / "examples" / "legacy" / "vlm_mot_staged.legacy.toml")]
    from kforge_cli.lint import engine

    monkeypatch.setattr(engine, "_check", interrupted)
    return [command, str(GOOD)]


@pytest.mark.parametrize("command", [*sorted(ENGINE_COMMANDS), "convert"])
def test_ctrl_c_exits_130_without_output(kforge, monkeypatch, command):
    run = kforge(*_interrupt_during(command, monkeypatch), expect=130)
    assert run.stdout == "" and "Traceback" not in run.stderr


@pytest.mark.parametrize("command", [*sorted(ENGINE_COMMANDS), "convert"])
def test_ctrl_c_says_so_in_one_line(kforge, monkeypatch, command):
    run = kforge(*_interrupt_during(command, monkeypatch), expect=130)
    assert _one_line(run.stderr) == "kforge: interrupted\n"


INTERRUPTIBLE = textwrap.dedent("""
    # kforge validate, with its check of the file made slow: announces it has started, then waits.
    import sys, time
    from kforge_cli.lint import engine
    from kforge_cli.cli.main import main

    def slow_check(*args, **kwargs):
        print("checking", flush=True)
        time.sleep(120)

    engine._check = slow_check
    sys.exit(main(["validate", sys.argv[1]]))
""")


def _interrupted(command: list[str], started) -> subprocess.CompletedProcess:
    """Run ``command``, send it SIGINT once ``started(child)`` says it is inside the command, collect it."""
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                                                    os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env, cwd=REPO)
    try:
        started(child)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
        child.wait()
    return subprocess.CompletedProcess(command, child.returncode, out.decode(), err.decode())


def _announced(child: subprocess.Popen) -> None:
    assert child.stdout.readline() == b"checking\n"


@pytest.mark.skipif(os.name != "posix", reason="SIGINT")
def test_sigint_during_a_slow_check_exits_130():
    done = _interrupted([sys.executable, "-c", INTERRUPTIBLE, str(GOOD)], _announced)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "kforge: interrupted\n" and done.stdout == ""


def _reading_stdin(child: subprocess.Popen) -> None:
    """Wait until the process is blocked reading its standard input (Linux: /proc/PID/syscall)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(f"/proc/{child.pid}/syscall") as state:
            if state.read().split()[:2] == [READ_SYSCALL, "0x0"]:
                return
        time.sleep(0.01)
    raise AssertionError("kforge never blocked on reading standard input")


READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}.get(os.uname().machine if os.name == "posix" else "")


@pytest.mark.skipif(READ_SYSCALL is None or not os.path.exists(f"/proc/{os.getpid()}/syscall"),
                    reason="finds the blocked read through Linux's /proc/PID/syscall")
def test_sigint_while_waiting_for_stdin_exits_130():
    # The real entry point, unpatched: `kforge validate -` waiting for a config on a pipe that stays open.
    done = _interrupted([sys.executable, "-m", "kforge_cli", "validate", "-"], _reading_stdin)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "kforge: interrupted\n" and done.stdout == ""


# -- a closed pipe ----------------------------------------------------------------------------------


def _pipeline(kforge_args: str, reader: str, folder: Path) -> tuple[str, list[int], str]:
    """stdout of ``kforge ARGS | READER`` in bash, the exit status of both, and kforge's stderr."""
    err = folder / "kforge.err"
    script = f'{sys.executable} -m kforge_cli {kforge_args} 2>{err} | {reader}; echo "${{PIPESTATUS[@]}}"'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "NO_COLOR": "1"}, check=False)
    *lines, statuses = done.stdout.splitlines()
    return "\n".join(lines), [int(s) for s in statuses.split()], err.read_text()


def test_validate_examples_piped_into_head(folder):
    first, (kforge_status, head_status), err = _pipeline("validate examples", "head -1", folder)
    assert first == "✗ examples/broken.toml  invalid: 4 errors, 2 warnings"
    assert err == "" and head_status == 0
    # 1 for broken.toml's errors when the whole report fit in the pipe before head closed it, else 0.
    assert kforge_status in (0, 1)


WARNED = """\
# A valid job with six warnings: each copy prints a dozen lines.
[model]
dim = 64.0
n_heads = 4.0
n_kv_heads = 4
n_layers = 2.0
max_seq_len = 512
[train]
seq_len = 512
max_steps = 100
[scheduler]
warmup_steps = 2000
[data]
dataset_path = "/data/tok"
[vision_encoder]
type = "random"
[adapter]
type = "linear"
"""
@pytest.fixture(scope="module")
def piped_past_the_pipe_size(tmp_path_factory) -> tuple[str, list[int], str]:
    """`kforge validate` of 200 valid configs (~240 KB of text, far more than a pipe holds) into `head -1`:
    kforge is still writing when head exits, so its next write fails with EPIPE."""
    folder = tmp_path_factory.mktemp("piped")
    (folder / ".git").mkdir()
    for i in range(200):
        (folder / f"job_{i:03d}.toml").write_text(WARNED)
    return _pipeline(f"validate {folder}", "head -1", folder)


def test_a_reader_that_stops_early_gets_no_traceback(kforge, tmp_path, piped_past_the_pipe_size):
    (tmp_path / ".git").mkdir()
    (tmp_path / "job.toml").write_text(WARNED)
    kforge("validate", tmp_path / "job.toml", expect=0)  # the copies are valid
    first, (kforge_status, head_status), err = piped_past_the_pipe_size
    assert first.startswith("✓ ") and first.endswith("job_000.toml  valid, 6 warnings")
    assert err == "" and head_status == 0


def test_a_reader_that_stops_early_is_not_a_failure(piped_past_the_pipe_size):
    _, (kforge_status, _), _ = piped_past_the_pipe_size
    assert kforge_status == 0
