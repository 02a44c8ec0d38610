"""stats.records: exact value counts, instances, GTSDB boxes and mask pixels, sign components."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from stats_helpers import CS, random_cs, rows_by_value, run, write_cs

from labeltree.core.taxonomy import load_taxonomy
from labeltree.core.tree_file import load_hierarchy
from labeltree.stats.records import count_values
from labeltree.stats.report import class_rows, summary_row

# -- counting ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (256, 257), (301, 300)])
def test_count_values_equals_bincount(shape):
    rng = np.random.default_rng(1)
    a8 = rng.integers(0, 256, size=shape, dtype=np.uint8)
    assert np.array_equal(count_values(a8, 256), np.bincount(a8.ravel(), minlength=256))
    a16 = rng.integers(0, 2100, size=shape).astype(np.uint16)
    assert np.array_equal(count_values(a16, 2100), np.bincount(a16.ravel(), minlength=2100))
    # a non-contiguous view (a crop) counts the same
    assert np.array_equal(count_values(a8[:, ::2], 34), np.bincount(a8[:, ::2].ravel(), minlength=256))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_count_values_over_runs_is_exact(dtype):
    """Piecewise-constant maps (the run-length path): equal to a plain bincount, incl. single-pixel runs."""
    rng = np.random.default_rng(2)
    top = 34 if dtype == np.uint8 else 33_008
    blocks = rng.integers(0, top, size=(40, 30))
    a = np.kron(blocks, np.ones((13, 11), dtype=np.int64))[:512, :300].astype(dtype)  # 153600 px, ~3% runs
    a[0, 0], a[-1, -1], a[200, 150] = top - 1, 0, 7  # runs of one pixel at both ends and inside
    want = np.bincount(a.ravel(), minlength=top)
    got = count_values(a, top)
    assert got.dtype == np.int64 and np.array_equal(got, want)
    assert np.array_equal(count_values(a), np.bincount(a.ravel()))  # no minlength: up to the largest value
    const = np.full((300, 300), 5, dtype=dtype)
    assert count_values(const, 34).tolist() == [0] * 5 + [90_000] + [0] * 28


def test_pixel_and_image_counts_match_numpy(tmp_path):
    labels = random_cs(tmp_path, 9)
    h = load_hierarchy()
    [g] = run(tmp_path, hierarchy=h)
    stacked = np.concatenate([a.ravel() for a in labels])
    direct = np.bincount(stacked, minlength=34)
    present = sum((np.bincount(a.ravel(), minlength=34) > 0).astype(int) for a in labels)
    rows = rows_by_value(class_rows(g, h))
    for v in range(34):
        assert rows[v]["pixels"] == direct[v]
        assert rows[v]["images"] == present[v]
    # Table I: images, megapixel range, annotated = pixels of classes the tree does not ignore
    s = summary_row(g)
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
    rows = rows_by_value(class_rows(g))
    assert (rows[person]["instances"], rows[person]["instance_pixels"]) == (2, 10)
    assert rows[person]["mean_instance_size"] == 5.0
    assert (rows[car]["instances"], rows[car]["instance_pixels"], rows[car]["pixels"]) == (1, 9, 10)
    [g2] = run(tmp_path, instances=False)
    assert "instances" not in rows_by_value(class_rows(g2))[person]


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
    rows = rows_by_value(class_rows(g))
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
    s = summary_row(g)
    assert (s["images"], s["boxes"], s["annotation"]) == (3, 3, "boxes")
    assert s["annotated_pixels"] == rows[vs]["pixels"] + rows[vg]["pixels"]
    [coarse] = run(root, "gtsdb", splits=["train"], mask_mode="coarse")
    assert rows_by_value(class_rows(coarse))[vs]["pixels"] == 520


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
    rows = rows_by_value(class_rows(g, load_hierarchy()))
    assert (rows[s3]["signs"], rows[s3]["pixels"], rows[s3]["images"]) == (3, 4 + 1 + 9 + 4, 2)
    assert (rows[s14]["signs"], rows[s14]["mean_sign_size"]) == (1, 9.0)
    assert rows[s3]["node"] == "Sign: speed limit 60"
