"""Reading files kforge is handed, without letting a hostile path hang or exhaust it.

Every input (job configs, ``pyproject.toml``, checkpoints) is opened without
blocking, checked to be a regular file before a byte is read, and read only up
to a cap. A FIFO, a device (``/dev/zero``), a socket or a directory is refused
with a reason instead of blocking forever or streaming without end.
"""

from __future__ import annotations

import errno
import os
import stat


class UnreadableFile(OSError):
    """A path kforge will not or cannot read; ``reason`` completes "PATH ..." and ``hint`` says what to do."""

    def __init__(self, path: str, reason: str, hint: str | None = None) -> None:
        super().__init__(f"{path} {reason}")
        self.path = path
        self.reason = reason
        self.hint = hint


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: str) -> int:
    """A read-only descriptor of the regular file at ``path`` (the caller closes it).

    O_NONBLOCK makes opening a FIFO return at once instead of waiting for a
    writer; the fstat then refuses it, so no read ever blocks.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise UnreadableFile(path, "does not exist", "check the path") from None
    except PermissionError:
        raise UnreadableFile(path, "cannot be read (permission denied)", "check the file's permissions") from None
    except IsADirectoryError:
        raise UnreadableFile(path, "is a directory, not a file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnreadableFile(path, "is a symlink loop", "point the link at a real file") from None
        if exc.errno in (errno.ENXIO, errno.ENODEV):  # a socket or a device without a reader
            raise UnreadableFile(path, "is not a regular file") from None
        raise UnreadableFile(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnreadableFile(path, f"is {_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_capped(path: str, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``; UnreadableFile if it is anything else or larger than ``limit``."""
    fd = open_regular(path)
    try:
        chunks = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        raise UnreadableFile(path, f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise UnreadableFile(path, f"is larger than {_size(limit)}; not a {what}")
    return data


def _size(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10} KiB"
    return f"{n} bytes"
