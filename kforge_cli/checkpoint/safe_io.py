"""Opening and reading paths inside an untrusted checkpoint.

Every file a reader opens goes through :func:`open_regular`: the open never
blocks (``O_NONBLOCK``, so a FIFO planted under a checkpoint name cannot hang
it) and ``fstat`` on the open descriptor refuses anything but a regular file
(FIFOs, devices, sockets), with no window between the check and the read.
Reads are bounded and every ``OSError`` becomes a :class:`CheckpointError`.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from typing import BinaryIO

from kforge_cli.checkpoint.errors import CheckpointError, CheckpointLimitError
from kforge_cli.findings import shown

HINT_INPUTS = ("expected a KempnerForge run directory (with `latest` or step_N/), a step_N "
               "directory, a torch.save .pt file, a .safetensors file or a Hugging Face "
               "model directory")


def size_text(size: int) -> str:
    if size >= 2**20:
        return f"{size / 2**20:g} MiB"
    return f"{size / 1024:g} KiB" if size >= 1024 else f"{size} bytes"


def stat_path(path: str, what: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        raise os_error(exc, path, what) from None


def os_error(exc: OSError, path: str, what: str) -> CheckpointError:
    if exc.errno == errno.ELOOP:
        return CheckpointError(f"{what} {path} is a symlink loop ({link_chain(path)})",
                               hint="fix or remove the symlinks")
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            return CheckpointError(f"{what} {path} is a broken symlink ({link_chain(path)})",
                                   hint="the target was moved or deleted")
        return CheckpointError(f"{what} {path} does not exist", hint=HINT_INPUTS)
    if isinstance(exc, PermissionError):
        return CheckpointError(f"permission denied reading {what} {path}",
                               hint="check the permissions (ls -l) or run as a user who can "
                                    "read the checkpoint")
    if exc.errno == errno.ENOTDIR:
        return CheckpointError(f"{what} {path}: a component of the path is not a directory")
    return CheckpointError(f"cannot read {what} {path}: {exc.strerror or type(exc).__name__}")


def link_chain(path: str) -> str:
    """``a -> b -> a``: the first few hops of a symlink chain, for a message."""
    chain, current = [path], path
    for _ in range(8):
        try:
            link = os.readlink(current)
        except OSError:
            break
        current = os.path.normpath(os.path.join(os.path.dirname(current), link))
        chain.append(shown(link, 200)[1:-1])
        if current in chain[:-1] or os.path.normpath(link) in chain[:-1]:
            break
    return " -> ".join(chain)


def list_dir(directory: str) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError as exc:
        raise os_error(exc, directory, "directory") from None


def is_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def base_name(path: str) -> str:
    return os.path.basename(os.path.normpath(path))


def is_safe_relative(rel: str) -> bool:
    """A relative path that stays below its directory by its spelling alone."""
    parts = rel.replace("\\", "/").split("/")
    return bool(rel) and not os.path.isabs(rel) and "\x00" not in rel and \
        all(p not in ("", ".", "..") for p in parts)


def canonical(path: str) -> str:
    """The path with every symlink resolved; loops are left for the open to report."""
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return os.path.abspath(path)


def is_inside(path: str, root: str) -> bool:
    """Both canonical: is ``path`` ``root`` or below it?"""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


# A Hugging Face hub cache keeps each file once, in models--org--name/blobs/,
# and links to it from every snapshot: models--org--name/snapshots/<rev>/file.
_HUB_SNAPSHOT = re.compile(r"(?P<repo>.*/(?:models|datasets|spaces)--[^/]+)/snapshots/[^/]+")


def containment_root(directory: str) -> str:
    """The canonical directory files of ``directory``'s checkpoint must resolve into.

    That is the directory itself, or for a Hugging Face hub snapshot the repo
    folder holding both ``snapshots/`` and the ``blobs/`` its files link to.
    """
    real = canonical(directory)
    match = _HUB_SNAPSHOT.fullmatch(real)
    return match.group("repo") if match else real


def open_regular(path: str, what: str) -> BinaryIO:
    # O_NONBLOCK keeps a FIFO from hanging the open; fstat then rejects it
    # along with devices and sockets.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) \
        | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError):
            raise os_error(exc, path, what) from None
        raise CheckpointError(f"{what} {path} is not a valid path") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CheckpointError(f"{what} {path} is not a regular file", hint=HINT_INPUTS)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class ReadBudget:
    """Bytes of metadata several files may add up to (the shards of one index)."""

    def __init__(self, limit: int, cap_name: str, what: str) -> None:
        self.left = limit
        self.limit = limit
        self.cap_name = cap_name
        self.what = what

    def spend(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise CheckpointLimitError(f"{self.what} add up to more than "
                                       f"{size_text(self.limit)}", self.cap_name)


def file_size(handle: BinaryIO) -> int:
    return os.fstat(handle.fileno()).st_size


def read_exactly(handle: BinaryIO, size: int, path: str, what: str) -> bytes:
    """Up to ``size`` bytes (fewer only at the end of the file)."""
    try:
        return handle.read(size)
    except OSError as exc:
        raise os_error(exc, path, what) from None


def read_bounded(path: str, limit: int, what: str, cap_name: str) -> bytes:
    """The whole file, refused when it is over ``limit`` bytes (the cap ``cap_name``)."""
    with open_regular(path, what) as handle:
        if file_size(handle) > limit:
            raise CheckpointLimitError(
                f"{what} {path} is {size_text(file_size(handle))}, larger than the "
                f"{size_text(limit)} kforge reads for it", cap_name,
                hint="the file is corrupt or misplaced")
        data = read_exactly(handle, limit + 1, path, what)
    if len(data) > limit:
        raise CheckpointLimitError(f"{what} {path} grew past {size_text(limit)} while being "
                                   "read", cap_name)
    return data


def read_head(path: str, size: int, what: str = "checkpoint file") -> bytes:
    with open_regular(path, what) as handle:
        return read_exactly(handle, size, path, what)
