"""synth.writers: the exact layout of every dataset, read back through the readers, GTSDB boxes vs the drawn signs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synth_helpers import N_IMAGES, SIZE

from labeltree.core.taxonomy import load_taxonomy
from labeltree.datasets.registry import open_dataset
from labeltree.datasets.shapes import shape_mask
from labeltree.errors import LabeltreeError
from labeltree.synth.paint import gtsdb_sign_classes, render_scene
from labeltree.synth.world import get_world
from labeltree.synth.writers import cityscapes_key, gtsdb_layout, vistas_key

# -- layout ---------------------------------------------------------------------------------------

def test_layout_exact(synth: Path) -> None:
    files = {str(p.relative_to(synth)) for p in synth.rglob("*") if p.is_file()}
    expected = {"synth.json", "vistas/config.json", "gtsdb/gt.txt"}
    for i in range(N_IMAGES):
        split, city, key = cityscapes_key(i)
        expected |= {f"cityscapes/leftImg8bit/{split}/{city}/{key}_leftImg8bit.png",
                     f"cityscapes/gtFine/{split}/{city}/{key}_gtFine_labelIds.png",
                     f"cityscapes/gtFine/{split}/{city}/{key}_gtFine_instanceIds.png",
                     f"cityscapes-extended/gtFine/{split}/{city}/{key}_gtFine_labelIds.png",
                     f"cityscapes-extended/leftImg8bit/{split}/{city}/{key}_leftImg8bit.png"}
        vsplit = "validation" if split == "val" else "training"
        k = vistas_key(3, i)
        expected |= {f"vistas/{vsplit}/images/{k}.jpg", f"vistas/{vsplit}/labels/{k}.png",
                     f"vistas/{vsplit}/instances/{k}.png"}
    expected |= {f"gtsdb/{n:05d}.ppm" for n in gtsdb_layout(N_IMAGES)}
    assert files == expected
    # 80 / 20 split, keys in Cityscapes' {city}_{seq:06}_{frame:06} form
    assert sum(cityscapes_key(i)[0] == "val" for i in range(N_IMAGES)) == 3
    assert cityscapes_key(0) == ("train", "aachen", "aachen_000000_000019")
    assert len(vistas_key(3, 0)) == 22
    marker = json.loads((synth / "synth.json").read_text())
    assert marker["complete"] is True and marker["seed"] == 3


def test_gtsdb_numbering() -> None:
    assert gtsdb_layout(15) == list(range(10)) + list(range(600, 605))
    assert gtsdb_layout(900) == list(range(600)) + list(range(600, 900))
    assert gtsdb_layout(3) == [0, 1, 600]
    with pytest.raises(LabeltreeError, match="at most 900"):
        gtsdb_layout(901)


def test_vistas_config_matches_taxonomy(synth: Path) -> None:
    cfg = json.loads((synth / "vistas" / "config.json").read_text())
    tax = load_taxonomy("vistas")
    assert [lab["name"] for lab in cfg["labels"]] == [c.name for c in sorted(tax.classes, key=lambda c: c.id)]
    assert [tuple(lab["color"]) for lab in cfg["labels"]] == [c.color for c in sorted(tax.classes, key=lambda c: c.id)]
    assert cfg["labels"][tax.find("Unlabeled").id]["evaluate"] is False


# -- read back through the readers --------------------------------------------------------------------

def test_cityscapes_reads_back(synth: Path) -> None:
    tax = load_taxonomy("cityscapes")
    r = open_dataset("cityscapes", synth / "cityscapes")
    assert r.splits() == ["train", "val"]
    samples = r.all_samples()
    assert [len(r.samples(s)) for s in ("train", "val")] == [12, 3]
    valid = {tax.stored_value(c.id) for c in tax.classes if c.id >= 0}
    inst_classes = {c.id for c in tax.classes if c.has_instances}
    for s in samples:
        lab = r.read_label(s)
        assert lab.dtype == np.uint8 and lab.shape == (SIZE[1], SIZE[0])
        assert set(np.unique(lab).tolist()) <= valid
        assert r.read_image(s).shape == (SIZE[1], SIZE[0], 3)
        inst = r.read_instances(s)
        assert inst.dtype == np.uint16
        thing = inst >= 1000
        # instanceIds // 1000 agrees with labelIds; stuff pixels hold the plain id
        assert np.array_equal(np.where(thing, inst // 1000, inst), lab)
        assert set(np.unique(lab[thing]).tolist()) <= inst_classes
        assert not np.isin(lab[~thing], list(inst_classes)).any()


def test_cityscapes_instances_are_objects(synth: Path) -> None:
    """Each car instance is one object: a 4-connected blob-ish region, and several cars get distinct k."""
    r = open_dataset("cityscapes", synth / "cityscapes")
    car = load_taxonomy("cityscapes").find("car").id
    ks = set()
    for s in r.all_samples():
        inst = r.read_instances(s)
        vals = np.unique(inst[inst // 1000 == car])
        assert list(vals) == list(range(car * 1000, car * 1000 + len(vals)))  # k = 0, 1, ... without gaps
        ks.update(int(v) % 1000 for v in vals)
    assert len(ks) >= 3


def test_extended_equals_cityscapes_except_signs(synth: Path) -> None:
    cs = open_dataset("cityscapes", synth / "cityscapes")
    ext = open_dataset("cityscapes-extended", synth / "cityscapes-extended")
    sign_id = load_taxonomy("cityscapes").find("traffic sign").id
    gtsdb = load_taxonomy("gtsdb")
    offset = gtsdb.encoding.offset
    classes_seen = set()
    n_sign_px = 0
    a_samples, b_samples = cs.all_samples(), ext.all_samples()
    assert [s.key for s in a_samples] == [s.key for s in b_samples]
    for a, b in zip(a_samples, b_samples, strict=True):
        la, lb = cs.read_label(a), ext.read_label(b)
        assert lb.dtype == np.uint16
        sign = lb >= offset
        assert np.array_equal(sign, la == sign_id)  # extended signs exactly where Cityscapes says traffic sign
        assert np.array_equal(lb[~sign], la[~sign].astype(np.uint16))
        k = lb[sign].astype(int) - offset
        assert ((k >= 0) & (k < len(gtsdb.classes))).all()
        classes_seen.update(np.unique(k).tolist())
        n_sign_px += int(sign.sum())
    assert n_sign_px > 0 and len(classes_seen) >= 5


def test_vistas_reads_back_palette(synth: Path) -> None:
    tax = load_taxonomy("vistas")
    r = open_dataset("vistas", synth / "vistas")
    assert r.splits() == ["train", "val"]
    palette = np.zeros((256, 3), dtype=np.uint8)
    for c in tax.classes:
        palette[c.id] = c.color
    seen: set[int] = set()
    for s in r.all_samples():
        with Image.open(s.label) as im:
            assert im.mode == "P"
            pal = np.asarray(im.getpalette()[: 3 * 256], dtype=np.uint8).reshape(-1, 3)
        assert np.array_equal(pal[: len(tax.classes)], palette[: len(tax.classes)])
        lab = r.read_label(s)
        assert lab.dtype == np.uint8
        seen.update(np.unique(lab).tolist())
        inst = r.read_instances(s)
        assert np.array_equal(inst // 256, lab)
        with Image.open(s.image) as im:
            assert im.format == "JPEG" and im.size == SIZE
    assert seen <= set(tax.ids)
    names = {tax.by_id(v).display for v in seen}
    # the finer Vistas classes Cityscapes folds into road / rider / traffic sign
    for fine in ("Road", "Lane Marking - General", "Traffic Sign (Front)", "Sidewalk", "Building", "Sky", "Car",
                 "Person", "Pole"):
        assert fine in names, fine
    assert "Unlabeled" not in names


# -- GTSDB ----------------------------------------------------------------------------------------------

def test_gtsdb_boxes_hold_the_drawn_signs(synth: Path) -> None:
    """Re-render each frame: the sign pixels are exactly the shape masks of the gt.txt boxes, and the PPM
    holds the rendered picture."""
    r = open_dataset("gtsdb", synth / "gtsdb")
    world = get_world()
    gt = load_taxonomy("gtsdb")
    lines = (synth / "gtsdb" / "gt.txt").read_text().splitlines()
    assert lines and all(len(line.split(";")) == 6 and line.split(";")[0].endswith(".ppm") for line in lines)
    samples = r.samples("train") + r.samples("test")
    assert [int(s.key) for s in samples] == gtsdb_layout(N_IMAGES)
    assert sum(len(s.boxes) for s in samples) == len(lines)
    sign_nodes = {world.sign_node[c.id]: c.id for c in gt.classes}
    for s in samples:
        img = r.read_image(s)
        assert img.shape == (SIZE[1], SIZE[0], 3)
        assert s.image.read_bytes().startswith(b"P6\n")
        classes = [b.class_id for b in s.boxes]
        sc = render_scene("gtsdb", 3, int(s.key), *SIZE, gtsdb_sign_classes(3, int(s.key), len(gt.classes)), world)
        assert np.array_equal(sc.rgb, img)
        expect = np.zeros(sc.nodes.shape, dtype=np.int32) - 1
        for b in s.boxes:
            assert 0 <= b.x0 <= b.x1 < SIZE[0] and 0 <= b.y0 <= b.y1 < SIZE[1]
            m = shape_mask(gt.by_id(b.class_id).shape, b.height, b.width)
            region = expect[b.y0:b.y1 + 1, b.x0:b.x1 + 1]
            assert (region[m] == -1).all()  # signs never overlap
            region[m] = b.class_id
        drawn = np.vectorize(lambda n: sign_nodes.get(int(n), -1))(sc.nodes)
        assert np.array_equal(drawn, expect)
        # the reader's fine mask (rendered from gt.txt) agrees with what was drawn
        lab = r.read_label(s)
        want = np.where(expect >= 0, expect + gt.encoding.offset, gt.encoding.unlabeled)
        assert np.array_equal(lab.astype(np.int32), want)
        assert len(classes) <= 3
