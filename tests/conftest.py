from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"
EXAMPLES = REPO_ROOT / "examples"


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is not present next to the repository")
    return SHARED_FIXTURES


def _hypothesis_profile() -> None:
    import os

    from hypothesis import settings

    # Derandomized so a CI run is reproducible; HYPOTHESIS_PROFILE=explore searches afresh.
    settings.register_profile("kforge", deadline=None, derandomize=True, print_blob=True)
    settings.register_profile("explore", deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "kforge"))


_hypothesis_profile()
