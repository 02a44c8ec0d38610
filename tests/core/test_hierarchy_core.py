"""Compiled lookup tables and the cascade against hand-written expectations."""

import numpy as np
import pytest

from labeltree.core.hierarchy import IGNORE, NO_TARGET, UNKNOWN
from labeltree.core.tree_file import load_hierarchy


@pytest.fixture(scope="module")
def h():
    return load_hierarchy("cityscapes+vistas+gtsdb")


def node(h, name):
    return h.index[name]


def test_classifier_sizes(h):
    assert [len(c.children) for c in h.classifiers] == [53, 10, 3, 2, 43]
    assert [c.name for c in h.classifiers] == ["root", "Driveable", "Rider", "Traffic Sign",
                                               "Traffic Sign (Front)"]
    assert [c.level for c in h.classifiers] == [1, 2, 2, 2, 3]
    assert len(h.leaves) == 107


def test_cityscapes_tables(h):
    t = h.tables("cityscapes")
    root = h.classifiers[0]
    assert t.value_to_node[7] == node(h, "Driveable")  # road -> internal node
    assert t.value_to_node[20] == node(h, "Traffic Sign (Front)")
    assert t.value_to_node[25] == node(h, "Rider")
    assert t.value_to_node[31] == node(h, "On Rails")
    assert t.value_to_node[0] == IGNORE and t.value_to_node[18] == IGNORE
    # root targets: position of the root child on the path
    assert t.targets[0, 7] == root.children.index(node(h, "Driveable"))
    assert t.targets[0, 20] == root.children.index(node(h, "Traffic Sign"))
    assert t.targets[0, 9] == root.children.index(node(h, "Driveable"))  # parking
    # Cityscapes is kept out of Driveable (override) and Traffic Sign (single child rule)
    assert t.targets[1, 9] == NO_TARGET
    assert t.targets[3, 20] == NO_TARGET
    assert t.targets[0, 0] == NO_TARGET
    assert t.supervised.tolist() == [True, False, False, False, False]
    # predicted node -> cityscapes id at the depth it annotates
    assert t.node_to_value[node(h, "Lane Marking - General")] == 7
    assert t.node_to_value[node(h, "Parking")] == 9
    assert t.node_to_value[node(h, "Sign: stop")] == 20
    assert t.node_to_value[node(h, "Bicyclist")] == 25
    assert t.node_to_value[node(h, "Traffic Sign (Back)")] == -1
    assert t.node_to_value[node(h, "Bird")] == -1


def test_vistas_tables(h):
    t = h.tables("vistas")
    front = node(h, "Traffic Sign (Front)")
    assert t.value_to_node[50] == front
    assert t.value_to_node[49] == node(h, "Traffic Sign (Back)")
    assert t.value_to_node[24] == node(h, "Lane Marking - General")
    assert t.value_to_node[65] == IGNORE
    drive = h.classifiers[1]
    assert t.targets[1, 24] == drive.children.index(node(h, "Lane Marking - General"))
    assert t.targets[3, 50] == 1 and t.targets[3, 49] == 0
    assert t.targets[4, 50] == NO_TARGET  # Vistas has no sign classes
    assert t.supervised.tolist() == [True, True, True, True, False]
    assert t.node_to_value[node(h, "Sign: give way")] == 50


def test_gtsdb_tables(h):
    t = h.tables("gtsdb")
    assert len(t.value_to_node) == 2043
    assert t.value_to_node[0] == IGNORE and t.value_to_node[1] == UNKNOWN
    assert t.value_to_node[2014] == node(h, "Sign: stop")
    assert t.targets[4, 2014] == 14
    assert (t.targets[:4, 2014] == NO_TARGET).all()  # boxes never train above their node
    assert t.box_classifier == 4


def test_cascade_numpy_and_torch(h):
    rng = np.random.default_rng(0)
    scores = [rng.normal(size=(len(c.children), 2, 3)).astype(np.float32) for c in h.classifiers]
    root = h.classifiers[0]
    # pixel (0,0): Traffic Sign -> Front -> class 14 (stop); pixel (0,1): Driveable -> Manhole
    scores[0][:, 0, 0] = -9
    scores[0][root.children.index(node(h, "Traffic Sign")), 0, 0] = 9
    scores[3][:, 0, 0] = [0, 1]
    scores[4][:, 0, 0] = 0
    scores[4][14, 0, 0] = 5
    scores[0][:, 0, 1] = -9
    scores[0][root.children.index(node(h, "Driveable")), 0, 1] = 9
    scores[1][:, 0, 1] = 0
    scores[1][h.classifiers[1].children.index(node(h, "Manhole")), 0, 1] = 3
    out = h.cascade(scores)
    assert out[0, 0] == node(h, "Sign: stop")
    assert out[0, 1] == node(h, "Manhole")
    assert set(out.ravel().tolist()) <= set(h.leaves)
    assert h.cascade(scores, stop_level=1)[0, 0] == node(h, "Traffic Sign")
    torch = pytest.importorskip("torch")
    tout = h.cascade([torch.from_numpy(s)[None] for s in scores])
    assert tout.shape == (1, 2, 3)
    assert np.array_equal(tout[0].numpy(), out)


def test_restricted_tree():
    h2 = load_hierarchy("cityscapes+vistas")
    assert [len(c.children) for c in h2.classifiers] == [53, 10, 3, 2]
    assert "Traffic Sign (Front)" in [h2.nodes[i].name for i in h2.leaves]
