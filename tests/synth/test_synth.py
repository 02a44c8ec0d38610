"""`labeltree synth`: layouts, read-back through the readers, label consistency across datasets,
GTSDB boxes vs drawn signs, determinism, class balance and the CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from labeltree.cli import main
from labeltree.core.taxonomy import load_taxonomy
from labeltree.datasets.registry import open_dataset
from labeltree.datasets.shapes import shape_mask
from labeltree.errors import LabeltreeError
from labeltree.synth.scene import (
    cityscapes_key,
    get_world,
    gtsdb_layout,
    gtsdb_sign_classes,
    parse_size,
    render_scene,
    synthesize,
    vistas_key,
)
from labeltree.synth.signs import draw_sign, glyph_code

N_IMAGES = 15
SIZE = (256, 128)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "out"
    synthesize(out, images=N_IMAGES, seed=3, size=SIZE, workers=1, progress=False)
    return out


def _tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "synth.json"}


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


def test_vistas_fine_classes_fold_into_cityscapes() -> None:
    """The same frame in both label spaces: every Vistas driveable class is Cityscapes road, riders are rider."""
    world = get_world()
    cs, vi = load_taxonomy("cityscapes"), load_taxonomy("vistas")
    road = cs.find("road").id
    counted = 0
    for i in range(6):
        sc = render_scene("vistas", 11, i, *SIZE, world=world)
        lv, lc = world.labels("vistas", sc.nodes), world.labels("cityscapes", sc.nodes)
        for name in ("Lane Marking - General", "Lane Marking - Crosswalk", "Manhole", "Bike Lane",
                     "Crosswalk - Plain", "Catch Basin", "Road"):
            m = lv == vi.find(name).id
            counted += int(m.sum())
            assert (lc[m] == road).all(), name
        for name in ("Bicyclist", "Motorcyclist"):
            assert (lc[lv == vi.find(name).id] == cs.find("rider").id).all()
        assert (lc[lv == vi.find("Traffic Sign (Front)").id] == cs.find("traffic sign").id).all()
    assert counted > 0


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


# -- signs ----------------------------------------------------------------------------------------------

def test_signs_distinct_and_shaped() -> None:
    gt = load_taxonomy("gtsdb")
    assert len({glyph_code(c.id) for c in gt.classes}) == len(gt.classes)
    pics = {}
    for c in gt.classes:
        for h, w in ((12, 12), (21, 24), (40, 40)):
            pic, mask = draw_sign(c, h, w)
            assert np.array_equal(mask, shape_mask(c.shape, h, w))
            assert (pic[~mask] == 0).all()
        pic, mask = draw_sign(c, 20, 20)
        pics[c.id] = pic
    # every class looks different from every other at 20 px
    ids = sorted(pics)
    for i in ids:
        for j in ids:
            if i < j:
                assert not np.array_equal(pics[i], pics[j]), (i, j)
    # families: mandatory signs are mostly blue, stop mostly red, priority road has yellow
    stop = draw_sign(gt.find("stop"), 30, 30)
    red = (stop[0][..., 0] > 150) & (stop[0][..., 1] < 60)
    assert red.sum() > 0.35 * stop[1].sum()
    go = draw_sign(gt.find("go straight"), 30, 30)
    blue = (go[0][..., 2] > 150) & (go[0][..., 0] < 60)
    assert blue.sum() > 0.4 * go[1].sum()


# -- determinism and balance ------------------------------------------------------------------------------

def test_same_seed_same_bytes_different_seed_differs(synth: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    synthesize(again, images=N_IMAGES, seed=3, size=SIZE, workers=2, progress=False)
    assert _tree_hash(again) == _tree_hash(synth)
    other = tmp_path / "other"
    synthesize(other, images=N_IMAGES, seed=4, size=SIZE, workers=1, progress=False)
    a, b = _tree_hash(synth), _tree_hash(other)
    same = [k for k in a if k in b and a[k] == b[k] and k.endswith((".png", ".jpg", ".ppm"))]
    assert not same


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


# -- output folder rules and CLI ----------------------------------------------------------------------------

def test_refuses_foreign_folder_and_replaces_own(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(LabeltreeError, match="--force"):
        synthesize(foreign, images=2, workers=1, progress=False)
    synthesize(foreign, images=2, workers=1, progress=False, force=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
    out = tmp_path / "out"
    synthesize(out, images=6, workers=1, progress=False)
    synthesize(out, images=2, workers=1, progress=False)  # an earlier synth output: replaced, no stale frames
    assert len(list((out / "vistas").rglob("*.jpg"))) == 2
    assert len(list((out / "gtsdb").glob("*.ppm"))) == 2


def test_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["synth", str(tmp_path / "c"), "-n", "3", "--seed", "2", "--size", "128x64",
                               "--workers", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "cityscapes-extended" in res.output and "gt.txt" in res.output
    with Image.open(next((tmp_path / "c" / "cityscapes" / "leftImg8bit").rglob("*.png"))) as im:
        assert im.size == (128, 64)
    bad = runner.invoke(main, ["synth", str(tmp_path / "d"), "--size", "12by4"])
    assert bad.exit_code == 2 and "256x128" in bad.output
    foreign = runner.invoke(main, ["synth", str(tmp_path / "c" / "vistas"), "-n", "1"])
    assert foreign.exit_code == 2 and "--force" in foreign.output and "Traceback" not in foreign.output
    assert parse_size("320X160") == (320, 160)


def test_sign_density_options(tmp_path: Path) -> None:
    """--gtsdb-signs LO-HI: every GTSDB frame with signs holds LO..HI of them (all placed, none
    overlapping); --street-signs raises the Cityscapes sign posts; bad ranges exit 2."""
    res = CliRunner().invoke(main, ["synth", str(tmp_path / "s"), "-n", "12", "--gtsdb-images", "30",
                                    "--gtsdb-signs", "4-6", "--street-signs", "3-3", "--workers", "1",
                                    "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    boxes = open_dataset("gtsdb", tmp_path / "s" / "gtsdb").ground_truth().boxes
    per_frame = [len(bs) for bs in boxes.values() if bs]
    assert per_frame and min(per_frame) >= 4 and max(per_frame) <= 6
    for bs in boxes.values():  # side by side: no two boxes share a column
        spans = sorted((b.x0, b.x1) for b in bs)
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))
    meta = json.loads((tmp_path / "s" / "synth.json").read_text())
    assert meta["gtsdb_signs"] == [4, 6] and meta["street_signs"] == [3, 3]
    fronts, frames = sum(meta["signs"]["cityscapes-extended"].values()), sum(meta["frames"]["cityscapes"].values())
    assert fronts > 1.5 * frames  # 3 posts per frame, 1 in 5 a sign back (default: ~1.3 fronts per frame)
    assert gtsdb_sign_classes(0, 7, 43) == gtsdb_sign_classes(0, 7, 43, (1, 3))  # the default is unchanged
    for bad in ("5-2", "0-9", "x"):
        r = CliRunner().invoke(main, ["synth", str(tmp_path / "b"), "--gtsdb-signs", bad])
        assert r.exit_code == 2 and "--gtsdb-signs" in r.output and "Traceback" not in r.output
