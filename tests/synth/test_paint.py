"""synth.paint: every GTSDB class drawn in a moderate set, class balance like streets, a look per dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labeltree.core.taxonomy import load_taxonomy
from labeltree.datasets.registry import open_dataset
from labeltree.synth.runner import synthesize


def test_all_43_classes_in_a_moderate_gtsdb_set(tmp_path: Path) -> None:
    res = synthesize(tmp_path / "g", images=1, gtsdb_images=60, seed=5, size=(192, 96), workers=1, progress=False)
    boxes = open_dataset("gtsdb", tmp_path / "g" / "gtsdb").ground_truth().boxes
    classes = {b.class_id for bs in boxes.values() for b in bs}
    assert classes == set(range(43))
    assert sum(res.signs["gtsdb"].values()) == res.gtsdb_boxes >= 43
    sizes = [b.x1 - b.x0 + 1 for bs in boxes.values() for b in bs]
    assert min(sizes) >= 8 and max(sizes) <= 40 * 192 / 256 + 1
    lines = (tmp_path / "g" / "gtsdb" / "gt.txt").read_text().splitlines()
    frames_with = {line.split(";")[0] for line in lines}
    assert len(frames_with) < 60  # some frames have no sign (and no line)


# -- determinism and balance ------------------------------------------------------------------------------


def test_class_imbalance_like_streets(synth: Path) -> None:
    cs = load_taxonomy("cityscapes")
    r = open_dataset("cityscapes", synth / "cityscapes")
    counts = np.zeros(256, dtype=np.int64)
    for s in r.all_samples():
        counts += np.bincount(r.read_label(s).ravel(), minlength=256)
    share = counts / counts.sum()
    big = sum(share[cs.find(n).id] for n in ("road", "building", "sky"))
    assert big > 0.5
    assert 0 < share[cs.find("traffic sign").id] < 0.03
    assert 0 < share[cs.find("person").id] < share[cs.find("road").id]
    vi = load_taxonomy("vistas")
    rv = open_dataset("vistas", synth / "vistas")
    counts = np.zeros(256, dtype=np.int64)
    for s in rv.all_samples():
        counts += np.bincount(rv.read_label(s).ravel(), minlength=256)
    share = counts / counts.sum()
    assert sum(share[vi.find(n).id] for n in ("Road", "Building", "Sky")) > 0.5
    assert share[vi.find("Traffic Sign (Front)").id] + share[vi.find("Traffic Sign (Back)").id] < 0.03


def test_styles_differ_between_datasets(synth: Path) -> None:
    """Same world, different cameras: Cityscapes frames show the ego hood, Vistas frames never do."""
    cs = open_dataset("cityscapes", synth / "cityscapes")
    ego = load_taxonomy("cityscapes").find("ego vehicle").id
    for s in cs.all_samples():
        assert (cs.read_label(s)[-1] == ego).all()
    vi = open_dataset("vistas", synth / "vistas")
    ego_v = load_taxonomy("vistas").find("Ego Vehicle").id
    assert not any((vi.read_label(s) == ego_v).any() for s in vi.all_samples())


def test_idd_add_on_kinds_painted_in_idd_frames_only() -> None:
    """IDD frames paint the tree's IDD add-on nodes (autorickshaw, vehicle fallback, roadside barrier); the other
    datasets' frames are the same pictures as under the paper's tree, which has none of these nodes."""
    from labeltree.synth.paint import render_scene
    from labeltree.synth.world import get_world

    w, paper = get_world("cityscapes+vistas+gtsdb+idd"), get_world()
    assert paper.idd_node == {}
    frames = {n: [i for i in range(8) if (render_scene("idd", 1, i, 128, 64, world=w).nodes == v).any()]
              for n, v in w.idd_node.items()}
    assert frames == {"Autorickshaw": [1, 2, 3, 4, 5, 6, 7], "Vehicle Fallback": [0, 3, 5, 7],
                      "Obs-Str-Bar Fallback": [0, 1, 2, 3]}
    for ds in ("cityscapes", "vistas", "gtsdb"):
        for i in range(4):
            a, b = render_scene(ds, 1, i, 128, 64, world=w), render_scene(ds, 1, i, 128, 64, world=paper)
            assert np.array_equal(a.rgb, b.rgb)
            assert not np.isin(a.nodes, list(w.idd_node.values())).any()
