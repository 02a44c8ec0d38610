"""stats.report: the three class weightings by hand and the tree roll-up on a hand-made tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from stats_helpers import BUILDING, CS, ROAD, SIDEWALK, UNLABELED, rows_by_value, run, write_cs

from labeltree.core.tree_file import load_hierarchy
from labeltree.stats.report import class_rows, rollup

# -- weights: hand computation on three images ----------------------------------------------------

def test_three_weightings_by_hand(tmp_path):
    # image 1 (2x3): road 4, sidewalk 2 | image 2: road 2, building 3, unlabeled 1 | image 3: sidewalk 1, building 5
    r, s, b, u = ROAD, SIDEWALK, BUILDING, UNLABELED
    write_cs(tmp_path, "train", "aachen", 0, np.array([[r, r, r], [r, s, s]], np.uint8))
    write_cs(tmp_path, "train", "aachen", 1, np.array([[r, r, b], [b, b, u]], np.uint8))
    write_cs(tmp_path, "train", "aachen", 2, np.array([[s, b, b], [b, b, b]], np.uint8))
    [g] = run(tmp_path, hierarchy=None)  # ignored: unlabeled only (the taxonomy's ignore_ids)
    rows = rows_by_value(class_rows(g))
    # pixels road 6, sidewalk 3, building 8; N = 17 annotated pixels, K = 3 classes present
    assert [rows[v]["pixels"] for v in (r, s, b)] == [6, 3, 8]
    assert [rows[v]["images"] for v in (r, s, b)] == [2, 2, 2]
    # share p = n / 17
    assert rows[r]["share"] == pytest.approx(0.3529412, rel=1e-6)
    assert rows[s]["share"] == pytest.approx(0.1764706, rel=1e-6)
    # inverse frequency N / (K n): 17/18, 17/9, 17/24
    assert rows[r]["w_inverse"] == pytest.approx(0.9444444, rel=1e-6)
    assert rows[s]["w_inverse"] == pytest.approx(1.8888889, rel=1e-6)
    assert rows[b]["w_inverse"] == pytest.approx(0.7083333, rel=1e-6)
    # median frequency: freq = n / annotated px of images holding the class (images: 6, 5, 6 annotated px)
    # road 6/11 = 0.5455, sidewalk 3/12 = 0.25, building 8/11 = 0.7273; median 0.5455
    assert rows[r]["frequency"] == pytest.approx(0.5454545, rel=1e-6)
    assert rows[s]["frequency"] == pytest.approx(0.25)
    assert rows[r]["w_median_freq"] == pytest.approx(1.0)
    assert rows[s]["w_median_freq"] == pytest.approx(2.1818182, rel=1e-6)
    assert rows[b]["w_median_freq"] == pytest.approx(0.75)
    # ENet 1 / ln(1.02 + p): 1/ln(1.372941) = 3.15502, 1/ln(1.196471) = 5.57488, 1/ln(1.490588) = 2.50519
    assert rows[r]["w_enet"] == pytest.approx(3.155019, rel=1e-6)
    assert rows[s]["w_enet"] == pytest.approx(5.574880, rel=1e-6)
    assert rows[b]["w_enet"] == pytest.approx(2.505193, rel=1e-6)
    assert rows[u]["w_enet"] is None and rows[u]["pixels"] == 1
    absent = CS.find("sky").id
    assert rows[absent]["pixels"] == 0 and rows[absent]["w_median_freq"] is None


# -- the tree roll-up on a hand-made tree --------------------------------------------------------

TOY_TAX = """\
name: {name}
annotation: dense
ignore_ids: [0]
encoding: {{format: png-ids, dtype: uint8}}
classes:
{classes}
"""

TOY_TREE = """\
name: toy-tree
datasets: [toy.yaml, toy2.yaml]
tree:
  - Ground: [Road, Marking]
  - Vehicle: [Car, Truck]
  - Sky
mappings:
  toy.yaml:
    map: {flat: Ground, road: Road, marking: Marking, car: Car, truck: Truck, sky: Sky}
    ignore: [void]
  toy2.yaml:
    map: {auto: Car, heaven: Sky}
    ignore: [void]
"""


def _toy_files(tmp_path: Path) -> Path:
    def classes(names):
        return "\n".join(f"- {{id: {i}, name: {n}, color: [{i}, {i}, {i}]}}" for i, n in enumerate(names))

    (tmp_path / "toy.yaml").write_text(TOY_TAX.format(
        name="toy", classes=classes(["void", "flat", "road", "marking", "car", "truck", "sky"])))
    (tmp_path / "toy2.yaml").write_text(TOY_TAX.format(name="toy2", classes=classes(["void", "auto", "heaven"])))
    (tmp_path / "tree.yaml").write_text(TOY_TREE)
    return tmp_path / "tree.yaml"


def _paint(counts: dict[int, int], width: int = 100) -> np.ndarray:
    flat = np.concatenate([np.full(n, v, np.uint8) for v, n in counts.items()])
    pad = (-flat.size) % width
    return np.concatenate([flat, np.zeros(pad, np.uint8)]).reshape(-1, width)


def test_rollup_on_hand_made_tree(tmp_path):
    tree = _toy_files(tmp_path)
    # toy: void 7, flat 10, road 100, marking 5, car 400, truck 2, sky 1000 (two images)
    write_cs(tmp_path / "toy", "train", "aachen", 0, _paint({1: 10, 2: 100, 3: 5, 0: 7}))
    write_cs(tmp_path / "toy", "train", "aachen", 1, _paint({4: 400, 5: 2, 6: 1000}))
    # toy2 labels only Car below Vehicle: it must not train the Vehicle classifier
    write_cs(tmp_path / "toy2", "train", "bremen", 0, _paint({1: 3000, 2: 50}))
    h = load_hierarchy(tree)
    groups = run(tmp_path / "toy", str(tmp_path / "toy.yaml"), hierarchy=h)
    groups += run(tmp_path / "toy2", str(tmp_path / "toy2.yaml"), hierarchy=h)
    contrib, summary = rollup(groups, h)
    got = {(r["classifier"], r["class"], r["dataset"]): (r["pixels"], r["trains"]) for r in contrib}
    assert got == {
        ("root", "Ground", "toy"): (115, True),  # flat 10 + road 100 + marking 5
        ("root", "Vehicle", "toy"): (402, True),
        ("root", "Sky", "toy"): (1000, True),
        ("Ground", "Road", "toy"): (100, True),  # 'flat' stops at Ground: nothing for the Ground classifier
        ("Ground", "Marking", "toy"): (5, True),
        ("Vehicle", "Car", "toy"): (400, True),
        ("Vehicle", "Truck", "toy"): (2, True),
        ("root", "Vehicle", "toy2"): (3000, True),
        ("root", "Sky", "toy2"): (50, True),
        ("Vehicle", "Car", "toy2"): (3000, False),  # single child reached -> excluded by the tree's rule
    }
    by = {r["classifier"]: r for r in summary}
    assert by["root"]["pixels"] == 115 + 402 + 1000 + 3000 + 50
    assert by["root"]["imbalance"] == pytest.approx(3402 / 115)
    assert by["root"]["max_class"] == "Vehicle" and by["root"]["min_class"] == "Ground"
    assert by["Ground"]["imbalance"] == pytest.approx(20.0) and not by["Ground"]["flag"]
    # Vehicle counts only the pixels that train it (toy): 400 / 2 = 200 > 100 -> flagged
    assert by["Vehicle"]["imbalance"] == pytest.approx(200.0) and by["Vehicle"]["flag"]
    assert by["Vehicle"]["pixels"] == 402 and by["Vehicle"]["datasets"] == "toy,toy2"
    # class rows carry the node each class maps to
    rows = {r["name"]: r for r in class_rows(groups[0], h)}
    assert (rows["flat"]["node"], rows["flat"]["level"]) == ("Ground", 1)
    assert rows["marking"]["node"] == "Marking" and rows["void"]["ignored"]
