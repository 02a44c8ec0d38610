"""Bad input: one test per case, each checks the file (and line) and the advice in the message."""

from __future__ import annotations

import warnings
from pathlib import Path

import click
import numpy as np
import pytest
from builders import save_png as _png
from click.testing import CliRunner
from PIL import Image

from labeltree.commands._options import unknown_option
from labeltree.core.taxonomy import load_taxonomy
from labeltree.datasets.base import LabeltreeWarning, decode_label
from labeltree.datasets.decode import image_size
from labeltree.datasets.gtsdb import load_gt
from labeltree.datasets.registry import open_dataset
from labeltree.errors import LabeltreeError

CS = load_taxonomy("cityscapes")


def _cs_pair(root: Path, key: str = "aachen_000000_000019", label: np.ndarray | None = None,
             image: bool = True, lab: bool = True) -> None:
    if lab:
        _png(root / "gtFine/train/aachen" / f"{key}_gtFine_labelIds.png",
             label if label is not None else np.full((6, 8), 7, np.uint8))
    if image:
        _png(root / "leftImg8bit/train/aachen" / f"{key}_leftImg8bit.png", np.zeros((6, 8, 3), np.uint8))


def test_rgb_colour_visualisation_instead_of_label(tmp_path: Path) -> None:
    road, sky = CS.find("road").color, CS.find("sky").color
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:10], rgb[10:] = sky, road
    p = _png(tmp_path / "x_gtFine_color.png", rgb)
    with pytest.raises(LabeltreeError) as e:
        decode_label(p, CS)
    msg = str(e.value)
    assert msg.startswith(f"{p}: this is a 30x20 8-bit RGB colour PNG, not a label map")
    assert "colours are cityscapes class colours (100% of pixels)" in msg and "colour-coded visualisation" in msg
    assert "use the dataset's *_gtFine_labelIds.png" in msg


def test_rgb_photo_instead_of_vistas_label(tmp_path: Path) -> None:
    photo = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    p = _png(tmp_path / "labels" / "a.png", photo)
    with pytest.raises(LabeltreeError, match=r"a.png: this is a 16x16 8-bit RGB colour PNG, not a label map; "
                                             r"\d+ distinct colours, .*a photo\. vistas labels are 8-bit palette"):
        decode_label(p, load_taxonomy("vistas"))


def test_palette_photo_is_not_a_label_map(real_fixtures: Path) -> None:
    p = real_fixtures / "cityscapes" / "demo_frame_palette.png"
    for tax in ("cityscapes", "vistas"):
        with pytest.raises(LabeltreeError) as e:
            decode_label(p, load_taxonomy(tax))
        msg = str(e.value)
        assert msg.startswith(f"{p}: this looks like a photo") and "1024x512" in msg and "199 distinct values" in msg
        # --unknown ignore must not turn a photo into a "label map" either
        with pytest.raises(LabeltreeError, match="looks like a photo"):
            decode_label(p, load_taxonomy(tax), unknown="ignore")


def test_image_without_label_and_label_without_image(tmp_path: Path) -> None:
    _cs_pair(tmp_path, "aachen_000000_000019")
    _cs_pair(tmp_path, "aachen_000001_000019", lab=False)  # photo only
    _cs_pair(tmp_path, "aachen_000002_000019", image=False)  # label only
    r = open_dataset("cityscapes", tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = r.samples("train")
    msgs = sorted(str(w.message) for w in caught if issubclass(w.category, LabeltreeWarning))
    assert len(msgs) == 2
    assert msgs[0].startswith("1 labels without their photo: ")
    assert "aachen_000002_000019_gtFine_labelIds.png" in msgs[0]
    assert msgs[1].startswith("1 photos without a label: ") and "aachen_000001_000019_leftImg8bit.png" in msgs[1]
    assert [s.key for s in samples] == ["aachen_000000_000019", "aachen_000002_000019"]
    assert samples[1].image is None
    with pytest.raises(LabeltreeError, match=r"aachen_000002_000019_gtFine_labelIds.png: sample .* has no image"):
        r.read_image(samples[1])


def test_gtsdb_frames_without_gt_lines_and_lines_without_frames(tmp_path: Path) -> None:
    Image.new("RGB", (20, 10)).save(tmp_path / "00000.ppm")
    (tmp_path / "gt.txt").write_text("00000.ppm;1;1;4;4;1\n00007.ppm;1;1;4;4;2\n")
    with pytest.warns(LabeltreeWarning, match=r"gt.txt: 1 frame\(s\) named in gt.txt have no image under .*: "
                                              r"00007.ppm; their boxes are not used"):
        [s] = open_dataset("gtsdb", tmp_path).samples("train")
    assert s.key == "00000" and len(s.boxes) == 1


def test_unknown_label_values_listed_and_ignorable(tmp_path: Path) -> None:
    lab = np.full((8, 8), 7, np.uint8)
    lab[0, :3] = 40
    lab[1, :2] = 200
    p = _png(tmp_path / "l.png", lab)
    with pytest.raises(LabeltreeError) as e:
        decode_label(p, CS)
    msg = str(e.value)
    assert msg.startswith(f"{p}: label values not defined in taxonomy 'cityscapes': 40 (3 px), 200 (2 px).")
    assert "--unknown ignore" in msg and "map them to 0 (ignore)" in msg
    out = decode_label(p, CS, unknown="ignore")
    assert np.count_nonzero(out == 0) == 5 and np.count_nonzero(out == 7) == 59
    _cs_pair(tmp_path / "ds", label=lab)
    r = open_dataset("cityscapes", tmp_path / "ds", unknown="ignore")
    assert np.count_nonzero(r.read_label(r.samples("train")[0]) == 0) == 5


def test_16bit_label_under_8bit_taxonomy_hints_extended(tmp_path: Path) -> None:
    lab = np.full((4, 4), 7, np.uint16)
    lab[0, 0] = 2014
    p = _png(tmp_path / "ext.png", lab)
    with pytest.raises(LabeltreeError, match=r"2014 \(1 px\)\. This is a 16-bit label map.*'cityscapes-extended'"):
        decode_label(p, CS)
    assert decode_label(p, load_taxonomy("cityscapes-extended"))[0, 0] == 2014


def test_unknown_click_option_reaches_the_reader(tmp_path: Path) -> None:
    lab = np.full((4, 4), 7, np.uint8)
    lab[0, 0] = 99
    p = _png(tmp_path / "l.png", lab)

    @click.command()
    @click.argument("path", type=click.Path(path_type=Path))
    @unknown_option
    def cmd(path: Path, unknown: str) -> None:
        click.echo(int((decode_label(path, CS, unknown=unknown) == 0).sum()))

    ok = CliRunner().invoke(cmd, [str(p), "--unknown", "ignore"])
    assert ok.exit_code == 0 and ok.output.strip() == "1"
    bad = CliRunner().invoke(cmd, [str(p)])
    assert isinstance(bad.exception, LabeltreeError) and "99 (1 px)" in str(bad.exception)
    assert CliRunner().invoke(cmd, [str(p), "--unknown", "drop"]).exit_code == 2


@pytest.mark.parametrize("kind", ["8bit", "16bit", "palette4"])
def test_truncated_label_png(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 34, (64, 64)).astype(np.uint16 if kind == "16bit" else np.uint8)
    p = tmp_path / "t.png"
    if kind == "palette4":  # goes through the PIL path
        im = Image.fromarray(arr % 16).convert("P")
        im.putpalette(list(range(48)))
        im.save(p, bits=4)
    else:
        Image.fromarray(arr).save(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    tax = load_taxonomy("cityscapes-extended" if kind == "16bit" else "cityscapes")
    with pytest.raises(LabeltreeError, match=rf"^{p}: .*the file is truncated"):
        decode_label(p, tax)


# torchvision's decode_png crashes the process on libpng errors, so this runs in a child process:
# a regression must fail this test, not kill the test run.
_FLIP = """
import sys, numpy as np
from PIL import Image
from labeltree.errors import LabeltreeError
from labeltree.datasets.base import decode_label
from labeltree.core.taxonomy import load_taxonomy
p = sys.argv[1]
Image.fromarray(np.random.default_rng(1).integers(0, 34, (64, 64)).astype(np.uint8)).save(p)
d = bytearray(open(p, 'rb').read()); d[len(d) // 2] ^= 0xFF; open(p, 'wb').write(d)
try:
    decode_label(p, load_taxonomy('cityscapes'))
except LabeltreeError as e:
    print(e)
"""


def test_bit_flipped_label_png_is_reported_not_a_crash(tmp_path: Path) -> None:
    import subprocess
    import sys
    p = tmp_path / "flip.png"
    r = subprocess.run([sys.executable, "-c", _FLIP, str(p)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith(f"{p}: PNG chunk b'IDAT' at byte ") and "fails its CRC check" in r.stdout


def test_corrupt_and_empty_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(LabeltreeError, match=r"empty.png: file is empty \(0 bytes\)"):
        decode_label(empty, CS)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(LabeltreeError, match=r"junk.png: PNG file has no IHDR header"):
        decode_label(junk, CS)
    ppm = tmp_path / "00000.ppm"
    Image.new("RGB", (50, 40)).save(ppm)
    ppm.write_bytes(ppm.read_bytes()[:100])
    assert image_size(ppm) == (40, 50)  # the header is intact
    from labeltree.datasets.decode import read_rgb
    with pytest.raises(LabeltreeError, match=r"00000.ppm: cannot decode image .*truncated or corrupt"):
        read_rgb(ppm)
    with pytest.raises(LabeltreeError, match=r"missing.png: file not found"):
        decode_label(tmp_path / "missing.png", CS)


@pytest.mark.parametrize(("line", "expect"), [
    ("00001.ppm;1;2;3;4", r"malformed line '00001.ppm;1;2;3;4': expected 'NNNNN.ppm;left;top;right;bottom;ClassID'"),
    ("00001.ppm;1;2;x;4;5", r"malformed line .*: coordinates and ClassID must be integers"),
    ("00001.ppm 1 2 3 4 5", r"malformed line"),
    ("00001.ppm;1;2;3;4;43", r"ClassID 43 is not a gtsdb class \(ids 0..42\)"),
])
def test_malformed_gt_lines(tmp_path: Path, line: str, expect: str) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text(f"00000.ppm;1;2;3;4;5\n\n{line}\n")
    with pytest.raises(LabeltreeError, match=rf"^{gt}:3: {expect}"):
        load_gt(gt)


def test_boxes_outside_frame_are_clipped_and_reported(tmp_path: Path) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text("00000.ppm;-3;5;10;12;1\n00000.ppm;95;70;120;90;2\n00000.ppm;200;10;220;20;3\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = load_gt(gt, frame_sizes={"00000": (80, 100)})
    msgs = [str(w.message) for w in caught]
    assert any("2 box(es) reach outside their frame and were clipped: line 1 (00000.ppm -3,5-10,12 -> 0,5-10,12), "
               "line 2 (00000.ppm 95,70-120,90 -> 95,70-99,79)" in m for m in msgs)
    assert any("1 box(es) lie wholly outside their frame (empty after clipping) and were dropped: line 3" in m
               for m in msgs)
    assert [(b.x0, b.y0, b.x1, b.y1) for b in g.boxes["00000.ppm"]] == [(0, 5, 10, 12), (95, 70, 99, 79)]
    assert g.clipped == [1, 2] and g.dropped == [3]
    assert g.boxes["00000.ppm"][1].unclipped == (95, 70, 120, 90)  # for shapes cut (not squeezed) by the edge


@pytest.mark.parametrize(("line", "which"), [("00000.ppm;10;5;4;12;1", "right < left"),
                                             ("00000.ppm;1;12;4;5;1", "bottom < top")])
def test_inverted_boxes(tmp_path: Path, line: str, which: str) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text(line + "\n")
    with pytest.raises(LabeltreeError, match=rf"^{gt}:1: inverted box \({which}\)"):
        load_gt(gt)


@pytest.mark.parametrize(("line", "which"), [("00000.ppm;10;5;9;12;1", "zero width: right = left - 1"),
                                             ("00000.ppm;1;12;4;11;1", "zero height: bottom = top - 1")])
def test_empty_boxes(tmp_path: Path, line: str, which: str) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text("00000.ppm;1;1;9;9;14\n" + line + "\n")
    with pytest.raises(LabeltreeError, match=rf"^{gt}:2: empty box \({which}\) .*inclusive .*exclusive right/bottom"):
        load_gt(gt)


def test_single_pixel_box_is_not_empty(tmp_path: Path) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text("00000.ppm;4;4;4;4;14\n")  # inclusive: one pixel
    [b] = load_gt(gt).boxes["00000.ppm"]
    assert b.area == 1


def test_duplicate_lines_reported_one_box_kept(tmp_path: Path) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text("00000.ppm;1;1;9;9;14\n00000.ppm;1;1;9;9;14\n00000.ppm;1;1;9;9;13\n00001.ppm;1;1;9;9;14\n"
                  "00000.ppm;1;1;9;9;14\n")
    with pytest.warns(LabeltreeWarning, match=r"2 duplicate line\(s\), one box kept each: line 2 repeats line 1, "
                                              r"line 5 repeats line 1"):
        g = load_gt(gt)
    assert [b.class_id for b in g.boxes["00000.ppm"]] == [14, 13] and g.n_boxes == 3


def test_missing_gt_and_missing_root(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "00000.ppm")
    with pytest.raises(LabeltreeError, match=r"GTSDB gt.txt not found \(searched .*gt.txt\)"):
        open_dataset("gtsdb", tmp_path).samples("train")
    with pytest.raises(LabeltreeError, match=r"dataset root not found \(searched .*nowhere\)"):
        open_dataset("cityscapes", tmp_path / "nowhere")
