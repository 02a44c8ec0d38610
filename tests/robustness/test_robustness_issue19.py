"""Robustness, issue 19's new parts: the BDD100K and IDD readers through stats / evaluate / convert,
`import table --column`, tree files with `include:`, and `synth --tree` with its cleanup of an earlier
output. Every refusal: exit 2, one line naming the file or option, no traceback, no input changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from hostile import invoke, png, refused, short_png, snapshot
from PIL import Image

from labeltree.core.tree_file import bundled_hierarchies
from labeltree.resources import taxonomy_dir
from labeltree.synth import writers

Q = ["--quiet", "--no-cache", "--workers", "1"]
W = ["--quiet", "--workers", "1"]
SYNTH = ["--images", "1", "--size", "32x32", "--workers", "1", "--gtsdb-images", "1", "--no-progress"]
FRAME = "005506"


def jpeg(path: Path, h: int = 8, w: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(path, "JPEG")
    return path


def bdd(root: Path, split: str = "train", key: str = "a1", label: np.ndarray | bytes | None = None) -> Path:
    """A one-frame BDD100K 10K tree (photo + mask of train id 0); `label` replaces the mask."""
    mask = root / "labels/sem_seg/masks" / split / f"{key}.png"
    png(mask, np.zeros((8, 16), np.uint8))
    if isinstance(label, bytes):
        mask.write_bytes(label)
    elif label is not None:
        png(mask, label)
    jpeg(root / "images/10k" / split / f"{key}.jpg")
    return root


def bdd_mask(root: Path, split: str = "train", key: str = "a1") -> Path:
    return root / "labels/sem_seg/masks" / split / f"{key}.png"


def idd(root: Path, split: str = "train", seq: str = "0", label: np.ndarray | bytes | None = None) -> Path:
    """A one-frame IDD tree (photo + level3Id label of class 0); `label` replaces the label."""
    lab = idd_label(root, split, seq)
    png(lab, np.zeros((8, 16), np.uint8))
    if isinstance(label, bytes):
        lab.write_bytes(label)
    elif label is not None:
        png(lab, label)
    png(root / "leftImg8bit" / split / seq / f"{FRAME}_leftImg8bit.png", np.full((8, 16, 3), 90, np.uint8))
    return root


def idd_label(root: Path, split: str = "train", seq: str = "0") -> Path:
    return root / "gtFine" / split / seq / f"{FRAME}_gtFine_labellevel3Ids.png"


def old_seg(t: Path) -> Path:
    png(t / "old/seg/labels/train/a_train_id.png", np.zeros((8, 16), np.uint8))
    jpeg(t / "old/seg/images/train/a.jpg")
    return t / "old"


def polygons_only(t: Path) -> Path:
    p = t / "poly/gtFine/train/0" / f"{FRAME}_gtFine_polygons.json"
    p.parent.mkdir(parents=True)
    p.write_text('{"objects": []}')
    return t / "poly"


def self_loop_mask(t: Path) -> Path:
    root = bdd(t / "b")
    os.symlink("zz.png", bdd_mask(root, key="zz"))
    jpeg(root / "images/10k/train/zz.jpg")
    return root


def with_polygons(root: Path) -> Path:
    p = root / "labels/sem_seg/polygons/sem_seg_train.json"
    p.parent.mkdir(parents=True)
    p.write_text("[]\n")
    return root


def pred(t: Path, name: str, arr: np.ndarray) -> Path:
    png(t / "pred" / name, arr)
    return t / "pred"


def _file(t: Path) -> Path:
    (t / "afile").write_text("not a folder\n")
    return t / "afile"


def _empty(t: Path) -> Path:
    (t / "empty").mkdir()
    return t / "empty"


Z = np.zeros((8, 16), np.uint8)
# name -> (argv built in tmp, words the error line must hold)
READER_CASES: dict[str, tuple[Callable[[Path], list], list[str]]] = {
    "stats bdd100k empty folder": (lambda t: ["stats", "bdd100k", _empty(t), *Q], ["empty", "images/10k"]),
    "stats idd empty folder": (lambda t: ["stats", "idd", _empty(t), *Q], ["no IDD splits", "gtFine"]),
    "stats bdd100k file as root": (lambda t: ["stats", "bdd100k", _file(t), *Q], ["afile", "must be a folder"]),
    "evaluate idd file as root": (lambda t: ["evaluate", "idd", _file(t), _empty(t), *W], ["must be a folder"]),
    "stats bdd100k 2018 seg/ release": (lambda t: ["stats", "bdd100k", old_seg(t), *Q], ["2018", "seg/labels"]),
    "convert bdd100k 2018 seg/ release": (lambda t: ["convert", "bdd100k", old_seg(t), t / "o", "--to",
                                                     "cityscapes", "--workers", "1"], ["2018", "bdd100k_seg.zip"]),
    "evaluate bdd100k 2018 seg/ release": (lambda t: ["evaluate", "bdd100k", old_seg(t), _empty(t), *W], ["2018"]),
    "stats idd polygons only": (lambda t: ["stats", "idd", polygons_only(t), *Q], ["only polygon", "createLabels"]),
    "stats bdd100k truncated mask": (lambda t: ["stats", "bdd100k", bdd(t / "b", label=short_png(16, 8, 3)), *Q],
                                     ["a1.png", "3 of 8 rows"]),
    "stats idd truncated label": (lambda t: ["stats", "idd", idd(t / "i", label=short_png(16, 8, 2)), *Q],
                                  ["labellevel3Ids.png", "2 of 8 rows"]),
    "stats bdd100k RGB mask": (lambda t: ["stats", "bdd100k", bdd(t / "b", label=np.zeros((8, 16, 3), np.uint8)),
                                          *Q], ["RGB", "labels/sem_seg/masks/{split}/"]),
    "stats idd RGB label": (lambda t: ["stats", "idd", idd(t / "i", label=np.zeros((8, 16, 3), np.uint8)), *Q],
                            ["RGB", "createLabels.py writes", "level3Ids"]),
    "stats bdd100k 16-bit mask, value 3000": (
        lambda t: ["stats", "bdd100k", bdd(t / "b", label=np.full((8, 16), 3000, np.uint16)), *Q],
        ["3000 (128 px)", "bdd100k labels are 8-bit"]),
    "stats idd 16-bit label, value 3000": (
        lambda t: ["stats", "idd", idd(t / "i", label=np.full((8, 16), 3000, np.uint16)), *Q],
        ["3000 (128 px)", "idd labels are 8-bit"]),
    "stats bdd100k value 40": (lambda t: ["stats", "bdd100k", bdd(t / "b", label=np.full((8, 16), 40, np.uint8)),
                                          *Q], ["40 (128 px)", "--unknown ignore"]),
    "stats idd value 200": (lambda t: ["stats", "idd", idd(t / "i", label=np.full((8, 16), 200, np.uint8)), *Q],
                            ["200 (128 px)", "'idd'"]),
    "stats bdd100k mask is a symlink loop": (lambda t: ["stats", "bdd100k", self_loop_mask(t), *Q],
                                             ["zz.png", "symbolic links"]),
    # the official protocol scores these as BDD100K's tool does (tests/evaluate/test_official_edges.py); the
    # paper protocol keeps refusing them
    "evaluate bdd100k prediction named wrong (paper protocol)": (
        lambda t: ["evaluate", "bdd100k", bdd(t / "b", "val"), pred(t, "zzz.png", Z), *W, "--protocol", "paper"],
        ["no prediction: a1", "zzz.png", "named as its image"]),
    "evaluate idd prediction named wrong": (
        lambda t: ["evaluate", "idd", idd(t / "i", "val"), pred(t, "foo.png", Z), *W],
        ["0_005506", "foo.png", "{seq}/{frame}_*.png"]),
    "evaluate bdd100k prediction of another size": (
        lambda t: ["evaluate", "bdd100k", bdd(t / "b", "val"), pred(t, "a1.png", np.zeros((4, 16), np.uint8)), *W],
        ["a1.png", "16x4", "16x8"]),
    "evaluate idd two predictions of one frame": (
        lambda t: ["evaluate", "idd", idd(t / "i", "val"), pred(t, "0_005506.png", Z) and pred(t, "0/005506_x.png", Z),
                   *W], ["several predictions", "0_005506"]),
    "evaluate bdd100k prediction value 77 (paper protocol)": (
        lambda t: ["evaluate", "bdd100k", bdd(t / "b", "val"), pred(t, "a1.png", np.full((8, 16), 77, np.uint8)),
                   *W, "--protocol", "paper"], ["a1.png", "77"]),
    "convert bdd100k OUT = ROOT": (lambda t: ["convert", "bdd100k", bdd(t / "b"), t / "b", "--to", "cityscapes"],
                                   ["outside the dataset root"]),
    "convert bdd100k OUT inside ROOT": (lambda t: ["convert", "bdd100k", bdd(t / "b"), t / "b/labels/x", "--to",
                                                   "bdd100k:trainids"], ["outside the dataset root"]),
    "convert idd OUT inside ROOT": (lambda t: ["convert", "idd", idd(t / "i"), t / "i/gtFine", "--to", "idd:trainids"],
                                    ["outside the dataset root"]),
    # fixed: said the default tree 'cityscapes+vistas+gtsdb' maps no bdd100k (it was no candidate at all)
    "convert to a taxonomy no bundled tree maps with the source": (
        lambda t: ["convert", "bdd100k", bdd(t / "b"), t / "o", "--to", "idd-level1"],
        ["no bundled tree maps both bdd100k and idd-level1", "--tree"]),
    "convert idd OUT is a file": (lambda t: ["convert", "idd", idd(t / "i"), _file(t), "--to", "idd:trainids"],
                                  ["afile", "must be a folder"]),
    # fixed in this issue: the report landed in OUT and convert's own split list replaced it
    "convert --report inside OUT": (lambda t: ["convert", "bdd100k", bdd(t / "b"), t / "o", "--to", "cityscapes",
                                               "--report", t / "o/train.txt"], ["--report", "outside OUT"]),
    # fixed: an existing report was replaced without --force
    "convert --report exists": (lambda t: ["convert", "bdd100k", bdd(t / "b"), t / "o", "--to", "cityscapes",
                                           "--report", _file(t)], ["--report", "--force"]),
    # fixed: -o PRED/a1.png --force replaced a prediction (an input)
    "evaluate -o = a prediction file, --force": (
        lambda t: ["evaluate", "bdd100k", bdd(t / "b", "val"), pred(t, "a1.png", Z), "-o", t / "pred/a1.png",
                   "--force", *W], ["-o", "inside the input folder"]),
    # fixed: stats -o replaced a dataset file (the release's polygons JSON) with --force
    "stats -o = a file of the dataset, --force": (
        lambda t: ["stats", "bdd100k", with_polygons(bdd(t / "b")), "-o", t / "b/labels/sem_seg/polygons/"
                   "sem_seg_train.json", "--force", *Q], ["-o", "inside the input folder"]),
}


@pytest.mark.parametrize("name", list(READER_CASES))
def test_reader_refusals(tmp_path: Path, name: str) -> None:
    build, needles = READER_CASES[name]
    refused(build(tmp_path), tmp_path, *needles)


def _rows(path: Path) -> dict[int, tuple[int, int]]:
    return {r["class_id"]: (r["pixels"], r["images"]) for r in json.loads(path.read_text()) if r["pixels"]}


def test_symlink_loops_in_split_folders_are_walked_once(tmp_path: Path) -> None:
    b = bdd(tmp_path / "b")
    os.symlink(".", b / "labels/sem_seg/masks/train/loop")
    os.symlink("loop2", b / "labels/sem_seg/masks/loop2")
    i = idd(tmp_path / "i", label=np.full((8, 16), 3, np.uint8))
    os.symlink("..", i / "gtFine/train/0/up")
    os.symlink("s2", i / "gtFine/train/s2")
    os.symlink("s3", i / "gtFine/s3")
    for ds, root, cls in (("bdd100k", b, 0), ("idd", i, 3)):
        res = invoke(["stats", ds, root, *Q, "-o", tmp_path / f"{ds}.json"])
        assert res.exit_code == 0, res.output
        assert _rows(tmp_path / f"{ds}.json") == {cls: (128, 1)}


def test_a_16_bit_mask_with_8_bit_values_counts_exactly(tmp_path: Path) -> None:
    b = bdd(tmp_path / "b", label=np.array([[3] * 16] * 5 + [[13] * 16] * 3, np.uint16))
    res = invoke(["stats", "bdd100k", b, *Q, "-o", tmp_path / "r.json"])
    assert res.exit_code == 0, res.output
    assert _rows(tmp_path / "r.json") == {3: (80, 1), 13: (48, 1)}


def test_unpaired_files_give_one_warning_line_each_and_exact_counts(tmp_path: Path) -> None:
    """Fixed: the warnings came as Python's 'file.py:148: LabeltreeWarning: ...' plus a source line."""
    b = bdd(tmp_path / "b")
    png(bdd_mask(b, key="nophoto"), np.full((8, 16), 13, np.uint8))
    jpeg(b / "images/10k/train/nolabel.jpg")
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    res = subprocess.run([sys.executable, "-m", "labeltree", "stats", "bdd100k", str(b), *Q, "-o",
                          str(tmp_path / "r.json")], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert [ln.split(":")[0] for ln in lines[:2]] == ["warning", "warning"], lines
    assert "1 labels without their photo" in lines[0] and "nophoto.png" in lines[0]
    assert "1 photos without a label" in lines[1] and "nolabel.jpg" in lines[1]
    assert "Traceback" not in res.stderr and "LabeltreeWarning" not in res.stderr
    assert _rows(tmp_path / "r.json") == {0: (128, 1), 13: (128, 1)}


# -- import table --column ----------------------------------------------------------------------------

HEAD = "name\tid\tlevelId\tlevelName\ttrainId\tcolor\n"
GOOD = "a\t0\t0\tA\t0\t1,2,3\nb\t1\t0\tA\t0\t4,5,6\nc\t2\t1\tC\t1\t7,8,9\n"
LEVEL = ["--column", "id=levelId", "--column", "name=levelName"]
# name -> (table rows after the header, extra argv, words the error line must hold)
COLUMN_CASES: dict[str, tuple[str, list[str], list[str]]] = {
    "unknown column": (GOOD, ["--column", "id=nope"], ["t.tsv:1", "no column 'nope'"]),
    "unknown field": (GOOD, ["--column", "zork=levelId"], ["'zork' is no class field"]),
    "no FIELD=COLUMN": (GOOD, ["--column", "levelId"], ["--column levelId", "FIELD=COLUMN"]),
    "empty column": (GOOD, ["--column", "id="], ["FIELD=COLUMN"]),
    "a field twice (fixed: the last one won)": (GOOD, [*LEVEL, "--column", "id=id"], ["'id' is already read",
                                                                                       "levelId"]),
    "a column for two fields (fixed: 'no id column')": (GOOD, ["--column", "id=levelId", "--column",
                                                               "train_id=levelId"], ["already read as id"]),
    "name from the id column (fixed: 'no id column')": (GOOD, ["--column", "name=id"], ["the table's id column",
                                                                                        "--column id=COLUMN"]),
    "id not an integer": ("a\t0\tx\tA\t0\t1,2,3\n", LEVEL, ["t.tsv:2", "levelId", "whole number", "'x'"]),
    "id a float": ("a\t0\t1.5\tA\t0\t1,2,3\n", LEVEL, ["t.tsv:2", "'1.5'"]),
    "id nan": ("a\t0\tnan\tA\t0\t1,2,3\n", LEVEL, ["t.tsv:2", "'nan'"]),
    "id inf": ("a\t0\tinf\tA\t0\t1,2,3\n", LEVEL, ["t.tsv:2", "'inf'"]),
    "id empty": ("a\t0\t\tA\t0\t1,2,3\n", LEVEL, ["t.tsv:2", "whole number"]),
    "id 1e400": ("a\t0\t1e400\tA\t0\t1,2,3\n", LEVEL, ["t.tsv:2", "'1e400'"]),
    "id 1_000 (fixed: read as 1000)": ("a\t0\t1_000\tA\t0\t1,2,3\n", LEVEL, ["t.tsv:2", "'1_000'"]),
    "id in Arabic-Indic digits (fixed: read as 3)": ("a\t0\t\u0663\tA\t0\t1,2,3\n", LEVEL, ["t.tsv:2", "whole"]),
    "id huge (fixed: said 'use dtype uint16' to a uint16 table)": (
        "a\t0\t99999999999999999999\tA\t0\t1,2,3\n", LEVEL, ["t.tsv:2", "uint16 (0..65535); use a smaller id"]),
    "id 300 in uint8": ("a\t0\t300\tA\t0\t1,2,3\n", [*LEVEL, "--dtype", "uint8"], ["uint8", "dtype uint16"]),
    "rows sharing an id disagree on the name": ("a\t0\t0\tA\t0\t1,2,3\nb\t1\t0\tB\t0\t4,5,6\n",
                                                ["--column", "id=levelId", "--column", "name=levelName"],
                                                ["t.tsv:3", "levelId 0 disagree on name", "'A' (line 2)"]),
    "rows sharing an id disagree on the train id": ("a\t0\t0\tA\t0\t1,2,3\nb\t1\t0\tA\t5\t4,5,6\n", LEVEL,
                                                    ["t.tsv:3", "disagree on train_id", "0 (line 2) and 5"]),
    "train id huge (fixed: accepted)": ("a\t0\t0\tA\t99999999999999\t1,2,3\n", LEVEL, ["t.tsv:2", "train id",
                                                                                       "-1..255"]),
    "train id nan": ("a\t0\t0\tA\tnan\t1,2,3\n", LEVEL, ["t.tsv:2", "trainId", "'nan'"]),
    "-o is the table": (GOOD, [*LEVEL, "-o", "{t}"], ["t.tsv", "source"]),
}


@pytest.mark.parametrize("name", list(COLUMN_CASES))
def test_import_table_column_refusals(tmp_path: Path, name: str) -> None:
    rows, extra, needles = COLUMN_CASES[name]
    t = tmp_path / "t.tsv"
    t.write_text(HEAD + rows)
    refused(["import", "table", t, *[a.replace("{t}", str(t)) for a in extra]], tmp_path, *needles)


def test_import_table_column_groups_rows_and_keeps_table_only_negative_ids(tmp_path: Path) -> None:
    t = tmp_path / "t.tsv"
    t.write_text(HEAD + GOOD + "plate\t3\t-1\tplate\t-1\t0,0,9\n")
    res = invoke(["import", "table", t, *LEVEL, "-o", tmp_path / "t.yaml"])
    assert res.exit_code == 0, res.output
    tax = yaml.safe_load((tmp_path / "t.yaml").read_text())
    assert tax["encoding"]["column"] == "levelId"
    assert [(c["id"], c["name"], c.get("includes"), c["train_id"]) for c in tax["classes"]] == [
        (0, "A", ["a", "b"], 0), (1, "C", ["c"], 1), (-1, "plate", None, -1)]


# -- tree files with include: -------------------------------------------------------------------------

BASE = "extends: cityscapes+vistas+gtsdb\n"
BDD_EXT = bundled_hierarchies()["cityscapes+vistas+gtsdb+bdd100k"]
EXTRA = {  # files next to the tree under test
    "bdd.yaml": BDD_EXT.read_text(),
    "full.yaml": bundled_hierarchies()["cityscapes+vistas+gtsdb"].read_text(),
    "list.yaml": "- a\n- b\n",
    "bad.yaml": "extends: [\n",
    "inc.yaml": BASE + "include: [bdd.yaml]\n",
    "addlist.yaml": BASE + "add: [x]\n",
    "maplist.yaml": BASE + "datasets: [bdd100k]\nmappings: [x]\n",
    "suplist.yaml": BASE + "supervision: [1]\n",
}
# name -> (the tree file's text, words the error line must hold)
INCLUDE_CASES: dict[str, tuple[str, list[str]]] = {
    "itself": (BASE + "include: [t.yaml]\n", ["t.yaml:2", "'t.yaml' is not an extension without includes"]),
    "a full tree (no extension)": (BASE + "include: [full.yaml]\n", ["t.yaml:2", "'full.yaml' is not an extension"]),
    "a missing file": (BASE + "include: [nope.yaml]\n", ["t.yaml:2", "not found", "nope.yaml"]),
    "a YAML list": (BASE + "include: [list.yaml]\n", ["t.yaml:2", "'list.yaml' is not an extension"]),
    "a malformed YAML": (BASE + "include: [bad.yaml]\n", ["bad.yaml:2", "YAML syntax error"]),
    "an include of an include": (BASE + "include: [inc.yaml]\n", ["t.yaml:2", "'inc.yaml' is not an extension"]),
    "a folder": (BASE + "include: [dir.yaml]\n", ["dir.yaml", "directory"]),
    "a string, not a list": (BASE + "include: bdd.yaml\n", ["t.yaml:2", "expected a list"]),
    "unknown bundled name (fixed: blamed extends:)": (BASE + "include: [nope]\n",
                                                      ["t.yaml:2", "include: unknown extension 'nope'"]),
    "a null entry (fixed: silently taken as this file)": (BASE + "include: [null]\n", ["t.yaml:2", "entry 1 is None"]),
    "a mapping entry (fixed: blamed extends:)": (BASE + "include: [{a: 1}]\n", ["t.yaml:2", "entry 1 is {'a': 1}"]),
    "the same file twice (fixed: 'mapped twice')": (BASE + "include: [bdd.yaml, bdd.yaml]\n",
                                                    ["t.yaml:2", "'bdd.yaml' is included twice"]),
    "included add: is a list (fixed: crash)": (BASE + "include: [addlist.yaml]\n", ["addlist.yaml:2", "'add'"]),
    "included mappings: is a list (fixed: crash)": (BASE + "include: [maplist.yaml]\n",
                                                    ["maplist.yaml:3", "'mappings' must be a mapping"]),
    "own add: is a list (fixed: crash)": (BASE + "include: [bdd.yaml]\nadd: [x]\n", ["t.yaml:3", "'add'"]),
    "own mappings: is a list (fixed: crash)": (BASE + "include: [bdd.yaml]\nmappings: [x]\n",
                                               ["t.yaml:3", "'mappings'"]),
    "included supervision: is a list (fixed: ignored)": (BASE + "include: [suplist.yaml]\n",
                                                         ["suplist.yaml:2", "'supervision'"]),
    "include without extends (fixed: 'no tree section')": ("include: [bdd.yaml]\n",
                                                           ["t.yaml:1", "add 'extends: BASE'"]),
}


@pytest.mark.parametrize("name", list(INCLUDE_CASES))
def test_include_refusals(tmp_path: Path, name: str) -> None:
    text, needles = INCLUDE_CASES[name]
    for f, body in EXTRA.items():
        (tmp_path / f).write_text(body)
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "t.yaml").write_text(text)
    refused(["tree", tmp_path / "t.yaml"], tmp_path, *needles)


# -- synth --tree -------------------------------------------------------------------------------------

def _tax(t: Path, src: str, name: str, **encoding: str) -> Path:
    data = yaml.safe_load((taxonomy_dir() / f"{src}.yaml").read_text())
    data["name"] = name
    data["encoding"].update(encoding)
    (t / "tax").mkdir(exist_ok=True)
    (t / "tax" / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return t / "tax" / f"{name}.yaml"


def _ext(t: Path, tax: Path, mapping_of: str, key: str = "datasets") -> Path:
    """An extension of the paper's tree adding taxonomy file `tax`, mapped as bundled `mapping_of` is."""
    src = bundled_hierarchies()["cityscapes+vistas+gtsdb" + ("+bdd100k" if mapping_of == "bdd100k" else "")]
    mapping = yaml.safe_load(src.read_text())["mappings"][mapping_of]
    ref = os.path.relpath(tax, t / "trees")
    (t / "trees").mkdir(exist_ok=True)
    out = t / "trees" / f"{tax.stem}-tree.yaml"
    out.write_text(yaml.safe_dump({"extends": "cityscapes+vistas+gtsdb", key: [ref], "mappings": {ref: mapping}}))
    return out


def _no_gtsdb(t: Path) -> Path:
    h = yaml.safe_load(bundled_hierarchies()["cityscapes+vistas+gtsdb"].read_text())
    h["datasets"] = ["cityscapes", "vistas"]
    h["mappings"] = {k: h["mappings"][k] for k in h["datasets"]}
    h.pop("evaluation_datasets", None)
    h["supervision"] = {"exclude_single_child": True}
    (t / "nogtsdb.yaml").write_text(yaml.safe_dump(h, sort_keys=False))
    return t / "nogtsdb.yaml"


SYNTH_CASES: dict[str, tuple[Callable[[Path], list], list[str]]] = {
    "unknown tree": (lambda t: ["synth", t / "o", "--tree", "nope", *SYNTH], ["no bundled tree covers 'nope'"]),
    "missing tree file": (lambda t: ["synth", t / "o", "--tree", t / "nope.yaml", *SYNTH], ["nope.yaml", "not found"]),
    "a tree without a GTSDB-layout dataset": (lambda t: ["synth", t / "o", "--tree", _no_gtsdb(t), *SYNTH],
                                              ["nogtsdb.yaml", "no dataset in the GTSDB layout"]),
    # fixed: drawn as GTSDB frames with a gt.txt of a dense taxonomy
    "a dense taxonomy in the gtsdb layout": (
        lambda t: ["synth", t / "o", "--tree", _ext(t, _tax(t, "bdd100k", "dense", layout="gtsdb"), "bdd100k"),
                   *SYNTH], ["taxonomy 'dense'", "'gtsdb' is for box annotations"]),
    # fixed: KeyError in the Cityscapes writer
    "a box taxonomy in the cityscapes layout": (
        lambda t: ["synth", t / "o", "--tree", _ext(t, _tax(t, "gtsdb", "boxes", layout="cityscapes"), "gtsdb",
                                                    "evaluation_datasets"), *SYNTH],
        ["taxonomy 'boxes'", "'cityscapes' is for dense annotations"]),
    # fixed: the dataset's folder was OUT/<taxonomy path>, i.e. outside OUT for '../x.yaml' or '/abs/x.yaml'
    "a taxonomy whose name is no folder name": (
        lambda t: ["synth", t / "o", "--tree", _ext(t, _tax(t, "bdd100k", "../../x"), "bdd100k"), *SYNTH],
        ["'../../x'", "no plain folder name"]),
    "OUT under a file": (lambda t: ["synth", _file(t) / "x", *SYNTH], ["afile/x", "is a file"]),
}


@pytest.mark.parametrize("name", list(SYNTH_CASES))
def test_synth_refusals(tmp_path: Path, name: str) -> None:
    build, needles = SYNTH_CASES[name]
    refused(build(tmp_path), tmp_path, *needles)


def test_synth_out_is_a_file(tmp_path: Path) -> None:
    refused(["synth", _file(tmp_path), *SYNTH], tmp_path, "is a file", usage=True)


def test_synth_refuses_a_layout_without_a_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixed: a KeyError in a worker. (Every layout has a writer today; a new one might not.)"""
    monkeypatch.delitem(writers.WRITERS, "bdd100k")
    tree = _ext(tmp_path, _tax(tmp_path, "bdd100k", "mybdd"), "bdd100k")
    refused(["synth", tmp_path / "o", "--tree", tree, *SYNTH], tmp_path, "layout 'bdd100k'", "cannot write")


def test_synth_writes_a_taxonomy_file_dataset_inside_out(tmp_path: Path) -> None:
    """Fixed: `datasets: [../tax/mybdd.yaml]` wrote to OUT/../tax/mybdd.yaml/ (outside OUT)."""
    tree = _ext(tmp_path, _tax(tmp_path, "bdd100k", "mybdd"), "bdd100k")
    before = snapshot(tmp_path)
    res = invoke(["synth", tmp_path / "o", "--tree", tree, *SYNTH])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["cityscapes", "cityscapes-extended", "gtsdb",
                                                                  "mybdd", "synth.json", "vistas"]
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("o/")} == before
    meta = json.loads((tmp_path / "o/synth.json").read_text())
    assert {v["root"] for v in meta["datasets"].values()} == {"cityscapes", "cityscapes-extended", "gtsdb", "mybdd",
                                                              "vistas"}
    assert len(list((tmp_path / "o/mybdd/labels/sem_seg/masks").glob("*/*.png"))) == 1


def _earlier(out: Path, meta: object) -> None:
    out.mkdir()
    (out / "synth.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    (out / "mine").mkdir()
    (out / "mine/f.txt").write_text("mine\n")


@pytest.mark.parametrize("root", ["../victim", "/VICTIM", "..", ".", "", None, 5, "victim/..", "../victim/",
                                  "mine/..", "synth.json"])
def test_synth_cleanup_never_deletes_outside_out(tmp_path: Path, root: object) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep\n")
    root = str(victim) if root == "/VICTIM" else root
    _earlier(tmp_path / "o", {"generator": "labeltree synth", "datasets": {"x": {"root": root}}})
    (tmp_path / "o/vistas").mkdir()
    (tmp_path / "o/vistas/stale.png").write_bytes(b"old frame")  # a dataset folder of the earlier output
    res = invoke(["synth", tmp_path / "o", *SYNTH])
    assert res.exit_code == 0, res.output
    assert (victim / "keep.txt").read_text() == "keep\n" and (tmp_path / "o/mine/f.txt").read_text() == "mine\n"
    assert not (tmp_path / "o/vistas/stale.png").exists()  # replaced: the earlier output's folder
    assert json.loads((tmp_path / "o/synth.json").read_text())["complete"] is True


@pytest.mark.parametrize("meta", ["{not json", "[1, 2]", {"datasets": {"cityscapes": {"root": "cityscapes"}}},
                                  "folder"])
def test_synth_trusts_only_a_real_marker(tmp_path: Path, meta: object) -> None:
    """Fixed: a synth.json that was a folder, corrupt, a list or another program's let synth delete
    OUT/cityscapes/ (someone's data) as if it were an earlier output."""
    out = tmp_path / "o"
    out.mkdir()
    if meta == "folder":
        (out / "synth.json").mkdir()
    else:
        (out / "synth.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    (out / "cityscapes").mkdir()
    (out / "cityscapes/data.txt").write_text("user data\n")
    refused(["synth", out, *SYNTH], tmp_path, "no earlier `labeltree synth` output", "--force")


def test_synth_never_writes_through_a_linked_dataset_folder(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep\n")
    _earlier(tmp_path / "o", {"generator": "labeltree synth", "datasets": {"cityscapes": {"root": "cityscapes"}}})
    os.symlink(victim, tmp_path / "o/cityscapes")
    refused(["synth", tmp_path / "o", *SYNTH], tmp_path, "o/cityscapes", "link", "only inside OUT")
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"]


def test_demo_refuses_a_damaged_marker_in_its_data_folder(tmp_path: Path) -> None:
    """Fixed: `labeltree demo` crashed with a JSONDecodeError traceback on a damaged OUT/data/synth.json."""
    from labeltree.demo.plan import Plan
    from labeltree.demo.stages import stage_synth
    from labeltree.errors import LabeltreeError

    data = tmp_path / "data"
    data.mkdir()
    (data / "synth.json").write_text("{damaged")
    (data / "cityscapes").mkdir()
    (data / "cityscapes/data.txt").write_text("user data\n")
    before = snapshot(tmp_path)
    with pytest.raises(LabeltreeError, match="no earlier `labeltree synth` output"):
        stage_synth(tmp_path, Plan(images=1, gtsdb_images=1, size=(32, 32), steps=1), False, lambda _m: None)
    assert snapshot(tmp_path) == before
