"""Property tests: random valid trees with random dataset taxonomies mapped onto them compile to
consistent tables, the cascade always lands on a node of the tree, and tree files round-trip."""

import itertools
import tempfile
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labeltree.core.hierarchy import IGNORE, NO_TARGET, UNKNOWN
from labeltree.core.tree_file import hierarchy_from_dict, load_hierarchy, write_hierarchy

_counter = itertools.count()
TMP = Path(tempfile.mkdtemp(prefix="labeltree-props-"))

# A tree shape: None = leaf, list = internal node with >= 2 children.
shapes = st.recursive(st.none(), lambda kids: st.lists(kids, min_size=2, max_size=4), max_leaves=16)
roots = st.lists(shapes, min_size=2, max_size=5)


def build_tree(shape: list) -> tuple[list, list[str]]:
    """Name the nodes N0, N1, ... depth-first; return the tree-file list and all names."""
    names: list[str] = []

    def walk(items: list) -> list:
        out = []
        for it in items:
            name = f"N{len(names)}"
            names.append(name)
            out.append(name if it is None else {name: walk(it)})
        return out

    return walk(shape), names


@st.composite
def setups(draw):
    tree, names = build_tree(draw(roots))
    datasets = []
    for _ in range(draw(st.integers(1, 3))):
        boxes = draw(st.booleans()) and draw(st.booleans())
        dtype = draw(st.sampled_from(["uint8", "uint16"]))
        offset = draw(st.sampled_from([0, 1, 100])) if boxes else 0
        top = (255 if dtype == "uint8" else 700) - offset
        ids = draw(st.lists(st.integers(0, top), min_size=1, max_size=8, unique=True))
        unlabeled = 0 if boxes and offset > 0 else None
        targets = [draw(st.one_of(st.none(), st.sampled_from(names))) for _ in ids]
        datasets.append(dict(boxes=boxes, dtype=dtype, offset=offset, ids=ids, targets=targets, unlabeled=unlabeled))
    return tree, names, datasets


def make(tree: list, datasets: list[dict]) -> dict:
    """Write each taxonomy to its own file; return the tree-file dict that maps them."""
    keys, maps = [], {}
    for d in datasets:
        k = next(_counter)
        enc = {"format": "gtsdb-gt-txt" if d["boxes"] else "png-ids", "dtype": d["dtype"], "offset": d["offset"]}
        if d["unlabeled"] is not None:
            enc["unlabeled"] = d["unlabeled"]
        tax = {"name": f"ds{k}", "annotation": "boxes" if d["boxes"] else "dense", "encoding": enc,
               "classes": [{"id": i, "name": f"class {i}", "color": [i % 256, 7, 9]} for i in d["ids"]]}
        p = TMP / f"ds{k}.yaml"
        p.write_text(yaml.safe_dump(tax))
        keys.append(str(p))
        maps[str(p)] = {"map": {i: t for i, t in zip(d["ids"], d["targets"], strict=True) if t is not None},
                        "ignore": [i for i, t in zip(d["ids"], d["targets"], strict=True) if t is None]}
    return {"name": "random", "datasets": keys, "tree": tree, "mappings": maps}


SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(setups())
def test_random_trees_compile_to_consistent_tables(setup):
    tree, names, datasets = setup
    h = hierarchy_from_dict(make(tree, datasets), TMP / "tree.yaml")
    assert [n.name for n in h.nodes[1:]] == names
    assert all(len(c.children) >= 2 for c in h.classifiers)
    assert len(h.classifiers) == sum(1 for n in h.nodes if len(n.children) >= 2)
    n_cls, n_nodes = len(h.classifiers), len(h.nodes)
    for key, d in zip(h.mappings, datasets, strict=True):
        t = h.tables(key)
        size = h.mappings[key].taxonomy.lut_size
        assert t.value_to_node.shape == (size,) and t.targets.shape == (n_cls, size)
        assert t.targets.dtype == np.uint8 and t.supervised.shape == (n_cls,) and t.node_to_value.shape == (n_nodes,)
        for j, c in enumerate(h.classifiers):
            row = t.targets[j]
            assert ((row == NO_TARGET) | (row < len(c.children))).all()
        stored = {i + d["offset"]: tgt for i, tgt in zip(d["ids"], d["targets"], strict=True)}
        special = set(stored) | ({d["unlabeled"]} if d["unlabeled"] is not None else set())
        rest = np.array([v for v in range(size) if v not in special], dtype=np.int64)
        assert (t.value_to_node[rest] == UNKNOWN).all() and (t.targets[:, rest] == NO_TARGET).all()
        for v in special:
            node = int(t.value_to_node[v])
            if v in stored:
                assert node == (IGNORE if stored[v] is None else h.index[stored[v]])
            else:
                assert node == IGNORE
            above = set(h.ancestors(node)) - {node} if node >= 0 else set()
            path = set(h.path_to(node)) if node >= 0 else set()
            for j, c in enumerate(h.classifiers):
                if c.node in above and t.supervised[j]:
                    assert c.children[t.targets[j, v]] in path
                else:
                    assert t.targets[j, v] == NO_TARGET
        if d["boxes"]:  # boxes train only the classifiers right above their nodes
            parents = {h.nodes[h.index[x]].parent for x in d["targets"] if x is not None}
            assert {c.node for j, c in enumerate(h.classifiers) if t.supervised[j]} <= parents
        mapped = {h.index[x] for x in d["targets"] if x is not None}
        for i in range(n_nodes):
            v = t.node_to_value[i]
            if v < 0:
                assert not mapped & set(h.ancestors(i))
            else:
                assert t.value_to_node[v] in h.ancestors(i)
                if i in mapped:
                    assert t.value_to_node[v] == i


@SETTINGS
@given(setups(), st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_cascade_returns_tree_nodes(setup, seed, stop):
    tree, _names, datasets = setup
    h = hierarchy_from_dict(make(tree, datasets), TMP / "tree.yaml")
    rng = np.random.default_rng(seed)
    scores = [rng.normal(size=(len(c.children), 3, 4)).astype(np.float32) for c in h.classifiers]
    out = h.cascade(scores)
    assert out.shape == (3, 4)
    assert set(out.ravel().tolist()) <= set(h.leaves)
    part = h.cascade(scores, stop_level=stop)
    for n in set(part.ravel().tolist()):
        assert 0 < n < len(h.nodes)
        assert not h.nodes[n].children or h.classifiers[h.classifier_of[n]].level > stop


@settings(max_examples=15, deadline=None)
@given(setups())
def test_tree_file_round_trip(setup):
    tree, _names, datasets = setup
    h = hierarchy_from_dict(make(tree, datasets), TMP / "tree.yaml")
    out = TMP / f"out{next(_counter)}.yaml"
    write_hierarchy(h, out)
    h2 = load_hierarchy(out)
    a, b = h.to_json(), h2.to_json()
    assert a["nodes"] == b["nodes"] and a["leaves"] == b["leaves"]
    strip = [{k: v for k, v in c.items() if k != "datasets"} for c in a["classifiers"]]
    assert strip == [{k: v for k, v in c.items() if k != "datasets"} for c in b["classifiers"]]
    assert [len(c["datasets"]) for c in a["classifiers"]] == [len(c["datasets"]) for c in b["classifiers"]]
    assert list(a["datasets"].values()) == list(b["datasets"].values())
    for k1, k2 in zip(h.mappings, h2.mappings, strict=True):
        t1, t2 = h.tables(k1), h2.tables(k2)
        for f in ("value_to_node", "targets", "supervised", "node_to_value"):
            assert np.array_equal(getattr(t1, f), getattr(t2, f))
