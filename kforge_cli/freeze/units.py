"""Short human-readable numbers for parameter counts (1.2M, 6.7B)."""

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
