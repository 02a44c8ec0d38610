"""The bundled tree over Cityscapes, Mapillary Vistas v2.0 and GTSDB (issue 19): every v2.0 label placed,
the v1.2 tree's node names kept (so the v1.2 mappings and extensions still fit), merge settles it, and
the tables a v2.0 label array compiles to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from labeltree.cli import main
from labeltree.core.hierarchy import IGNORE, NO_TARGET
from labeltree.core.tree_file import bundled_hierarchies, load_hierarchy
from labeltree.synth.world import WORLD_NODES
from labeltree.train.config import load_config

ROOT = Path(__file__).resolve().parents[2]
V2 = "cityscapes+vistas-v2.0+gtsdb"
V12 = "cityscapes+vistas+gtsdb"
TREE_FILE = ROOT / "taxonomies" / "hierarchies" / f"{V2}.yaml"


@pytest.fixture(scope="module")
def h():
    return load_hierarchy(V2)


@pytest.fixture(scope="module")
def v12():
    return load_hierarchy(V12)


def merge_json(*args: str) -> dict:
    res = CliRunner().invoke(main, ["merge", "cityscapes", "vistas-v2.0", "gtsdb", *args, "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_every_vistas_v2_id_is_mapped_or_ignored(h):
    m = h.mapping("vistas-v2.0")
    assert sorted(m.to_node) == list(range(124))
    assert sorted(c for c, n in m.to_node.items() if n is None) == [86, 115, 119, 121, 122, 123]
    # on inner nodes: the ambiguous classes and the sign faces (as v1.2's Traffic Sign (Front))
    inner = {c: h.nodes[n].name for c, n in m.to_node.items() if n is not None and h.nodes[n].children}
    assert inner == {2: "Barrier", 38: "Lane Marking - General", 79: "Billboard", 96: "Traffic Sign",
                     99: "Traffic Sign (Front)", 100: "Traffic Sign (Front)", 101: "Traffic Sign (Front)",
                     103: "Traffic Sign (Front)"}
    assert m.taxonomy.by_id(35).display == "Lane Marking - Dashed Line"  # config_v2.0.json order
    assert h.nodes[m.to_node[35]].name == "Lane Marking - Dashed Line"
    assert h.nodes[m.to_node[58]].name == "Lane Marking (only) - Text"  # 'Test' in the config


def test_v12_mappings_give_the_same_node_names(h, v12):
    for ds in ("cityscapes", "gtsdb", "cityscapes-extended"):
        a, b = v12.mapping(ds).to_node, h.mapping(ds).to_node
        assert set(a) == set(b)
        for cid in a:
            if a[cid] is None:
                assert b[cid] is None
                continue
            # same name and the same place: the names on the path from the root agree
            assert [v12.nodes[n].name for n in v12.path_to(a[cid])] == [h.nodes[n].name for n in h.path_to(b[cid])]
    assert set(WORLD_NODES) <= set(h.index)  # the synthetic street paints these
    assert {n.name for n in v12.nodes} <= set(h.index)  # every v1.2 node name is kept


def test_classifier_sizes_and_the_gtsdb_subtree(h, v12):
    assert [(c.name, len(c.children)) for c in h.classifiers] == [
        ("root", 58), ("Barrier", 6), ("Driveable", 13), ("Lane Marking - Crosswalk", 2),
        ("Lane Marking - General", 21), ("Rider", 3), ("Billboard", 5), ("Traffic Light", 6),
        ("Traffic Sign", 2), ("Traffic Sign (Front)", 43)]
    assert len(h.leaves) == 150
    names = {c.name: [h.nodes[k].name for k in c.children] for c in h.classifiers}
    assert names["Traffic Light"] == [
        "Traffic Light - General (Single)", "Traffic Light - Pedestrians", "Traffic Light - General (Upright)",
        "Traffic Light - General (Horizontal)", "Traffic Light - Cyclists", "Traffic Light - Other"]
    assert names["Lane Marking - Crosswalk"] == ["Lane Marking - Crosswalk (Zebra)", "Lane Marking (only) - Crosswalk"]
    old = {c.name: [v12.nodes[k].name for k in c.children] for c in v12.classifiers}
    assert names["Traffic Sign"] == old["Traffic Sign"] == ["Traffic Sign (Back)", "Traffic Sign (Front)"]
    assert names["Traffic Sign (Front)"] == old["Traffic Sign (Front)"]
    assert names["Rider"] == old["Rider"]
    # who trains what (the single-child rule, the Cityscapes Driveable override, GTSDB's box rule)
    sup = {d: h.tables(d).supervised.tolist() for d in ("cityscapes", "vistas-v2.0", "gtsdb")}
    assert sup == {"cityscapes": [True] + [False] * 9, "vistas-v2.0": [True] * 9 + [False],
                   "gtsdb": [False] * 9 + [True]}


LOD = {("cityscapes:road", "Driveable"), ("cityscapes:traffic light", "Traffic Light"),
       ("cityscapes:traffic sign", "Traffic Sign (Front)"), ("cityscapes:rider", "Rider"),
       ("vistas-v2.0:Traffic Sign - Ambiguous", "Traffic Sign"),
       ("vistas-v2.0:Traffic Sign (Front)", "Traffic Sign (Front)"),
       ("vistas-v2.0:Traffic Sign - Direction (Front)", "Traffic Sign (Front)"),
       ("vistas-v2.0:Traffic Sign - Parking", "Traffic Sign (Front)"),
       ("vistas-v2.0:Traffic Sign - Temporary (Front)", "Traffic Sign (Front)")}


def test_merge_picks_the_bundled_tree_and_the_rules_file_gives_the_same(h):
    bundled = merge_json()
    rules = merge_json("--rules", str(TREE_FILE))
    assert bundled["source"]["kind"] == "bundled" and Path(bundled["source"]["file"]).name == TREE_FILE.name
    assert rules["source"]["kind"] == "rules" and rules["name_matches"] == []
    for k in ("nodes", "classifiers", "leaves", "datasets", "coverage", "conflicts"):
        assert rules[k] == bundled[k], k
    counts = {d: c["counts"] for d, c in bundled["coverage"].items()}
    assert counts == {"cityscapes": {"leaves": 23, "inner": 4, "ignored": 8, "unmapped": 0},
                      "vistas-v2.0": {"leaves": 110, "inner": 8, "ignored": 6, "unmapped": 0},
                      "gtsdb": {"leaves": 43, "inner": 0, "ignored": 0, "unmapped": 0}}
    kinds = {c["kind"] for c in bundled["conflicts"]}
    assert not kinds & {"unmapped", "unmatched", "includes", "contains"}
    # every level-of-detail report is a class the tree file puts on an inner node on purpose
    lod = {(c["classes"][0], c["node"]) for c in bundled["conflicts"] if c["kind"] == "level-of-detail"}
    assert lod == LOD
    assert all(h.nodes[h.index[node]].children for _, node in lod)


EXTENSION = """extends: {base}
datasets: [{ds}]
add:
  Bicycle: [Standard Bicycle, Cargo Bike]
mappings:
  {ds}:
    by_name: true
    map: {map}
    ignore: [{ignore}]
"""


def extend(tmp_path: Path, base: str, ds: str, map_: str, ignore: str, add: bool = True) -> Path:
    text = EXTENSION.format(base=base, ds=ds, map=map_, ignore=ignore)
    p = tmp_path / f"ext-{Path(ds).stem}-{base}.yaml"
    p.write_text(text if add else text.replace("add:\n  Bicycle: [Standard Bicycle, Cargo Bike]\n", ""))
    return p


@pytest.mark.parametrize("base", [V12, V2])
def test_an_extension_written_for_the_v12_tree_fits(tmp_path, base):
    """A made-up dataset extending either tree (new nodes under Bicycle, a class on an inner node): the
    same node names on both."""
    (tmp_path / "bikes.csv").write_text("id,name,color\n0,unlabeled,0 0 0\n1,road,128 64 128\n"
                                        "2,bicyclist,255 0 100\n3,bicycle,119 11 32\n4,cargo bike,0 130 200\n"
                                        "5,traffic light,250 170 30\n")
    res = CliRunner().invoke(main, ["import", "table", str(tmp_path / "bikes.csv"), "--name", "bikes", "-o",
                                    str(tmp_path / "bikes.yaml")])
    assert res.exit_code == 0, res.output
    e = load_hierarchy(extend(tmp_path, base, "bikes.yaml", "{road: Driveable, bicycle: Standard Bicycle}",
                              "unlabeled"))
    got = {c: (e.nodes[n].name if n is not None else None) for c, n in e.mapping("bikes.yaml").to_node.items()}
    assert got == {0: None, 1: "Driveable", 2: "Bicyclist", 3: "Standard Bicycle", 4: "Cargo Bike",
                   5: "Traffic Light"}


V12_EXTENSIONS = sorted(n for n, p in bundled_hierarchies().items()
                        if "authors" not in n and (yaml.safe_load(p.read_text()) or {}).get("extends") == V12)


@pytest.mark.parametrize("name", V12_EXTENSIONS)
def test_the_bundled_extensions_of_the_v12_tree_fit_the_v2_tree(tmp_path, name):
    """BDD100K's and IDD's extension files, re-based on this tree unchanged otherwise: each class on a node
    of the same name."""
    path = bundled_hierarchies()[name]
    data = yaml.safe_load(path.read_text())
    data["extends"], data["name"] = V2, f"{name}-on-v2"
    (tmp_path / "ext.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    a, b = load_hierarchy(path), load_hierarchy(tmp_path / "ext.yaml")
    added = [d for d in a.mappings if d not in load_hierarchy(V12).mappings]
    assert added
    for ds in added:
        names = [{c: (t.nodes[n].name if n is not None else None) for c, n in t.mapping(ds).to_node.items()}
                 for t in (a, b)]
        assert names[0] == names[1], ds


def test_vistas_v12_by_name_alone_lands_where_the_v12_tree_puts_it(tmp_path, v12):
    """Vistas v1.2 added to the v2.0 tree with no explicit line: each class on the node of the v1.2 tree's name
    (its classes that v2.0 splits now on inner nodes)."""
    e = load_hierarchy(extend(tmp_path, V2, "vistas", "{}", "Unlabeled", add=False))
    got = {c: (e.nodes[n].name if n is not None else None) for c, n in e.mapping("vistas").to_node.items()}
    want = {c: (v12.nodes[n].name if n is not None else None) for c, n in v12.mapping("vistas").to_node.items()}
    assert got == want
    inner = sorted({name for name in got.values() if name is not None and e.nodes[e.index[name]].children})
    assert inner == ["Barrier", "Billboard", "Lane Marking - Crosswalk", "Lane Marking - General", "Traffic Light",
                     "Traffic Sign (Front)"]


def test_v12_lane_marking_and_its_v2_kinds(tmp_path, h):
    """A v1.2-level 'Lane Marking - General' pixel trains the classifiers above the inner node only; a v2.0
    dashed line trains those with the same targets and the Lane Marking - General classifier too; each is
    read back at the depth its dataset annotates."""
    e = load_hierarchy(extend(tmp_path, V2, "vistas", "{}", "Unlabeled", add=False))
    assert [c.name for c in e.classifiers] == [c.name for c in h.classifiers]
    j = {c.name: k for k, c in enumerate(e.classifiers)}
    old, new = e.tables("vistas"), e.tables("vistas-v2.0")
    general, dashed = 24, 35  # 'Lane Marking - General' in v1.2, 'Lane Marking - Dashed Line' in v2.0
    assert e.nodes[old.value_to_node[general]].name == "Lane Marking - General"
    assert old.targets[:, general].tolist() == [7, NO_TARGET, 9] + [NO_TARGET] * 7  # root: Driveable; Driveable: LMG
    assert new.targets[:, dashed].tolist() == [7, NO_TARGET, 9, NO_TARGET, 0] + [NO_TARGET] * 5
    assert old.supervised[j["Driveable"]] and not old.supervised[j["Lane Marking - General"]]
    assert new.supervised[j["Lane Marking - General"]]
    # a predicted dashed line is v1.2's 'Lane Marking - General', v2.0's dashed line, Cityscapes' road
    node = e.index["Lane Marking - Dashed Line"]
    assert (old.node_to_value[node], new.node_to_value[node], e.tables("cityscapes").node_to_value[node]) == (
        24, 35, 7)


def test_a_dense_v2_label_array_through_the_tables(h):
    t = h.tables("vistas-v2.0")
    labels = np.array([[21, 35, 45],  # Road, Lane Marking - Dashed Line, Lane Marking - Crosswalk (zebra)
                       [96, 123, 90]], dtype=np.uint8)  # Traffic Sign - Ambiguous, Unlabeled, Traffic Light (Single)
    nodes = t.nodes_of(labels)
    assert nodes.tolist() == [[20, 27, 24], [99, IGNORE, 93]]
    assert [h.nodes[n].name for n in (20, 27, 24, 99, 93)] == [
        "Road", "Lane Marking - Dashed Line", "Lane Marking - Crosswalk (Zebra)", "Traffic Sign",
        "Traffic Light - General (Single)"]
    n = NO_TARGET
    expect = {"root": [[7, 7, 7], [42, n, 41]], "Driveable": [[5, 9, 8], [n, n, n]],
              "Lane Marking - Crosswalk": [[n, n, 0], [n, n, n]], "Lane Marking - General": [[n, 0, n], [n, n, n]],
              "Traffic Light": [[n, n, n], [n, n, 0]]}
    for j, c in enumerate(h.classifiers):
        assert t.targets[j][labels].tolist() == expect.get(c.name, [[n] * 3] * 2), c.name
    # the same nodes read as Cityscapes: road, road, road / (no class at Traffic Sign), -, traffic light
    cs = h.tables("cityscapes").node_to_value
    assert [int(cs[k]) for k in (20, 27, 24, 99, 93)] == [7, 7, 7, -1, 19]


def test_several_classes_on_one_node_read_back_as_the_one_named_like_it(h):
    """Four v2.0 sign-face kinds share Traffic Sign (Front): a prediction there (or on a GTSDB sign below
    it) is v2.0's 'Traffic Sign (Front)' (100), not the lowest id (99, Direction (Front))."""
    n2v = h.tables("vistas-v2.0").node_to_value
    assert [int(n2v[h.index[k]]) for k in ("Traffic Sign (Front)", "Sign: stop", "Traffic Sign (Back)", "Person")
            ] == [100, 100, 97, 30]


def test_configs_on_the_v2_tree_are_the_v12_recipes():
    for name, base, tree in (("paper-vistas-v2", "paper", f"{V2}-authors"), ("cpu-tiny-vistas-v2", "cpu-tiny", V2)):
        c, b = load_config(name), load_config(base)
        assert c.hierarchy == tree
        e = load_hierarchy(c.hierarchy)
        for d in [*c.datasets, *c.eval_datasets]:
            e.tables(d.name)  # each is a dataset of the tree
        assert [d.name for d in c.datasets] == ["cityscapes", "vistas-v2.0", "gtsdb"]
        for x, y in zip(c.datasets, b.datasets, strict=True):
            assert x.model_dump(exclude={"name", "root"}) == y.model_dump(exclude={"name", "root"})
        assert (c.model, c.loss, c.train, c.eval_datasets) == (b.model, b.loss, b.train, b.eval_datasets)
        assert c.optim.model_dump(exclude={"epoch_dataset"}) == b.optim.model_dump(exclude={"epoch_dataset"})
    assert load_config("cpu-tiny-vistas-v2").datasets[1].root == "vistas-v2.0"
    assert load_config("paper-vistas-v2").optim.epoch_dataset == "vistas-v2.0"
    # the authors' variant: one supervision difference, Cityscapes trains Traffic Sign (Back / Front)
    base, authors = load_hierarchy(V2), load_hierarchy(f"{V2}-authors")
    j = [c.name for c in base.classifiers].index("Traffic Sign")
    diff = base.tables("cityscapes").supervised != authors.tables("cityscapes").supervised
    assert np.flatnonzero(diff).tolist() == [j] and authors.tables("cityscapes").supervised[j]
