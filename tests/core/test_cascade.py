"""The one cascade (core.hierarchy.cascade): numpy and torch give the same nodes, and stopping at a level
gives each pixel's ancestor at that level (what `predict --levels` writes through the level tables)."""

from __future__ import annotations

import numpy as np
import pytest

from labeltree.core.hierarchy import cascade
from labeltree.core.tree_file import load_hierarchy


def test_numpy_and_torch_cascades_agree_and_levels_are_ancestors() -> None:
    torch = pytest.importorskip("torch")
    h = load_hierarchy("cityscapes+vistas+gtsdb")
    rng = np.random.default_rng(0)
    scores = [rng.random((2, len(c.children), 5, 7)).astype(np.float32) for c in h.classifiers]
    nodes = h.cascade(scores)
    assert nodes.shape == (2, 5, 7) and set(np.unique(nodes)) <= set(h.leaves)
    t = h.cascade([torch.from_numpy(s) for s in scores])
    np.testing.assert_array_equal(t.numpy(), nodes)
    owners, tables = [c.node for c in h.classifiers], h.child_table
    np.testing.assert_array_equal(cascade(scores, owners, tables), nodes)
    for k in range(1, h.depth + 1):
        np.testing.assert_array_equal(h.cascade(scores, stop_level=k), h.node_at_level(nodes, k))
    # one classifier by hand: the root's argmax picks the child
    j0 = np.argmax(scores[0], axis=1)
    top = np.asarray(h.classifiers[0].children)[j0]
    np.testing.assert_array_equal(h.cascade(scores, stop_level=1), top)
