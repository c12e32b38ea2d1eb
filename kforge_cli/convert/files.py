"""Reading convert's inputs and writing its results without losing anything.

Pure I/O: functions return data or raise ``InputError`` (the input cannot be
used), ``WriteRefused`` (writing would lose something; nothing was changed) or
``WriteFailed`` (the system refused a write; nothing was changed).  Messages
never name the file; the caller does.

Inputs are read only when they are regular files: a FIFO, device or socket is
refused without blocking (stat first, then open with O_NONBLOCK and fstat the
descriptor that is actually read), and at most ``MAX_INPUT_BYTES`` are read.

In place (``convert_in_place``):

- the file is locked (``flock``) and read again under the lock, so of two
  concurrent runs the second sees the converted text and leaves it alone;
- the backup ``FILE.bak`` is the original inode itself (a hard link checked to
  be the locked file, else a copy of the bytes that were converted); an existing
  ``FILE.bak`` is replaced only with ``force``, unless it already holds the
  original (an interrupted run), and a new one is created exclusively;
- the new text is written to a temporary file in the same directory, given the
  original's owner, group (where the process may), mode and extended attributes
  (ACLs), fsynced, renamed over the file, and the directory is fsynced: a crash
  leaves the old file or the new one, and the next run proceeds;
- a symlink is followed: its target is converted and the link is kept;
- a file with other hard links is refused unless ``force`` (replacing it
  would leave the other names holding the legacy text);
- temporary files are named ``.FILE.<pid>.<random>.kforge-tmp``; ours are
  removed on every error, and ones left by a dead process (a killed run) are
  removed by the next run on that file.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from dataclasses import field
from typing import IO

from kforge_cli.convert.rewrite import ConversionResult, convert_text
from kforge_cli.records import record

# Job configs are kilobytes; a cap keeps a runaway input finite.
MAX_INPUT_BYTES = 8 * 1024 * 1024
TEMP_SUFFIX = ".kforge-tmp"
BACKUP_SUFFIX = ".bak"

_TEMP_TAIL = re.compile(r"\.(\d{1,10})\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX))
_NAME_MAX = 255
_LOCK_ATTEMPTS = 100  # a file replaced this often while we wait for its lock is being fought over
_NOT_LINKABLE = (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS,
                 errno.EACCES)


class InputError(Exception):
    """The input cannot be converted (unreadable, not a regular file, not text)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WriteRefused(Exception):
    """Writing would lose something; nothing was changed."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class WriteFailed(Exception):
    """The system refused a write; the file was left as it was."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- reading ---------------------------------------------------------------------


def decode_input(data: bytes) -> str:
    """The text of a job config, or why these bytes are not one."""
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB; not a job config")
    if b"\0" in data:
        raise InputError("binary file (contains NUL bytes), not a TOML config")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"not UTF-8 (invalid byte 0x{data[exc.start]:02x} on line {line})") from None


def read_stream(stream: IO[bytes]) -> str:
    return decode_input(stream.read(MAX_INPUT_BYTES + 1))


def read_input(path: str) -> str:
    fd = _open_regular(path)
    try:
        return decode_input(_read_all(fd))
    finally:
        os.close(fd)


def _kind(mode: int) -> str | None:
    """What a non-regular file is, for the message; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a TOML file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is not a regular file"


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "is a symlink loop"
    if exc.errno == errno.EISDIR:
        return "is a directory, not a TOML file"
    if exc.errno == errno.ENOTDIR:
        return "no such file (a parent is not a directory)"
    return f"cannot read ({exc.strerror or exc})"


def _open_regular(path: str) -> int:
    """A read descriptor for ``path``, which must be a regular file.  Opening
    with O_NONBLOCK never waits for a FIFO's writer; the descriptor itself is
    checked, so a file swapped in after the stat is caught too."""
    try:
        kind = _kind(os.stat(path).st_mode)
        if kind:
            raise InputError(kind)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags)
    except OSError as exc:
        raise InputError(_why(exc)) from None
    try:
        kind = _kind(os.fstat(fd).st_mode)
        if kind:
            raise InputError(kind)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= MAX_INPUT_BYTES:
            chunk = os.read(fd, MAX_INPUT_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise InputError(_why(exc)) from None
    return b"".join(chunks)


# -- converting in place -----------------------------------------------------------


@record
class InPlaceResult:
    original: str  # the text that was converted (read under the lock)
    conversion: ConversionResult  # ``changed`` is False when the file was already current
    backup: str | None = None  # where the original is kept, when the file was converted
    notes: list[str] = field(default_factory=list)  # one line each, things the user should know


def convert_in_place(path: str, *, backup: bool, force: bool) -> InPlaceResult:
    """Convert ``path`` and replace it (see the module docstring for the guarantees).

    Raises ``InputError``, ``WriteRefused``, ``WriteFailed``, or the
    conversion's own ``ConversionError``; in every case the file is unchanged.
    """
    backup_path = path + BACKUP_SUFFIX if backup else None
    locked = _LockedFile.acquire(path)
    try:
        original = decode_input(_read_all(locked.fd))
        conversion = convert_text(original)
        result = InPlaceResult(original, conversion)
        if not conversion.changed:
            return result
        if not locked.exclusive:
            result.notes.append(f"could not lock the file ({locked.lock_problem}); "
                                "a concurrent kforge convert was not excluded")
        # Our lock is held, so a temporary file of this one from a dead process is debris.
        removed = remove_stale_temps(locked.real) + remove_stale_temps(path + BACKUP_SUFFIX)
        if removed:
            result.notes.append(f"removed {removed} temporary file(s) left by an interrupted kforge convert")
            locked.stat = os.fstat(locked.fd)  # the debris may have been links to this file
        # FILE.bak as a link to FILE is the backup of a run killed before its rename.
        own_backup_link = _same_file(path + BACKUP_SUFFIX, locked.stat)
        other_links = locked.stat.st_nlink - 1 - int(own_backup_link)
        if other_links > 0:
            if not force:
                raise WriteRefused(
                    f"has {_plural(other_links, 'other hard link')}; replacing it would leave "
                    "the other name(s) with the legacy text, so it was left unchanged",
                    "convert each name, or add --force to convert this name only")
            result.notes.append(f"had {_plural(other_links, 'other hard link')}; "
                                "the other name(s) still hold the legacy text")
        data = conversion.text.encode("utf-8")
        made_backup = False
        try:
            if backup_path is not None:
                made_backup = _keep_backup(locked, backup_path, original.encode("utf-8"), force)
                result.backup = backup_path
            result.notes += _replace(locked.real, data, locked.stat, locked.fd)
        except BaseException:
            if made_backup:  # the file is unchanged, so the new backup is only clutter
                _unlink_quietly(backup_path)
            raise
        return result
    finally:
        locked.release()


def _plural(count: int, noun: str) -> str:
    return f"1 {noun}" if count == 1 else f"{count} {noun}s"


class _LockedFile:
    """The file a path names (symlinks followed), open and exclusively locked,
    checked to still be the file at that path once the lock is held."""

    def __init__(self, real: str, fd: int, st: os.stat_result) -> None:
        self.real = real
        self.fd = fd
        self.stat = st
        self.lock_fd: int | None = None
        self.exclusive = False
        self.lock_problem = ""

    @classmethod
    def acquire(cls, path: str) -> _LockedFile:
        for _ in range(_LOCK_ATTEMPTS):
            real = os.path.realpath(path)
            fd = _open_regular(real)
            locked = cls(real, fd, os.fstat(fd))
            try:
                locked._lock()
                try:
                    now = os.stat(real, follow_symlinks=False)
                except OSError:
                    now = None
                locked.stat = os.fstat(fd)
                if now is not None and _same_inode(now, locked.stat):
                    return locked
            except BaseException:
                locked.release()
                raise
            locked.release()  # replaced (by a run that held the lock) while we waited: lock the new file
        raise WriteFailed("it kept being replaced while waiting for another kforge convert; left unchanged")

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            self.lock_problem = "no flock on this system"
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            self.exclusive = True
            return
        except OSError as exc:
            if exc.errno != errno.EBADF:
                self.lock_problem = exc.strerror or str(exc)
                return
        # NFS emulates flock with POSIX locks, which need a descriptor open for writing.
        try:
            self.lock_fd = os.open(self.real, os.O_RDWR | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
            self.exclusive = True
        except OSError as exc:
            self.lock_problem = exc.strerror or str(exc)

    def release(self) -> None:
        """Close the descriptors, which drops the lock; safe to call twice."""
        for fd in (self.lock_fd, self.fd):
            if fd is not None and fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.lock_fd = None
        self.fd = -1


def _same_inode(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _same_file(path: str, st: os.stat_result) -> bool:
    try:
        return _same_inode(os.stat(path, follow_symlinks=False), st)
    except OSError:
        return False


def _holds(path: str, data: bytes) -> bool:
    """True when ``path`` is a regular file whose bytes are exactly ``data``."""
    try:
        fd = _open_regular(path)
    except InputError:
        return False
    try:
        if os.fstat(fd).st_size != len(data):
            return False
        return _read_all(fd) == data
    except InputError:
        return False
    finally:
        os.close(fd)


def _keep_backup(locked: _LockedFile, backup_path: str, original: bytes, force: bool) -> bool:
    """Make ``backup_path`` hold the original; True when a new backup was made.

    A backup that already holds the original (left by an interrupted run) is
    kept; any other existing backup is replaced only with ``force``.
    """
    try:
        existing = os.lstat(backup_path)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise WriteFailed(f"cannot check the backup {backup_path} ({exc.strerror or exc}); left unchanged") from None
    if existing is not None:
        if _same_inode(existing, locked.stat) or _holds(backup_path, original):
            return False
        if not force:
            raise WriteRefused(f"{backup_path} already exists; left unchanged",
                               "add --force to replace the backup, or --no-backup to skip it")
    temp = _temp_path(backup_path)
    try:
        try:
            # A hard link is the original inode itself: bytes, owner, mode,
            # times and attributes, at no cost. It must be the file we read.
            os.link(locked.real, temp)
            if not _same_file(temp, locked.stat):
                raise WriteFailed("the file changed while it was being converted; left unchanged, run again")
        except OSError as exc:
            if exc.errno not in _NOT_LINKABLE:
                raise
            _unlink_quietly(temp)
            _write_new(temp, original, mode=stat.S_IMODE(locked.stat.st_mode), owner=locked.stat,
                       attributes_fd=locked.fd)
        if existing is None:
            try:
                _place_exclusively(temp, backup_path)
            except FileExistsError:
                raise WriteRefused(f"{backup_path} appeared while converting; left unchanged",
                                   "another program is writing next to the file; run again") from None
        else:
            os.replace(temp, backup_path)
        temp = ""
        _fsync_directory(os.path.dirname(os.path.abspath(backup_path)))
    except OSError as exc:
        raise WriteFailed(f"cannot write the backup {backup_path} ({exc.strerror or exc}); left unchanged") from None
    finally:
        if temp:
            _unlink_quietly(temp)
    return True


def _place_exclusively(temp: str, target: str) -> None:
    """Give ``temp`` the name ``target`` only if ``target`` does not exist
    (``FileExistsError`` otherwise): a hard link is created exclusively."""
    try:
        os.link(temp, target)
    except OSError as exc:
        if exc.errno == errno.EEXIST or exc.errno not in _NOT_LINKABLE:
            raise
        if os.path.lexists(target):  # no hard links here: check, then rename
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), target) from None
        os.replace(temp, target)
        return
    _unlink_quietly(temp)


# -- writing -------------------------------------------------------------------------


def _write_new(temp: str, data: bytes, *, mode: int | None = None, owner: os.stat_result | None = None,
               attributes_fd: int | None = None) -> list[str]:
    """Create ``temp`` holding ``data`` durably, with ``mode``, the owner and
    group of ``owner`` and the extended attributes of ``attributes_fd`` where
    possible; returns what could not be kept, one line each."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temp, flags, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        lost: list[str] = []
        if owner is not None:
            lost += _keep_owner(fd, owner)
        if mode is not None:
            os.fchmod(fd, mode)  # after chown, which may clear set-id bits
        if attributes_fd is not None:
            lost += _copy_xattrs(attributes_fd, fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    return lost


def _replace(real: str, data: bytes, like: os.stat_result, like_fd: int) -> list[str]:
    """Atomically replace ``real`` (the file ``like``, open as ``like_fd``) with
    ``data``, keeping its owner, group, mode and attributes where possible;
    returns notes on what was not kept."""
    temp = _temp_path(real)
    try:
        try:
            notes = _write_new(temp, data, mode=stat.S_IMODE(like.st_mode), owner=like, attributes_fd=like_fd)
        except FileExistsError:  # a random name that exists: practically never
            raise WriteFailed("a temporary file name is taken; run again") from None
        # A writer that does not take our lock could have replaced the file meanwhile.
        if not _same_file(real, like):
            raise WriteFailed("the file changed while it was being converted; left unchanged, run again")
        os.replace(temp, real)
        temp = ""
    except OSError as exc:
        raise WriteFailed(f"cannot write ({exc.strerror or exc}); left unchanged") from None
    finally:
        if temp:
            _unlink_quietly(temp)
    _fsync_directory(os.path.dirname(real))
    return notes


def _keep_owner(fd: int, like: os.stat_result) -> list[str]:
    if not hasattr(os, "fchown"):  # pragma: no cover - not POSIX
        return []
    mine = os.fstat(fd)
    if (mine.st_uid, mine.st_gid) == (like.st_uid, like.st_gid):
        return []
    try:
        os.fchown(fd, like.st_uid, like.st_gid)
        return []
    except PermissionError:
        pass
    lost = []
    if mine.st_uid != like.st_uid:
        lost.append(f"owner {_user(like.st_uid)}")
    if mine.st_gid != like.st_gid:
        try:
            os.fchown(fd, -1, like.st_gid)
        except PermissionError:
            lost.append(f"group {_group(like.st_gid)}")
    if not lost:
        return []
    now = os.fstat(fd)
    owner = f"{_user(now.st_uid)}:{_group(now.st_gid)}"
    return [f"could not keep the {' and '.join(lost)} (not permitted); the file now belongs to {owner}"]


def _user(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def _group(gid: int) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)


def _copy_xattrs(source_fd: int, target_fd: int) -> list[str]:
    """Copy extended attributes (POSIX ACLs live there); names the ones lost."""
    if not hasattr(os, "listxattr"):  # pragma: no cover - not Linux
        return []
    try:
        names = os.listxattr(source_fd)
    except OSError:
        return []
    lost = []
    for name in names:
        try:
            value = os.getxattr(source_fd, name)
        except OSError:
            continue
        try:
            os.setxattr(target_fd, name, value)
        except OSError:
            try:
                if os.getxattr(target_fd, name) == value:
                    continue  # already what it should be (e.g. an inherited security label)
            except OSError:
                pass
            lost.append(name)
    return [f"could not keep the extended attribute(s) {', '.join(lost)}"] if lost else []


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return  # not supported everywhere; the rename already happened
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


# -- writing to OUT ---------------------------------------------------------------


def write_output(target: str, text: str, *, mode_from: str | None, force: bool) -> bool:
    """Write ``text`` to ``target`` atomically; returns False when ``target``
    already held exactly that text (nothing written).

    An existing ``target`` is replaced only with ``force`` (a new one is
    created exclusively) and keeps its owner, group and mode; a new one gets
    the mode of ``mode_from`` (the input file) when given.  Symlinks are
    followed.
    """
    data = text.encode("utf-8")
    real = os.path.realpath(target)
    try:
        existing = os.stat(real)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise WriteFailed(f"cannot write ({exc.strerror or exc}); nothing was written") from None
    mode: int | None = None
    if existing is not None:
        if stat.S_ISDIR(existing.st_mode):
            raise WriteRefused("is a directory; -o needs a file path")
        kind = _kind(existing.st_mode)
        if kind:
            raise WriteRefused(f"{kind}; not writing to it")
        if _holds(real, data):
            return False
        if not force:
            raise WriteRefused("already exists; not overwriting it", "add --force to replace it")
        mode = stat.S_IMODE(existing.st_mode)
    elif mode_from is not None:
        try:
            mode = stat.S_IMODE(os.stat(mode_from).st_mode)
        except OSError:
            mode = None
    remove_stale_temps(real)
    temp = _temp_path(real)
    try:
        # A replaced OUT keeps its owner and group; a new one belongs to whoever creates it.
        _write_new(temp, data, mode=mode, owner=existing)
        if existing is None:
            _place_exclusively(temp, real)
        else:
            os.replace(temp, real)
        temp = ""
    except FileExistsError:
        raise WriteRefused("appeared while converting; not overwriting it", "add --force to replace it") from None
    except OSError as exc:
        raise WriteFailed(f"cannot write ({exc.strerror or exc}); nothing was written") from None
    finally:
        if temp:
            _unlink_quietly(temp)
    _fsync_directory(os.path.dirname(real))
    return True


# -- temporary files ------------------------------------------------------------------


def _temp_stem(target: str) -> str:
    """``.NAME`` for the target's base name, cut so a temporary name always fits."""
    base = os.path.basename(target)
    room = _NAME_MAX - len(".") - len(".4294967295.0123abcd" + TEMP_SUFFIX)
    encoded = base.encode("utf-8", "surrogateescape")
    if len(encoded) > room:
        base = encoded[:room].decode("utf-8", "ignore")
    return "." + base


def _temp_path(target: str) -> str:
    name = f"{_temp_stem(target)}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    return os.path.join(os.path.dirname(os.path.abspath(target)), name)


def _process_alive(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # exists but is not ours, or cannot tell: leave its file alone
    return True


def remove_stale_temps(target: str) -> int:
    """Remove temporary files of ``target`` left by kforge processes that no
    longer run (a killed convert); returns how many were removed."""
    directory = os.path.dirname(os.path.abspath(target))
    stem = _temp_stem(target)
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    removed = 0
    for name in names:
        if not name.startswith(stem) or not name.endswith(TEMP_SUFFIX):
            continue
        match = _TEMP_TAIL.fullmatch(name, len(stem))
        if match is None or _process_alive(int(match[1])):
            continue
        path = os.path.join(directory, name)
        try:
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)
                removed += 1
        except OSError:
            pass
    return removed
