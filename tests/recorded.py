"""Where the data recorded from the reference trainer lives in this repository.

Importable from any test module (pytest puts tests/ on sys.path for tests/conftest.py),
for the tests that need the paths at collection time; others take the
``shared_fixtures`` fixture.
"""

from __future__ import annotations

from pathlib import Path

RECORDED = Path(__file__).resolve().parent / "cases" / "fixtures"
CONFIGS = RECORDED / "configs"
LEGACY = RECORDED / "legacy"
CHECKPOINTS = RECORDED / "checkpoints"
