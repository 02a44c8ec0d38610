"""BDD100K semantic segmentation: the taxonomy made from its label table, the layout (read and write paths),
and stats / evaluate / convert / the extension tree on label files written in the release's documented format
(github.com/bdd100k/bdd100k doc/source/download.rst + format.rst: 8-bit grey masks of train ids, 255 = unknown,
palette colour maps, JPEG photos)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from builders import read_png, save_png
from click.testing import CliRunner
from PIL import Image

from labeltree.cli import main
from labeltree.convert import convert_dataset
from labeltree.core.importers import import_table
from labeltree.core.merge import merge
from labeltree.core.taxonomy import load_taxonomy
from labeltree.core.tree_file import bundled_hierarchies, load_hierarchy
from labeltree.datasets import LabeltreeWarning, bdd100k, decode, open_dataset
from labeltree.datasets.base import decode_label
from labeltree.datasets.registry import reader_for
from labeltree.errors import LabeltreeError
from labeltree.evaluate.folder import evaluate_folder

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "taxonomies" / "tables" / "bdd100k.tsv"
TREE = "cityscapes+vistas+gtsdb+bdd100k"

# train split: two frames, val: one; 255 = unknown
TRAIN = {
    "0a0a0b1a-7c39d841": np.array([[0, 0, 0, 1, 1, 255],
                                   [2, 2, 8, 8, 10, 10],
                                   [13, 13, 13, 11, 12, 18],
                                   [0, 0, 0, 0, 7, 6]], np.uint8),
    "0a0c3694-24b5193a": np.array([[10, 10, 10, 10, 10, 10],
                                   [2, 5, 5, 3, 4, 9],
                                   [0, 14, 15, 16, 17, 13],
                                   [255, 255, 0, 0, 0, 0]], np.uint8),
}
VAL = {"7d2f7975-e0c1c5a7": np.array([[0, 0, 13, 13], [255, 1, 13, 0]], np.uint8)}


@pytest.fixture(autouse=True)
def _pil_decoder(monkeypatch):
    monkeypatch.setattr(decode, "LABEL_DECODER", "pil")


def _release(parent: Path, splits: dict[str, dict[str, np.ndarray]] | None = None, test_photos: int = 1) -> Path:
    """`parent/bdd100k/` in the documented layout: photos, masks, colour maps, polygon files; returns parent."""
    tax = load_taxonomy("bdd100k")
    base = parent / "bdd100k"
    pal = tax.palette()
    for split, frames in (splits or {"train": TRAIN, "val": VAL}).items():
        for key, arr in frames.items():
            save_png(bdd100k.label_path(base, split, key), arr)
            save_png(bdd100k.colormap_path(base, split, key), arr, palette=pal)
            photo = bdd100k.image_path(base, split, key)
            photo.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((*arr.shape, 3), 90, np.uint8)).save(photo, quality=90)
        poly = bdd100k.polygons_path(base, split)
        poly.parent.mkdir(parents=True, exist_ok=True)
        poly.write_text(json.dumps([{"name": f"{k}.jpg", "labels": []} for k in frames]))
    for i in range(test_photos):
        p = bdd100k.image_path(base, "test", f"ac6d4f42-{i:08d}")
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(p)
    return parent


def _run(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in res.output
    return res


# -- the taxonomy ------------------------------------------------------------------------------------

def test_taxonomy_is_the_import_of_the_table():
    bundled = load_taxonomy("bdd100k")
    made = import_table(TABLE, name="bdd100k", encoding={"format": "png-ids", "offset": 0, "layout": "bdd100k"},
                        version=bundled.version, description=bundled.description)
    assert made == bundled
    assert reader_for(bundled) is bdd100k.BDD100KReader
    assert bundled.ids == [*range(19), 255] and bundled.ignore_ids == [255]
    assert [c.train_id for c in bundled.classes] == [*range(19), 255]
    assert [c.name for c in bundled.classes if not c.ignore_in_eval] == [bundled.by_id(i).name for i in range(19)]
    # the 19 classes are Cityscapes' train classes, in train-id order, with their colours and instance flags
    cs = load_taxonomy("cityscapes")
    cs_train = sorted((c for c in cs.classes if c.train_id is not None and 0 <= c.train_id < 255),
                      key=lambda c: c.train_id)
    assert [(c.name, c.color, c.has_instances) for c in cs_train] == \
        [(c.name, c.color, c.has_instances) for c in bundled.classes[:19]]


def test_import_table_cli_version_and_description(tmp_path):
    out = tmp_path / "b.yaml"
    res = _run("import", "table", TABLE, "--name", "bdd100k", "--layout", "bdd100k", "--version", "v9",
               "--description", "one line", "-o", out)
    assert res.exit_code == 0, res.output
    t = load_taxonomy(out)
    assert (t.version, t.description, t.encoding.layout, len(t.classes)) == ("v9", "one line", "bdd100k", 20)


# -- the layout --------------------------------------------------------------------------------------

def test_paths_are_the_documented_ones(tmp_path):
    assert bdd100k.image_path(tmp_path, "train", "k") == tmp_path / "images/10k/train/k.jpg"
    assert bdd100k.label_path(tmp_path, "val", "k") == tmp_path / "labels/sem_seg/masks/val/k.png"
    assert bdd100k.colormap_path(tmp_path, "val", "k") == tmp_path / "labels/sem_seg/colormaps/val/k.png"
    assert bdd100k.polygons_path(tmp_path, "train") == tmp_path / "labels/sem_seg/polygons/sem_seg_train.json"
    pal = load_taxonomy("bdd100k").palette()
    assert pal[0].tolist() == [128, 64, 128] and pal[18].tolist() == [119, 11, 32] and pal[255].tolist() == [0, 0, 0]


@pytest.mark.parametrize("inner", [False, True])
def test_reader_pairs_photos_and_masks(tmp_path, inner):
    """The root may be the folder holding `bdd100k/` or `bdd100k/` itself."""
    parent = _release(tmp_path)
    root = parent / "bdd100k" if inner else parent
    r = open_dataset("bdd100k", root)
    assert isinstance(r, bdd100k.BDD100KReader) and r.splits() == ["train", "val"]  # test: photos only
    train = r.samples("train")
    assert [s.key for s in train] == sorted(TRAIN)
    for s in train:
        assert s.image == bdd100k.image_path(parent / "bdd100k", "train", s.key)
        assert s.label == bdd100k.label_path(parent / "bdd100k", "train", s.key)
        assert np.array_equal(r.read_label(s), TRAIN[s.key])
        assert r.read_image(s).shape == (*TRAIN[s.key].shape, 3)
        # the colour map holds the same values (a palette PNG of the mask)
        cm = bdd100k.colormap_path(parent / "bdd100k", "train", s.key)
        assert Image.open(cm).mode == "P" and np.array_equal(read_png(cm), TRAIN[s.key])
    assert r.prediction_key(Path("x/0a0a0b1a-7c39d841.png")) == "0a0a0b1a-7c39d841"


def test_unpaired_files_are_reported(tmp_path):
    parent = _release(tmp_path)
    base = parent / "bdd100k"
    bdd100k.image_path(base, "val", "7d2f7975-e0c1c5a7").unlink()
    extra = bdd100k.image_path(base, "val", "ffff0000-00000000")
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(extra)
    with pytest.warns(LabeltreeWarning) as rec:
        s = open_dataset("bdd100k", parent).samples("val")
    assert [x.key for x in s] == ["7d2f7975-e0c1c5a7"] and s[0].image is None
    text = " ".join(str(w.message) for w in rec)
    assert "1 labels without their photo" in text and "1 photos without a label" in text and extra.name in text


# -- refusals ------------------------------------------------------------------------------------------

def test_old_release_is_refused_with_what_was_expected(tmp_path):
    old = tmp_path / "bdd100k" / "seg"
    save_png(old / "labels" / "train" / "0a0a0b1a-7c39d841_train_id.png", TRAIN["0a0a0b1a-7c39d841"])
    save_png(old / "color_labels" / "train" / "0a0a0b1a-7c39d841_train_color.png",
             np.zeros((4, 6, 3), np.uint8))
    (old / "images" / "train").mkdir(parents=True)
    with pytest.raises(LabeltreeError) as e:
        open_dataset("bdd100k", tmp_path)
    msg = str(e.value)
    assert "2018 BDD100K segmentation release" in msg and "_train_id.png" in msg
    assert "images/10k/{train,val,test}/*.jpg" in msg and "labels/sem_seg/masks/{train,val}/*.png" in msg
    res = _run("stats", "bdd100k", tmp_path, "--workers", "1", "--quiet", "--no-cache")
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and "2018" in res.output


def test_other_datasets_and_empty_folders_are_refused(tmp_path):
    cs = tmp_path / "cs"
    save_png(cs / "gtFine" / "val" / "z" / "z_000000_000001_gtFine_labelIds.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(LabeltreeError, match="Cityscapes-style folder .*dataset 'cityscapes'"):
        open_dataset("bdd100k", cs)
    vistas = tmp_path / "vistas"
    (vistas / "training" / "images").mkdir(parents=True)
    with pytest.raises(LabeltreeError, match="Mapillary Vistas folder"):
        open_dataset("bdd100k", vistas)
    det = tmp_path / "det" / "bdd100k"
    (det / "images" / "100k" / "train").mkdir(parents=True)
    (det / "labels" / "det_20").mkdir(parents=True)
    with pytest.raises(LabeltreeError) as e:
        open_dataset("bdd100k", det.parent).splits()
    assert "expected bdd100k/images/10k" in str(e.value) and "found in" in str(e.value) and "images/" in str(e.value)
    with pytest.raises(LabeltreeError, match="no BDD100K masks for split 'test'"):
        open_dataset("bdd100k", _release(tmp_path / "r")).samples("test")


def test_unknown_values_are_refused_with_one_clear_line(tmp_path):
    parent = _release(tmp_path, {"val": {"k": np.array([[0, 19, 19], [200, 255, 1]], np.uint8)}})
    tax = load_taxonomy("bdd100k")
    mask = bdd100k.label_path(parent / "bdd100k", "val", "k")
    with pytest.raises(LabeltreeError) as e:
        decode_label(mask, tax)
    assert "label values not defined in taxonomy 'bdd100k': 19 (2 px), 200 (1 px)" in str(e.value)
    assert decode_label(mask, tax, unknown="ignore").tolist() == [[0, 255, 255], [255, 255, 1]]
    res = _run("stats", "bdd100k", parent, "--workers", "1", "--quiet", "--no-cache")
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and "19 (2 px)" in res.output
    # a colour rendering handed in as the mask: the message says which files hold the labels
    save_png(mask, np.full((2, 3, 3), (128, 64, 128), np.uint8))
    with pytest.raises(LabeltreeError, match="labels/sem_seg/masks"):
        decode_label(mask, tax)


# -- stats, evaluate, convert ------------------------------------------------------------------------------

def test_stats_counts_every_class_exactly(tmp_path):
    parent = _release(tmp_path)
    out = tmp_path / "s.json"
    res = _run("stats", "bdd100k", parent, "--workers", "1", "--quiet", "--no-cache", "-o", out)
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())
    for split, frames in (("train", TRAIN), ("val", VAL)):
        px = np.bincount(np.concatenate([a.ravel() for a in frames.values()]), minlength=256)
        imgs = sum((np.bincount(np.unique(a), minlength=256) for a in frames.values()), np.zeros(256, int))
        got = {r["class_id"]: (r["pixels"], r["images"]) for r in rows if r["split"] == split}
        assert set(got) == {*range(19), 255}
        assert got == {v: (int(px[v]), int(imgs[v])) for v in got}
    assert {r["class_id"] for r in rows if r["ignored"]} == {255}
    train = {r["class_id"]: r["pixels"] for r in rows if r["split"] == "train"}
    assert (train[0], train[10], train[13], train[255]) == (12, 8, 4, 3)  # counted by hand


def _official_bdd_miou(pairs: list[tuple[np.ndarray, np.ndarray]], n: int = 19) -> tuple[float, np.ndarray]:
    """bdd100k/eval/seg.py's rules, re-derived: a (n+1)^2 histogram whose last row/column is 'ignored'
    (gt 255 -> left out; predictions >= n -> the ignored column), IoU NaN -> 0, mean over the gt classes."""
    hist = np.zeros((n + 1, n + 1), np.int64)
    present: set[int] = set()
    for gt, pred in pairs:
        g = gt.astype(np.int64).ravel()
        g[g == 255] = n
        present |= set(np.unique(g).tolist()) - {n}
        p = pred.astype(np.int64).ravel()
        p[p >= n] = n
        k = g < n
        hist += np.bincount((n + 1) * g[k] + p[k], minlength=(n + 1) ** 2).reshape(n + 1, n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
    iou[np.isnan(iou)] = 0
    return float(np.mean(iou[:n][sorted(present)])), iou[:n]


def test_evaluate_hand_computed_and_official_rules(tmp_path):
    parent = _release(tmp_path)
    pred = tmp_path / "pred"
    # gt [[0, 0, 13, 13], [255, 1, 13, 0]]: road TP 2 FN 1 (predicted sidewalk); sidewalk TP 1 FP 1; car TP 2 and one
    # pixel predicted 255 (a miss, nobody's false positive); the 5 on the gt-255 pixel is not counted
    save_png(pred / "7d2f7975-e0c1c5a7.png", np.array([[0, 1, 13, 255], [5, 1, 13, 0]], np.uint8))
    out = tmp_path / "r.json"
    res = _run("evaluate", "bdd100k", parent, pred, "--workers", "1", "--quiet", "-o", out)
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["split"] == "val" and r["rules"]["mean_over"] == "gt" and "bdd100k eval/seg.py" in r["rules"]["tool"]
    c = r["classes"]
    assert (c["road"]["TP"], c["road"]["FP"], c["road"]["FN"]) == (2, 0, 1)
    assert (c["sidewalk"]["TP"], c["sidewalk"]["FP"], c["sidewalk"]["FN"]) == (1, 1, 0)
    assert (c["car"]["TP"], c["car"]["FP"], c["car"]["FN"]) == (2, 0, 1)
    assert c["pole"]["FP"] == 0 and r["n_present"] == 3
    assert r["mIoU"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)  # 11/18
    assert r["mIoU"] == pytest.approx(_official_bdd_miou([(VAL["7d2f7975-e0c1c5a7"], np.array(
        [[0, 1, 13, 255], [5, 1, 13, 0]], np.uint8))])[0])


def test_evaluate_matches_the_official_rules_on_noisy_predictions(tmp_path):
    rng = np.random.default_rng(19)
    frames = {f"{i:08x}-0000000{i}": rng.choice([*range(19), 255], size=(24, 32)).astype(np.uint8) for i in range(3)}
    parent = _release(tmp_path, {"val": frames}, test_photos=0)
    pairs = []
    for key, gt in frames.items():
        p = gt.copy()
        noise = rng.random(gt.shape) < 0.3
        p[noise] = rng.choice([*range(19), 255], size=int(noise.sum()))
        save_png(tmp_path / "pred" / f"{key}.png", p)
        pairs.append((gt, p))
    res = evaluate_folder("bdd100k", parent, tmp_path / "pred", workers=1, progress=False)
    want, iou = _official_bdd_miou(pairs)
    assert res["mIoU"] == pytest.approx(want, abs=1e-12)
    tax = load_taxonomy("bdd100k")
    assert [res["classes"][tax.by_id(i).name]["IoU"] for i in range(19)] == pytest.approx(iou.tolist(), abs=1e-12)


def test_convert_to_cityscapes_tree_and_back(tmp_path):
    parent = _release(tmp_path / "data")
    cs = load_taxonomy("cityscapes")
    cs_of_train = {c.train_id: c.id for c in cs.classes if c.train_id is not None and 0 <= c.train_id < 255}
    lut = np.zeros(256, np.uint8)  # BDD train id -> Cityscapes labelId; 255 -> Cityscapes' ignore 0 (unlabeled)
    for t, cid in cs_of_train.items():
        lut[t] = cid
    rep = convert_dataset("bdd100k", parent, tmp_path / "cs", "cityscapes", hierarchy=TREE, workers=1, progress=False)
    assert rep.lost_pixels == 0 and rep.images == 3
    written = sorted((tmp_path / "cs" / "gtFine").rglob("*_gtFine_labelIds.png"))
    assert len(written) == 3
    got = {read_png(p).tobytes() for p in written}
    assert got == {lut[a].tobytes() for a in (*TRAIN.values(), *VAL.values())}
    # train ids: the values themselves
    convert_dataset("bdd100k", parent, tmp_path / "ti", "cityscapes:trainids", hierarchy=TREE, workers=1,
                    progress=False)
    got = {read_png(p).tobytes() for p in (tmp_path / "ti").rglob("*_gtFine_labelTrainIds.png")}
    assert got == {a.tobytes() for a in (*TRAIN.values(), *VAL.values())}
    # tree nodes: each BDD class at the node of the Cityscapes class with its train id
    h = load_hierarchy(TREE)
    cs_nodes = h.tables("cityscapes").value_to_node
    convert_dataset("bdd100k", parent, tmp_path / "tree", "tree", hierarchy=TREE, workers=1, progress=False)
    key = "7d2f7975-e0c1c5a7"
    node = read_png(tmp_path / "tree" / "tree" / "val" / f"{key}.png")
    want = np.where(VAL[key] == 255, 65535, cs_nodes[lut[VAL[key]]]).astype(np.uint16)
    assert node.dtype == np.uint16 and np.array_equal(node, want)
    # Cityscapes labelIds -> the BDD layout through the bundled tree (written by the layout's path function)
    src = tmp_path / "csroot"
    ids = np.array([[7, 8, 24, 25], [31, 33, 0, 20]], np.uint8)
    save_png(src / "gtFine" / "val" / "z" / "z_000000_000001_gtFine_labelIds.png", ids)
    with pytest.warns(LabeltreeWarning, match="labels without their photo"):  # labels only, on both sides
        convert_dataset("cityscapes", src, tmp_path / "b", "bdd100k", hierarchy=TREE, workers=1, progress=False)
        assert open_dataset("bdd100k", tmp_path / "b").samples("val")[0].key == "z_000000_000001"
    out = read_png(bdd100k.label_path(tmp_path / "b", "val", "z_000000_000001"))
    assert out.tolist() == [[0, 1, 11, 12], [16, 18, 255, 7]]


# -- the extension tree ------------------------------------------------------------------------------

def test_extension_tree_maps_every_class_like_cityscapes():
    h = load_hierarchy(TREE)
    assert TREE in bundled_hierarchies()
    bdd = h.mapping("bdd100k")
    tax = load_taxonomy("bdd100k")
    assert set(bdd.to_node) == set(tax.ids)
    assert [i for i, n in bdd.to_node.items() if n is None] == [255]
    cs = h.mapping("cityscapes")
    cs_tax = load_taxonomy("cityscapes")
    for c in cs_tax.classes:
        if c.train_id is not None and 0 <= c.train_id < 255:
            assert bdd.to_node[c.train_id] == cs.to_node[c.id], c.name
    assert {h.nodes[n].name for n in bdd.to_node.values() if n is not None} <= \
        {h.nodes[n].name for n in cs.to_node.values() if n is not None}
    # the base tree is unchanged: same nodes, same mappings
    base = load_hierarchy("cityscapes+vistas+gtsdb")
    assert [n.name for n in h.nodes] == [n.name for n in base.nodes]
    assert {d: m.to_node for d, m in base.mappings.items()} == {d: h.mapping(d).to_node for d in base.mappings}


@pytest.mark.parametrize("datasets", [["cityscapes", "bdd100k"], ["cityscapes", "vistas", "gtsdb", "bdd100k"],
                                      ["bdd100k"]])
def test_merge_picks_the_extension_tree(datasets):
    """An extension lists only its new datasets: the base's come through `extends`."""
    res = merge(datasets)
    assert res.source == "bundled" and res.source_path.name == f"{TREE}.yaml"
    assert not res.needs_rules  # the conflicts listed are the base tree's kind (road -> the inner node Driveable)
    cov = res.coverage["bdd100k"]
    assert (cov.unmapped, cov.ignored, sorted(cov.inner + cov.leaves)) == ([], [255], list(range(19)))
    if "cityscapes" in res.coverage:  # on inner nodes exactly where its Cityscapes class is
        train_id = {c.id: c.train_id for c in load_taxonomy("cityscapes").classes}
        assert sorted(cov.inner) == sorted(train_id[i] for i in res.coverage["cityscapes"].inner
                                           if 0 <= train_id[i] < 255)
    assert load_hierarchy("+".join(datasets)).mapping("bdd100k").to_node[255] is None
