from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FINDINGS = 1  # at least one error finding, or an input that cannot be read
    USAGE = 2
    INTERNAL = 3


# The shell's convention for a process stopped by SIGINT (128 + 2).
INTERRUPTED = 130
