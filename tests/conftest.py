from __future__ import annotations

from pathlib import Path

import pytest
from recorded import RECORDED

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """The fixtures recorded from the reference trainer (tests/cases/fixtures, see its README)."""
    return RECORDED


def _hypothesis_profile() -> None:
    import os

    from hypothesis import settings

    # Derandomized so a CI run is reproducible; HYPOTHESIS_PROFILE=explore searches afresh.
    settings.register_profile("kforge", deadline=None, derandomize=True, print_blob=True)
    settings.register_profile("explore", deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "kforge"))


_hypothesis_profile()
