"""Readers: conformance on the real fixtures, native layouts built in tmp_path, decoder exactness."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from builders import save_png as _png
from PIL import Image

from labeltree.core.taxonomy import load_taxonomy
from labeltree.datasets import decode
from labeltree.datasets.base import LabeltreeWarning, check_label_values, decode_label, no_class_value
from labeltree.datasets.decode import decode_array, image_size
from labeltree.datasets.gtsdb import load_gt, parse_gt_txt
from labeltree.datasets.registry import open_dataset

CS_KEY = "frankfurt_000000_000294"


def _cid(tax: str, name: str) -> int:
    c = load_taxonomy(tax).find(name)
    assert c is not None, name
    return c.id


# -- real fixtures --------------------------------------------------------------------------------

def test_cityscapes_real_labelids_and_instanceids_agree(real_fixtures: Path) -> None:
    r = open_dataset("cityscapes", real_fixtures / "cityscapes")
    assert r.splits() == ["val"] and r.cities("val") == ["frankfurt"]
    [s] = r.samples("val")
    assert s.key == CS_KEY and s.city == "frankfurt" and s.image is not None and s.instances is not None
    lab, inst = r.read_label(s), r.read_instances(s)
    assert lab.dtype == np.uint8 and inst.dtype == np.uint16 and lab.shape == inst.shape == (128, 256)
    # stuff pixels store the id, things id*1000+k: both files agree at every pixel (SOURCES.md)
    np.testing.assert_array_equal(np.where(inst >= 1000, inst // 1000, inst), lab)
    assert sorted(np.unique(lab).tolist()) == [1, 2, 3, 4, 7, 8, 11, 13, 17, 20, 21, 23, 24, 26]
    things = {v // 1000 for v in np.unique(inst).tolist() if v >= 1000}
    assert things == {_cid("cityscapes", "person"), _cid("cityscapes", "car")}
    assert r.read_image(s).shape == (128, 256, 3)


@pytest.mark.parametrize(("tax", "values"), [("vistas", [17, 44, 45]), ("vistas-v2.0", [27, 84, 85])])
def test_vistas_real_palette_labels_read_as_indices(real_fixtures: Path, tax: str, values: list[int]) -> None:
    r = open_dataset(tax, real_fixtures / "vistas")  # also checks config_v1.1.json against the v1.2 taxonomy
    assert r.splits() == ["all"]
    [s] = r.samples("all")
    assert s.key == "__CRyFzoDOXn6unQ6a3DnQ" and s.image is not None
    with Image.open(s.label) as im:
        assert im.mode == "P"
    lab = r.read_label(s)
    assert sorted(np.unique(lab).tolist()) == values
    names = [load_taxonomy(tax).by_id(v).display for v in values]
    assert names == ["Building", "Street Light", "Pole"]
    assert r.read_image(s).shape == (100, 100, 3)


def test_gtsdb_real_gt_txt(real_fixtures: Path) -> None:
    with pytest.warns(LabeltreeWarning, match=r"1 duplicate line.*line 535 repeats line 533"):
        gt = load_gt(real_fixtures / "gtsdb" / "gt.txt")
    assert gt.lines == 1213 and gt.n_boxes == 1212 and len(gt.boxes) == 741
    assert gt.duplicates == [(535, 533)]
    assert len(gt.boxes["00340.ppm"]) == 2
    assert {b.class_id for bs in gt.boxes.values() for b in bs} == set(range(43))
    # SOURCES.md: 852 lines for 00000-00599 (incl. the duplicate), 361 for 00600-00899
    assert sum(len(v) for k, v in gt.boxes.items() if int(k[:5]) < 600) == 851
    assert sum(len(v) for k, v in gt.boxes.items() if int(k[:5]) >= 600) == 361
    b = gt.boxes["00000.ppm"][0]
    assert (b.x0, b.y0, b.x1, b.y1, b.class_id, b.line) == (774, 411, 815, 446, 11, 1)
    assert b.width == 42 and b.height == 36


def test_gtsdb_real_frames_jpeg(real_fixtures: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = open_dataset("gtsdb", real_fixtures / "gtsdb")
        train = r.samples("train")
    msgs = [str(w.message) for w in caught]
    assert any("737 frame(s) named in gt.txt have no image" in m for m in msgs)
    assert [s.key for s in train] == ["00000", "00001", "00003", "00054", "00108"]
    assert r.samples("test") == []
    assert [len(s.boxes) for s in train] == [1, 3, 3, 4, 0]  # 00108 has no sign
    assert all(s.size == (800, 1360) and s.image.suffix == ".jpg" for s in train)
    assert r.read_image(train[0]).shape == (800, 1360, 3)


def test_ppm_reader_on_original_p6(real_fixtures: Path) -> None:
    p = real_fixtures / "gtsdb" / "gtsrb_sample_P6.ppm"
    assert image_size(p) == (54, 53)
    from labeltree.datasets.decode import read_rgb
    assert read_rgb(p).shape == (54, 53, 3)


# -- layouts built here ---------------------------------------------------------------------------

def _cityscapes(root: Path, dtype=np.uint8, values=(7, 11, 21)) -> Path:
    rng = np.random.default_rng(3)
    for split, city, n in [("train", "aachen", 2), ("train", "bochum", 1), ("val", "lindau", 1)]:
        for i in range(n):
            key = f"{city}_{i:06d}_000019"
            lab = np.asarray(values, dtype=dtype)[rng.integers(0, len(values), (8, 12))]
            _png(root / "gtFine" / split / city / f"{key}_gtFine_labelIds.png", lab)
            _png(root / "gtFine" / split / city / f"{key}_gtFine_color.png", np.zeros((8, 12, 3), np.uint8))
            _png(root / "leftImg8bit" / split / city / f"{key}_leftImg8bit.png", rng.integers(0, 255, (8, 12, 3),
                                                                                             dtype=np.uint8))
    return root


def test_cityscapes_layout_order_and_splits(tmp_path: Path) -> None:
    r = open_dataset("cityscapes", _cityscapes(tmp_path))
    assert r.splits() == ["train", "val"]
    assert r.cities("train") == ["aachen", "bochum"]
    keys = [s.key for s in r.samples("train")]
    assert keys == ["aachen_000000_000019", "aachen_000001_000019", "bochum_000000_000019"]
    assert [s.key for s in r.all_samples()] == keys + ["lindau_000000_000019"]
    s = r.samples("train")[0]
    assert s.instances is None and s.image is not None
    assert set(np.unique(r.read_label(s)).tolist()) <= {7, 11, 21}


def test_cityscapes_extended_16bit(tmp_path: Path) -> None:
    stop = 2000 + _cid("gtsdb", "stop")
    root = _cityscapes(tmp_path, np.uint16, (7, 11, stop))
    r = open_dataset("cityscapes-extended", root)
    lab = r.read_label(r.samples("val")[0])
    assert lab.dtype == np.uint16 and set(np.unique(lab).tolist()) == {7, 11, stop}
    # an ordinary 8-bit labelIds file also reads under the extended taxonomy (no sign classes yet)
    _png(tmp_path / "plain.png", np.full((4, 4), 7, np.uint8))
    assert decode_label(tmp_path / "plain.png", r.taxonomy).dtype == np.uint16


def _vistas_config(path: Path, tax: str) -> None:
    t = load_taxonomy(tax)
    labels = [{"name": c.name, "readable": c.display, "color": list(c.color)} for c in t.classes]
    path.write_text(json.dumps({"labels": labels}))


@pytest.mark.parametrize("layout", ["v1.2-flat", "v2.0-release"])
def test_vistas_layouts(tmp_path: Path, layout: str) -> None:
    rng = np.random.default_rng(5)
    for folder in ("training", "validation"):
        for i in range(2):
            stem = f"{folder[0]}img{i}"
            (tmp_path / folder / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (6, 10, 3), dtype=np.uint8)).save(
                tmp_path / folder / "images" / f"{stem}.jpg")
            if layout == "v1.2-flat":
                _png(tmp_path / folder / "labels" / f"{stem}.png", np.full((6, 10), 17 + i, np.uint8), palette=True)
            else:
                _png(tmp_path / folder / "v1.2" / "labels" / f"{stem}.png", np.full((6, 10), 17, np.uint8), True)
                _png(tmp_path / folder / "v2.0" / "labels" / f"{stem}.png", np.full((6, 10), 27 + i, np.uint8), True)
    _vistas_config(tmp_path / "config_v1.2.json", "vistas")
    r = open_dataset("vistas", tmp_path)
    assert r.splits() == ["train", "val"]
    assert [s.key for s in r.samples("train")] == ["timg0", "timg1"]
    assert np.unique(r.read_label(r.samples("val")[1])).tolist() == ([18] if layout == "v1.2-flat" else [17])
    if layout == "v2.0-release":
        _vistas_config(tmp_path / "config_v2.0.json", "vistas-v2.0")
        r2 = open_dataset("vistas-v2.0", tmp_path)
        assert np.unique(r2.read_label(r2.samples("train")[1])).tolist() == [28]
    else:
        from labeltree.errors import LabeltreeError
        with pytest.raises(LabeltreeError, match="looks like a v1.x release"):
            open_dataset("vistas-v2.0", tmp_path).samples("train")


def test_vistas_config_must_match_taxonomy(tmp_path: Path) -> None:
    from labeltree.errors import LabeltreeError
    (tmp_path / "training" / "labels").mkdir(parents=True)
    _vistas_config(tmp_path / "config_v1.2.json", "vistas-v2.0")  # 124 labels where v1.2 has 66
    with pytest.raises(LabeltreeError, match=r"config_v1.2.json: the config lists 124 labels .* has 66"):
        open_dataset("vistas", tmp_path)
    _vistas_config(tmp_path / "config_v1.2.json", "vistas")
    cfg = json.loads((tmp_path / "config_v1.2.json").read_text())
    cfg["labels"][3], cfg["labels"][4] = cfg["labels"][4], cfg["labels"][3]
    (tmp_path / "config_v1.2.json").write_text(json.dumps(cfg))
    with pytest.raises(LabeltreeError, match="label index 3 is"):
        open_dataset("vistas", tmp_path)


def test_gtsdb_layout_ppm_split_and_clip(tmp_path: Path) -> None:
    for n in (0, 5, 599, 600, 899):
        Image.new("RGB", (40, 30)).save(tmp_path / f"{n:05d}.ppm")
    Image.new("RGB", (40, 30)).save(tmp_path / "00001.png")  # ignored: PPM frames exist
    (tmp_path / "gt.txt").write_text("00005.ppm;1;2;10;12;14\n00600.ppm;30;20;45;35;2\n")
    with pytest.warns(LabeltreeWarning, match=r"1 box\(es\) reach outside their frame and were clipped: line 2 "
                                              r"\(00600.ppm 30,20-45,35 -> 30,20-39,29\)"):
        r = open_dataset("gtsdb", tmp_path)
        train, test = r.samples("train"), r.samples("test")
    assert [s.key for s in train] == ["00000", "00005", "00599"] and [s.key for s in test] == ["00600", "00899"]
    assert all(s.image.suffix == ".ppm" for s in train + test)
    [b] = test[0].boxes
    assert (b.x0, b.y0, b.x1, b.y1, b.class_id) == (30, 20, 39, 29, 2)
    mask = r.read_label(train[1])  # rendered fine mask, 2000 + ClassID
    assert mask.dtype == np.uint16 and mask.shape == (30, 40)
    assert set(np.unique(mask).tolist()) == {0, 2014}


# -- decoder --------------------------------------------------------------------------------------

def _street(rng: np.random.Generator, h: int, w: int, values: list[int]) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.full((h, w), values[0], dtype=np.int64)
    a[yy > h // 2] = values[1]
    for k in range(12):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(2, 12)
        a[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = values[2 + k % (len(values) - 2)]
    return a


@pytest.mark.parametrize("kind", ["L", "P", "I;16", "P4", "1"])
def test_decoder_is_exact_against_pil(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(7)
    if kind == "I;16":
        arr = _street(rng, 48, 64, [7, 11, 2000 + 14, 65535, 26001]).astype(np.uint16)
        im = Image.fromarray(arr)
    elif kind == "1":
        im = Image.fromarray(_street(rng, 48, 64, [0, 1, 1, 0]).astype(bool))
    else:
        arr = _street(rng, 48, 64, [17, 44, 45, 0, 255] if kind != "P4" else [1, 3, 9, 15]).astype(np.uint8)
        im = Image.fromarray(arr)
        if kind.startswith("P"):
            im = im.convert("P")
            im.putpalette(list(rng.integers(0, 256, 768 if kind == "P" else 48)))
    path = tmp_path / "x.png"
    im.save(path, bits=4) if kind == "P4" else im.save(path)
    with Image.open(path) as ref_im:
        ref = np.asarray(ref_im).astype(np.uint16 if kind == "I;16" else np.uint8)
    got = decode_array(path)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(decode_array(path, decoder="pil"), ref)
    hdr = decode.read_png_header(path)
    assert decode.LABEL_DECODER == "auto"
    assert decode._pyspng_exact(hdr) == (kind == "L")  # 8-bit grey: pyspng; palette / 16-bit / low bit depth: PIL
    if kind == "L":
        np.testing.assert_array_equal(decode._decode_pyspng(path.read_bytes()), ref)


def test_unknown_values_ignore_maps_to_taxonomy_ignore_value() -> None:
    cs, vi, ext = load_taxonomy("cityscapes"), load_taxonomy("vistas"), load_taxonomy("cityscapes-extended")
    assert no_class_value(cs) == 0 and no_class_value(vi) == 65 and no_class_value(load_taxonomy("gtsdb")) == 0
    arr = np.array([[7, 40], [200, 7]], dtype=np.uint8)
    np.testing.assert_array_equal(check_label_values(arr, cs, unknown="ignore"), [[7, 0], [0, 7]])
    np.testing.assert_array_equal(check_label_values(arr, vi, unknown="ignore"), [[7, 40], [65, 7]])
    e = np.array([[7, 2042, 2043, 1999]], dtype=np.uint16)
    np.testing.assert_array_equal(check_label_values(e, ext, unknown="ignore"), [[7, 2042, 0, 0]])


def test_parse_gt_txt_api(tmp_path: Path) -> None:
    (tmp_path / "gt.txt").write_text("00000.ppm;1;2;3;4;5\r\n\r\n00000.ppm;5;5;9;9;40\r\n")
    out = parse_gt_txt(tmp_path / "gt.txt")
    assert list(out) == ["00000.ppm"] and [b.class_id for b in out["00000.ppm"]] == [5, 40]
    assert [b.line for b in out["00000.ppm"]] == [1, 3]
