"""`kforge convert --in-place` and `-o` lose nothing: concurrent runs, kills, owners,
links, odd files and leftovers of interrupted runs (on the configs of examples/legacy).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kforge_cli.convert import convert_text

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "legacy" / "vlm_mot_staged.legacy.toml"
TEMP_SUFFIX = ".kforge-tmp"

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file semantics")
# Child processes import this checkout's kforge_cli, whatever else is installed.
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(TEMP_SUFFIX))


@pytest.fixture(scope="module")
def legacy_text() -> str:
    return EXAMPLE.read_text()


@pytest.fixture(scope="module")
def converted_text(legacy_text: str) -> str:
    return convert_text(legacy_text).text


@pytest.fixture
def job(tmp_path: Path, legacy_text: str) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(legacy_text)
    return path


@contextlib.contextmanager
def hang_guard(seconds: int = 60):
    """Fail instead of hanging forever if a read blocks (not a timing assertion)."""
    def expired(signum, frame):
        raise AssertionError(f"kforge blocked for {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- concurrent runs -------------------------------------------------------------------------------

WORKER = textwrap.dedent("""
    import contextlib, io, json, sys
    from kforge_cli.cli.main import main
    for line in sys.stdin:
        args = json.loads(line)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["convert", *args])
        print(json.dumps([code, err.getvalue()]), flush=True)
""")


@posix_only
def test_concurrent_in_place_runs_keep_the_original_as_backup(tmp_path, legacy_text):
    # A large file makes each conversion long enough for the runs to overlap.
    legacy = legacy_text + "".join(f"# note {i:05d}: " + "lorem ipsum " * 4 + "\n" for i in range(6000))
    converted = convert_text(legacy).text.encode()
    legacy_bytes = legacy.encode()
    target = tmp_path / "job.toml"
    backup = tmp_path / "job.toml.bak"
    workers = [subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                cwd=tmp_path, env=CHILD_ENV) for _ in range(4)]
    try:
        for round_number in range(24):
            target.write_bytes(legacy_bytes)
            # Even rounds start without a backup; odd ones with an older one that --force replaces.
            force = round_number % 2 == 1
            if force:
                backup.write_bytes(b"# an older backup\n")
            else:
                backup.unlink(missing_ok=True)
            args = ["--in-place", *(["--force"] if force else []), str(target)]
            for worker in workers:
                worker.stdin.write((json.dumps(args) + "\n").encode())
                worker.stdin.flush()
            results = [json.loads(worker.stdout.readline()) for worker in workers]
            assert backup.read_bytes() == legacy_bytes, f"round {round_number}: the backup lost the original"
            assert target.read_bytes() == converted, f"round {round_number}"
            assert [code for code, _ in results] == [0] * len(workers), results
            # Exactly one run converts; the others wait for it, read again and leave the file alone.
            assert sum("converted" in err for _, err in results) == 1, results
            assert sum("already in the current layout" in err for _, err in results) == len(workers) - 1
            assert leftovers(tmp_path) == []
    finally:
        for worker in workers:
            worker.stdin.close()
            worker.wait(timeout=60)


@posix_only
def test_a_run_waiting_for_the_lock_reads_the_file_again(kforge, job, converted_text):
    """Hold the lock as a running convert would, replace the file as it would, release:
    the waiting run must see the converted text and leave it (and the backup) alone."""
    import fcntl

    holder = os.open(job, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    child = subprocess.Popen([sys.executable, "-m", "kforge_cli", "convert", "--in-place", str(job)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=job.parent,
                             env=CHILD_ENV)
    try:
        _wait_until_blocked_on_a_lock(child.pid)
        staged = job.with_name("staged")
        staged.write_text(converted_text)
        os.replace(staged, job)
    finally:
        os.close(holder)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert "already in the current layout" in err
    assert job.read_text() == converted_text
    assert not Path(f"{job}.bak").exists()


def _wait_until_blocked_on_a_lock(pid: int) -> None:
    """Until ``pid`` waits in flock (/proc/locks lists waiters with "->"); on systems
    without /proc/locks, go on: the outcome is the same if it has not opened the file yet."""
    locks = Path("/proc/locks")
    if not locks.exists():
        return
    for _ in range(6000):
        if any(line.split()[1] == "->" and line.split()[5] == str(pid)
               for line in locks.read_text().splitlines() if len(line.split()) > 5):
            return
        time.sleep(0.01)


# -- killed at random points ---------------------------------------------------------------------

KILL_DRIVER = textwrap.dedent("""
    import contextlib, io, os, sys
    from kforge_cli.cli.main import main
    folder, legacy = sys.argv[1], open(sys.argv[2], "rb").read()
    print("ready", flush=True)
    for i in range(10_000):
        target = os.path.join(folder, f"job{i % 3}.toml")
        with open(target + ".staging", "wb") as handle:
            handle.write(legacy)
        os.replace(target + ".staging", target)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["convert", "--in-place", target])  # no --force: nothing may make it refuse
        if code != 0:
            print(f"exit {code}: {err.getvalue()!r}", flush=True)
""")


@posix_only
def test_killed_at_any_point_leaves_old_or_new_and_the_next_run_proceeds(kforge, tmp_path, legacy_text):
    legacy = legacy_text + "".join(f"# training note {i:06d}: " + "lorem ipsum " * 5 + "\n" for i in range(20_000))
    old, new = legacy.encode(), convert_text(legacy).text.encode()
    source = tmp_path / "large.legacy.toml"
    source.write_bytes(old)
    workdir = tmp_path / "run"
    workdir.mkdir()
    rng = random.Random(20250611)
    for attempt in range(12):
        refusals = _kill_once(workdir, source, rng, on_temp_file=attempt % 2 == 0)
        assert refusals == [], f"attempt {attempt}: {refusals}"
        for path in sorted(workdir.iterdir()):
            if path.name.endswith((TEMP_SUFFIX, ".staging")):
                continue  # debris of the killed run; the next run removes ours
            content = path.read_bytes()
            if path.name.endswith(".bak"):
                assert content == old, f"attempt {attempt}: {path.name} is not the original"
            else:
                assert content in (old, new), f"attempt {attempt}: {path.name} is half-written"
    # Whatever the kills left, a plain run (no --force) finishes the job and cleans up.
    targets = sorted(str(p) for p in workdir.glob("job*.toml"))
    kforge("convert", "--in-place", *targets, expect=0)
    for target in targets:
        assert Path(target).read_bytes() == new
        assert Path(f"{target}.bak").read_bytes() == old
    assert leftovers(workdir) == []


def _kill_once(workdir: Path, legacy_path: Path, rng: random.Random, on_temp_file: bool) -> list[str]:
    child = subprocess.Popen([sys.executable, "-c", KILL_DRIVER, str(workdir), str(legacy_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=workdir, env=CHILD_ENV)
    try:
        assert child.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + rng.uniform(0.05, 0.6)
        while time.monotonic() < deadline or on_temp_file:
            if on_temp_file and any(name.endswith(TEMP_SUFFIX) for name in os.listdir(workdir)):
                time.sleep(rng.uniform(0, 0.003))  # somewhere in write / fsync / rename
                break
            if time.monotonic() > deadline + 5:
                break
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        out = child.communicate(timeout=30)[0]
    return [line for line in out.decode().splitlines() if line.startswith("exit ")]


# -- what an interrupted run leaves behind ----------------------------------------------------------


@posix_only
def test_a_backup_link_left_by_a_killed_run_is_the_backup(kforge, job, legacy_text, converted_text):
    # Killed after making FILE.bak (a hard link to FILE) and before the rename.
    os.link(job, f"{job}.bak")
    run = kforge("convert", "--in-place", job, expect=0)
    assert "original kept as" in run.stderr and "hard link" not in run.stderr
    assert job.read_text() == converted_text
    assert Path(f"{job}.bak").read_text() == legacy_text


@posix_only
def test_a_backup_link_left_by_a_killed_run_does_not_count_as_a_hard_link_without_backup(kforge, job,
                                                                                         converted_text):
    os.link(job, f"{job}.bak")
    kforge("convert", "--in-place", "--no-backup", job, expect=0)
    assert job.read_text() == converted_text


def test_a_backup_that_already_holds_the_original_is_kept(kforge, job, legacy_text, converted_text):
    Path(f"{job}.bak").write_text(legacy_text)
    kforge("convert", "--in-place", job, expect=0)
    assert job.read_text() == converted_text
    assert Path(f"{job}.bak").read_text() == legacy_text


def test_stale_temporary_files_of_dead_runs_are_removed(kforge, job, tmp_path, converted_text):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [tmp_path / f".job.toml.{dead.pid}.0123abcd{TEMP_SUFFIX}",
             tmp_path / f".job.toml.bak.{dead.pid}.89abcdef{TEMP_SUFFIX}"]
    live = tmp_path / f".job.toml.{os.getpid()}.0123abcd{TEMP_SUFFIX}"  # a running process: not debris
    other = tmp_path / f".other.toml.{dead.pid}.0123abcd{TEMP_SUFFIX}"  # another file's: not ours to judge
    for path in [*stale, live, other]:
        path.write_text("partial")
    run = kforge("convert", "--in-place", job, expect=0)
    assert "removed 2 temporary file(s) left by an interrupted kforge convert" in run.stderr
    assert leftovers(tmp_path) == sorted([live.name, other.name])
    assert job.read_text() == converted_text


def test_stale_temporary_files_are_removed_when_writing_out(kforge, job, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".out.toml.{dead.pid}.0123abcd{TEMP_SUFFIX}").write_text("partial")
    kforge("convert", job, "-o", tmp_path / "out.toml", expect=0)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("failing", ["link", "fsync", "replace"])
def test_a_failed_write_leaves_the_file_and_no_new_backup(kforge, job, tmp_path, monkeypatch, legacy_text,
                                                         failing):
    real = getattr(os, failing)

    def broken(*args, **kwargs):
        if failing == "fsync" and not stat.S_ISREG(os.fstat(args[0]).st_mode):
            return real(*args, **kwargs)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, failing, broken)
    run = kforge("convert", "--in-place", job, expect=1)
    monkeypatch.undo()
    assert "Input/output error" in run.stderr and "left unchanged" in run.stderr
    assert job.read_text() == legacy_text
    assert not Path(f"{job}.bak").exists()
    assert leftovers(tmp_path) == []


def test_without_hard_links_the_backup_is_a_copy(kforge, job, monkeypatch, legacy_text, converted_text):
    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    os.chmod(job, 0o604)
    monkeypatch.setattr(os, "link", no_links)
    kforge("convert", "--in-place", job, expect=0)
    monkeypatch.undo()
    backup = Path(f"{job}.bak")
    assert job.read_text() == converted_text and backup.read_text() == legacy_text
    assert stat.S_IMODE(backup.stat().st_mode) == 0o604
    assert leftovers(job.parent) == []


# -- owner, group, mode, attributes ---------------------------------------------------------------


@posix_only
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
def test_owner_group_and_mode_are_kept_when_run_as_root(kforge, job, converted_text):
    os.chown(job, 12345, 23456)
    os.chmod(job, 0o640)
    run = kforge("convert", "--in-place", job, expect=0)
    assert "note:" not in run.stderr
    after = job.stat()
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (12345, 23456, 0o640)
    assert job.read_text() == converted_text
    backup = Path(f"{job}.bak").stat()
    assert (backup.st_uid, backup.st_gid) == (12345, 23456)


@posix_only
def test_an_owner_that_cannot_be_kept_is_reported_in_one_line(kforge, job, monkeypatch, converted_text):
    real_fstat = os.fstat
    mine = job.stat()
    stranger = (mine.st_uid + 4242, mine.st_gid + 4242)

    def fstat(fd):  # the file appears to belong to somebody else
        result = real_fstat(fd)
        if result.st_ino == mine.st_ino:
            fields = list(result)
            fields[4:6] = stranger
            return os.stat_result(fields)
        return result

    def fchown(fd, uid, gid):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "fstat", fstat)
    monkeypatch.setattr(os, "fchown", fchown)
    run = kforge("convert", "--in-place", job, expect=0)
    monkeypatch.undo()
    notes = [line for line in run.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1
    assert f"could not keep the owner {stranger[0]} and group {stranger[1]} (not permitted)" in notes[0]
    assert job.read_text() == converted_text


@posix_only
def test_extended_attributes_are_kept(kforge, job):
    try:
        os.setxattr(job, "user.kforge.test", b"kept")
    except OSError as exc:
        pytest.skip(f"no user extended attributes here ({exc.strerror})")
    kforge("convert", "--in-place", "--no-backup", job, expect=0)
    assert os.getxattr(job, "user.kforge.test") == b"kept"


def test_mode_is_kept(kforge, job):
    os.chmod(job, 0o751)
    kforge("convert", "--in-place", job, expect=0)
    assert stat.S_IMODE(job.stat().st_mode) == 0o751


# -- hard links and symlinks ---------------------------------------------------------------------


@posix_only
def test_a_file_with_other_hard_links_is_refused_without_force(kforge, job, legacy_text, converted_text):
    other = job.with_name("other-name.toml")
    os.link(job, other)
    run = kforge("convert", "--in-place", job, expect=1)
    assert "has 1 other hard link" in run.stderr and "--force" in run.stderr
    assert job.read_text() == legacy_text and not Path(f"{job}.bak").exists()
    run = kforge("convert", "--in-place", "--force", job, expect=0)
    assert "the other name(s) still hold the legacy text" in run.stderr
    assert job.read_text() == converted_text and other.read_text() == legacy_text


@posix_only
def test_a_symlink_is_followed_and_kept(kforge, job, tmp_path, legacy_text, converted_text):
    elsewhere = tmp_path / "configs"
    elsewhere.mkdir()
    link = elsewhere / "link.toml"
    link.symlink_to(job)
    run = kforge("convert", "--in-place", link, expect=0)
    assert link.is_symlink() and os.readlink(link) == str(job)
    assert job.read_text() == converted_text
    assert Path(f"{link}.bak").read_text() == legacy_text  # the backup sits beside the name given
    assert f"original kept as {link}.bak" in run.stderr


@posix_only
def test_a_symlink_loop_is_reported(kforge, tmp_path, job):
    loop = tmp_path / "loop.toml"
    loop.symlink_to(loop)
    run = kforge("convert", "--in-place", loop, job, expect=1)
    assert f"{loop}: is a symlink loop" in run.stderr
    assert "converted" in run.stderr  # the other file still ran


# -- odd inputs ----------------------------------------------------------------------------------------


@posix_only
@pytest.mark.parametrize("mode", [[], ["--in-place"], ["--check"], ["-o", "out.toml"]])
def test_a_fifo_is_refused_without_blocking(kforge, tmp_path, job, monkeypatch, mode):
    monkeypatch.chdir(tmp_path)
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    files = [fifo] if mode[:1] == ["-o"] else [fifo, job]
    with hang_guard():
        run = kforge("convert", *mode, *files, expect=1)
    assert f"{fifo}: is a FIFO (named pipe), not a regular file" in run.stderr
    assert not (tmp_path / "out.toml").exists()


@posix_only
def test_a_device_is_refused(kforge):
    with hang_guard():
        run = kforge("convert", "/dev/zero", expect=1)
    assert "/dev/zero: is a device, not a regular file" in run.stderr


def test_a_huge_file_is_refused_after_reading_the_cap(kforge, tmp_path, job):
    huge = tmp_path / "huge.toml"
    with open(huge, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)  # sparse: costs nothing on disk
    run = kforge("convert", "--check", huge, job, expect=1)
    assert f"{huge}: larger than 8 MiB; not a job config" in run.stderr
    assert f"would convert {job}" in run.stderr


def test_unreadable_file_is_reported_and_the_rest_still_runs(kforge, tmp_path, job):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("root reads everything")
    locked = tmp_path / "locked.toml"
    locked.write_text("[model]\n")
    os.chmod(locked, 0)
    run = kforge("convert", "--in-place", locked, job, expect=1)
    assert f"{locked}: permission denied" in run.stderr
    assert f"converted {job} in place" in run.stderr


# -- -o --------------------------------------------------------------------------------------------


def test_output_that_already_holds_the_result_is_left_alone(kforge, job, tmp_path, converted_text):
    out = tmp_path / "out.toml"
    out.write_text(converted_text)
    before = out.stat().st_mtime_ns
    run = kforge("convert", job, "-o", out, expect=0)
    assert "already holds the converted text" in run.stderr
    assert out.stat().st_mtime_ns == before


def test_output_replaced_with_force_keeps_its_mode(kforge, job, tmp_path, converted_text):
    out = tmp_path / "out.toml"
    out.write_text("older\n")
    os.chmod(out, 0o600)
    kforge("convert", job, "-o", out, "--force", expect=0)
    assert out.read_text() == converted_text and stat.S_IMODE(out.stat().st_mode) == 0o600


def test_output_into_a_fifo_is_refused(kforge, job, tmp_path):
    fifo = tmp_path / "out.toml"
    os.mkfifo(fifo)
    with hang_guard():
        run = kforge("convert", job, "-o", fifo, "--force", expect=1)
    assert "is a FIFO" in run.stderr
