"""Which parameters a freeze spec's ``module`` selects.

The reference resolves ``module`` through ``vlm.module_patterns`` (an alias) and
otherwise uses it as one raw fnmatch pattern, then tests every parameter name
against every pattern. Here each pattern is compiled once and each selection is
an integer bit mask over the parameter list, so a plan over thousands of
parameters and dozens of specs stays cheap.

An alias's value is used the way ``freeze_params`` uses it: ``list(value)``,
then ``any(fnmatch(name, p) for p in patterns)`` per parameter. So a string
alias is one pattern per character (a ``*`` among them matches everything),
and a non-string entry raises ``TypeError`` inside ``fnmatch`` on the first
parameter no earlier entry of the list matches. A selection records that
failure instead of raising, so the rules can say when the trainer meets it.

Parameters of components that cannot be built offline (an HF vision encoder
without a local copy) are represented only by their prefix; for those we can
say whether a pattern certainly covers the whole subtree, may touch part of it,
or cannot reach it, but never which individual parameters it selects.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from itertools import compress
from typing import Any

from kforge_cli.records import record

_WILDCARDS = "*?["


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    # The reference calls fnmatch.fnmatch, whose case folding is a no-op on the
    # POSIX clusters it runs on, so matching is case-sensitive here.
    return re.compile(fnmatch.translate(pattern))


def alias_patterns(value: Any) -> tuple[str, ...]:
    """The patterns a ``module_patterns`` entry was written to mean (for messages and hints).

    A string stands for itself here; what the trainer really applies is
    ``applied_patterns``.
    """
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(p for p in value if isinstance(p, str))
    return ()


class NotAPatternList(TypeError):
    """``list(value)`` of an alias's value raises: it is not iterable."""


def applied_patterns(value: Any) -> tuple[Any, ...]:
    """``list(value)`` as ``freeze_params`` computes it: a string gives its characters, a table its keys."""
    if isinstance(value, (str, list, tuple, dict)):
        return tuple(value)
    raise NotAPatternList(f"{type(value).__name__!r} object is not iterable")


def fnmatch_type_error(pattern: Any) -> str:
    """The message ``fnmatch.fnmatch(name, pattern)`` raises for a pattern that is not a string."""
    return f"expected str, bytes or os.PathLike object, not {type(pattern).__name__}"


def _literal_head(pattern: str) -> tuple[str, bool]:
    """The text before the first wildcard, and whether the pattern has one."""
    for i, ch in enumerate(pattern):
        if ch in _WILDCARDS:
            return pattern[:i], True
    return pattern, False


def covers_subtree(pattern: str, prefix: str) -> bool:
    """True when ``pattern`` matches every parameter name below ``prefix``."""
    if not pattern.endswith("*"):
        return False
    head, has_wildcard = _literal_head(pattern[:-1])
    return not has_wildcard and (prefix + ".").startswith(head)


def may_touch_subtree(pattern: str, prefix: str) -> bool:
    """False only when ``pattern`` certainly matches nothing below ``prefix``."""
    head, has_wildcard = _literal_head(pattern)
    dotted = prefix + "."
    if not has_wildcard:
        return head.startswith(dotted)
    return head.startswith(dotted) or dotted.startswith(head)


@record(frozen=True)
class PatternFailure:
    """Why applying a selection raises in the trainer, and on what."""

    message: str  # the TypeError's message
    entry: int | None  # index of the offending entry in the alias's list (None: the value itself)
    value: Any  # the offending entry (or the alias's value)
    parameter: str | None  # the parameter fnmatch was testing when it raised


@record(frozen=True)
class Selection:
    """What one spec's ``module`` selects."""

    module: str
    is_alias: bool
    patterns: tuple[str, ...]  # the string patterns the trainer tests, in order
    mask: int  # bit i set: parameter i matches
    covered_unknown: frozenset[str]  # unknown prefixes matched in full
    touched_unknown: frozenset[str]  # unknown prefixes possibly matched in part
    failure: PatternFailure | None = None  # applying it raises (the mask is what matched before)

    @property
    def may_reach_unknown(self) -> bool:
        return bool(self.covered_unknown or self.touched_unknown)


class Matcher:
    """Resolves spec modules against a fixed parameter list, with caching."""

    def __init__(self, names: Sequence[str], module_patterns: Mapping[str, Any],
                 unknown_prefixes: Iterable[str] = ()) -> None:
        self.names = list(names)
        self.module_patterns = module_patterns
        self.unknown_prefixes = tuple(unknown_prefixes)
        self._pattern_masks: dict[str, int] = {}
        self._selections: dict[str, Selection] = {}
        self._index: dict[str, int] | None = None  # name -> first position, built on first literal pattern

    def is_alias(self, module: str) -> bool:
        return module in self.module_patterns

    def patterns_for(self, module: str) -> tuple[Any, ...]:
        """What the trainer iterates for ``module``; raises NotAPatternList when that fails."""
        if module in self.module_patterns:
            return applied_patterns(self.module_patterns[module])
        return (module,)

    def pattern_mask(self, pattern: str) -> int:
        cached = self._pattern_masks.get(pattern)
        if cached is None:
            cached = self._pattern_masks[pattern] = self._mask_of(pattern)
        return cached

    def _mask_of(self, pattern: str) -> int:
        head, has_wildcard = _literal_head(pattern)
        if not has_wildcard:
            # fnmatch of a pattern without wildcards is equality: no regex to build (a
            # megabyte-long module string would cost a gigabyte to compile).
            if self._index is None:
                self._index = {}
                for i, name in enumerate(self.names):
                    self._index.setdefault(name, i)
            at = self._index.get(pattern)
            return 0 if at is None else 1 << at
        # The mask is built as a binary literal: far cheaper than OR-ing 1 << i for every hit.
        if pattern == head + "*":  # "transformer.*", the usual shape: a prefix test, no regex
            bits = "".join("1" if name.startswith(head) else "0" for name in reversed(self.names))
        else:
            match = compile_pattern(pattern).match
            bits = "".join("1" if match(name) else "0" for name in reversed(self.names))
        return int(bits, 2) if bits else 0

    def select(self, module: str) -> Selection:
        cached = self._selections.get(module)
        if cached is not None:
            return cached
        failure = None
        try:
            applied = self.patterns_for(module)
        except NotAPatternList as exc:
            applied = ()
            value = self.module_patterns[module]
            failure = PatternFailure(str(exc), None, value, None) if self.names else None
        mask = 0
        patterns: list[str] = []
        full = (1 << len(self.names)) - 1
        for i, pattern in enumerate(applied):
            if not isinstance(pattern, str):
                # any() stops at the first match, so fnmatch meets this entry only for
                # parameters no earlier entry matched, and raises on the first of them.
                missed = full & ~mask
                if missed:
                    first = self.names[(missed & -missed).bit_length() - 1]
                    failure = PatternFailure(fnmatch_type_error(pattern), i, pattern, first)
                break
            patterns.append(pattern)
            mask |= self.pattern_mask(pattern)
        covered = frozenset(p for p in self.unknown_prefixes
                            if any(covers_subtree(pat, p) for pat in patterns))
        touched = frozenset(p for p in self.unknown_prefixes
                            if p not in covered and any(may_touch_subtree(pat, p) for pat in patterns))
        selection = Selection(module, self.is_alias(module), tuple(patterns), mask, covered, touched, failure)
        self._selections[module] = selection
        return selection


# bin()'s digits as the bytes 0 and 1, selectors for itertools.compress.
_BIT_BYTES = bytes.maketrans(b"01", b"\x00\x01")


def bit_selectors(mask: int) -> bytes:
    """One byte per bit of ``mask``, lowest first: 1 where the bit is set (for ``itertools.compress``)."""
    return bin(mask)[:1:-1].encode().translate(_BIT_BYTES) if mask > 0 else b""


def indices(mask: int) -> list[int]:
    """Set bit positions of ``mask``, ascending."""
    # compress() walks the selectors in C: on a 3,000-parameter mask ten times faster than
    # peeling off the lowest bit in a Python loop (benchmarks/bench_core.py).
    selectors = bit_selectors(mask)
    return list(compress(range(len(selectors)), selectors))


def popcount(mask: int) -> int:
    return mask.bit_count()
