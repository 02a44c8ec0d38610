"""Path confidence and back-off (labeltree.core.confidence): a hand-built three-level tree with given scores
backs off exactly where the products say; numpy and torch agree; T = 0 is the plain cascade; a backed-off
node is written as the dataset's class at that node where it has one, else its no-class value."""

from __future__ import annotations

import numpy as np
import pytest

from labeltree.core.confidence import check_min_confidence, confidence_png, confident_cascade
from labeltree.core.tree_file import load_hierarchy
from labeltree.datasets.base import no_class_value
from labeltree.errors import LabeltreeError

# root(0) -> A(1), B(2);  A -> A1(3), A2(4);  A1 -> x(5), y(6)
OWNERS, CHILDREN, LEVELS = [0, 1, 3], [[1, 2], [3, 4], [5, 6]], [1, 2, 3]


def hand_scores() -> list[np.ndarray]:
    """Two pixels: (0) A 0.9 -> A1 0.8 -> x 0.6 (paths 0.9, 0.72, 0.432); (1) B 0.7, a leaf."""
    s0 = np.array([[0.9, 0.3], [0.1, 0.7]], np.float32)  # [C, pixels]
    s1 = np.array([[0.8, 0.5], [0.2, 0.5]], np.float32)
    s2 = np.array([[0.6, 0.1], [0.4, 0.9]], np.float32)
    return [s[:, None, :] for s in (s0, s1, s2)]  # [C, H=1, W=2]


@pytest.mark.parametrize(("t", "nodes", "conf"), [
    (0.0, [5, 2], [0.9 * 0.8 * 0.6, 0.7]),
    (0.4, [5, 2], [0.9 * 0.8 * 0.6, 0.7]),
    (0.5, [3, 2], [0.9 * 0.8, 0.7]),
    (0.7, [3, 2], [0.9 * 0.8, 0.7]),  # B's 0.7 is at least 0.7: kept
    (0.71, [3, 0], [0.9 * 0.8, 1.0]),
    (0.75, [1, 0], [0.9, 1.0]),
    (0.95, [0, 0], [1.0, 1.0]),
])
def test_hand_built_three_levels_back_off_where_the_products_say(t: float, nodes: list[int], conf: list[float]) -> None:
    pc = confident_cascade(hand_scores(), OWNERS, CHILDREN, LEVELS, t)
    assert pc.nodes.tolist() == [nodes]
    np.testing.assert_allclose(pc.confidence[0], conf, rtol=1e-6)
    # per level: the chosen probability of the classifier asked there, accepted or not (1 where none was)
    asked = [0.9, 0.8 if nodes[0] else 1.0, 0.6 if nodes[0] in (3, 5) else 1.0]
    np.testing.assert_allclose(np.stack(pc.levels)[:, 0, 0], asked, rtol=1e-6)
    np.testing.assert_allclose(np.stack(pc.levels)[:, 0, 1], [0.7, 1.0, 1.0], rtol=1e-6)


def test_numpy_and_torch_agree_and_zero_is_the_plain_cascade() -> None:
    torch = pytest.importorskip("torch")
    h = load_hierarchy("cityscapes+vistas+gtsdb")
    rng = np.random.default_rng(0)
    logits = [rng.normal(0, 2, (2, len(c.children), 6, 5)).astype(np.float32) for c in h.classifiers]
    probs = [np.exp(x) / np.exp(x).sum(1, keepdims=True) for x in logits]
    plain = h.cascade(probs)
    zero = h.confident_cascade(probs)
    np.testing.assert_array_equal(zero.nodes, plain)
    np.testing.assert_allclose(zero.confidence, np.prod(np.stack(zero.levels), axis=0), rtol=1e-6)
    for t in (0.3, 0.6, 0.9):
        a = h.confident_cascade(probs, t)
        b = h.confident_cascade([torch.from_numpy(p) for p in probs], t)
        np.testing.assert_array_equal(b.nodes.numpy(), a.nodes)
        np.testing.assert_allclose(b.confidence.numpy(), a.confidence, rtol=1e-6)
        assert (a.confidence >= t).all()
        # backed-off pixels stand on an ancestor of the leaf the plain cascade reaches
        for n, leaf in zip(a.nodes.ravel().tolist(), plain.ravel().tolist(), strict=True):
            assert n in h.ancestors(leaf)
    assert (h.confident_cascade(probs, 0.6).nodes != plain).any()


def test_backed_off_node_in_dataset_ids() -> None:
    """Front -> Cityscapes' 'traffic sign' (20); Traffic Sign (level 1): no Cityscapes class -> no-class value."""
    from labeltree.train.predict import dataset_table

    h = load_hierarchy("cityscapes+vistas+gtsdb")
    m = h.mapping("cityscapes")
    table = dataset_table(h, "cityscapes")["values"]
    assert table[h.index["Traffic Sign (Front)"]] == 20
    assert table[h.index["Traffic Sign"]] == no_class_value(m.taxonomy, m.to_node) == 0
    assert table[0] == 0  # backed off to the root


def test_threshold_and_png_scale() -> None:
    for bad in (-0.1, 1.5, float("nan"), "0.5", True, [0.5], None):  # lt.predict(min_confidence="0.5"): TypeError
        with pytest.raises(LabeltreeError, match="--min-confidence"):
            check_min_confidence(bad)
    assert confidence_png(np.array([0.0, 0.5, 1.0])).tolist() == [0, 32768, 65535]
