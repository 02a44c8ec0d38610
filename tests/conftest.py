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


@pytest.fixture
def real_gtsdb_root(real_fixtures, tmp_path) -> Path:
    """The real gt.txt with the fixture's JPEG frames, laid out as a GTSDB root (frames/ + gt.txt)."""
    root = tmp_path / "gtsdb"
    (root / "frames").mkdir(parents=True)
    (root / "gt.txt").write_bytes((real_fixtures / "gtsdb" / "gt.txt").read_bytes())
    for f in (real_fixtures / "gtsdb" / "frames-jpeg").glob("*.jpg"):
        (root / "frames" / f.name).write_bytes(f.read_bytes())
    return root
