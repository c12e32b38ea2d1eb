"""Short human-readable numbers for parameter counts (1.2M, 6.7B), and bounded lists for messages."""

from __future__ import annotations

_SCALES = ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K"))


def human_count(n: int) -> str:
    if n < 1000:
        return str(n)
    for i, (scale, suffix) in enumerate(_SCALES):
        if n >= scale:
            value = n / scale
            text = f"{value:.1f}" if value < 100 else f"{value:.0f}"
            # 999_960 rounds to "1000K": promote it to the next unit instead.
            if float(text) >= 1000 and i > 0:
                bigger, bigger_suffix = _SCALES[i - 1]
                return f"{n / bigger:.1f}{bigger_suffix}"
            return text + suffix
    return str(n)  # pragma: no cover - n >= 1000 always hits a scale


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def listed(items: list[str], separator: str = "; ", limit: int = 5, noun: str = "more") -> str:
    """``items`` joined, the first ``limit`` of them: a schedule of 30,000 stages is one line, not a page."""
    if len(items) <= limit:
        return separator.join(items)
    return separator.join(items[:limit]) + f"{separator}and {len(items) - limit:,} {noun}"
