"""labeltree.evaluate.evaluator: hand computations, cityscapesScripts' formulas on the real fixture, tree levels."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeltree.core.taxonomy import load_taxonomy
from labeltree.core.tree_file import load_hierarchy
from labeltree.errors import LabeltreeError
from labeltree.evaluate.evaluator import Evaluator, evaluate_arrays


def ids(tax, *names):
    return [tax.find(n).id for n in names]


# -- hand computations -------------------------------------------------------------------------------

def _hand_case(cs):
    road, sidewalk, car, unl, parking, static = ids(cs, "road", "sidewalk", "car", "unlabeled", "parking", "static")
    gt = np.array([[road, road, road, sidewalk],
                   [car, car, unl, unl]], dtype=np.uint8)
    pred = np.array([[road, parking, sidewalk, sidewalk],
                     [car, road, car, static]], dtype=np.uint8)
    return gt, pred


def test_hand_computation_official_semantics(cs):
    gt, pred = _hand_case(cs)
    r = evaluate_arrays("cityscapes", gt, pred)
    c = r["classes"]
    # road: TP 1, FN 2 (parking = outside the 19 -> "other", sidewalk), FP 1 (road predicted on car)
    assert (c["road"]["TP"], c["road"]["FN"], c["road"]["FP"]) == (1, 2, 1)
    assert c["road"]["IoU"] == pytest.approx(1 / 4)
    assert c["road"]["PA"] == pytest.approx(1 / 3)
    assert c["sidewalk"]["IoU"] == pytest.approx(1 / 2) and c["sidewalk"]["PA"] == 1.0
    # car predicted on an ignored (unlabeled) pixel is no false positive
    assert (c["car"]["TP"], c["car"]["FN"], c["car"]["FP"]) == (1, 1, 0)
    assert c["car"]["IoU"] == pytest.approx(1 / 2)
    # absent classes: no pixels, undefined IoU, not in the means
    assert c["person"]["pixels"] == 0 and c["person"]["IoU"] is None
    assert r["n_classes"] == 19 and r["n_present"] == 3
    assert r["mIoU"] == pytest.approx((1 / 4 + 1 / 2 + 1 / 2) / 3)
    assert r["mPA"] == pytest.approx((1 / 3 + 1 + 1 / 2) / 3)
    assert r["pixel_accuracy"] == pytest.approx(3 / 6)
    assert r["pixels"] == 6 and r["other_pixels"] == 1
    # the 'other' column holds the parking prediction on road
    assert r["confusion"]["labels"][-1] == "other"
    road_row = r["confusion"]["labels"].index("road")
    assert r["confusion"]["matrix"][road_row][-1] == 1


def test_all_classes_and_mean_over_defined(cs):
    gt, pred = _hand_case(cs)
    r = evaluate_arrays("cityscapes", gt, pred, classes="all", mean_over="gt")
    assert r["n_classes"] == len([c for c in cs.classes if c.id >= 0]) - len(cs.ignore_ids)
    assert r["classes"]["parking"]["FP"] == 1 and r["classes"]["parking"]["IoU"] == 0.0
    assert r["classes"]["static"]["FP"] == 0  # predicted only on an ignored pixel
    assert r["other_pixels"] == 0
    assert r["mIoU"] == pytest.approx((1 / 4 + 1 / 2 + 1 / 2) / 3)
    # the official protocol's mean (the default) runs over classes with a defined IoU: parking scores 0
    d = evaluate_arrays("cityscapes", gt, pred, classes="all")
    assert d["mIoU"] == pytest.approx((1 / 4 + 1 / 2 + 1 / 2 + 0) / 4)
    assert d["rules"]["overrides"] == ["classes=all"] and r["rules"]["overrides"] == ["classes=all", "mean_over=gt"]


def test_explicit_class_ids(cs):
    gt, pred = _hand_case(cs)
    road, car = ids(cs, "road", "car")
    r = evaluate_arrays("cityscapes", gt, pred, classes=f"{road},{car}")
    assert list(r["classes"]) == ["road", "car"]
    # sidewalk gt is now ignored: the road->sidewalk error is gone, the sidewalk prediction on road is "other"
    assert r["classes"]["road"]["FN"] == 2 and r["classes"]["road"]["FP"] == 1
    with pytest.raises(LabeltreeError, match="not a class"):
        evaluate_arrays("cityscapes", gt, pred, classes="7,99")
    with pytest.raises(LabeltreeError, match="--classes"):
        evaluate_arrays("cityscapes", gt, pred, classes="most")


def test_incremental_equals_one_shot_and_merge():
    rng = np.random.default_rng(1)
    gts = [rng.integers(0, 34, (20, 30), dtype=np.uint8) for _ in range(3)]
    preds = [rng.integers(0, 34, (20, 30), dtype=np.uint8) for _ in range(3)]
    ev = Evaluator("cityscapes")
    for g, p in zip(gts, preds, strict=True):
        ev.add(g, p)
    one = evaluate_arrays("cityscapes", np.concatenate(gts), np.concatenate(preds))
    assert ev.result()["classes"] == one["classes"]
    a, b = Evaluator("cityscapes"), Evaluator("cityscapes")
    a.add(gts[0], preds[0])
    b.add(gts[1], preds[1])
    b.add(gts[2], preds[2])
    a.merge(b)
    assert np.array_equal(a.matrix, ev.matrix)
    # a batch (leading axis) counts the same as its images
    assert np.array_equal(Evaluator("cityscapes").add(np.stack(gts), np.stack(preds)), ev.matrix)


def test_gtsdb_values_and_unlabeled():
    gts = load_taxonomy("gtsdb")
    k5, k7 = (gts.stored_value(c) for c in ids(gts, "speed limit 80", "speed limit 100"))
    gt = np.zeros((4, 6), dtype=np.uint16)
    gt[1:3, 1:3] = k5
    gt[0, 5] = k7
    pred = gt.copy()
    pred[1, 1] = 0  # 'no sign' on a sign pixel: an error
    pred[3, 0] = k5  # a sign on unlabeled background: not counted (gt ignored)
    r = evaluate_arrays("gtsdb", gt, pred, drop="none")
    c = r["classes"]["speed limit 80"]
    assert (c["TP"], c["FN"], c["FP"]) == (3, 1, 0)
    # GTSDB has no official tool: the paper protocol drops the 'no class' value (what predict writes for
    # a tree node GTSDB lacks), so the 'no sign' pixel is neither an error nor in a union
    p = evaluate_arrays("gtsdb", gt, pred)
    c = p["classes"]["speed limit 80"]
    assert (c["TP"], c["FN"], c["FP"]) == (3, 0, 0) and p["protocol"] == "paper"
    assert "no official" in p["rules"]["note"]
    assert r["classes"]["speed limit 100"]["IoU"] == 1.0
    assert r["n_classes"] == 43 and r["n_present"] == 2
    with pytest.raises(LabeltreeError, match="1999"):
        evaluate_arrays("gtsdb", gt, np.full_like(gt, 1999))


# -- tree-space predictions ---------------------------------------------------------------------------

def test_tree_predictions_project_and_paper_protocol(cs, tree):
    road, car = ids(cs, "road", "car")
    node = tree.index
    gt = np.array([[road, road, road, car]], dtype=np.uint8)
    pred = np.array([[node["Crosswalk - Plain"], node["Driveable"], node["Curb"], node["Car"]]], dtype=np.uint16)
    r = evaluate_arrays("cityscapes", gt, pred_nodes=pred, hierarchy=tree)
    # any Driveable descendant is Cityscapes 'road'; Curb is no Cityscapes class: an error ("other")
    assert r["classes"]["road"]["TP"] == 2 and r["classes"]["road"]["FN"] == 1
    assert r["other_pixels"] == 1
    assert r["classes"]["road"]["IoU"] == pytest.approx(2 / 3)
    p = evaluate_arrays("cityscapes", gt, pred_nodes=pred, hierarchy=tree, protocol="paper")
    assert p["classes"]["road"]["IoU"] == 1.0  # the Curb pixel is dropped
    assert p["pixels"] == 3 and p["other_pixels"] == 0
    assert p["protocol"] == "paper"


# -- per tree level on a hand-made tree ----------------------------------------------------------------

TOY_TAX = """\
name: toy
version: '1'
annotation: dense
ignore_ids: [0]
encoding: {format: png-ids, dtype: uint8, offset: 0}
classes:
- {id: 0, name: void, color: [0, 0, 0], category: void, ignore_in_eval: true}
- {id: 1, name: car, color: [0, 0, 142], category: vehicle}
- {id: 2, name: truck, color: [0, 0, 70], category: vehicle}
- {id: 3, name: road, color: [128, 64, 128], category: flat}
- {id: 4, name: sidewalk, color: [244, 35, 232], category: flat}
"""


TOY_TREE = """\
name: toy-tree
datasets: [toy.yaml]
tree:
  - Vehicle: [Car, Truck]
  - Ground: [Road, Sidewalk]
mappings:
  toy.yaml:
    map: {car: Car, truck: Truck, road: Road, sidewalk: Sidewalk}
    ignore: [void]
"""


@pytest.fixture
def toy(tmp_path):
    (tmp_path / "toy.yaml").write_text(TOY_TAX)
    (tmp_path / "tree.yaml").write_text(TOY_TREE)
    return load_taxonomy(tmp_path / "toy.yaml"), load_hierarchy(tmp_path / "tree.yaml")


def test_levels_on_a_hand_made_tree(toy):
    tax, h = toy
    car, truck, road, side, void = ids(tax, "car", "truck", "road", "sidewalk", "void")
    gt = np.array([car, car, truck, road, road, side, void], dtype=np.uint8)[None]
    pred = np.array([car, truck, road, road, side, road, car], dtype=np.uint8)[None]
    r = evaluate_arrays(tax, gt, pred, hierarchy=h, levels=True)
    assert set(r["levels"]) == {"1", "2"}
    l2, l1 = r["levels"]["2"], r["levels"]["1"]
    # level 2 = the classes themselves
    assert l2["classes"]["Car"]["IoU"] == pytest.approx(1 / 2)
    assert l2["classes"]["Truck"]["IoU"] == 0.0
    assert l2["classes"]["Road"]["IoU"] == pytest.approx(1 / 4)
    assert l2["mIoU"] == pytest.approx((1 / 2 + 0 + 1 / 4 + 0) / 4) == r["mIoU"]
    assert l2["pixel_accuracy"] == pytest.approx(2 / 6)
    # level 1: blocks summed: Vehicle TP 2 FN 1 FP 0; Ground TP 3 FN 0 FP 1
    assert l1["classes"]["Vehicle"]["IoU"] == pytest.approx(2 / 3)
    assert l1["classes"]["Ground"]["IoU"] == pytest.approx(3 / 4)
    assert l1["classes"]["Vehicle"]["pixels"] == 3
    assert l1["mIoU"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert l1["pixel_accuracy"] == pytest.approx(5 / 6)
    # categories come from the taxonomy's category field (vehicle = {car, truck}, flat = {road, sidewalk})
    assert r["categories"]["vehicle"] == pytest.approx(2 / 3)
    assert r["categories"]["flat"] == pytest.approx(3 / 4)


def test_levels_with_tree_predictions_of_internal_nodes(toy):
    tax, h = toy
    car, road = ids(tax, "car", "road")
    gt = np.array([[car, car, road]], dtype=np.uint8)
    pred = np.array([[h.index["Car"], h.index["Vehicle"], h.index["Road"]]], dtype=np.uint16)
    r = evaluate_arrays(tax, gt, pred_nodes=pred, hierarchy=h, levels=True, drop="none")
    # 'Vehicle' (no class of this dataset at that depth) is an error at every level: the projection
    # goes through the dataset's classes
    assert r["classes"]["car"]["TP"] == 1 and r["other_pixels"] == 1
    assert r["levels"]["1"]["classes"]["Vehicle"]["TP"] == 1


# -- conformance: cityscapesScripts' formulas on the real fixture -----------------------------------

def _cs_label_table(real_fixtures: Path) -> dict[int, dict]:
    rows = (real_fixtures / "cityscapes" / "cityscapes_labels.tsv").read_text().splitlines()
    reader = csv.DictReader([r for r in rows if not r.startswith("#")], delimiter="\t")
    return {int(r["id"]): {"name": r["name"], "category": r["category"], "ignore": r["ignoreInEval"] == "True"}
            for r in reader}


def _cityscapes_scripts_eval(gt: np.ndarray, pred: np.ndarray, table: dict[int, dict]) -> dict:
    """Re-derived from cityscapesScripts evaluation/evalPixelLevelSemanticLabeling.py (python path)."""
    eval_labels = sorted(i for i in table if i >= 0)
    conf = np.zeros((max(eval_labels) + 1,) * 2, dtype=np.ulonglong)
    enc_value = int(max(gt.max(), pred.max())) + 1
    encoded = gt.astype(np.int32) * enc_value + pred
    values, cnt = np.unique(encoded, return_counts=True)
    for value, c in zip(values, cnt, strict=True):
        pred_id = value % enc_value
        gt_id = int((value - pred_id) / enc_value)
        conf[gt_id][pred_id] += c

    def iou(label):
        if table[label]["ignore"]:
            return float("nan")
        tp = np.longlong(conf[label, label])
        fn = np.longlong(conf[label, :].sum()) - tp
        not_ignored = [m for m in eval_labels if not table[m]["ignore"] and m != label]
        fp = np.longlong(conf[not_ignored, label].sum())
        denom = tp + fp + fn
        return float("nan") if denom == 0 else float(tp) / denom

    def cat_iou(cat):
        ids_ = [m for m in eval_labels if table[m]["category"] == cat and not table[m]["ignore"]]
        if not ids_:
            return float("nan")
        tp = np.longlong(conf[ids_, :][:, ids_].sum())
        fn = np.longlong(conf[ids_, :].sum()) - tp
        others = [m for m in eval_labels if not table[m]["ignore"] and table[m]["category"] != cat]
        fp = np.longlong(conf[others, :][:, ids_].sum())
        denom = tp + fp + fn
        return float("nan") if denom == 0 else float(tp) / denom

    def avg(scores):
        valid = [s for s in scores.values() if not math.isnan(s)]
        return sum(valid) / len(valid) if valid else float("nan")

    classes = {table[m]["name"]: iou(m) for m in eval_labels if not table[m]["ignore"]}
    cats = {table[m]["category"] for m in eval_labels}
    categories = {c: cat_iou(c) for c in cats if any(not table[m]["ignore"] for m in eval_labels
                                                     if table[m]["category"] == c)}
    return {"classes": classes, "mIoU": avg(classes), "categories": categories, "mIoU_categories": avg(categories)}


def _noisy(gt: np.ndarray, seed: int, cs) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pred = np.roll(gt, (2, 3), axis=(0, 1)).copy()
    flip = rng.random(gt.shape) < 0.1
    pred[flip] = rng.integers(0, 34, int(flip.sum()))  # includes ignored classes and absent ones
    truck = ids(cs, "truck")[0]
    pred[5:15, 10:40] = truck  # a class absent from this gt: IoU 0 under cityscapesScripts' mean
    return pred.astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1])
def test_same_numbers_as_cityscapes_scripts_on_the_real_fixture(real_fixtures, cs, seed):
    from labeltree.datasets.base import decode_label

    label = real_fixtures / "cityscapes/gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"
    gt = decode_label(label, cs)
    pred = _noisy(gt, seed, cs)
    ref = _cityscapes_scripts_eval(gt, pred, _cs_label_table(real_fixtures))
    ours = evaluate_arrays("cityscapes", gt, pred, mean_over="defined")
    assert set(ours["classes"]) == set(ref["classes"])  # the same 19 classes
    for name, iou in ref["classes"].items():
        got = ours["classes"][name]["IoU"]
        assert (got is None and math.isnan(iou)) or got == pytest.approx(iou, abs=1e-12), name
    assert ours["mIoU"] == pytest.approx(ref["mIoU"], abs=1e-12)
    for cat, iou in ref["categories"].items():
        got = ours["categories"].get(cat)
        assert (got is None and math.isnan(iou)) or got == pytest.approx(iou, abs=1e-12), cat
    assert ours["mIoU_categories"] == pytest.approx(ref["mIoU_categories"], abs=1e-12)
    assert evaluate_arrays("cityscapes", gt, pred)["mIoU"] == ours["mIoU"]  # the official protocol is the default
    # the mean over classes present in the gt differs exactly by the predicted-but-absent classes
    default = evaluate_arrays("cityscapes", gt, pred, mean_over="gt")
    present = [ref["classes"][n] for n, c in default["classes"].items() if c["pixels"] > 0]
    assert default["mIoU"] == pytest.approx(sum(present) / len(present), abs=1e-12)
    assert default["mIoU"] != pytest.approx(ours["mIoU"])


def test_vistas_palette_fixture_labels_count_as_indices(real_fixtures):
    vistas = load_taxonomy("vistas")
    path = real_fixtures / "vistas/v1.2/labels/__CRyFzoDOXn6unQ6a3DnQ.png"
    with Image.open(path) as im:
        assert im.mode == "P"
        gt = np.asarray(im)
    r = evaluate_arrays("vistas", gt, gt)
    present = {n for n, c in r["classes"].items() if c["pixels"]}
    assert present == {vistas.by_id(int(v)).display for v in np.unique(gt)}
    assert r["mIoU"] == 1.0 and r["n_classes"] == 65
