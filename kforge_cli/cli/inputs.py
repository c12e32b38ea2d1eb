"""The PATH arguments of a command: files, directories walked for *.toml, or ``-`` for stdin.

A directory is walked as ruff and mypy walk one: every ``*.toml`` below it,
sorted, skipping hidden folders, virtual environments, build output and what
the ``.gitignore`` files on the way exclude, and skipping TOML files that are
tool settings rather than job configs (``pyproject.toml``, ``Cargo.toml``...).
A file named on the command line is always checked, whatever its name.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Iterator, Sequence

from kforge_cli.records import record

STDIN = "-"
# Folders no job config lives in.
SKIPPED_DIRS = frozenset({"node_modules", "__pycache__", "site-packages", "venv", "env", "build", "dist",
                          "htmlcov", "_build"})
# TOML files that configure tools, not training jobs (also excluded by the pre-commit hooks).
NOT_JOB_CONFIGS = frozenset({"pyproject.toml", "cargo.toml", "ruff.toml", ".ruff.toml", "uv.toml", "poetry.toml",
                             "pixi.toml", "taplo.toml", ".taplo.toml", "rustfmt.toml", ".rustfmt.toml",
                             "clippy.toml", ".clippy.toml", "pipfile", "rust-toolchain.toml", "typos.toml",
                             "_typos.toml", "hatch.toml", "netlify.toml", "fly.toml", "wrangler.toml"})
MAX_STDIN_BYTES = 8 * 1024 * 1024


@record(frozen=True)
class Input:
    path: str  # what findings name: the file path, or --stdin-filename / "-" for stdin
    text: str | None = None  # the contents, for stdin
    problem: str | None = None  # stdin that could not be read


def gather(paths: Sequence[str], stdin_filename: str | None = None) -> list[Input]:
    """Expand the PATH arguments in order (directories sorted inside), each file once."""
    out: list[Input] = []
    seen: set[str] = set()
    for path in paths:
        if path == STDIN:
            out.append(read_stdin(stdin_filename))
            continue
        if os.path.isdir(path):
            candidates: Iterator[str] = walk(path)
        else:
            candidates = iter([path])
        for candidate in candidates:
            key = os.path.normpath(os.path.abspath(candidate))
            if key not in seen:
                seen.add(key)
                out.append(Input(candidate))
    return out


def expand_directories(paths: Sequence[str]) -> list[str]:
    """The PATH arguments with each directory replaced by its job-config candidates (stdin kept as -)."""
    out: list[str] = []
    for path in paths:
        out.extend(walk(path) if path != STDIN and os.path.isdir(path) else [path])
    return out


def read_stdin(stdin_filename: str | None) -> Input:
    name = stdin_filename or STDIN
    try:
        raw = sys.stdin.buffer.read(MAX_STDIN_BYTES + 1)
    except (OSError, ValueError) as exc:
        return Input(name, None, f"cannot read standard input ({exc})")
    if len(raw) > MAX_STDIN_BYTES:
        return Input(name, None, f"standard input is larger than {MAX_STDIN_BYTES >> 20} MiB; not a job config")
    try:
        return Input(name, raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Input(name, None, f"standard input is not valid UTF-8 (byte {exc.start})")


def walk(root: str) -> Iterator[str]:
    """Every job-config candidate below ``root``, sorted, without following directory symlinks."""
    ignores: list[_Ignore] = []
    for directory, dirs, files in os.walk(root, followlinks=False):
        ignores = [i for i in ignores if _within(directory, i.base)]
        ignores.extend(_read_gitignore(directory))
        dirs[:] = sorted(d for d in dirs if not _skip_dir(d) and not _ignored(os.path.join(directory, d), True,
                                                                               ignores))
        for name in sorted(files):
            full = os.path.join(directory, name)
            if (name.endswith(".toml") and not name.startswith(".") and name.lower() not in NOT_JOB_CONFIGS
                    and not _ignored(full, False, ignores)):
                yield full


def _skip_dir(name: str) -> bool:
    return name.startswith(".") or name in SKIPPED_DIRS or name.endswith(".egg-info")


def _within(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


@record(frozen=True)
class _Ignore:
    base: str  # the directory holding the .gitignore
    pattern: str
    negated: bool
    dirs_only: bool
    anchored: bool


def _read_gitignore(directory: str) -> list[_Ignore]:
    from kforge_cli.safe_io import UnreadableFile, read_capped

    try:
        text = read_capped(os.path.join(directory, ".gitignore"), 1 << 20, what=".gitignore").decode(
            "utf-8", "replace")
    except UnreadableFile:
        return []
    rules = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line[1:] if negated else line
        dirs_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        rules.append(_Ignore(directory, line.lstrip("/"), negated, dirs_only, anchored))
    return rules


def _ignored(path: str, is_dir: bool, rules: list[_Ignore]) -> bool:
    """gitignore semantics for the common cases: last match wins, ``!`` re-includes, ``/`` anchors."""
    verdict = False
    for rule in rules:
        if rule.dirs_only and not is_dir:
            continue
        relative = os.path.relpath(path, rule.base).replace(os.sep, "/")
        target = relative if rule.anchored else relative.rsplit("/", 1)[-1]
        pattern = rule.pattern.replace("**/", "*").replace("/**", "/*")
        if fnmatch.fnmatchcase(target, pattern):
            verdict = not rule.negated
    return verdict
