"""annotate-extended serve --gtsdb: example pictures of each class, cropped from a GTSDB folder.

The GTSDB folder here is written by the test: two 120x80 noise frames and a gt.txt whose boxes are
chosen so that the expected selection (largest unclipped boxes first) and every crop window are
known by hand.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient
from test_annotate import GIVE_WAY, STOP, scene_a, write_frame

from labeltree.annotate.examples import CACHE_DIR, INDEX, load_examples
from labeltree.annotate.propose import propose
from labeltree.annotate.server import create_app
from labeltree.datasets.base import LabeltreeWarning
from labeltree.synth.writers import write_ppm

pytestmark = pytest.mark.filterwarnings("ignore:.*clipped:labeltree.datasets.base.LabeltreeWarning")
SPEED_30 = 1
W, H = 120, 80
GT = [
    "00000.ppm;10;20;29;39;14",  # line 1: 20x20
    "00000.ppm;60;5;99;44;14",  # line 2: 40x40, the largest
    "00001.ppm;100;30;130;61;14",  # line 3: 32x32 reaching outside the frame: clipped to 20x32 (640 px), last
    "00001.ppm;40;40;69;69;14",  # line 4: 30x30
    "00001.ppm;2;2;9;9;1",  # line 5: 8x8 speed limit 30
]
# (file, gt.txt line, box in the frame, crop window x0, y0, x1, y1 exclusive): half the box each side, >= 8 px
STOP_EXAMPLES = [("00000.ppm", 2, (60, 5, 99, 44), (40, 0, 120, 65)),
                 ("00001.ppm", 4, (40, 40, 69, 69), (25, 25, 85, 80)),
                 ("00000.ppm", 1, (10, 20, 29, 39), (0, 10, 40, 50))]
SPEED_30_EXAMPLE = ("00001.ppm", 5, (2, 2, 9, 9), (0, 0, 18, 18))


def gtsdb_dir(root: Path, lines: list[str] = GT) -> dict[str, np.ndarray]:
    """Two noise frames (every crop position distinct) and gt.txt; returns the frames by file name."""
    rng = np.random.default_rng(20)
    frames = {f"{i:05d}.ppm": rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for i in range(2)}
    root.mkdir(parents=True)
    for name, rgb in frames.items():
        write_ppm(root / name, rgb)
    (root / "gt.txt").write_text("".join(line + "\n" for line in lines))
    return frames


@pytest.fixture
def setup(tmp_path: Path):
    """A proposed WORKDIR, a GTSDB folder and its frames."""
    lab, _ = scene_a()
    write_frame(tmp_path / "cs", "val", "frankfurt", 1, lab)
    work = tmp_path / "work"
    propose(tmp_path / "cs", work, min_size=5, workers=1, progress=False)
    frames = gtsdb_dir(tmp_path / "gtsdb")
    return work, tmp_path / "gtsdb", frames


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_examples_are_the_largest_unclipped_boxes_cropped_exactly(setup):
    work, gtsdb, frames = setup
    with pytest.warns(LabeltreeWarning, match="clipped"):
        ex = load_examples(gtsdb, work, per_class=3)
    assert not ex.reused and ex.n_examples == 4 and ex.folder == work / CACHE_DIR
    assert [(e.frame, e.line, e.box, e.crop) for e in ex.by_class[STOP]] == STOP_EXAMPLES
    assert [(e.frame, e.line, e.box, e.crop) for e in ex.by_class[SPEED_30]] == [SPEED_30_EXAMPLE]
    assert ex.missing() == [k for k in range(43) if k not in (SPEED_30, STOP)]
    assert ex.by_class[STOP][0].box_in_crop == (20, 5, 60, 45) and ex.by_class[STOP][0].size == (80, 65)
    for e in ex.by_class[STOP] + ex.by_class[SPEED_30]:
        x0, y0, x1, y1 = e.crop
        assert np.array_equal(np.asarray(Image.open(ex.folder / e.file)), frames[e.frame][y0:y1, x0:x1])

    # the same pictures through the API, in the same order, exactly the frame's pixels
    with TestClient(create_app(work, gtsdb=gtsdb, examples_per_class=3)) as api:
        listed = api.get("/api/classes").json()
        assert listed["gtsdb"] == str(gtsdb) and listed["per_class"] == 3 and len(listed["classes"]) == 43
        stop = listed["classes"][STOP]
        assert (stop["id"], stop["name"], stop["shape"]) == (STOP, "stop", "octagon")
        assert [u.split("?")[0] for u in stop["examples"]] == [f"/api/examples/{STOP}/{i}.png" for i in range(3)]
        assert listed["classes"][GIVE_WAY]["examples"] == []
        for url, (name, _line, _box, (x0, y0, x1, y1)) in zip(stop["examples"], STOP_EXAMPLES, strict=True):
            r = api.get(url)
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            assert np.array_equal(png(r.content), frames[name][y0:y1, x0:x1])
        info = next(c for c in api.get("/api/info").json()["classes"] if c["key"] == str(STOP))
        assert info["examples"][0]["size"] == [80, 65] and info["examples"][0]["box"] == [20, 5, 60, 45]
        assert info["examples"][0]["frame"] == "00000.ppm"


def test_rerun_reuses_the_cache_and_a_changed_input_recrops(setup):
    work, gtsdb, frames = setup
    first = load_examples(gtsdb, work, per_class=1)
    files = sorted(p.name for p in first.folder.iterdir())
    assert files == ["01-00001-L5.png", "14-00000-L2.png", INDEX]
    stamps = {p.name: p.stat().st_mtime_ns for p in first.folder.iterdir()}
    again = load_examples(gtsdb, work, per_class=1)
    assert again.reused and again.version == first.version and again.by_class == first.by_class
    assert {p.name: p.stat().st_mtime_ns for p in again.folder.iterdir()} == stamps
    # a bigger speed-limit-30 box in gt.txt: re-cropped, the old crop removed, the version changes
    (gtsdb / "gt.txt").write_text("".join(line + "\n" for line in GT[:4] + ["00000.ppm;30;50;49;69;1"]))
    third = load_examples(gtsdb, work, per_class=1)
    assert not third.reused and third.version != first.version
    assert sorted(p.name for p in third.folder.iterdir()) == ["01-00000-L5.png", "14-00000-L2.png", INDEX]
    assert np.array_equal(np.asarray(Image.open(third.folder / "01-00000-L5.png")), frames["00000.ppm"][40:80, 20:60])
    # a frame whose pixels changed: its crops are cut again from the new pixels
    new = frames["00000.ppm"][::-1].copy()
    write_ppm(gtsdb / "00000.ppm", new)
    os.utime(gtsdb / "00000.ppm", ns=(1, 1))
    fourth = load_examples(gtsdb, work, per_class=1)
    assert not fourth.reused
    assert np.array_equal(np.asarray(Image.open(fourth.folder / "14-00000-L2.png")), new[0:65, 40:120])
    # another number per class is another selection
    assert not load_examples(gtsdb, work, per_class=2).reused


def test_without_gtsdb_every_class_lists_no_example(setup):
    work, _gtsdb, _frames = setup
    with TestClient(create_app(work)) as api:
        listed = api.get("/api/classes").json()
        assert listed["gtsdb"] is None and len(listed["classes"]) == 43
        assert all(c["examples"] == [] for c in listed["classes"])
        assert all(c["examples"] == [] for c in api.get("/api/info").json()["classes"])
        assert api.get(f"/api/examples/{STOP}/0.png").status_code == 404
    assert not (work / CACHE_DIR).exists()


@pytest.mark.parametrize("path", [f"/api/examples/{STOP}/3.png", "/api/examples/43/0.png", "/api/examples/-1/0.png",
                                  f"/api/examples/{STOP}/-1.png", "/api/examples/..%2F..%2Fannotations.sqlite",
                                  f"/api/examples/{STOP}/..%2F..%2F..%2Fannotations.sqlite",
                                  f"/api/examples/{STOP}/0.png/../../../annotations.sqlite",
                                  "/api/examples/%2e%2e/%2e%2e/gtsdb-examples/index.json"])
def test_example_urls_name_no_file(setup, path):
    work, gtsdb, _frames = setup
    with TestClient(create_app(work, gtsdb=gtsdb, examples_per_class=3)) as api:
        r = api.get(path)
    assert 400 <= r.status_code < 500
    assert b"SQLite format" not in r.content and b"signature" not in r.content


def test_only_files_inside_the_examples_folder_are_served(setup):
    work, gtsdb, _frames = setup
    ex = load_examples(gtsdb, work, per_class=3)
    target = ex.folder / ex.by_class[STOP][0].file
    # a crop replaced by a link to a file outside the folder (the database) is refused
    target.unlink()
    target.symlink_to(work / "annotations.sqlite")
    app = create_app(work, gtsdb=gtsdb, examples_per_class=3)
    assert app.state.annotation.examples.reused
    with TestClient(app) as api:
        r = api.get(f"/api/examples/{STOP}/0.png")
        assert r.status_code == 403 and b"SQLite format" not in r.content
        assert api.get(f"/api/examples/{STOP}/1.png").status_code == 200
    # an index that names a file elsewhere is not trusted: the cache is cut again
    index = ex.folder / INDEX
    index.write_text(index.read_text().replace('"14-00000-L2.png"', '"../annotations.sqlite"'))
    app = create_app(work, gtsdb=gtsdb, examples_per_class=3)
    assert not app.state.annotation.examples.reused
    with TestClient(app) as api:
        r = api.get(f"/api/examples/{STOP}/0.png")
        assert r.status_code == 200 and png(r.content).shape == (65, 80, 3)
    assert not target.is_symlink()


def test_proposal_reports_where_the_sign_lies_in_its_crop(setup):
    work, _gtsdb, _frames = setup
    with TestClient(create_app(work)) as api:
        p = api.post("/api/next", json={"client": "t"}).json()["proposal"]
        # scene_a's first sign: box (4, 5)-(13, 14) in an 80x60 frame; 8 px context -> window (0, 0)-(22, 23)
        assert p["bbox"] == [4, 5, 13, 14]
        assert p["crop_size"] == [306, 320]
        assert p["crop_box"] == [55.64, 69.57, 194.73, 208.7]
        crop = png(api.get(p["crop"]).content)
        magenta = np.all(crop == (255, 0, 255), axis=-1)
        cols, rows = np.flatnonzero(magenta.any(0)), np.flatnonzero(magenta.any(1))
        assert abs(cols[0] - p["crop_box"][0]) <= 1 and abs(cols[-1] + 1 - p["crop_box"][2]) <= 1
        assert abs(rows[0] - p["crop_box"][1]) <= 1 and abs(rows[-1] + 1 - p["crop_box"][3]) <= 1


@pytest.mark.parametrize("case", ["no gt.txt", "no folder", "no frames", "bad line"])
def test_bad_gtsdb_folder_is_one_clear_error(setup, tmp_path: Path, case: str):
    from click.testing import CliRunner

    from labeltree.cli import main

    work, gtsdb, _frames = setup
    if case == "no gt.txt":
        (gtsdb / "gt.txt").unlink()
        want = f"no gt.txt (searched {(gtsdb / 'gt.txt').resolve()})"
    elif case == "no folder":
        gtsdb = tmp_path / "elsewhere"
        want = f"no such folder (searched {gtsdb.resolve()})"
    elif case == "no frames":
        for p in gtsdb.glob("*.ppm"):
            p.unlink()
        want = "no frames NNNNN.ppm"
    else:
        (gtsdb / "gt.txt").write_text("00000.ppm;1;2;3\n")
        want = "gt.txt:1: malformed line"
    res = CliRunner().invoke(main, ["annotate-extended", "serve", str(work), "--gtsdb", str(gtsdb), "--port", "1"])
    assert res.exit_code == 2, res.output
    assert res.stderr.count("\n") == 1 and want in res.stderr and "Traceback" not in res.output
    assert not (work / CACHE_DIR / INDEX).exists()
    bad = CliRunner().invoke(main, ["annotate-extended", "serve", str(work), "--examples", "0"])
    assert bad.exit_code == 2 and "--examples" in bad.stderr
