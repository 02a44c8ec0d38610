"""Robustness, inputs: malformed files and hostile numbers are refused with one line (exit 2), never a
crash, a traceback or a silent wrong result; nothing that existed before changes."""

from __future__ import annotations

import io
import json
import math
import socket
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hostile import CS_KEY, cs_root, invoke, png, png_bytes, refused, rows, short_png, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from labeltree.datasets.decode import decode_array, image_size, read_rgb
from labeltree.errors import LabeltreeError
from labeltree.train.config import config_from_dict, load_config


def _plte(n: int = 16) -> bytes:
    data = bytes(range(n * 3))
    return struct.pack(">I", len(data)) + b"PLTE" + data + struct.pack(">I", zlib.crc32(b"PLTE" + data))


def _palette_short() -> bytes:
    good = short_png(16, 8, 3, colour=3)
    return good[:33] + _plte() + good[33:]  # PLTE after IHDR


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.arange(40 * 48 * 3) % 251).astype(np.uint8).reshape(40, 48, 3)).save(buf, "JPEG")
    return buf.getvalue()


def _ppm() -> bytes:
    return b"P6\n48 40\n255\n" + bytes(48 * 40 * 3)


HOSTILE = {  # name -> (bytes, words the error must hold)
    "short IDAT 8-bit grey": (short_png(16, 8, 3), "3 of 8 rows"),
    "short IDAT 16-bit grey": (short_png(16, 8, 2, depth=16), "2 of 8 rows"),
    "short IDAT palette": (_palette_short(), "3 of 8 rows"),
    "short IDAT RGB photo": (short_png(16, 8, 5, channels=3, colour=2), "5 of 8 rows"),
    "empty IDAT stream": (png_bytes(16, 8, b""), "0 of 8 rows"),
    "bad filter byte": (png_bytes(16, 8, rows(16, 8, filt=9)), "filter type 9"),
    "IDAT not zlib": (png_bytes(16, 8, b"", zdata=b"not zlib at all"), "cannot be inflated"),
    "PNG header 100000x100000": (png_bytes(100000, 100000, rows(16, 2)), "100000x100000"),
    "PNG header 0 wide": (png_bytes(0, 8, rows(16, 8)), "0x8"),
    "PPM header 100000x100000": (b"P6\n100000 100000\n255\n" + bytes(64), "100000"),
    "PPM header 12000x8000": (b"P6\n12000 8000\n255\n" + bytes(64), "12000x8000"),
    "truncated PPM": (_ppm()[:2000], "truncated"),
    "truncated JPEG": (_jpeg()[: len(_jpeg()) // 2], "truncated"),
    "PNG cut in a chunk": (short_png(16, 8, 8)[:-20], "truncated"),
    "empty file": (b"", "empty"),
    "text file": (b"hello, not an image\n", "cannot"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
@pytest.mark.parametrize("reader", ["label", "photo"])
def test_hostile_image_files_raise_one_labeltree_error(tmp_path: Path, name: str, reader: str) -> None:
    data, words = HOSTILE[name]
    f = tmp_path / ("x.ppm" if data.startswith(b"P6") else "x.jpg" if data.startswith(b"\xff\xd8") else "x.png")
    f.write_bytes(data)
    with pytest.raises(LabeltreeError) as e:
        decode_array(f) if reader == "label" else read_rgb(f)
    msg = str(e.value)
    assert str(f) in msg and words in msg and "\n" not in msg


@pytest.mark.parametrize("name", ["PNG header 100000x100000", "PPM header 100000x100000", "PPM header 12000x8000"])
def test_huge_headers_are_refused_by_the_header_reader_too(tmp_path: Path, name: str) -> None:
    f = tmp_path / ("x.ppm" if "PPM" in name else "x.png")
    f.write_bytes(HOSTILE[name][0])
    with pytest.raises(LabeltreeError, match="pixels"):
        image_size(f)


@pytest.mark.parametrize("mode,arr", [("L", np.arange(48, dtype=np.uint8).reshape(6, 8)),
                                      ("I;16", (np.arange(48, dtype=np.uint16) * 1000).reshape(6, 8)),
                                      ("1", (np.arange(48).reshape(6, 8) % 3 == 0))])
def test_good_pngs_still_decode_exactly(tmp_path: Path, mode: str, arr: np.ndarray) -> None:
    f = tmp_path / "ok.png"
    Image.fromarray(arr).save(f)
    np.testing.assert_array_equal(decode_array(f), arr.astype(np.uint8) if mode == "1" else arr)
    p = tmp_path / "pal.png"
    im = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8) % 5, mode="L").convert("P")
    im.putpalette(list(range(48)))
    im.save(p)
    np.testing.assert_array_equal(decode_array(p), np.arange(48, dtype=np.uint8).reshape(6, 8) % 5)
    np.testing.assert_array_equal(read_rgb(f).shape, (6, 8, 3))


def test_exact_row_count_passes_and_one_row_less_fails(tmp_path: Path) -> None:
    f = tmp_path / "r.png"
    f.write_bytes(png_bytes(16, 8, rows(16, 8, value=9)))
    np.testing.assert_array_equal(decode_array(f), np.full((8, 16), 9, np.uint8))
    f.write_bytes(png_bytes(16, 8, rows(16, 8, value=9)[:-1]))
    with pytest.raises(LabeltreeError, match="7 of 8 rows"):
        decode_array(f)


# -- the same files through the commands --------------------------------------------------------------

def test_stats_refuses_a_short_idat_label_and_skip_bad_goes_on(tmp_path: Path) -> None:
    root = cs_root(tmp_path / "cs", label=short_png(16, 8, 3))
    cs_root(root, key="aachen_000001_000019")
    bad = root / "gtFine/train/aachen" / f"{CS_KEY}_gtFine_labelIds.png"
    refused(["stats", "cityscapes", root, "--quiet", "--no-cache", "--workers", "1"], tmp_path, str(bad), "3 of 8")
    res = invoke(["stats", "cityscapes", root, "--quiet", "--no-cache", "--workers", "1", "--skip-bad",
                  "-o", tmp_path / "rows.json"])
    assert res.exit_code == 0, res.output
    assert f"skipped bad file: {bad}" in res.stderr
    road = [r for r in json.loads((tmp_path / "rows.json").read_text()) if r["class_id"] == 7]
    assert road[0]["pixels"] == 8 * 16 and road[0]["images"] == 1  # only the good frame counted


def test_evaluate_refuses_a_short_prediction_and_a_short_gt(tmp_path: Path) -> None:
    gt = cs_root(tmp_path / "gt", split="val")
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / f"{CS_KEY}.png").write_bytes(short_png(16, 8, 1))
    refused(["evaluate", "cityscapes", gt, pred, "--quiet", "--workers", "1"], tmp_path, f"{CS_KEY}.png", "1 of 8")
    gt2 = cs_root(tmp_path / "gt2", split="val", label=short_png(16, 8, 4))
    png(pred / f"{CS_KEY}.png", np.full((8, 16), 7, np.uint8))
    refused(["evaluate", "cityscapes", gt2, pred, "--quiet", "--workers", "1"], tmp_path, "gtFine", "4 of 8")


def test_gtsdb_masks_refuse_a_forged_frame_header_and_a_huge_coordinate(tmp_path: Path) -> None:
    root = tmp_path / "g"
    root.mkdir()
    (root / "00000.ppm").write_bytes(HOSTILE["PPM header 100000x100000"][0])
    (root / "gt.txt").write_text("00000.ppm;1;1;5;5;14\n")
    refused(["gtsdb-masks", root, tmp_path / "m", "--quiet", "--workers", "1"], tmp_path, "00000.ppm", "pixels")
    (root / "00000.ppm").write_bytes(_ppm())
    (root / "gt.txt").write_text("00000.ppm;1;1;100000000000000000000;5;14\n")
    refused(["gtsdb-masks", root, tmp_path / "m", "--quiet", "--workers", "1"], tmp_path, "gt.txt:1", "out of range")


# -- numbers from options, configs and files ---------------------------------------------------------------

OPTION_CASES = [
    (["synth", "{tmp}/s", "--images", "99999999999999999999"], "--images"),
    (["synth", "{tmp}/s", "--images", "0"], "--images"),
    (["annotate-extended", "serve", "{tmp}/w", "--port", "70000"], "--port"),
    (["annotate-extended", "serve", "{tmp}/w", "--port", "-1"], "--port"),
    (["stats", "cityscapes", "{tmp}", "--workers", "0"], "--workers"),
    (["evaluate", "cityscapes", "{tmp}", "{tmp}", "--workers", "-2"], "--workers"),
    (["gtsdb-masks", "{tmp}", "{tmp}/m", "--workers", "0"], "--workers"),
    (["stats", "cityscapes", "{tmp}", "--min-pixels", "-5"], "--min-pixels"),
    (["evaluate", "cityscapes", "{tmp}", "{tmp}", "--min-pixels", "-1"], "--min-pixels"),
]


def test_shard_count_beyond_any_dataset(tmp_path: Path) -> None:
    refused(["stats", "cityscapes", tmp_path, "--shard", "1/99999999999999999999", "-o", tmp_path / "s.json"],
            tmp_path, "--shard", "100000")


@pytest.mark.parametrize("argv,option", OPTION_CASES,
                         ids=[f"{c[0][0]} {c[1]} #{i}" for i, c in enumerate(OPTION_CASES)])
def test_option_numbers_out_of_range_are_usage_errors(tmp_path: Path, argv: list[str], option: str) -> None:
    refused([a.replace("{tmp}", str(tmp_path)) for a in argv], tmp_path, option, usage=True)


CONFIG_CASES = ["optim.lr=-1", "optim.lr=.nan", "optim.lr=.inf", "optim.lr=1e400", "optim.lr=0",
                "optim.momentum=1.5", "optim.gamma=-0.5", "optim.milestones=[0]", "train.crop=[0,-5]",
                "train.crop=[100000,100000]", "train.crop=[8000,8000]", "train.checkpoint_every=0",
                "train.workers=-3", "train.steps=-1", "train.seed=-1", "train.log_every=0", "train.threads=0",
                "train.device=banana", "model.width=100000", "model.tiny_channels=[0,0,0,0]",
                "model.bn_momentum=2", "datasets.0.share=-1", "datasets.0.resize=[0,10]",
                "datasets.0.augment.scale=[2,1]", "datasets.0.augment.brightness=.nan", "loss.lambda_default=-1",
                "loss.lambdas={1: .inf}", "datasets.0.max_samples=0"]


@pytest.mark.parametrize("assignment", CONFIG_CASES)
def test_train_config_numbers_are_checked_where_they_enter(tmp_path: Path, assignment: str) -> None:
    key = assignment.split("=")[0]
    line = refused(["train", "cpu-tiny", "--out", tmp_path / "run", "--set", assignment, "--no-progress"], tmp_path,
                   "invalid training config", key.rsplit(".", 1)[0])
    assert "cpu-tiny.yaml" in line


def test_binary_and_folder_configs(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    refused(["train", tmp_path / "c.yaml", "--out", tmp_path / "r"], tmp_path, "c.yaml", "not a text file")
    (tmp_path / "d.yaml").mkdir()
    refused(["train", tmp_path / "d.yaml", "--out", tmp_path / "r"], tmp_path, "d.yaml", "folder")


def test_predict_device_banana(tmp_path: Path) -> None:
    png(tmp_path / "img.png", np.zeros((8, 8, 3), np.uint8))
    refused(["predict", tmp_path / "ck.pt", tmp_path / "img.png", "-o", tmp_path / "o", "--device", "banana"],
            tmp_path, "--device", "banana")



def test_predict_hand_made_checkpoints(tmp_path: Path) -> None:
    """Torch files that load but are no checkpoint of `labeltree train` (predict, calibrate, evaluate
    --checkpoint, place and audit read them through load_predictor): a KeyError traceback before; and a
    random file's message advised loading it with weights_only=False."""
    import torch

    from labeltree.train.checkpoint import FORMAT

    png(tmp_path / "img.png", np.zeros((8, 8, 3), np.uint8))
    cfg = {"datasets": [{"name": "cityscapes", "root": "x"}],
           "model": {"backbone": "tiny", "width": 8, "bottleneck": 8, "tiny_channels": [8, 8, 8, 8]}}
    cases = {"no config": ({"format": FORMAT}, "no training config"),
             "bad config": ({"format": FORMAT, "config": {"model": "x"}}, "the checkpoint's config"),
             "no weights": ({"format": FORMAT, "config": cfg}, "no state dict of tensors"),
             "short weights": ({"format": FORMAT, "config": cfg, "model": {"a": torch.zeros(1)}}, "do not fit")}
    for name, (state, needle) in cases.items():
        torch.save(state, tmp_path / f"{name}.pt")
        refused(["predict", tmp_path / f"{name}.pt", tmp_path / "img.png", "-o", tmp_path / "o"], tmp_path,
                f"{name}.pt", needle)
    (tmp_path / "rand.pt").write_bytes(bytes(range(256)) * 8)
    line = refused(["predict", tmp_path / "rand.pt", tmp_path / "img.png", "-o", tmp_path / "o"], tmp_path,
                   "rand.pt", "damaged or no torch checkpoint")
    assert "weights_only" not in line

def test_serve_on_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        refused(["annotate-extended", "serve", tmp_path / "w", "--port", str(port)], tmp_path, f"127.0.0.1:{port}",
                "--port")


@pytest.fixture(scope="module")
def raw_counts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("raw")
    root = cs_root(tmp / "cs")
    res = invoke(["stats", "cityscapes", root, "--quiet", "--no-cache", "--workers", "1", "--raw", tmp / "r.json"])
    assert res.exit_code == 0, res.output
    return json.loads((tmp / "r.json").read_text())


RAW_CASES = {"pixels 10^30": ("counts", "pixels", 10**30), "pixels negative": ("counts", "pixels", -3),
             "pixels fractional": ("counts", "pixels", 2.5), "pixels text": ("counts", "pixels", "many"),
             "images 10^30": ("images", None, 10**30), "lut_size 10^30": ("lut_size", None, 10**30),
             "samples -1": ("samples", None, -1), "shard 3 of 2": ("shard", None, [3, 2]),
             "shard of 10^30": ("shard", None, [1, 10**30]),
             "index beyond lut": ("counts", "index", 10**6), "pixels true": ("counts", "pixels", True)}


@pytest.mark.parametrize("name", list(RAW_CASES))
def test_stats_merge_refuses_impossible_counts(tmp_path: Path, raw_counts: dict, name: str) -> None:
    d = json.loads(json.dumps(raw_counts))
    key, sub, value = RAW_CASES[name]
    g = d["groups"][0]
    if key == "counts":
        arr = next(iter(g["counts"]))
        if sub == "index":
            g["counts"][arr][str(value)] = 1
        else:
            g["counts"][arr][next(iter(g["counts"][arr]))] = value
    else:
        g[key] = value
    part = tmp_path / "part.json"
    part.write_text(json.dumps(d))
    refused(["stats-merge", part, "--quiet"], tmp_path, "part.json")


def test_stats_merge_accepts_the_unchanged_counts(tmp_path: Path, raw_counts: dict) -> None:
    (tmp_path / "part.json").write_text(json.dumps(raw_counts))
    res = invoke(["stats-merge", tmp_path / "part.json", "--quiet", "-o", tmp_path / "rows.json"])
    assert res.exit_code == 0, res.output
    road = [r for r in json.loads((tmp_path / "rows.json").read_text()) if r["class_id"] == 7]
    assert road[0]["pixels"] == 128


# -- hypothesis: any float / int in the config --------------------------------------------------------------

BASE = {"datasets": [{"name": "cityscapes", "root": "cs"}]}


@settings(max_examples=80, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**30, 10**30))
def test_any_lr_is_accepted_only_when_finite_positive_and_sane(lr: float) -> None:
    ok = isinstance(lr, float | int) and math.isfinite(lr) and 0 < lr <= 100
    try:
        cfg = config_from_dict({**BASE, "optim": {"lr": lr}})
    except LabeltreeError as e:
        assert not ok and "optim.lr" in str(e)
    else:
        assert ok and cfg.optim.lr == lr


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["checkpoint_every", "workers", "steps", "log_every", "eval_every"]),
       st.integers(-10**30, 10**30) | st.floats(allow_nan=True, allow_infinity=True))
def test_any_train_count_is_a_whole_number_in_range(key: str, value: float) -> None:
    lo = {"checkpoint_every": 1, "log_every": 1}.get(key, 0)
    hi = {"workers": 256}.get(key, 10**9)
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    ok = whole and lo <= value <= hi
    try:
        cfg = config_from_dict({**BASE, "train": {key: value}})
    except LabeltreeError as e:
        assert not ok and f"train.{key}" in str(e)
    else:
        assert ok and getattr(cfg.train, key) == value


def test_a_bundled_config_still_loads() -> None:
    assert load_config("cpu-tiny").optim.lr > 0


# -- annotate-extended import and the server ------------------------------------------------------------------

@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from labeltree.annotate.propose import propose

    tmp = tmp_path_factory.mktemp("ann")
    lab = np.full((30, 40), 7, np.uint8)
    lab[5:15, 5:15] = 20  # one traffic sign
    root = cs_root(tmp / "cs", split="val", city="frankfurt", key="frankfurt_000000_000019")
    png(root / "gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelIds.png", lab)
    png(root / "leftImg8bit/val/frankfurt/frankfurt_000000_000019_leftImg8bit.png", np.zeros((30, 40, 3), np.uint8))
    propose(root, tmp / "work", min_size=2, workers=1, progress=False)
    return tmp / "work"


IMPORT_CASES = {
    "binary": (b"\x00\xff\xfe\x89PNG garbage", "not a text CSV"),
    "NUL in text": (b"image,component,class\nfrankfurt_000000_000019,1,14\x00\n", "NUL"),
    "row without class column": (b"image,component,class\nfrankfurt_000000_000019,1\n", "2 fields"),
    "row with an extra column": (b"image,component,class\nfrankfurt_000000_000019,1,14,9\n", "4 fields"),
    "unicode digit component": ("image,component,class\nfrankfurt_000000_000019,\u00b2,14\n".encode(), "component"),
    "component 10^30": (b"image,component,class\nfrankfurt_000000_000019,1000000000000000000000000000000,14\n",
                        "no proposal"),
    "no header": (b"", "header"),
}


@pytest.mark.parametrize("name", list(IMPORT_CASES))
def test_import_refuses_hostile_csv(tmp_path: Path, workdir: Path, name: str) -> None:
    data, words = IMPORT_CASES[name]
    (tmp_path / "in.csv").write_bytes(data)
    before = (workdir / "annotations.sqlite").read_bytes()
    refused(["annotate-extended", "import", workdir, tmp_path / "in.csv"], tmp_path, "in.csv", words)
    assert (workdir / "annotations.sqlite").read_bytes() == before


_cell = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.one_of(_cell, st.sampled_from(["frankfurt_000000_000019", "1", "14", "other", ""])),
                         max_size=5), max_size=4))
def test_any_csv_rows_import_or_fail_with_one_line(tmp_path: Path, workdir: Path, table: list[list[str]]) -> None:
    import csv

    from labeltree.annotate import db
    from labeltree.annotate.export import import_labels

    f = tmp_path / "h.csv"
    with open(f, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["image", "component", "class"], *table])
    con = db.connect(workdir)
    before = con.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
    con.close()
    try:
        import_labels(workdir, f)
    except LabeltreeError as e:
        assert "\n" not in str(e) and str(f) in str(e)
        con = db.connect(workdir)
        assert con.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == before  # nothing half-imported
        con.close()


def test_server_answers_4xx_to_ids_beyond_sqlite(workdir: Path) -> None:
    from starlette.testclient import TestClient

    from labeltree.annotate.server import create_app

    big = str(2**63)
    with TestClient(create_app(workdir)) as c:
        for url in (f"/api/proposal/{big}", f"/api/proposal/{big}/frame.jpg", f"/api/proposal/{big}/crop.png",
                    "/api/proposal/99999999999999999999999"):
            assert c.get(url).status_code == 404, url
        r = c.post("/api/decide", json={"client": "abcdefgh", "proposal": 2**64, "class": "14"})
        assert 400 <= r.status_code < 500
        r = c.post("/api/next", json={"client": "abcdefgh", "after": 2**70})
        assert 400 <= r.status_code < 500


def test_worker_errors_surface_as_their_one_line() -> None:
    from torch.utils.data import DataLoader, Dataset

    from labeltree.train.data import batches

    class Bad(Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int):
            raise LabeltreeError("cannot decode image: the file is truncated", f"/data/{i}.png")

    with pytest.raises(LabeltreeError) as e:
        list(batches(DataLoader(Bad(), num_workers=1)))
    assert str(e.value) == "/data/0.png: cannot decode image: the file is truncated"


def test_snapshot_sees_changes(tmp_path: Path) -> None:  # the helper every case relies on can fail
    (tmp_path / "a").write_bytes(b"1")
    s = snapshot(tmp_path)
    (tmp_path / "a").write_bytes(b"2")
    assert snapshot(tmp_path) != s


def test_annotate_exports_replace_earlier_outputs_only_with_force(tmp_path: Path, workdir: Path) -> None:
    out = tmp_path / "ext"
    assert invoke(["annotate-extended", "export", workdir, out, "--workers", "1", "--images", "none"]).exit_code == 0
    label = out / "gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelIds.png"
    assert decode_array(label)[10, 10] == 20  # undecided sign keeps its Cityscapes id
    refused(["annotate-extended", "export", workdir, out, "--workers", "1", "--images", "none"], tmp_path,
            "earlier export", "--force")
    assert invoke(["annotate-extended", "export", workdir, out, "--workers", "1", "--images", "none",
                   "--force"]).exit_code == 0
    (tmp_path / "signs.csv").write_text("mine\n")
    refused(["annotate-extended", "export-labels", workdir, tmp_path / "signs.csv"], tmp_path, "signs.csv", "--force")
    assert invoke(["annotate-extended", "export-labels", workdir, tmp_path / "signs.csv", "--force"]).exit_code == 0
    assert (tmp_path / "signs.csv").read_text().startswith("image,component,")
