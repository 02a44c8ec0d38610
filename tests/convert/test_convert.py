"""`labeltree convert`: the rules through the tree on hand-made maps, the layouts it writes, and
conformance with the real Cityscapes fixture and cityscapesScripts' csCreateTrainIdLabelImgs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from builders import read_png, save_png
from click.testing import CliRunner
from PIL import Image

from labeltree.cli import main
from labeltree.convert import (
    ANCESTOR,
    COARSER,
    EXACT,
    OUTSIDE,
    OVERRIDE,
    SAME,
    SOURCE_IGNORE,
    TREE_IGNORE,
    build_conversion,
    convert_dataset,
)
from labeltree.core.tree_file import load_hierarchy
from labeltree.datasets import LabeltreeWarning, cityscapes, decode
from labeltree.datasets.split_list import read_split_list
from labeltree.errors import LabeltreeError


@pytest.fixture(autouse=True)
def _pil_decoder(monkeypatch):
    """Decode with PIL (exact, like torchvision): importing torch costs more than these tests."""
    monkeypatch.setattr(decode, "LABEL_DECODER", "pil")


def _taxonomy(name: str, classes: list[tuple[int, str]]) -> str:
    rows = "\n".join(f"- {{id: {i}, name: {n}, color: [{i * 40 % 256}, {i * 90 % 256}, {i * 10}]}}" for i, n in classes)
    return (f"name: {name}\nannotation: dense\nignore_ids: [0]\nencoding: {{format: png-ids, dtype: uint8}}\n"
            f"classes:\n{rows}\n")


@pytest.fixture
def tree(tmp_path) -> Path:
    """root: A (A1, A2), B, C (C1 (C1a, C1b), C2), D. src maps A, A1, C1a, D, B; tgt maps A1, A2, C, B."""
    d = tmp_path / "tree"
    d.mkdir()
    (d / "src.yaml").write_text(_taxonomy("src", [(0, "unlabeled"), (1, "a"), (2, "a1"), (3, "c1a"), (4, "d"),
                                                  (5, "b")]))
    (d / "tgt.yaml").write_text(_taxonomy("tgt", [(0, "void"), (1, "alpha1"), (2, "alpha2"), (3, "cee"),
                                                  (4, "bee")]))
    (d / "t.yaml").write_text(textwrap.dedent("""\
        name: toy
        datasets: [src.yaml, tgt.yaml]
        tree:
          - A: [A1, A2]
          - B
          - C:
              - C1: [C1a, C1b]
              - C2
          - D
        mappings:
          src.yaml:
            map: {a: A, a1: A1, c1a: C1a, d: D, b: B}
            ignore: [unlabeled]
          tgt.yaml:
            map: {alpha1: A1, alpha2: A2, cee: C, bee: B}
            ignore: [void]
        """))
    return d / "t.yaml"


def _rules(conv):
    return {r.source_name: (r.target_value, r.target_name, r.rule) for r in conv.rules}


def test_each_rule_through_the_tree(tree):
    conv = build_conversion("src", "tgt", tree)
    assert _rules(conv) == {
        "unlabeled": (0, "ignore", SOURCE_IGNORE),
        "a": (0, "ignore", COARSER),  # A is coarser than alpha1 / alpha2 below it
        "a1": (1, "alpha1", EXACT),
        "c1a": (3, "cee", ANCESTOR),  # deepest mapped ancestor of C1a is C
        "d": (0, "ignore", OUTSIDE),  # tgt maps nothing on D's path
        "b": (4, "bee", EXACT),
    }
    assert conv.lut[:6].tolist() == [0, 0, 1, 3, 0, 4] and conv.lut.dtype == np.uint8 and len(conv.lut) == 256
    labels = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.uint8)
    assert conv.apply(labels).tolist() == [[0, 0, 1], [3, 0, 4]]


def test_trainids_and_tree_targets(tree):
    # tgt has no train_id: contiguous over its non-ignore classes (alpha1 0, alpha2 1, cee 2, bee 3), 255 ignore
    conv = build_conversion("src", "tgt:trainids", tree)
    assert conv.lut[:6].tolist() == [255, 255, 0, 2, 255, 3]
    h = load_hierarchy(tree)
    full = build_conversion("src", "tree", tree)
    assert full.lut.dtype == np.uint16
    assert full.lut[:6].tolist() == [TREE_IGNORE] + [h.index[n] for n in ("A", "A1", "C1a", "D", "B")]
    cut = build_conversion("src", "tree:1", tree)
    assert cut.lut[:6].tolist() == [TREE_IGNORE] + [h.index[n] for n in ("A", "A", "C", "D", "B")]
    assert build_conversion("src", "tree:2", tree).lut[3] == h.index["C1"]
    assert build_conversion("src", "src", tree).lut[:6].tolist() == [0, 1, 2, 3, 4, 5]  # same space: identity
    assert {r.rule for r in build_conversion("src", "src", tree).rules} == {SAME}


def test_overrides(tree, tmp_path):
    o = tmp_path / "o.yaml"
    o.write_text("a: alpha2   # all of A counts as alpha2\nb: ignore\n3: 1\n")
    conv = build_conversion("src", "tgt", tree, o)
    r = _rules(conv)
    assert r["a"] == (2, "alpha2", OVERRIDE) and r["b"] == (0, "ignore", OVERRIDE) and r["c1a"] == (1, "alpha1",
                                                                                                  OVERRIDE)
    assert r["a1"] == (1, "alpha1", EXACT) and conv.lut[:6].tolist() == [0, 2, 1, 1, 0, 0]
    (tmp_path / "t.yaml").write_text("c1a: C1\n")
    assert build_conversion("src", "tree", tree, tmp_path / "t.yaml").lut[3] == load_hierarchy(tree).index["C1"]
    for text, needle in [("a: nothere\n", "'nothere' is no class of target dataset 'tgt'"),
                         ("zz: alpha1\n", "'zz' is no class of source dataset 'src'"),
                         ("- a\n", "YAML mapping"), ("a: [1\n", "YAML syntax error"), ("a: 1\na: 2\n", "twice")]:
        o.write_text(text)
        with pytest.raises(LabeltreeError, match=needle) as e:
            build_conversion("src", "tgt", tree, o)
        assert str(o) in str(e.value)


def test_bundled_tree_examples_of_the_issue():
    """Cityscapes rider -> Vistas is coarser (3 rider kinds), Vistas markings -> Cityscapes road (ancestor)."""
    to_vistas = {r.source_name: (r.target_name, r.rule) for r in build_conversion("cityscapes", "vistas").rules}
    assert to_vistas["rider"] == ("ignore", COARSER) and to_vistas["road"] == ("ignore", COARSER)
    assert to_vistas["parking"] == ("Parking", EXACT) and to_vistas["static"] == ("ignore", SOURCE_IGNORE)
    vc = build_conversion("vistas", "cityscapes")
    to_cs = {r.source_name: (r.target_value, r.rule) for r in vc.rules}
    assert to_cs["Lane Marking - General"] == (7, ANCESTOR) and to_cs["Bicyclist"] == (25, ANCESTOR)
    assert to_cs["Road"] == (7, ANCESTOR) and to_cs["Parking"] == (9, EXACT) and to_cs["Bird"] == (0, OUTSIDE)
    assert to_cs["Car Mount"] == (0, OUTSIDE) and to_cs["Unlabeled"] == (0, SOURCE_IGNORE)
    # the same through train ids: parking / caravan have no train id in Cityscapes
    vt = build_conversion("vistas", "cityscapes:trainids")
    assert vt.lut[[13, 10, 19, 20, 55]].tolist() == [0, 255, 11, 12, 13]  # Road, Parking, Person, Bicyclist, Car


def _write_cs(root: Path, split: str, key: str, arr: np.ndarray, photo: bool = True) -> None:
    city = key.split("_")[0]
    save_png(cityscapes.label_path(root, split, city, key), arr)
    if photo:
        save_png(cityscapes.image_path(root, split, city, key), np.zeros(arr.shape + (3,), np.uint8))


def test_convert_dataset_layout_lists_report_rerun(tree, tmp_path):
    root, out = tmp_path / "src-root", tmp_path / "out"
    a = np.array([[1, 1, 2, 2], [3, 3, 3, 4], [5, 0, 0, 0]], dtype=np.uint8)
    b = np.full((2, 3), 2, np.uint8)
    _write_cs(root, "train", "x_000001_000002", a)
    _write_cs(root, "val", "y_000003_000004", b)
    rep = convert_dataset("src", root, out, "tgt:trainids", hierarchy=tree, workers=2, progress=False)
    got = read_png(out / "gtFine/train/x/x_000001_000002_gtFine_labelTrainIds.png")
    assert got.tolist() == [[255, 255, 0, 0], [2, 2, 2, 255], [3, 255, 255, 255]]
    assert read_png(out / "gtFine/val/y/y_000003_000004_gtFine_labelTrainIds.png").tolist() == [[0] * 3] * 2
    rows = {c["source_name"]: (c["pixels"], c["images"], c["target_name"], c["rule"]) for c in rep.classes}
    assert rows == {"unlabeled": (3, 1, "ignore", SOURCE_IGNORE), "a": (2, 1, "ignore", COARSER),
                    "a1": (8, 2, "alpha1", EXACT), "c1a": (3, 1, "cee", ANCESTOR), "d": (1, 1, "ignore", OUTSIDE),
                    "b": (1, 1, "bee", EXACT)}
    assert rep.pixels == 18 and rep.lost_pixels == 3 and rep.written == 2 and rep.skipped == 0
    assert {t["target_name"]: t["pixels"] for t in rep.targets} == {"alpha1": 8, "cee": 3, "bee": 1, "ignore": 6}
    train_list = (out / "train.txt").read_text().split()  # relative to OUT, unquoted when plain
    assert train_list == [os.path.relpath((root / "leftImg8bit/train/x/x_000001_000002_leftImg8bit.png").resolve(),
                                          out.resolve()), "gtFine/train/x/x_000001_000002_gtFine_labelTrainIds.png"]
    assert read_split_list(out / "train.txt") == [(out / train_list[0], out / train_list[1])]
    assert (out / "val.txt").read_text().count("\n") == 1
    # a rerun keeps complete outputs; --force rewrites; another conversion into the same OUT is refused
    mtime = (out / "gtFine/val/y/y_000003_000004_gtFine_labelTrainIds.png").stat().st_mtime_ns
    again = convert_dataset("src", root, out, "tgt:trainids", hierarchy=tree, workers=1, progress=False)
    assert (again.written, again.skipped, again.pixels) == (0, 2, 0)
    assert (out / "gtFine/val/y/y_000003_000004_gtFine_labelTrainIds.png").stat().st_mtime_ns == mtime
    forced = convert_dataset("src", root, out, "tgt:trainids", hierarchy=tree, workers=1, progress=False, force=True)
    assert (forced.written, forced.pixels) == (2, 18)
    with pytest.raises(LabeltreeError, match="another conversion"):
        convert_dataset("src", root, out, "tgt", hierarchy=tree, workers=1, progress=False)
    assert not list(root.rglob("*labelTrainIds*"))  # nothing written into ROOT


def test_other_layouts_and_gtsdb_source(tmp_path):
    """Cityscapes -> Vistas palette labels; GTSDB boxes (fine / coarse) -> Cityscapes labelIds."""
    root = tmp_path / "cs"
    _write_cs(root, "val", "z_000000_000001", np.array([[7, 8], [25, 9]], np.uint8))
    convert_dataset("cityscapes", root, tmp_path / "v", "vistas", workers=1, progress=False)
    im = Image.open(tmp_path / "v/validation/labels/z_000000_000001.png")
    assert im.mode == "P" and np.array(im).tolist() == [[65, 15], [65, 10]]  # road, rider: coarser
    assert im.getpalette()[15 * 3:16 * 3] == [244, 35, 232]  # Vistas' Sidewalk colour

    g = tmp_path / "gtsdb"
    g.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(g / "00000.png")
    (g / "gt.txt").write_text("00000.ppm;4;2;13;11;14\n")  # a 10x10 stop sign box
    fine = convert_dataset("gtsdb", g, tmp_path / "gf", "cityscapes", workers=1, progress=False)
    arr = read_png(tmp_path / "gf/gtFine/train/gtsdb/gtsdb_000000_000000_gtFine_labelIds.png")
    assert set(np.unique(arr).tolist()) == {0, 20} and not arr[:2].any() and not arr[:, 14:].any()
    sign = {c["source_name"]: c["pixels"] for c in fine.classes}["stop"]
    assert sign == np.count_nonzero(arr == 20) and 60 < sign < 100  # an octagon inscribed in the 10x10 box
    coarse = convert_dataset("gtsdb", g, tmp_path / "gc", "cityscapes:trainids", workers=1, progress=False,
                             mask_mode="coarse")
    arr = read_png(tmp_path / "gc/gtFine/train/gtsdb/gtsdb_000000_000000_gtFine_labelTrainIds.png")
    assert np.count_nonzero(arr == 7) == 100 and np.count_nonzero(arr == 255) == 500
    assert {c["source_name"]: c["pixels"] for c in coarse.classes}["stop"] == 100


def _official_trainids(fixtures: Path) -> np.ndarray:
    """labels.py's id -> trainId table, from the fixture's copy of it (not from our taxonomy)."""
    lut = np.full(256, 255, np.uint8)
    with open(fixtures / "cityscapes" / "cityscapes_labels.tsv") as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if r and not r[0].startswith("#")]
    for r in rows[1:]:
        if int(r[1]) >= 0:
            lut[int(r[1])] = int(r[2]) if 0 <= int(r[2]) < 255 else 255
    return lut


def test_real_cityscapes_fixture_trainids(real_fixtures, tmp_path):
    root = real_fixtures / "cityscapes"
    rep = convert_dataset("cityscapes", root, tmp_path / "o", "cityscapes:trainids", workers=1, progress=False)
    key = "frankfurt_000000_000294"
    got = read_png(tmp_path / f"o/gtFine/val/frankfurt/{key}_gtFine_labelTrainIds.png")
    ids = read_png(root / f"gtFine/val/frankfurt/{key}_gtFine_labelIds.png")
    fixture = read_png(root / f"gtFine/val/frankfurt/{key}_gtFine_labelTrainIds.png")
    official = _official_trainids(real_fixtures)
    assert np.array_equal(got, official[ids])
    assert build_conversion("cityscapes", "cityscapes:trainids").lut[:34].tolist() == official[:34].tolist()
    # SOURCES.md: the fixture's labelTrainIds was resized apart from its labelIds, 77 of 32768 pixels disagree
    # with labelIds through the official map; everywhere else the conversion equals the file pixel for pixel
    assert got.shape == fixture.shape == (128, 256) and int((got != fixture).sum()) == 77
    assert rep.pixels == 32768 and rep.lost_pixels == 0


def test_cityscapesscripts_conformance(tmp_path):
    """labelIds and labelTrainIds both drawn by cityscapesScripts from the same polygons: our conversion of
    its labelIds equals csCreateTrainIdLabelImgs' labelTrainIds."""
    from cityscapesscripts_env import cityscapesscripts_python

    try:
        py = cityscapesscripts_python()
    except RuntimeError as e:
        pytest.skip(str(e))
    rng = np.random.default_rng(17)
    names = ["road", "sidewalk", "parking", "building", "pole", "polegroup", "traffic sign", "vegetation", "sky",
             "person", "persongroup", "rider", "car", "cargroup", "caravan", "train", "bicycle", "license plate",
             "ego vehicle", "static", "ground", "rail track", "guard rail", "terrain", "truck", "motorcycle"]
    cs = tmp_path / "cs"
    for k in range(3):
        h, w = 96 + 16 * k, 160
        objects = []
        for _ in range(40):
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            pts = [[float(cx + r * np.cos(a)), float(cy + r * np.sin(a))]
                   for a, r in zip(np.sort(rng.uniform(0, 2 * np.pi, 6)), rng.uniform(5, 40, 6), strict=True)]
            objects.append({"label": str(rng.choice(names)), "polygon": pts})
        d = cs / "gtFine" / "val" / "testcity"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"testcity_000000_{k:06d}_gtFine_polygons.json").write_text(
            json.dumps({"imgHeight": h, "imgWidth": w, "objects": objects}))
    script = ("import glob, sys\n"
              "from cityscapesscripts.preparation.json2labelImg import json2labelImg\n"
              "from cityscapesscripts.preparation.createTrainIdLabelImgs import main\n"
              "for f in sorted(glob.glob(sys.argv[1] + '/gtFine/*/*/*_polygons.json')):\n"
              "    json2labelImg(f, f.replace('_polygons.json', '_labelIds.png'), 'ids')\n"
              "main()\n")
    r = subprocess.run([str(py), "-c", script, str(cs)], env={"CITYSCAPES_DATASET": str(cs), "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    with pytest.warns(LabeltreeWarning, match="3 labels without their photo"):
        convert_dataset("cityscapes", cs, tmp_path / "out", "cityscapes:trainids", workers=1, progress=False)
    theirs = sorted(cs.rglob("*_gtFine_labelTrainIds.png"))
    assert len(theirs) == 3
    for f in theirs:
        ours = tmp_path / "out" / f.relative_to(cs)
        a, b = read_png(ours), read_png(f)
        assert a.dtype == b.dtype == np.uint8 and np.array_equal(a, b), f.name
        assert len(np.unique(b)) >= 8  # the frames exercise many classes, ignore included
        assert 255 in b


def _cli(args: list[str]):
    return CliRunner().invoke(main, args)


def test_hostile_inputs_exit_2_one_line(tree, tmp_path):
    root = tmp_path / "src-root"
    _write_cs(root, "train", "x_000001_000002", np.ones((2, 2), np.uint8))
    bad_yaml = tmp_path / "o.yaml"
    bad_yaml.write_text("a: [alpha1\n")
    cases = [
        ([str(tree.parent / "src.yaml"), str(root), str(tmp_path / "o1"), "--to", "nowhere", "--hierarchy",
          str(tree)], "--to nowhere: tree 'toy' maps no dataset 'nowhere'"),
        (["src", str(root), str(tmp_path / "o2"), "--to", "tree:9", "--hierarchy", str(tree)], "level must be"),
        (["src", str(root), str(tmp_path / "o3"), "--to", "tgt", "--hierarchy", str(tree), "--overrides",
          str(bad_yaml)], "YAML syntax error"),
        (["src", str(root), str(root / "converted"), "--to", "tgt", "--hierarchy", str(tree)], "outside the dataset"),
        (["src", str(root), str(tmp_path / "o4"), "--to", "tgt", "--hierarchy", str(tree), "--report",
          str(root / "r.json")], "--report must lie outside"),
        (["src", str(root), str(tmp_path / "o5"), "--to", "tgt", "--hierarchy", str(tree), "--workers", "0"],
         "--workers"),
    ]
    bad = tmp_path / "bad-root"
    _write_cs(bad, "train", "x_000001_000002", np.ones((2, 2), np.uint8))
    _write_cs(bad, "train", "x_000001_000003", np.full((2, 2), 9, np.uint8))  # 9: no class of src
    cases.append((["src", str(bad), str(tmp_path / "o6"), "--to", "tgt", "--hierarchy", str(tree), "--workers", "2"],
                  "x_000001_000003_gtFine_labelIds.png: label values not defined in taxonomy 'src': 9 (4 px)"))
    for args, needle in cases:
        r = _cli(["convert", *args])
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.output and "Traceback" not in r.output
        lines = [ln for ln in r.output.splitlines() if ln.startswith("error") or ln.startswith("Error")]
        assert len(lines) == 1, r.output
    assert not (root / "converted").exists() and not (root / "r.json").exists()
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == ["x_000001_000002_gtFine_labelIds.png",
                                                                       "x_000001_000002_leftImg8bit.png"]


def test_cli_table_and_report(tree, tmp_path):
    root = tmp_path / "src-root"
    _write_cs(root, "train", "x_000001_000002", np.array([[1, 2, 3, 4]], np.uint8))
    r = _cli(["convert", "src", str(root), str(tmp_path / "o"), "--to", "tgt", "--hierarchy", str(tree), "--report",
              str(tmp_path / "r.json"), "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "coarser than target" in r.output and "lost (coarser than target or outside its tree): 2 px" in r.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["lost_pixels"] == 2 and data["pixels"] == 4 and data["target"] == "tgt"
    assert {c["source_name"]: c["target_value"] for c in data["classes"] if c["pixels"]} == {
        "a": None, "a1": 1, "c1a": 3, "d": None}
