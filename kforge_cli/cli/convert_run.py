"""What `kforge convert` does: read files, call the converter, print, diff, check or write.

Data (converted text, diffs) goes to stdout; status and errors go to stderr.
Writes are atomic: a temporary file in the target's directory is fsynced and
renamed over the target, so an interrupted run leaves either the old or the new
file. Imported lazily by the command module.
"""

from __future__ import annotations

# Job configs are kilobytes; a cap keeps `kforge convert /dev/zero` finite.
MAX_INPUT_BYTES = 8 * 1024 * 1024


def usage_error(
    files: list[str], output: str | None, in_place: bool, no_backup: bool, force: bool, check: bool,
) -> tuple[str, str] | None:
    if output is not None and in_place:
        return "-o/--output and --in-place cannot be combined", "pick one way to write the result"
    if output is not None and len(files) > 1:
        return (f"-o/--output takes a single FILE, got {len(files)}",
                "use --in-place to convert several files, or run once per file")
    if check and (output is not None or in_place):
        return ("--check changes nothing; it cannot be combined with -o or --in-place",
                "drop --check to write the converted file")
    if no_backup and not in_place:
        return "--no-backup only applies to --in-place", "add --in-place or drop --no-backup"
    if force and output is None and not in_place:
        return "--force only applies when writing (-o or --in-place)", "drop --force"
    return None


def run(
    files: list[str], *, output: str | None, in_place: bool, backup: bool, force: bool,
    check: bool, diff: bool,
) -> bool:
    """Process every file; returns True when the exit status should be 1."""
    from kforge_cli.config.legacy import (
        ConversionConflict,
        ConversionError,
        TomlSyntaxError,
        convert_text,
    )

    failed = False
    pending: list[str] = []
    current = 0
    printing = output is None and not in_place and not check and not diff
    for path in files:
        text, problem = _read(path)
        if problem is not None:
            _complain(f"{path}: {problem}")
            failed = True
            continue
        try:
            result = convert_text(text)
        except TomlSyntaxError as exc:
            _complain(f"{path}: {exc.message}")
            failed = True
            continue
        except ConversionConflict as exc:
            first, *details, advice = exc.message.splitlines()
            _complain(f"{path}: cannot convert: {first}", [d.strip() for d in details], advice)
            failed = True
            continue
        except ConversionError as exc:
            _complain(f"{path}: cannot convert: {exc.message}")
            failed = True
            continue

        if diff and result.changed:
            _write_stdout(_unified_diff(path, text, result.text))
        if printing:
            if len(files) > 1:
                _write_stdout(f"# ==> {path} <==\n")
            _write_stdout(result.text)
            if len(files) > 1 and result.text and not result.text.endswith("\n"):
                _write_stdout("\n")

        if check:
            if result.changed:
                pending.append(path)
                _status(f"would convert {path} ({_count(result.moves)})")
            else:
                current += 1
            continue
        if output is not None:
            if _write_output(path, output, result.text, force):
                _status(f"converted {path} -> {output} ({_count(result.moves)} moved)" if result.changed
                        else f"{path} is already in the current layout; copied to {output}")
            else:
                failed = True
        elif in_place:
            if not result.changed:
                _status(f"{path} is already in the current layout; left unchanged")
                continue
            if _write_in_place(path, result.text, backup, force):
                kept = f"; original kept as {path}.bak" if backup else ""
                _status(f"converted {path} in place ({_count(result.moves)} moved){kept}")
            else:
                failed = True

    if check:
        if len(files) > 1 or not pending:
            _status(f"{len(pending)} file(s) need converting, {current} already current")
        if pending:
            _status("run `kforge convert --in-place FILE...` to convert them")
            failed = True
    return failed


def _write_stdout(text: str) -> None:
    """Write bytes, not text: the converted file must come out byte for byte
    (no newline translation, no dependence on the locale's encoding)."""
    import sys

    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(text)
        return
    sys.stdout.flush()
    buffer.write(text.encode("utf-8"))
    buffer.flush()


def _count(moves: list) -> str:
    return "1 legacy key" if len(moves) == 1 else f"{len(moves)} legacy keys"


def _read(path: str) -> tuple[str, None] | tuple[None, str]:
    """The file's text, or why it cannot be used."""
    import os

    if os.path.isdir(path):
        return None, "is a directory, not a TOML file"
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        return None, "no such file"
    except PermissionError:
        return None, "permission denied"
    except OSError as exc:
        return None, f"cannot read ({exc.strerror or exc})"
    if len(data) > MAX_INPUT_BYTES:
        return None, f"larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB; not a job config"
    if b"\0" in data:
        return None, "binary file (contains NUL bytes), not a TOML config"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return None, f"not UTF-8 (invalid byte 0x{data[exc.start]:02x} on line {line})"


def _unified_diff(path: str, old: str, new: str) -> str:
    import difflib

    lines = []
    for line in difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                     fromfile=path, tofile=path):
        lines.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(lines)


# -- writing -------------------------------------------------------------


def _write_output(source: str, target: str, text: str, force: bool) -> bool:
    import os

    if os.path.lexists(target) and not force:
        _complain(f"{target} already exists; not overwriting it", hint="add --force to replace it")
        return False
    if os.path.isdir(target):
        _complain(f"{target} is a directory; -o needs a file path")
        return False
    mode_from = target if os.path.exists(target) else source
    try:
        _atomic_write(target, text.encode("utf-8"), _file_mode(mode_from), backup=None)
    except OSError as exc:
        _complain(f"{target}: cannot write ({exc.strerror or exc}); nothing was written")
        return False
    return True


def _write_in_place(path: str, text: str, backup: bool, force: bool) -> bool:
    import os

    if not os.path.isfile(path):
        _complain(f"{path}: not a regular file; cannot convert it in place")
        return False
    backup_path = path + ".bak" if backup else None
    if backup_path and os.path.lexists(backup_path) and not force:
        _complain(f"{backup_path} already exists; {path} was left unchanged",
                  hint="add --force to replace the backup, or --no-backup to skip it")
        return False
    try:
        _atomic_write(path, text.encode("utf-8"), _file_mode(path), backup=backup_path)
    except OSError as exc:
        _complain(f"{path}: cannot write ({exc.strerror or exc}); the file was left unchanged")
        return False
    return True


def _file_mode(path: str) -> int | None:
    import os
    import stat

    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None


def _atomic_write(target: str, data: bytes, mode: int | None, backup: str | None) -> None:
    """Replace ``target`` with ``data`` so that readers only ever see the old or
    the new complete file.  With ``backup``, the old file is first linked (or
    copied) there; the backup is complete before the target changes."""
    import os
    import tempfile

    real = os.path.realpath(target)  # write through symlinks instead of replacing them
    directory = os.path.dirname(real) or "."
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(real)}.", suffix=".kforge-tmp",
                                dir=directory)
    pending: str | None = temp
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temp, mode)
        if backup is not None:
            _snapshot(real, backup)
        os.replace(temp, real)
        pending = None
        _fsync_directory(directory)
    finally:
        if pending is not None:
            try:
                os.unlink(pending)
            except OSError:
                pass


def _snapshot(source: str, backup: str) -> None:
    """Make ``backup`` a complete copy of ``source``, atomically."""
    import os
    import shutil
    import tempfile

    directory = os.path.dirname(os.path.abspath(backup)) or "."
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(backup)}.", suffix=".kforge-tmp",
                                dir=directory)
    os.close(fd)
    pending: str | None = temp
    try:
        try:
            # A hard link shares the original's bytes and mode at no cost; the
            # rename that follows detaches the target, leaving the link as the backup.
            os.unlink(temp)
            os.link(source, temp)
        except OSError:
            shutil.copy2(source, temp)
            with open(temp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(temp, backup)
        pending = None
    finally:
        if pending is not None:
            try:
                os.unlink(pending)
            except OSError:
                pass


def _fsync_directory(directory: str) -> None:
    import os

    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not supported everywhere (e.g. Windows); the rename already happened
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- messages --------------------------------------------------------------


def _complain(message: str, details: list[str] | None = None, hint: str | None = None) -> None:
    from rich.text import Text

    from kforge_cli.cli.output import stderr_console

    console = stderr_console()
    console.print(Text.assemble(("kforge: ", "bold red"), message), soft_wrap=True)
    for line in details or []:
        console.print(Text(f"  {line}"), soft_wrap=True)
    if hint:
        console.print(Text.assemble(("  hint: ", "dim"), hint), soft_wrap=True)


def _status(message: str) -> None:
    from rich.text import Text

    from kforge_cli.cli.output import stderr_console

    stderr_console().print(Text(message), soft_wrap=True)
