"""Hostile checkpoints end to end: bounded time, memory and output, a clean verdict, never a crash.

The attacks (tests/unit/ckpt_attacks.py) are generated once per session. At
least one per row of the issue-13 table (``e2e``) is checked with
``python -m kforge_cli validate --format json --model-ckpt <attack> <config>``
(the engine's checkpoint stage, which every command shares, without torch's
start-up cost) in a subprocess, two at a time, under an address-space limit and a hang
guard. Every attack that is not slow by design also runs in-process through
``read_checkpoint``.

Memory: a normal run of that command needs about 60 MiB of address space
(CPython 3.11, torch installed but not imported: measured by bisecting
RLIMIT_AS with `prlimit --as=N` until a clean run fails). The limit below is 1 GiB above
that, so an attack that makes kforge allocate a gigabyte dies with a
MemoryError (exit 3) or a signal, and fails the test.
Time: the readers' caps keep every attack to seconds; the timeout only
catches a hang or a runaway, it is not a performance assertion.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("torch")  # builds the clean checkpoint the attacks tamper with

from ckpt_attacks import ATTACKS, Attack
from ckpt_factory import save_kf_step

from kforge_cli.checkpoint import CheckpointError, read_checkpoint
from kforge_cli.config.loader import load_job_text
from kforge_cli.model import build_meta_model

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("ckpt_bounds_job.toml")
ADDRESS_SPACE_LIMIT = (60 + 1024) * 2**20
HANG_GUARD_SECONDS = 120
MAX_OUTPUT_BYTES = 4 * 2**20
PARALLEL = 2

TABLE = [a for a in ATTACKS if a.e2e]


@dataclass
class Outcome:
    code: int | None  # None: killed by the hang guard
    stdout: bytes
    stderr: bytes
    output_bytes: int
    seconds: float
    cpu_seconds: float
    peak_rss_mib: int

    def codes(self) -> set[str]:
        doc = json.loads(self.stdout)
        return {f["code"] for file in doc["files"] for f in file["findings"]}


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


def _run_all(jobs: dict[str, Path]) -> dict[str, Outcome]:
    """``validate`` on each checkpoint, PARALLEL at a time, without threads (the
    address-space limit is set between fork and exec, which threads make unsafe)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", NO_COLOR="1",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    pending = list(jobs.items())
    running: dict[int, tuple] = {}
    outcomes: dict[str, Outcome] = {}
    while pending or running:
        while pending and len(running) < PARALLEL:
            name, ckpt = pending.pop(0)
            out, err = _Capture(), _Capture()
            proc = subprocess.Popen(
                [sys.executable, "-m", "kforge_cli", "validate", "--format", "json",
                 "--model-ckpt", str(ckpt), str(CONFIG)],
                stdout=out.fd, stderr=err.fd, stdin=subprocess.DEVNULL, cwd=REPO_ROOT, env=env,
                preexec_fn=_limit_address_space)
            running[proc.pid] = (name, proc, out, err, time.monotonic())
        for pid in list(running):
            name, proc, out, err, started = running[pid]
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if not done:
                if time.monotonic() - started > HANG_GUARD_SECONDS:
                    proc.kill()
                continue
            proc.returncode = os.waitstatus_to_exitcode(status)
            killed = time.monotonic() - started > HANG_GUARD_SECONDS
            outcomes[name] = Outcome(None if killed else proc.returncode, out.take(), err.take(),
                                     out.size + err.size, time.monotonic() - started,
                                     usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024)
            del running[pid]
        time.sleep(0.02)
    return outcomes


class _Capture:
    """A temporary file a child writes to; read back (at most MAX_OUTPUT_BYTES) and removed."""

    def __init__(self) -> None:
        self.fd, self.path = tempfile.mkstemp(prefix="kforge-bounds-")
        self.size = 0

    def take(self) -> bytes:
        os.close(self.fd)
        self.size = os.path.getsize(self.path)
        with open(self.path, "rb") as handle:
            data = handle.read(MAX_OUTPUT_BYTES)
        os.unlink(self.path)
        return data


@pytest.fixture(scope="session")
def clean_step(tmp_path_factory) -> Path:
    """A complete step_N directory of a checkpoint that matches CONFIG."""
    job = load_job_text(CONFIG.read_text()).job
    shapes = {p.name: tuple(p.shape) for p in build_meta_model(job).parameters}
    return save_kf_step(tmp_path_factory.mktemp("clean") / "run", 5, shapes=shapes)


@pytest.fixture(scope="session")
def attack_paths(tmp_path_factory, clean_step) -> dict[str, Path]:
    paths = {}
    for index, attack in enumerate(ATTACKS):
        scratch = tmp_path_factory.mktemp(f"attack{index}")
        paths[attack.name] = attack.build(scratch, clean_step)
    return paths


@pytest.fixture(scope="session")
def outcomes(attack_paths, clean_step) -> dict[str, Outcome]:
    jobs = {"clean": clean_step.parent}
    jobs.update((a.name, attack_paths[a.name]) for a in TABLE)
    return _run_all(jobs)


def test_a_clean_checkpoint_passes_under_the_same_limits(outcomes) -> None:
    clean = outcomes["clean"]
    assert clean.code == 0, clean.stderr.decode(errors="replace")[-2000:]
    assert not {c for c in clean.codes() if c.startswith("KF5")}


@pytest.mark.parametrize("attack", TABLE, ids=lambda a: f"row{a.row}: {a.name}")
def test_attack_end_to_end(outcomes, attack: Attack) -> None:
    result = outcomes[attack.name]
    where = (f"{attack.name}: exit {result.code} after {result.seconds:.1f}s "
             f"({result.cpu_seconds:.1f}s CPU), peak {result.peak_rss_mib} MiB")
    assert result.code is not None, f"{where}: still running after {HANG_GUARD_SECONDS}s"
    assert result.code in (0, 1), f"{where}\n{result.stderr.decode(errors='replace')[-3000:]}"
    assert b"Traceback" not in result.stderr, where
    assert result.output_bytes < MAX_OUTPUT_BYTES, f"{where}: printed {result.output_bytes} bytes"
    codes = result.codes()
    if attack.refuse:
        assert result.code == 1 and "KF505" in codes, f"{where}: {sorted(codes)}"
    else:
        assert "KF505" not in codes, f"{where}: {sorted(codes)}"


@pytest.mark.parametrize("attack", [a for a in ATTACKS if not a.slow], ids=lambda a: a.name)
def test_attack_in_process(attack_paths, attack: Attack) -> None:
    if attack.refuse:
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(attack_paths[attack.name])
        assert len(err.value.message) < 2000
    else:
        read_checkpoint(attack_paths[attack.name])
