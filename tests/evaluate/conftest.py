"""Fixtures shared by the evaluate tests: the Cityscapes taxonomy, the paper's tree, a 3-image Cityscapes split."""

import numpy as np
import pytest
from PIL import Image

from labeltree.core.taxonomy import load_taxonomy
from labeltree.core.tree_file import load_hierarchy
from labeltree.fsutil import write_png

CS_LABEL = "cityscapes/gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"


@pytest.fixture(scope="module")
def cs():
    return load_taxonomy("cityscapes")


@pytest.fixture(scope="module")
def tree():
    return load_hierarchy("cityscapes+vistas+gtsdb")


@pytest.fixture(scope="module")
def cs_set(real_fixtures, tmp_path_factory):
    """A 3-image Cityscapes val split (the real label + two derived ones) and noisy predictions."""
    root = tmp_path_factory.mktemp("cs")
    gt0 = np.asarray(Image.open(real_fixtures / CS_LABEL))
    gts = {"frankfurt_000000_000294": gt0, "frankfurt_000000_000576": gt0[:, ::-1].copy(),
           "lindau_000001_000019": np.roll(gt0, 17, axis=1)}
    rng = np.random.default_rng(3)
    preds = {}
    for key, g in gts.items():
        city = key.split("_")[0]
        write_png(root / "gt" / "gtFine" / "val" / city / f"{key}_gtFine_labelIds.png", g)
        p = np.roll(g, 2, axis=0).copy()
        flip = rng.random(g.shape) < 0.05
        p[flip] = rng.integers(0, 34, int(flip.sum()))
        preds[key] = p.astype(np.uint8)
        write_png(root / "pred" / "sub" / city / f"{key}_leftImg8bit_pred.png", preds[key])
    return root, gts, preds
