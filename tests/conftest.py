import os
from pathlib import Path

import pytest

FIXTURES = Path(os.environ.get("LABELTREE_FIXTURES",
                               Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"))


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    if not FIXTURES.exists():
        pytest.skip(f"real fixtures not found at {FIXTURES} (set LABELTREE_FIXTURES)")
    return FIXTURES
