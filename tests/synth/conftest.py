"""One synthetic set (seed 3) for every synth test file, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from synth_helpers import N_IMAGES, SIZE

from labeltree.synth.runner import synthesize


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "out"
    synthesize(out, images=N_IMAGES, seed=3, size=SIZE, workers=1, progress=False)
    return out
