"""Selective-prediction counts (labeltree.infer.selective): full depth, correct-but-coarse and wrong, by hand."""

from __future__ import annotations

import numpy as np

from labeltree.infer.selective import Counts, _count, area


def test_counts_by_hand() -> None:
    # tree: 0 root -> 1 A, 2 B; 1 -> 3 x, 4 y. Dataset values: x=10, y=11, B=20, A and root: no class (0)
    values = np.array([0, 0, 20, 10, 11])
    parents = [-1, 0, 0, 1, 1]
    anc = np.zeros((5, 5), bool)
    for g in range(5):
        n = g
        while n >= 0:
            anc[g, n] = True
            n = parents[n]
    is_sign = np.array([False, False, False, True, True])  # x, y are "sign" classes
    gt = np.array([3, 3, 4, 2, 3])       # x, x, y, B, x
    leaf = np.array([3, 4, 3, 2, 2])     # right, wrong, wrong, right, wrong
    backed = np.array([3, 1, 3, 0, 2])  # full right, coarse (A), full wrong, coarse (root), full wrong
    c = Counts()
    _count(c, backed, values[backed], values[leaf], gt, values[gt], is_sign[gt], anc)  # every pixel labelled
    assert (c.pixels, c.full, c.full_right, c.coarse_right, c.wrong) == (5, 3, 1, 2, 2)
    assert c.sign == {"pixels": 4, "full": 3, "wrong_full": 2}
    row = c.row(0.5)
    assert row["coverage"] == 3 / 5 and abs(row["risk"] - 2 / 3) < 1e-12


def test_area_is_trapezoids_over_coverage() -> None:
    rows = [{"coverage": 1.0, "risk": 0.2}, {"coverage": 0.5, "risk": 0.1}, {"coverage": 0.0, "risk": 0.0}]
    assert abs(area(rows) - (0.5 * 0.05 + 0.5 * 0.15)) < 1e-12
