"""`labeltree stats`: exact counts, the three class weightings, the tree roll-up, shards, cache, bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import cityscapes_frame, cityscapes_key
from click.testing import CliRunner
from PIL import Image

from labeltree.cli import main
from labeltree.core.taxonomy import load_taxonomy
from labeltree.core.tree_file import load_hierarchy
from labeltree.datasets import cityscapes
from labeltree.errors import LabeltreeError
from labeltree.stats import collect as st

CS = load_taxonomy("cityscapes")
ROAD, SIDEWALK, BUILDING = (CS.find(n).id for n in ("road", "sidewalk", "building"))
UNLABELED = CS.find("unlabeled").id


# -- helpers: tiny datasets in native layouts ------------------------------------------------------

def cs_label_path(root: Path, split: str, city: str, i: int) -> Path:
    return cityscapes.label_path(root, split, city, cityscapes_key(city, i))


def write_cs(root: Path, split: str, city: str, i: int, arr: np.ndarray, inst: np.ndarray | None = None) -> Path:
    cityscapes_frame(root, split, city, i, arr, instances=inst)
    return cs_label_path(root, split, city, i)


def random_cs(root: Path, n: int, seed: int = 0, split: str = "train") -> list[np.ndarray]:
    """Blocky random Cityscapes labels of varying sizes (ids 0..33), some classes absent from some images."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = int(rng.integers(20, 60)), int(rng.integers(30, 90))
        ids = rng.choice(np.arange(34), size=int(rng.integers(3, 12)), replace=False)
        small = rng.choice(ids, size=((h + 3) // 4, (w + 3) // 4))
        arr = np.kron(small, np.ones((4, 4), dtype=np.int64))[:h, :w].astype(np.uint8)
        write_cs(root, split, "aachen" if i % 2 else "bremen", i, arr)
        out.append(arr)
    return out


def rows_by_value(rows: list[dict], split: str | None = None) -> dict[int, dict]:
    return {r["value"]: r for r in rows if split is None or r["split"] == split}


def run(root, dataset="cityscapes", tmp_cache=None, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    if tmp_cache is None:
        kw.setdefault("cache", False)
    else:
        kw["cache_dir"] = tmp_cache
    return st.collect_stats(dataset, root, **kw)


# -- counting ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (256, 257), (301, 300)])
def test_count_values_equals_bincount(shape):
    rng = np.random.default_rng(1)
    a8 = rng.integers(0, 256, size=shape, dtype=np.uint8)
    assert np.array_equal(st.count_values(a8, 256), np.bincount(a8.ravel(), minlength=256))
    a16 = rng.integers(0, 2100, size=shape).astype(np.uint16)
    assert np.array_equal(st.count_values(a16, 2100), np.bincount(a16.ravel(), minlength=2100))
    # a non-contiguous view (a crop) counts the same
    assert np.array_equal(st.count_values(a8[:, ::2], 34), np.bincount(a8[:, ::2].ravel(), minlength=256))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_count_values_over_runs_is_exact(dtype):
    """Piecewise-constant maps (the run-length path): equal to a plain bincount, incl. single-pixel runs."""
    rng = np.random.default_rng(2)
    top = 34 if dtype == np.uint8 else 33_008
    blocks = rng.integers(0, top, size=(40, 30))
    a = np.kron(blocks, np.ones((13, 11), dtype=np.int64))[:512, :300].astype(dtype)  # 153600 px, ~3% runs
    a[0, 0], a[-1, -1], a[200, 150] = top - 1, 0, 7  # runs of one pixel at both ends and inside
    want = np.bincount(a.ravel(), minlength=top)
    got = st.count_values(a, top)
    assert got.dtype == np.int64 and np.array_equal(got, want)
    assert np.array_equal(st.count_values(a), np.bincount(a.ravel()))  # no minlength: up to the largest value
    const = np.full((300, 300), 5, dtype=dtype)
    assert st.count_values(const, 34).tolist() == [0] * 5 + [90_000] + [0] * 28


def test_pixel_and_image_counts_match_numpy(tmp_path):
    labels = random_cs(tmp_path, 9)
    h = load_hierarchy()
    [g] = run(tmp_path, hierarchy=h)
    stacked = np.concatenate([a.ravel() for a in labels])
    direct = np.bincount(stacked, minlength=34)
    present = sum((np.bincount(a.ravel(), minlength=34) > 0).astype(int) for a in labels)
    rows = rows_by_value(st.class_rows(g, h))
    for v in range(34):
        assert rows[v]["pixels"] == direct[v]
        assert rows[v]["images"] == present[v]
    # Table I: images, megapixel range, annotated = pixels of classes the tree does not ignore
    s = st.summary_row(g)
    mp = sorted(a.size / 1e6 for a in labels)
    assert s["images"] == 9 and s["pixels"] == stacked.size
    assert s["mp_min"] == pytest.approx(mp[0]) and s["mp_max"] == pytest.approx(mp[-1])
    assert s["mp_median"] == pytest.approx(mp[4])
    ignored = [c.id for c in CS.classes if c.id >= 0 and h.mapping("cityscapes").to_node[c.id] is None]
    assert set(ignored) == set(g.ignored)
    assert s["annotated_pixels"] == int(direct.sum() - direct[ignored].sum())
    shares = [r["share"] for r in rows.values() if r["share"] is not None]
    assert sum(shares) == pytest.approx(1.0)
    assert all(rows[v]["share"] is None for v in ignored)


def test_instances_from_instance_ids(tmp_path):
    person, car, sky = (CS.find(n).id for n in ("person", "car", "sky"))
    lab = np.full((6, 8), sky, np.uint8)
    inst = lab.astype(np.uint16).copy()
    lab[0:2, 0:2] = person
    inst[0:2, 0:2] = person * 1000 + 0  # 4 px
    lab[4:6, 0:3] = person
    inst[4:6, 0:3] = person * 1000 + 1  # 6 px
    lab[0:3, 5:8] = car
    inst[0:3, 5:8] = car * 1000 + 0  # 9 px
    lab[5, 7] = car
    inst[5, 7] = car  # crowd pixel: no instance id, not counted as an instance
    write_cs(tmp_path, "val", "lindau", 0, lab, inst)
    [g] = run(tmp_path)
    rows = rows_by_value(st.class_rows(g))
    assert (rows[person]["instances"], rows[person]["instance_pixels"]) == (2, 10)
    assert rows[person]["mean_instance_size"] == 5.0
    assert (rows[car]["instances"], rows[car]["instance_pixels"], rows[car]["pixels"]) == (1, 9, 10)
    [g2] = run(tmp_path, instances=False)
    assert "instances" not in rows_by_value(st.class_rows(g2))[person]


# -- weights: hand computation on three images ----------------------------------------------------

def test_three_weightings_by_hand(tmp_path):
    # image 1 (2x3): road 4, sidewalk 2 | image 2: road 2, building 3, unlabeled 1 | image 3: sidewalk 1, building 5
    r, s, b, u = ROAD, SIDEWALK, BUILDING, UNLABELED
    write_cs(tmp_path, "train", "aachen", 0, np.array([[r, r, r], [r, s, s]], np.uint8))
    write_cs(tmp_path, "train", "aachen", 1, np.array([[r, r, b], [b, b, u]], np.uint8))
    write_cs(tmp_path, "train", "aachen", 2, np.array([[s, b, b], [b, b, b]], np.uint8))
    [g] = run(tmp_path, hierarchy=None)  # ignored: unlabeled only (the taxonomy's ignore_ids)
    rows = rows_by_value(st.class_rows(g))
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
    contrib, summary = st.rollup(groups, h)
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
    rows = {r["name"]: r for r in st.class_rows(groups[0], h)}
    assert (rows["flat"]["node"], rows["flat"]["level"]) == ("Ground", 1)
    assert rows["marking"]["node"] == "Marking" and rows["void"]["ignored"]


# -- shards, merge, CLI --------------------------------------------------------------------------

def test_shards_merged_equal_one_run(tmp_path):
    random_cs(tmp_path, 7, seed=3, split="train")
    random_cs(tmp_path, 4, seed=4, split="val")
    whole = run(tmp_path)
    parts = []
    for k in (1, 2, 3):
        gs = run(tmp_path, shard=(k, 3))
        assert sum(g.n_images for g in gs) in (3, 4)
        st.write_raw(tmp_path / f"part{k}.json", gs)
        parts += [(f"part{k}", g) for g in st.read_raw(tmp_path / f"part{k}.json")]
    merged = st.merge_groups(parts)
    h = load_hierarchy()
    assert st.build_report(merged, h).classes == st.build_report(whole, h).classes
    assert st.build_report(merged, h).summary == st.build_report(whole, h).summary
    with pytest.raises(LabeltreeError, match="2/3 missing"):
        st.merge_groups([p for p in parts if p[0] != "part2"])
    with pytest.raises(LabeltreeError, match="given twice"):
        st.merge_groups(parts + parts[:1])


def test_cli_shards_and_outputs(tmp_path):
    random_cs(tmp_path / "cs", 6, seed=5)
    r = CliRunner()
    env = {"LABELTREE_CACHE": str(tmp_path / "cache")}
    one = r.invoke(main, ["stats", "cityscapes", str(tmp_path / "cs"), "--workers", "1", "--quiet",
                          "-o", str(tmp_path / "one.json"), "--summary-out", str(tmp_path / "sum.csv"),
                          "--tree-out", str(tmp_path / "tree.parquet"), "--plot", str(tmp_path / "p.png")], env=env)
    assert one.exit_code == 0, one.output
    for k in (1, 2):
        res = r.invoke(main, ["stats", "cityscapes", str(tmp_path / "cs"), "--workers", "1", "--quiet", "--no-cache",
                              "--shard", f"{k}/2", "-o", str(tmp_path / f"s{k}.json")], env=env)
        assert res.exit_code == 0, res.output
    res = r.invoke(main, ["stats-merge", str(tmp_path / "s1.json"), str(tmp_path / "s2.json"),
                          "-o", str(tmp_path / "merged.json"), "--quiet"])
    assert res.exit_code == 0, res.output
    a = json.loads((tmp_path / "one.json").read_text())
    assert isinstance(a, list) and {"dataset", "class_id", "name", "pixels", "images"} <= set(a[0])
    assert a == json.loads((tmp_path / "merged.json").read_text())
    assert pd.read_csv(tmp_path / "sum.csv")["images"].tolist() == [6]
    tree = pd.read_parquet(tmp_path / "tree.parquet")
    assert tree[tree.classifier == "root"]["pixels"].sum() == sum(x["pixels"] for x in a if not x["ignored"])
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv = r.invoke(main, ["stats", "cityscapes", str(tmp_path / "cs"), "--workers", "1", "--quiet",
                          "-o", str(tmp_path / "one.csv")], env=env)
    assert csv.exit_code == 0
    df = pd.read_csv(tmp_path / "one.csv")
    assert df["pixels"].tolist() == [x["pixels"] for x in a]
    # the terminal table names classes and weights
    shown = r.invoke(main, ["stats", "cityscapes", str(tmp_path / "cs"), "--workers", "1"], env=env)
    assert shown.exit_code == 0 and "w medfreq" in shown.output and "Classifiers of tree" in shown.output
    # a missing shard is bad usage: exit 2, one line, no traceback
    res = r.invoke(main, ["stats-merge", str(tmp_path / "s1.json"), "-o", str(tmp_path / "m.json")])
    assert res.exit_code == 2 and "2/2 missing" in res.output and "Traceback" not in res.output
    res = r.invoke(main, ["stats-merge", str(tmp_path / "one.json"), "-o", str(tmp_path / "m.json")])
    assert res.exit_code == 2 and "not a raw-count stats file" in res.output


# -- cache ---------------------------------------------------------------------------------------

def test_cache_rerun_is_identical_and_does_not_decode(tmp_path, monkeypatch):
    random_cs(tmp_path / "cs", 5, seed=7)
    cache = tmp_path / "cache"
    info1 = st.RunInfo()
    first = run(tmp_path / "cs", tmp_cache=cache, info=info1)
    assert (info1.computed, info1.cached) == (5, 0)

    def no_decode(*_a, **_k):
        raise AssertionError("decoded a file that is in the cache")

    monkeypatch.setattr(st, "image_record", no_decode)
    info2 = st.RunInfo()
    second = run(tmp_path / "cs", tmp_cache=cache, info=info2)
    assert (info2.computed, info2.cached) == (0, 5)
    assert st.build_report(second).classes == st.build_report(first).classes
    monkeypatch.undo()
    # a changed file (new mtime) is decoded again; the others still come from the cache
    p = cs_label_path(tmp_path / "cs", "train", "aachen", 1)
    arr = np.array(Image.open(p))
    arr[:] = SIDEWALK
    Image.fromarray(arr).save(p)
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    info3 = st.RunInfo()
    third = run(tmp_path / "cs", tmp_cache=cache, info=info3)
    assert (info3.computed, info3.cached) == (1, 4)
    assert rows_by_value(st.class_rows(third[0]))[SIDEWALK]["pixels"] >= arr.size
    # a new split is incremental: only its files are read
    random_cs(tmp_path / "cs", 2, seed=8, split="val")
    info4 = st.RunInfo()
    run(tmp_path / "cs", tmp_cache=cache, info=info4)
    assert (info4.computed, info4.cached) == (2, 5)


def test_process_pool_equals_one_process(tmp_path):
    """2 workers (the first file counted in the parent, the rest in the pool) = 1 worker, bad files included."""
    labels = random_cs(tmp_path, 6, seed=5)
    one = run(tmp_path, skip_bad=True)
    h = load_hierarchy()
    two = run(tmp_path, workers=2, skip_bad=True)
    assert st.build_report(two, h).classes == st.build_report(one, h).classes
    assert np.array_equal(two[0].pixels[:34], np.bincount(np.concatenate([a.ravel() for a in labels]), minlength=34))
    for i in (1, 4):  # aachen_000001 sorts first: the parent's file is bad too
        p = cs_label_path(tmp_path, "train", "bremen" if i % 2 == 0 else "aachen", i)
        p.write_bytes(p.read_bytes()[:70])
    one_info, two_info = st.RunInfo(), st.RunInfo()
    [g1] = run(tmp_path, skip_bad=True, info=one_info)
    [g2] = run(tmp_path, workers=2, skip_bad=True, info=two_info)
    assert len(two_info.bad) == 2 and two_info.bad == one_info.bad and g2.n_images == g1.n_images == 4
    assert np.array_equal(g2.pixels, g1.pixels)
    with pytest.raises(LabeltreeError, match="aachen_000001"):
        run(tmp_path, workers=2)


# -- bad input -----------------------------------------------------------------------------------

def test_bad_files_stop_or_are_skipped(tmp_path):
    labels = random_cs(tmp_path / "cs", 4, seed=9)
    bad = cs_label_path(tmp_path / "cs", "train", "aachen", 3)
    bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG
    with pytest.raises(LabeltreeError) as e:
        run(tmp_path / "cs")
    assert str(bad) in str(e.value) and "--skip-bad" in str(e.value)
    info = st.RunInfo()
    [g] = run(tmp_path / "cs", skip_bad=True, info=info)
    assert len(info.bad) == 1 and str(bad) in info.bad[0]
    assert g.n_images == 3 and g.bad == info.bad
    direct = np.bincount(np.concatenate([labels[i].ravel() for i in (0, 1, 2)]), minlength=34)
    assert np.array_equal(g.pixels[:34], direct)
    r = CliRunner()
    res = r.invoke(main, ["stats", "cityscapes", str(tmp_path / "cs"), "--workers", "1", "--no-cache", "--quiet"])
    assert res.exit_code == 2 and str(bad) in res.output and "Traceback" not in res.output
    res = r.invoke(main, ["stats", "cityscapes", str(tmp_path / "cs"), "--workers", "1", "--no-cache", "--quiet",
                          "--skip-bad"])
    assert res.exit_code == 0 and "skipped bad file" in res.output and str(bad) in res.output
    # a value the taxonomy lacks is bad input too, named with the file
    stray = write_cs(tmp_path / "cs2", "train", "aachen", 0, np.full((4, 4), 77, np.uint8))
    with pytest.raises(LabeltreeError) as e:
        run(tmp_path / "cs2")
    assert str(stray) in str(e.value) and "77" in str(e.value)
    res = r.invoke(main, ["stats", "cityscapes", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "nowhere" in res.output


# -- GTSDB and Cityscapes Extended ---------------------------------------------------------------

def test_gtsdb_boxes_and_mask_pixels(tmp_path):
    from labeltree.datasets.boxmask import render_mask
    from labeltree.datasets.registry import open_dataset

    g_tax = load_taxonomy("gtsdb")
    stop, give_way = g_tax.find("stop").id, g_tax.find("give way").id
    root = tmp_path / "gtsdb"
    root.mkdir()
    for i in range(3):
        Image.new("RGB", (80, 50), (90, 90, 90)).save(root / f"{i:05d}.ppm")
    (root / "gt.txt").write_text(f"00000.ppm;10;10;29;29;{stop}\n00000.ppm;40;5;49;14;{give_way}\n"
                                 f"00001.ppm;0;0;11;9;{stop}\n")  # frame 00002 has no sign
    [g] = run(root, "gtsdb", splits=["train"])
    rows = rows_by_value(st.class_rows(g))
    reader = open_dataset("gtsdb", root)
    masks = [render_mask(s.boxes, 50, 80, "fine") for s in reader.samples("train")]
    direct = np.bincount(np.concatenate([m.ravel() for m in masks]))
    vs, vg = g_tax.stored_value(stop), g_tax.stored_value(give_way)
    assert rows[vs]["pixels"] == direct[vs] and rows[vg]["pixels"] == direct[vg]
    assert 0 < rows[vs]["pixels"] < 20 * 20 + 12 * 10  # shapes are smaller than their boxes
    assert (rows[vs]["boxes"], rows[vs]["images"], rows[vs]["box_pixels"]) == (2, 2, 400 + 120)
    assert (rows[vs]["min_box_area"], rows[vs]["max_box_area"]) == (120, 400)
    assert (rows[vs]["mean_box_w"], rows[vs]["mean_box_h"]) == (16.0, 15.0)
    assert (rows[vg]["boxes"], rows[vg]["mean_box_area"]) == (1, 100.0)
    s = st.summary_row(g)
    assert (s["images"], s["boxes"], s["annotation"]) == (3, 3, "boxes")
    assert s["annotated_pixels"] == rows[vs]["pixels"] + rows[vg]["pixels"]
    [coarse] = run(root, "gtsdb", splits=["train"], mask_mode="coarse")
    assert rows_by_value(st.class_rows(coarse))[vs]["pixels"] == 520


def test_cityscapes_extended_signs_are_8_connected_components(tmp_path):
    ext = load_taxonomy("cityscapes-extended")
    sky = ext.find("sky").id
    s3, s14 = ext.stored_value(2003), ext.stored_value(2014)
    lab = np.full((10, 12), sky, np.uint16)
    lab[0:2, 0:2] = s3  # sign 1
    lab[2, 2] = s3  # touches sign 1 diagonally: the same sign (8-neighbourhood)
    lab[6:9, 6:9] = s3  # sign 2
    lab[0:3, 9:12] = s14  # one stop sign
    write_cs(tmp_path, "val", "lindau", 0, lab)
    lab2 = np.full((10, 12), sky, np.uint16)
    lab2[4:6, 4:6] = s3
    write_cs(tmp_path, "val", "lindau", 1, lab2)
    [g] = run(tmp_path, "cityscapes-extended")
    rows = rows_by_value(st.class_rows(g, load_hierarchy()))
    assert (rows[s3]["signs"], rows[s3]["pixels"], rows[s3]["images"]) == (3, 4 + 1 + 9 + 4, 2)
    assert (rows[s14]["signs"], rows[s14]["mean_sign_size"]) == (1, 9.0)
    assert rows[s3]["node"] == "Sign: speed limit 60"


# -- conformance on real files and synthetic datasets --------------------------------------------

def test_real_cityscapes_fixture(real_fixtures):
    root = real_fixtures / "cityscapes"
    [g] = run(root, splits=["val"])
    label = next((root / "gtFine" / "val").glob("*/*_labelIds.png"))
    arr = np.array(Image.open(label))
    direct = np.bincount(arr.ravel(), minlength=34)
    assert np.array_equal(g.pixels[:34], direct)
    inst = np.array(Image.open(label.with_name(label.name.replace("labelIds", "instanceIds"))))
    ids = np.unique(inst[inst >= 1000])
    rows = rows_by_value(st.class_rows(g))
    for c in (CS.find("person").id, CS.find("car").id):
        assert rows[c]["instances"] == int(np.sum(ids // 1000 == c))


def test_synthetic_datasets_counts(tmp_path):
    synth = pytest.importorskip("labeltree.synth.scene")
    synth.synthesize(tmp_path, images=5, seed=1, size=(96, 48), workers=1, progress=False)
    for ds, sub in (("cityscapes", "cityscapes"), ("vistas", "vistas"), ("cityscapes-extended",
                                                                       "cityscapes-extended")):
        root = tmp_path / sub
        groups = run(root, ds)
        tax = load_taxonomy(ds)
        files = sorted(p for p in root.rglob("*.png") if p.parent.name == "labels") if ds == "vistas" \
            else sorted(root.rglob("*_gtFine_labelIds.png"))
        assert files and sum(g.n_images for g in groups) == len(files)
        per_file = [np.bincount(np.array(Image.open(f)).ravel(), minlength=tax.lut_size) for f in files]
        total = sum(g.pixels for g in groups)
        assert np.array_equal(total, sum(per_file)[:tax.lut_size]), ds
        images = sum(g.images for g in groups)  # images holding each value
        assert np.array_equal(images, sum((c > 0).astype(np.int64) for c in per_file)[:tax.lut_size]), ds
        assert (images > 1).any(), ds
    [gt] = run(tmp_path / "gtsdb", "gtsdb", splits=["train"])
    lines = (tmp_path / "gtsdb" / "gt.txt").read_text().splitlines()
    assert int(gt.boxes.sum()) == sum(1 for ln in lines if int(ln[:5]) < 600)
