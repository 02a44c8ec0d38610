"""IDD: the label table and its taxonomies, the layout (read and write paths), stats / evaluate / convert
on label files written as the IDD tools write them, refusals, and the tree extension."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from builders import cityscapes_frame, read_png, save_png
from click.testing import CliRunner

from labeltree.cli import main
from labeltree.core.hierarchy import IGNORE, NO_TARGET
from labeltree.core.importers import import_table
from labeltree.core.merge import merge
from labeltree.core.taxonomy import load_taxonomy
from labeltree.core.tree_file import default_tree, load_hierarchy
from labeltree.datasets import idd
from labeltree.datasets.base import LabeltreeWarning, read_label
from labeltree.datasets.registry import LAYOUTS, open_dataset
from labeltree.errors import LabeltreeError

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "taxonomies" / "tables" / "idd.tsv"
TREE = "cityscapes+vistas+gtsdb+idd"
VERSION = "IDD Segmentation (IDD 20k), label table of AutoNUE public-code 5d9a93b"
# the commands that made the bundled taxonomies (docs/datasets.md "IDD")
IMPORTS = {
    "idd": ["--column", "id=level3Id", "--column", "name=level3Name", "--column", "category=level1Name",
            "--column", "category_id=level1Id", "--description", "India Driving Dataset at level 3, the 26-class "
            "benchmark (*_gtFine_labellevel3Ids.png); category = level-1 group"],
    "idd-level2": ["--column", "id=level2Id", "--column", "name=level2Name", "--column", "category=level1Name",
                   "--column", "category_id=level1Id", "--description", "India Driving Dataset at level 2, 16 "
                   "classes (*_gtFine_labellevel2Ids.png); category = level-1 group"],
    "idd-level1": ["--column", "id=level1Id", "--column", "name=level1Name", "--description",
                   "India Driving Dataset at level 1, 7 classes as IDD Lite (*_gtFine_labellevel1Ids.png)"],
}
# evaluation/evaluate_mIoU.py's class names per level (the tool's own lists)
L3 = ["road", "drivable fallback", "sidewalk", "non-drivable fallback", "person", "rider", "motorcycle", "bicycle",
      "autorickshaw", "car", "truck", "bus", "vehicle fallback", "curb", "wall", "fence", "guard rail", "billboard",
      "traffic sign", "traffic light", "pole", "obs-str-bar-fallback", "building", "bridge", "vegetation", "sky"]
L1 = ["drivable", "non-drivable", "living-things", "vehicles", "road-side-objs", "far-objects", "sky"]


def table_rows() -> list[dict[str, str]]:
    lines = [ln for ln in TABLE.read_text().splitlines() if not ln.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def idd_frame(root: Path, split: str, seq: str, frame: str, label: np.ndarray | None,
              photo: str | None = "png", column: str = "level3Id") -> None:
    """One IDD frame: the createLabels.py label PNG (8-bit L) and the photo (RGB PNG, or a JPEG copy)."""
    if label is not None:
        save_png(idd.label_path(root, split, seq, frame, column), label.astype(np.uint8))
    if photo is not None:
        rgb = np.random.default_rng(int(frame)).integers(0, 256, (*(label.shape if label is not None else (6, 8)),
                                                                   3), dtype=np.uint8)
        p = idd.image_path(root, split, seq, frame)
        save_png(p if photo == "png" else p.with_suffix(".jpg"), rgb)


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.output


# -- the label table and the taxonomies made from it ------------------------------------------------

@pytest.mark.parametrize("name", sorted(IMPORTS))
def test_bundled_taxonomies_are_the_table_imported(tmp_path, name):
    out = tmp_path / f"{name}.yaml"
    code, text = run("import", "table", str(TABLE), "--name", name, "--layout", "idd", "--version", VERSION,
                     *IMPORTS[name], "-o", str(out))
    assert code == 0, text
    assert out.read_text() == (REPO / "taxonomies" / f"{name}.yaml").read_text()


def test_table_levels_as_documented():
    rows = table_rows()
    assert len(rows) == 40 and [int(r["id"]) for r in rows] == list(range(40))
    tax = load_taxonomy("idd")
    assert tax.encoding.layout == "idd" and tax.encoding.column == "level3Id" and tax.ignore_ids == [255]
    assert [c.name for c in tax.classes] == [*L3, "unlabeled"] and tax.ids == [*range(26), 255]
    assert [c.name for c in load_taxonomy("idd-level1").classes] == [*L1, "unlabeled"]
    assert len(load_taxonomy("idd-level2").classes) == 17
    l2 = load_taxonomy("idd-level2")
    for r in rows:  # each row's level-3 class lies in its level-2 and level-1 groups (the table's hierarchy)
        c3 = tax.by_id(int(r["level3Id"]))
        assert c3.name == r["level3Name"] and c3.category_id == int(r["level1Id"])
        assert l2.by_id(int(r["level2Id"])).category_id == int(r["level1Id"])
        assert r["name"] == c3.name or r["name"] in c3.includes
    assert tax.find("drivable fallback").includes == ["parking"]
    assert tax.find("vehicle fallback").includes == ["caravan", "trailer", "train"]
    assert tax.find("sky").includes == ["fallback background"]
    assert not tax.find("person").ignore_in_eval  # animal alone is ignoreInEval; the group is evaluated
    assert tax.find("autorickshaw").category == "vehicles"


def test_grouped_rows_must_agree(tmp_path):
    t = tmp_path / "t.tsv"
    t.write_text("name\tid\tlevel\tlevelName\tcolor\nroad\t0\t0\tflat\t1,2,3\nkerb\t1\t0\tflat\t4,5,6\n"
                 "wall\t2\t0\tsolid\t7,8,9\n")
    with pytest.raises(LabeltreeError, match=r"rows with level 0 disagree on name: 'flat' \(line 2\) and 'solid'") as e:
        import_table(t, columns={"id": "level", "name": "levelName"})
    assert e.value.line == 4
    code, text = run("import", "table", str(t), "--column", "colour=level")
    assert code == 2 and "'colour' is no class field" in text
    code, text = run("import", "table", str(t), "--column", "id=level3Id")
    assert code == 2 and "the table has no column 'level3Id'" in text
    code, text = run("import", "table", str(t), "--column", "id")
    assert code == 2 and "expected FIELD=COLUMN" in text


# -- the layout ----------------------------------------------------------------------------------

def test_layout_paths_and_keys(tmp_path):
    assert LAYOUTS["idd"] is idd.IDDReader
    lab = idd.label_path(tmp_path, "val", "12", "005506")
    assert lab == tmp_path / "gtFine/val/12/005506_gtFine_labellevel3Ids.png"
    assert idd.label_path(tmp_path, "val", "12", "005506", "level1Id").name == "005506_gtFine_labellevel1Ids.png"
    assert idd.image_path(tmp_path, "train", "0", "000012") == tmp_path / "leftImg8bit/train/0/000012_leftImg8bit.png"
    assert idd.polygons_path(tmp_path, "val", "3", "1").name == "1_gtFine_polygons.json"
    assert idd.split_key("12_005506") == ("12", "005506")
    key = idd.IDDReader.prediction_key
    assert key(Path("preds/12/005506_gtFine_labellevel3Ids.png")) == "12_005506"  # evaluate_mIoU.py's mirror
    assert key(Path("preds/12_005506_pred.png")) == "12_005506"
    assert key(Path("preds/12_005506.png")) == "12_005506"


def _dataset(root: Path) -> dict[str, np.ndarray]:
    """val: frame 005506 in sequences 0 and 12 (IDD repeats frame numbers across sequences), one JPEG photo,
    one label without photo, one photo without label; test: photos only; a panoptic folder."""
    rng = np.random.default_rng(7)
    labels = {}
    for seq, frame, photo in (("0", "005506", "png"), ("12", "005506", "jpg"), ("12", "000101", None)):
        lab = rng.choice([0, 1, 4, 8, 9, 12, 25, 255], size=(6, 8)).astype(np.uint8)
        idd_frame(root, "val", seq, frame, lab, photo)
        labels[f"{seq}_{frame}"] = lab
    idd_frame(root, "val", "12", "000202", None)
    idd_frame(root, "test", "7", "000001", None)
    (root / "gtFine" / "val_panoptic").mkdir()
    return labels


def test_reader_pairs_photos_and_labels(tmp_path):
    labels = _dataset(tmp_path)
    r = open_dataset("idd", tmp_path)
    assert isinstance(r, idd.IDDReader) and r.splits() == ["val", "test"]
    with pytest.warns(LabeltreeWarning) as w:
        s = r.samples("val")
    msgs = " | ".join(str(x.message) for x in w)
    assert "1 labels without their photo" in msgs and "12/000101_gtFine_labellevel3Ids.png" in msgs
    assert "1 photos without a label" in msgs and "000202_leftImg8bit.png" in msgs
    assert [x.key for x in s] == ["0_005506", "12_000101", "12_005506"]
    assert [x.city for x in s] == ["0", "12", "12"]
    assert s[0].image == idd.image_path(tmp_path, "val", "0", "005506")
    assert s[2].image == idd.image_path(tmp_path, "val", "12", "005506").with_suffix(".jpg")
    assert s[1].image is None
    for x in s:
        assert np.array_equal(r.read_label(x), labels[x.key])
    assert r.read_image(s[0]).shape == (6, 8, 3)
    with pytest.warns(LabeltreeWarning, match="1 photos without a label"):
        assert r.samples("test") == []


def test_stats_counts_exact(tmp_path):
    labels = _dataset(tmp_path)
    out = tmp_path / "s.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabeltreeWarning)
        code, text = run("stats", "idd", str(tmp_path), "--split", "val", "--workers", "1", "--no-cache", "--quiet",
                         "-o", str(out))
    assert code == 0, text
    rows = {r["value"]: r for r in json.loads(out.read_text())}
    stacked = np.concatenate([a.ravel() for a in labels.values()])
    counts = np.bincount(stacked, minlength=256)
    present = sum((np.bincount(a.ravel(), minlength=256) > 0).astype(int) for a in labels.values())
    assert set(rows) == {*range(26), 255}
    for v, row in rows.items():
        assert row["pixels"] == counts[v] and row["images"] == present[v], v
    assert rows[255]["ignored"] and not rows[8]["ignored"] and rows[8]["name"] == "autorickshaw"


def test_evaluate_exact_iou(tmp_path):
    gt = np.array([[0, 0, 0, 1, 255, 255],
                   [0, 0, 8, 8, 9, 9]], np.uint8)
    pred = np.array([[0, 0, 1, 1, 9, 0],
                     [0, 255, 8, 9, 9, 9]], np.uint8)
    idd_frame(tmp_path / "gt", "val", "4", "000123", gt)
    save_png(tmp_path / "pred" / "4" / "000123_gtFine_labellevel3Ids.png", pred)  # the gt tree mirrored
    out = tmp_path / "e.json"
    code, text = run("evaluate", "idd", str(tmp_path / "gt"), str(tmp_path / "pred"), "--quiet", "-o", str(out))
    assert code == 0, text
    res = json.loads(out.read_text())
    assert res["protocol"] == "official" and "evaluate_mIoU.py" in res["rules"]["tool"]
    c = res["classes"]
    # road: 5 gt pixels, TP 3, FN 2 (one predicted drivable fallback, one 255 = the tool's misc); FP 0: the
    # road predicted on a 255-gt pixel is no pixel (nor is the car predicted on the other)
    assert (c["road"]["TP"], c["road"]["FP"], c["road"]["FN"]) == (3, 0, 2)
    assert c["road"]["IoU"] == pytest.approx(3 / 5)
    assert c["drivable fallback"]["IoU"] == pytest.approx(1 / 2)  # TP 1, FP 1
    assert c["autorickshaw"]["IoU"] == pytest.approx(1 / 2)  # TP 1, FN 1
    assert c["car"]["IoU"] == pytest.approx(2 / 3)  # TP 2, FP 1
    assert res["mIoU"] == pytest.approx((3 / 5 + 1 / 2 + 1 / 2 + 2 / 3) / 4)
    # flat names {seq}_{frame}_*.png match too
    save_png(tmp_path / "flat" / "4_000123_pred.png", pred)
    code, text = run("evaluate", "idd", str(tmp_path / "gt"), str(tmp_path / "flat"), "--quiet", "-o",
                     str(tmp_path / "f.json"))
    assert code == 0, text
    assert json.loads((tmp_path / "f.json").read_text())["mIoU"] == res["mIoU"]


def test_convert_to_tree_and_between_layouts(tmp_path):
    lab = np.array([[0, 1, 8, 255], [12, 21, 25, 5]], np.uint8)
    idd_frame(tmp_path / "idd", "val", "3", "005506", lab)
    code, text = run("convert", "idd", str(tmp_path / "idd"), str(tmp_path / "t"), "--to", "tree", "--hierarchy",
                     TREE, "--quiet", "--workers", "1")
    assert code == 0, text
    h = load_hierarchy(TREE)
    n = {node.name: i for i, node in enumerate(h.nodes)}
    want = [[n["Road"], n["Driveable"], n["Autorickshaw"], 65535],
            [n["Vehicle Fallback"], n["Obs-Str-Bar Fallback"], n["Sky"], n["Rider"]]]
    assert np.array_equal(read_png(tmp_path / "t" / "tree" / "val" / "3_005506.png"), want)
    # Cityscapes -> IDD, written in the IDD layout: road / parking (under Driveable) -> drivable fallback
    cs = np.array([[7, 9, 26, 0], [11, 24, 25, 33]], np.uint8)
    cityscapes_frame(tmp_path / "cs", "val", "aachen", 3, cs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabeltreeWarning)
        code, text = run("convert", "cityscapes", str(tmp_path / "cs"), str(tmp_path / "o"), "--to", "idd",
                         "--hierarchy", TREE, "--quiet", "--workers", "1")
    assert code == 0, text
    out = idd.label_path(tmp_path / "o", "val", "aachen", "000003000019")
    assert np.array_equal(read_png(out), [[1, 1, 9, 255], [22, 4, 5, 7]])
    with pytest.warns(LabeltreeWarning, match="1 labels without their photo"):
        assert open_dataset("idd", tmp_path / "o").samples("val")[0].key == "aachen_000003000019"


# -- refusals ------------------------------------------------------------------------------------

def _refusal(root: Path, dataset: str = "idd") -> str:
    code, text = run("stats", dataset, str(root), "--workers", "1", "--no-cache", "--quiet")
    assert code == 2, text
    assert "Traceback" not in text
    return text


def test_refuses_polygons_only(tmp_path):
    p = idd.polygons_path(tmp_path, "train", "0", "000012")
    p.parent.mkdir(parents=True)
    p.write_text('{"imgHeight": 4, "imgWidth": 4, "objects": []}')
    text = _refusal(tmp_path)
    assert "only polygon files here (1 *_gtFine_polygons.json)" in text
    assert "createLabels.py --datadir" in text and "--id-type level3Id" in text


def test_refuses_another_level(tmp_path):
    idd_frame(tmp_path, "val", "0", "000001", np.zeros((4, 4), np.uint8), column="level1Id")
    text = _refusal(tmp_path)
    assert "no IDD labels at column level3Id" in text and "1 *_gtFine_labellevel1Ids.png (column level1Id)" in text
    assert "--id-type level3Id, or open it with taxonomy 'idd-level1'" in text
    code, out = run("stats", "idd-level1", str(tmp_path), "--workers", "1", "--no-cache", "--quiet")
    assert code == 0, out  # the level-1 taxonomy reads it


def test_refuses_cityscapes_folder_and_parent_folder(tmp_path):
    cityscapes_frame(tmp_path / "cs", "val", "aachen", 0, np.zeros((4, 4), np.uint8))
    text = _refusal(tmp_path / "cs")
    assert "this is a Cityscapes folder" in text and "open it with taxonomy 'cityscapes'" in text
    idd_frame(tmp_path / "IDD" / "IDD_Segmentation", "val", "0", "000001", np.zeros((4, 4), np.uint8))
    text = _refusal(tmp_path / "IDD")
    assert "no IDD splits" in text and "pass " in text and "IDD_Segmentation" in text


def test_refuses_unknown_values(tmp_path):
    idd_frame(tmp_path, "val", "0", "000001", np.array([[0, 26], [30, 255]], np.uint8))
    text = _refusal(tmp_path)
    assert "label values not defined in taxonomy 'idd': 26 (1 px), 30 (1 px)" in text
    s = open_dataset("idd", tmp_path, unknown="ignore").samples("val")[0]
    assert np.array_equal(read_label(s, load_taxonomy("idd"), unknown="ignore"), [[0, 255], [255, 255]])


# -- the tree extension --------------------------------------------------------------------------

def test_every_idd_class_mapped_or_ignored():
    h = load_hierarchy(TREE)
    m = h.mapping("idd")
    tax = load_taxonomy("idd")
    assert set(m.to_node) == set(tax.ids)
    assert [c for c, node in m.to_node.items() if node is None] == [255]
    base = load_hierarchy()
    cs_nodes = {base.nodes[n].name for n in base.mapping("cityscapes").to_node.values() if n is not None}
    added = {"Autorickshaw", "Vehicle Fallback", "Obs-Str-Bar Fallback"}
    used = {h.nodes[n].name for n in m.to_node.values() if n is not None}
    assert used - cs_nodes == added | {"Curb", "Billboard", "Road"}
    assert {h.nodes[h.nodes[n].parent].name for n in (h.index[a] for a in added)} == {"root"}
    assert h.nodes[m.to_node[tax.find("drivable fallback").id]].name == "Driveable"
    assert h.nodes[h.index["Driveable"]].children  # an inner node
    # the base tree's mappings are unchanged
    assert base.mapping("cityscapes").to_node == {c: (None if n is None else h.index[base.nodes[n].name])
                                                  for c, n in base.mapping("cityscapes").to_node.items()}


def test_fallback_supervises_only_the_classifiers_above_it():
    h = load_hierarchy(TREE)
    t = h.tables("idd")
    root_j = h.classifier_of[h.index["root"]]
    drive = h.index["Driveable"]
    drive_j = h.classifier_of[drive]
    rider_j = h.classifier_of[h.index["Rider"]]
    root_children = h.classifiers[root_j].children
    assert t.supervised[root_j] and not t.supervised[drive_j] and not t.supervised[rider_j]
    assert t.value_to_node[1] == drive and t.value_to_node[255] == IGNORE
    # drivable fallback (1) and road (0, on Road below Driveable) both teach the root 'Driveable' ...
    assert t.targets[root_j, 1] == t.targets[root_j, 0] == root_children.index(drive)
    # ... and nothing below it; Vistas, which labels the Driveable leaves, trains the Driveable classifier
    assert t.targets[drive_j, 1] == t.targets[drive_j, 0] == NO_TARGET
    v = h.tables("vistas")
    road_v = load_taxonomy("vistas").find("Road").id
    assert v.supervised[drive_j]
    assert v.targets[drive_j, road_v] == h.classifiers[drive_j].children.index(h.index["Road"])
    # predicted nodes back to IDD classes: Road -> road, any other Driveable leaf -> drivable fallback
    assert t.node_to_value[h.index["Road"]] == 0 and t.node_to_value[h.index["Parking"]] == 1
    assert t.node_to_value[h.index["Bicyclist"]] == 5  # rider


def test_merge_and_defaults_find_the_extension():
    r = merge(["cityscapes", "idd"])
    assert r.source == "bundled" and r.source_path.name == f"{TREE}.yaml"
    cov = r.coverage["idd"]
    assert cov.unmapped == [] and cov.ignored == [255] and cov.inner == [1] and len(cov.leaves) == 25
    assert merge(["cityscapes", "vistas"]).source_path.name == "cityscapes+vistas+gtsdb.yaml"
    assert default_tree(["idd"]) == TREE and default_tree(["cityscapes"]) == "cityscapes+vistas+gtsdb"
    assert set(load_hierarchy("cityscapes+idd").mappings) == {"cityscapes", "idd"}
