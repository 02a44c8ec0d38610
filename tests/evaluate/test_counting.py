"""labeltree.evaluate.counting: both counting paths against a naive count; size, dtype and value errors."""

import numpy as np
import pytest

from labeltree.errors import LabeltreeError
from labeltree.evaluate.evaluator import Evaluator, evaluate_arrays
from labeltree.evaluate.space import LabelSpace


def ids(tax, *names):
    return [tax.find(n).id for n in names]


@pytest.mark.parametrize("smooth", [True, False])
def test_counting_paths_match_a_naive_count(cs, smooth):
    """Run-length counting (smooth maps), plain bincount (noise), LUT path (16-bit): all exact."""
    rng = np.random.default_rng(7)
    if smooth:
        gt = np.repeat(np.repeat(rng.integers(0, 34, (8, 16), dtype=np.uint8), 16, 0), 8, 1)
        pred = gt.copy()
        pred[30:60, 40:90] = rng.integers(0, 34)
    else:
        gt = rng.integers(0, 34, (128, 128), dtype=np.uint8)
        pred = rng.integers(0, 34, (128, 128), dtype=np.uint8)
    ev = Evaluator("cityscapes")
    cm = ev.confusion(gt, pred)
    naive = np.zeros_like(cm)
    space = LabelSpace.of(cs)
    np.add.at(naive, (space.lut[gt.ravel()], space.lut[pred.ravel()]), 1)
    assert np.array_equal(cm, naive)
    # other integer dtypes take the same numbers
    assert np.array_equal(ev.confusion(gt.astype(np.int32), pred.astype(np.uint16)), naive)


# -- errors -------------------------------------------------------------------------------------------

def test_errors_size_dtype_values(cs, tree):
    gt = np.full((4, 4), ids(cs, "road")[0], dtype=np.uint8)
    with pytest.raises(LabeltreeError, match="prediction is 3x4 but the ground truth"):
        evaluate_arrays("cityscapes", gt, gt[:, :3])
    with pytest.raises(LabeltreeError, match="integer"):
        evaluate_arrays("cityscapes", gt, gt.astype(np.float32))
    bad = gt.copy()
    bad[0, 0] = 200
    with pytest.raises(LabeltreeError, match="200"):
        evaluate_arrays("cityscapes", gt, bad)
    with pytest.raises(LabeltreeError, match="ground truth holds value"):
        evaluate_arrays("cityscapes", bad, gt)
    with pytest.raises(LabeltreeError, match="tree's nodes"):
        evaluate_arrays("cityscapes", gt, pred_nodes=np.full((4, 4), len(tree.nodes), np.uint16), hierarchy=tree)
    with pytest.raises(LabeltreeError, match="needs the tree"):
        Evaluator("cityscapes", pred_space="tree")
    with pytest.raises(LabeltreeError, match="exactly one"):
        evaluate_arrays("cityscapes", gt)
