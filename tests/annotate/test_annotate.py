"""annotate-extended: proposals, the decision database, CSV, export and the HTTP API.

Every dataset here is a tiny Cityscapes tree written by the test itself (8-bit labelIds PNGs), so
each expected count, box and pixel value is known by construction.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from builders import cityscapes_frame
from PIL import Image

from labeltree.annotate import db
from labeltree.annotate.classes import sign_decisions
from labeltree.annotate.export import export_extended, export_labels, import_labels
from labeltree.annotate.propose import propose, sign_components
from labeltree.core.taxonomy import load_taxonomy
from labeltree.datasets.registry import open_dataset
from labeltree.errors import LabeltreeError

SIGN = load_taxonomy("cityscapes").find("traffic sign").id
ROAD = load_taxonomy("cityscapes").find("road").id
SKY = load_taxonomy("cityscapes").find("sky").id
GTSDB = load_taxonomy("gtsdb")
STOP = GTSDB.find("stop").id
GIVE_WAY = GTSDB.find("give way").id


# -- tiny Cityscapes trees --------------------------------------------------------------------------

def write_frame(root: Path, split: str, city: str, seq: int, label: np.ndarray, image: bool = True) -> str:
    rgb = None
    if image:
        rgb = np.zeros((*label.shape, 3), np.uint8)
        rgb[..., 0] = (label.astype(np.int64) * 37) % 256
        rgb[..., 1] = 90
        rgb[..., 2] = np.linspace(40, 200, label.shape[1], dtype=np.uint8)[None, :]
    return cityscapes_frame(root, split, city, seq, label.astype(np.uint8), rgb)


def scene_a() -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Road below, sky above; three signs (two big squares, one 3x3 speck). Boxes inclusive x0,y0,x1,y1."""
    lab = np.full((60, 80), SKY, np.uint8)
    lab[30:] = ROAD
    boxes = [(4, 5, 13, 14), (40, 32, 51, 43), (70, 50, 72, 52)]
    for x0, y0, x1, y1 in boxes:
        lab[y0:y1 + 1, x0:x1 + 1] = SIGN
    return lab, boxes


def scene_grid(n_rows: int = 5, n_cols: int = 8) -> np.ndarray:
    """n_rows x n_cols separate 6x6 signs: many proposals for the concurrency tests."""
    lab = np.full((n_rows * 8 + 2, n_cols * 8 + 2), ROAD, np.uint8)
    for r in range(n_rows):
        for c in range(n_cols):
            lab[2 + 8 * r: 8 + 8 * r, 2 + 8 * c: 8 + 8 * c] = SIGN
    return lab


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "cityscapes"
    lab, _ = scene_a()
    write_frame(root, "val", "frankfurt", 1, lab)
    corner = np.full((40, 40), ROAD, np.uint8)
    corner[5:15, 5:15] = SIGN
    corner[15:25, 15:25] = SIGN  # touches the first square at one corner only
    write_frame(root, "train", "aachen", 2, corner)
    return root


def proposals(workdir: Path) -> list[tuple]:
    con = db.connect(workdir)
    try:
        return [tuple(r) for r in con.execute("SELECT i.key, p.component, p.x0, p.y0, p.x1, p.y1, p.area "
                                              "FROM proposals p JOIN images i ON i.id=p.image_id ORDER BY p.id")]
    finally:
        con.close()


def set_decisions(workdir: Path, decisions: dict[tuple[str, int], str]) -> None:
    con = db.connect(workdir)
    try:
        for (key, comp), cls in decisions.items():
            pid = con.execute("SELECT p.id FROM proposals p JOIN images i ON i.id=p.image_id WHERE i.key=? AND "
                              "p.component=?", (key, comp)).fetchone()[0]
            db.decide(con, pid, cls, db.current_class(con, pid), client="test")
    finally:
        con.close()


# -- components -------------------------------------------------------------------------------------

def test_corner_touching_squares_are_one_component_with_8_and_two_with_4_connectivity():
    lab = np.zeros((30, 30), np.uint8)
    lab[2:8, 2:8] = SIGN
    lab[8:14, 8:14] = SIGN
    c8 = sign_components(lab, SIGN, min_size=1, connectivity=8, rule="connected")
    c4 = sign_components(lab, SIGN, min_size=1, connectivity=4, rule="connected")
    assert len(c8) == 1 and c8.boxes == [(2, 2, 13, 13)] and c8.areas == [72]
    assert len(c4) == 2 and c4.boxes == [(2, 2, 7, 7), (8, 8, 13, 13)] and c4.areas == [36, 36]
    assert np.array_equal(c4.labels[2:8, 2:8], np.ones((6, 6))) and np.all(c4.labels[8:14, 8:14] == 2)
    assert int((c8.labels == 1).sum()) == 72 and c8.labels.dtype == np.uint16


def test_corner_touching_small_squares_authors_rule_drops_both_connected_rule_keeps_one():
    """Two 15x15 squares touching at a corner, min_size 20: the authors' 4-connected size filter drops
    both (each box 15 px); 8-connecting first makes one 30x30 component, kept."""
    lab = np.zeros((40, 40), np.uint8)
    lab[0:15, 0:15] = SIGN
    lab[15:30, 15:30] = SIGN
    authors = sign_components(lab, SIGN, min_size=20)
    assert len(authors) == 0 and authors.n_small == 2 and int(authors.labels.max()) == 0
    connected = sign_components(lab, SIGN, min_size=20, rule="connected")
    assert connected.boxes == [(0, 0, 29, 29)] and connected.areas == [450] and connected.n_small == 0


def test_diagonal_appendix_is_cut_off_by_the_authors_rule_only():
    """A 25x25 sign with a 10-pixel diagonal tail, and a second sign joined to it by a diagonal chain:
    under the authors' rule every tail pixel is its own 1x1 4-connected component (dropped), so the
    sign keeps its own box and the chained sign is separate; 8-connecting first swallows tail and chain."""
    lab = np.zeros((80, 80), np.uint8)
    lab[10:35, 10:35] = SIGN
    for k in range(10):
        lab[35 + k, 35 + k] = SIGN  # tail from the bottom-right corner
    lab[45:70, 45:70] = SIGN  # the tail's last pixel (44, 44) touches this square's corner
    authors = sign_components(lab, SIGN, min_size=20)
    assert authors.boxes == [(10, 10, 34, 34), (45, 45, 69, 69)] and authors.areas == [625, 625]
    assert authors.n_small == 10 and int((authors.labels > 0).sum()) == 1250
    connected = sign_components(lab, SIGN, min_size=20, rule="connected")
    assert connected.boxes == [(10, 10, 69, 69)] and connected.areas == [1260] and connected.n_small == 0
    tail_only = lab.copy()
    tail_only[45:70, 45:70] = 0
    a = sign_components(tail_only, SIGN, min_size=20)
    c = sign_components(tail_only, SIGN, min_size=20, rule="connected")
    assert (a.boxes, a.areas) == ([(10, 10, 34, 34)], [625])
    assert (c.boxes, c.areas) == ([(10, 10, 44, 44)], [635])
    with pytest.raises(ValueError, match="rule must be one of"):
        sign_components(lab, SIGN, rule="4-then-8")


def test_size_filter_is_on_each_side_of_the_box():
    lab = np.zeros((60, 60), np.uint8)
    lab[0:20, 0:20] = SIGN   # 20 x 20: kept at min_size 20
    lab[30:60, 0:19] = SIGN  # 19 wide, 30 high: too narrow
    lab[25:27, 30:60] = SIGN  # 30 wide, 2 high: too flat
    c = sign_components(lab, SIGN, min_size=20)
    assert c.boxes == [(0, 0, 19, 19)] and c.areas == [400] and c.n_small == 2
    assert int((c.labels > 0).sum()) == 400  # the small ones stay out of the map (plain 'traffic sign')
    assert len(sign_components(lab, SIGN, min_size=2)) == 3
    assert len(sign_components(lab, SIGN, min_size=21)) == 0


def test_split_touching_separates_two_discs_but_not_one_sign():
    yy, xx = np.mgrid[:50, :90]
    lab = np.zeros((50, 90), np.uint8)
    lab[((yy - 25) ** 2 + (xx - 25) ** 2 <= 15 ** 2) | ((yy - 25) ** 2 + (xx - 53) ** 2 <= 15 ** 2)] = SIGN
    assert len(sign_components(lab, SIGN, min_size=10)) == 1
    c = sign_components(lab, SIGN, min_size=10, split=True)
    assert len(c) == 2 and c.n_split == 1
    assert c.boxes[0][0] == 10 and c.boxes[1][2] == 68  # left disc starts at x=10, right ends at 68
    assert sum(c.areas) == int((lab == SIGN).sum())  # every pixel goes to one of the two
    rect = np.zeros((40, 90), np.uint8)
    rect[10:30, 5:85] = SIGN  # long rectangle: a ridge, one sign
    one = sign_components(rect, SIGN, min_size=10, split=True)
    assert len(one) == 1 and one.n_split == 0


# -- propose / database ------------------------------------------------------------------------------

def test_propose_stores_proposals_and_rerun_keeps_decisions(tree: Path, tmp_path: Path):
    work = tmp_path / "work"
    r = propose(tree, work, min_size=5, workers=1, progress=False)
    assert (r.images_new, r.proposals_new, r.small) == (2, 3, 1)
    rows = proposals(work)
    assert rows == [("aachen_000002_000019", 1, 5, 5, 24, 24, 200),
                    ("frankfurt_000001_000019", 1, 4, 5, 13, 14, 100),
                    ("frankfurt_000001_000019", 2, 40, 32, 51, 43, 144)]
    con = db.connect(work)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    set_decisions(work, {("frankfurt_000001_000019", 1): str(STOP)})
    lab, _ = scene_a()
    write_frame(tree, "val", "frankfurt", 3, lab)  # a new image arrives
    r2 = propose(tree, work, min_size=5, workers=1, progress=False)
    assert (r2.images_new, r2.images_known, r2.proposals_new) == (1, 2, 2)
    assert proposals(work)[:3] == rows
    con = db.connect(work)
    assert [tuple(x) for x in con.execute("SELECT proposal_id, class FROM decisions")] == [(2, str(STOP))]
    con.close()
    other = tmp_path / "cityscapes-other"
    write_frame(other, "val", "bonn", 1, lab)
    with pytest.raises(LabeltreeError, match="belongs to the Cityscapes root"):
        propose(other, work, progress=False)


def test_propose_refuses_missing_split(tree: Path, tmp_path: Path):
    with pytest.raises(LabeltreeError, match="no Cityscapes split 'test'"):
        propose(tree, tmp_path / "w", splits=["test"], progress=False)


def test_propose_process_pool_gives_the_same_result(tree: Path, tmp_path: Path):
    propose(tree, tmp_path / "a", min_size=5, workers=1, progress=False)
    propose(tree, tmp_path / "b", min_size=5, workers=2, progress=False)
    assert proposals(tmp_path / "a") == proposals(tmp_path / "b")


def test_cli_propose_reports_split_count(tmp_path: Path):
    from click.testing import CliRunner

    from labeltree.cli import main

    yy, xx = np.mgrid[:50, :90]
    lab = np.full((50, 90), ROAD, np.uint8)
    lab[((yy - 25) ** 2 + (xx - 25) ** 2 <= 15 ** 2) | ((yy - 25) ** 2 + (xx - 53) ** 2 <= 15 ** 2)] = SIGN
    write_frame(tmp_path / "cs", "val", "bonn", 1, lab)
    res = CliRunner().invoke(main, ["annotate-extended", "propose", str(tmp_path / "cs"), str(tmp_path / "w"),
                                    "--split-touching", "--min-size", "10", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "2 new proposals" in res.output and "split 1 components" in res.output
    bad_rule = CliRunner().invoke(main, ["annotate-extended", "propose", str(tmp_path / "cs"), str(tmp_path / "w2"),
                                         "--rule", "nine"])
    assert bad_rule.exit_code == 2 and "'nine' is not one of 'authors', 'connected'" in bad_rule.output
    bad = CliRunner().invoke(main, ["annotate-extended", "serve", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "run 'labeltree annotate-extended propose" in bad.output


# -- CSV ---------------------------------------------------------------------------------------------

def test_csv_round_trip_and_import_validation(tree: Path, tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    propose(tree, a, min_size=5, workers=1, progress=False)
    propose(tree, b, min_size=5, workers=1, progress=False)
    set_decisions(a, {("aachen_000002_000019", 1): "not-a-sign", ("frankfurt_000001_000019", 2): str(GIVE_WAY)})
    assert export_labels(a, tmp_path / "a.csv") == 3
    with open(tmp_path / "a.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "component", "x0", "y0", "x1", "y1", "area", "class"]
    assert rows[1:] == [["aachen_000002_000019", "1", "5", "5", "24", "24", "200", "not-a-sign"],
                        ["frankfurt_000001_000019", "1", "4", "5", "13", "14", "100", ""],
                        ["frankfurt_000001_000019", "2", "40", "32", "51", "43", "144", str(GIVE_WAY)]]
    rep = import_labels(b, tmp_path / "a.csv")
    assert (rep.set, rep.changed, rep.unchanged, rep.empty) == (2, 0, 0, 1)
    export_labels(b, tmp_path / "b.csv")
    assert (tmp_path / "b.csv").read_text() == (tmp_path / "a.csv").read_text()
    # a change is reported as such; minimal columns are enough
    (tmp_path / "c.csv").write_text("class,image,component\nother,aachen_000002_000019,1\n"
                                    f"{GIVE_WAY},frankfurt_000001_000019,2\n")
    rep = import_labels(b, tmp_path / "c.csv")
    assert (rep.set, rep.changed, rep.unchanged) == (0, 1, 1)
    assert rep.changes == [("aachen_000002_000019", 1, "not-a-sign", "other")]


@pytest.mark.parametrize("bad,match", [
    ("image,component,class\nfrankfurt_000001_000019,1,14\nfrankfurt_000001_000019,1,43\n", r":3: GTSDB ClassID 43"),
    ("image,component,class\nfrankfurt_000001_000019,1,14\nnope_000000_000000,1,3\n", r":3: no proposal 'nope"),
    ("image,component,class\nfrankfurt_000001_000019,1,14\nfrankfurt_000001_000019,x,3\n", r":3: component must"),
    ("image,component,class\nfrankfurt_000001_000019,1,14\nfrankfurt_000001_000019,1,15\n", r":3: .*line 2"),
    ("image,class\nfrankfurt_000001_000019,14\n", r":1: CSV header lacks component"),
    ("image,component,class\nfrankfurt_000001_000019,1,stopp\n", r":2: class must be"),
])
def test_import_validates_every_row_before_writing(tree: Path, tmp_path: Path, bad: str, match: str):
    work = tmp_path / "w"
    propose(tree, work, min_size=5, workers=1, progress=False)
    (tmp_path / "bad.csv").write_text(bad)
    with pytest.raises(LabeltreeError, match=match):
        import_labels(work, tmp_path / "bad.csv")
    con = db.connect(work)
    assert con.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0  # the good first row was not written
    con.close()


# -- export ------------------------------------------------------------------------------------------

def test_export_values_are_exact_and_readable_as_cityscapes_extended(tree: Path, tmp_path: Path):
    work, out = tmp_path / "w", tmp_path / "extended"
    propose(tree, work, min_size=5, workers=1, progress=False)
    set_decisions(work, {("frankfurt_000001_000019", 1): str(STOP), ("frankfurt_000001_000019", 2): "other",
                         ("aachen_000002_000019", 1): "not-a-sign"})
    rep = export_extended(work, out, workers=1, progress=False, images="symlink")
    assert (rep.images, rep.labelled_components, rep.relabelled_pixels) == (2, 1, 100)
    lab, boxes = scene_a()
    expected = lab.astype(np.uint16)
    x0, y0, x1, y1 = boxes[0]
    expected[y0:y1 + 1, x0:x1 + 1] = GTSDB.stored_value(STOP)
    assert GTSDB.stored_value(STOP) == 2014  # 2000 + ClassID, from the gtsdb taxonomy's encoding
    f = out / "gtFine" / "val" / "frankfurt" / "frankfurt_000001_000019_gtFine_labelIds.png"
    with Image.open(f) as im:
        assert im.mode.startswith("I")  # 16-bit
        got = np.asarray(im)
    assert np.array_equal(got, expected)
    reader = open_dataset("cityscapes-extended", out)
    s = reader.samples("val")[0]
    assert np.array_equal(reader.read_label(s), expected)
    assert s.image is not None and reader.read_image(s).shape == (60, 80, 3)
    corner = reader.read_label(reader.samples("train")[0])
    assert int((corner == SIGN).sum()) == 200 and set(np.unique(corner)) == {ROAD, SIGN}  # not-a-sign keeps the id
    # the source dataset is untouched and cannot be the target
    src = tree / "gtFine/val/frankfurt/frankfurt_000001_000019_gtFine_labelIds.png"
    assert np.array_equal(np.asarray(Image.open(src)), lab)
    for inside in (tree, tree / "gtFine", tree / "extended"):
        with pytest.raises(LabeltreeError, match="inside the Cityscapes root"):
            export_extended(work, inside, workers=1, progress=False)
    assert not (tree / "extended").exists()


def test_export_refuses_a_label_file_changed_since_propose(tree: Path, tmp_path: Path):
    work = tmp_path / "w"
    propose(tree, work, min_size=5, workers=1, progress=False)
    lab, _ = scene_a()
    lab[5:15, 4:14] = ROAD
    write_frame(tree, "val", "frankfurt", 1, lab)
    with pytest.raises(LabeltreeError, match="changed since propose"):
        export_extended(work, tmp_path / "out", workers=1, progress=False)


# -- HTTP API (in-process) ---------------------------------------------------------------------------

@pytest.fixture
def api(tree: Path, tmp_path: Path):
    from starlette.testclient import TestClient

    from labeltree.annotate.server import create_app

    work = tmp_path / "w"
    propose(tree, work, min_size=5, workers=1, progress=False)
    with TestClient(create_app(work)) as client:
        client.workdir = work
        yield client


def test_api_labels_resumes_and_undoes(api):
    info = api.get("/api/info").json()
    keys = [c["key"] for c in info["classes"]]
    assert keys == [str(c.id) for c in GTSDB.classes] + ["other", "not-a-sign"]
    stop = next(c for c in info["classes"] if c["key"] == str(STOP))
    assert stop["shape"] == "octagon" and stop["svg"].startswith("<svg") and "polygon" in stop["svg"]
    assert info["progress"]["splits"] == [{"split": "train", "done": 0, "total": 1},
                                          {"split": "val", "done": 0, "total": 2}]
    p = api.post("/api/next", json={"client": "tab1"}).json()["proposal"]
    assert (p["key"], p["component"], p["bbox"]) == ("aachen_000002_000019", 1, [5, 5, 24, 24])
    frame, crop = api.get(p["frame"]), api.get(p["crop"])
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
    assert crop.status_code == 200 and Image.open(io.BytesIO(crop.content)).size == (320, 320)
    r = api.post("/api/decide", json={"client": "tab1", "proposal": p["id"], "class": STOP, "previous": None})
    assert r.status_code == 200 and r.json()["changed"] and r.json()["progress"]["done"] == 1
    again = api.post("/api/decide", json={"client": "tab1", "proposal": p["id"], "class": str(STOP)})
    assert again.status_code == 200 and not again.json()["changed"]  # idempotent retry
    stale = api.post("/api/decide", json={"client": "tab2", "proposal": p["id"], "class": 3, "previous": None})
    assert stale.status_code == 409 and stale.json()["current"] == str(STOP)
    # a second tab is given another proposal; a reload of the first resumes after the decided one
    q = api.post("/api/next", json={"client": "tab2"}).json()["proposal"]
    q1 = api.post("/api/next", json={"client": "tab1"}).json()["proposal"]
    assert len({p["id"], q["id"], q1["id"]}) == 3
    u = api.post("/api/undo", json={"client": "tab1"}).json()
    assert u["proposal"]["id"] == p["id"] and u["proposal"]["class"] is None and u["progress"]["done"] == 0
    assert api.post("/api/undo", json={"client": "tab1"}).json()["proposal"] is None


@pytest.mark.parametrize("path", ["/static/../annotations.sqlite", "/static/..%2Fdb.py", "/static/%2e%2e/server.py",
                                  "/api/proposal/..%2F..%2Fetc%2Fpasswd/frame.jpg", "/api/proposal/-1/frame.jpg",
                                  "/api/proposal/1/../../../../etc/passwd", "/../../../etc/passwd",
                                  "/api/proposal/999/crop.png"])
def test_path_traversal_is_refused(api, path):
    r = api.get(path)
    assert 400 <= r.status_code < 500
    assert b"root:" not in r.content and b"SQLite format" not in r.content and b"import" not in r.content


def test_database_paths_outside_the_root_are_not_served(api):
    con = db.connect(api.workdir)
    con.execute("UPDATE images SET image='../../../../../../etc/passwd' WHERE key LIKE 'frankfurt%'")
    con.close()
    pid = api.post("/api/next", json={"client": "x", "after": 1}).json()["proposal"]["id"]
    r = api.get(f"/api/proposal/{pid}/frame.jpg")
    assert r.status_code == 403 and b"root:" not in r.content


@pytest.mark.parametrize("body,status", [
    (b"not json", 400),
    (b'{"client": "a", "proposal": 1}', 422),  # class missing
    (b'{"client": "a", "proposal": "1", "class": 3}', 422),  # id as a string
    (b'{"client": "a", "proposal": 1, "class": 43}', 422),  # no such ClassID
    (b'{"client": "a", "proposal": 1, "class": true}', 422),
    (b'{"client": "a", "proposal": 1, "class": "stop"}', 422),
    (b'{"client": "a", "proposal": 1, "class": 3, "previous": 99}', 422),
    (b'{"client": "a", "proposal": 1, "class": 3, "admin": 1}', 422),  # unknown field
    (b'{"client": "a b/../", "proposal": 1, "class": 3}', 422),
    (b'{"client": "a", "proposal": 0, "class": 3}', 422),
    (b'{"client": "a", "proposal": 12345, "class": 3}', 404),
    (b'[1, 2]', 422),
    (b'{"client": "' + b"a" * 20000 + b'", "proposal": 1, "class": 3}', 413),
])
def test_malformed_requests_get_4xx(api, body, status):
    r = api.post("/api/decide", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    con = db.connect(api.workdir)
    assert con.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0
    con.close()


def test_a_chunked_body_is_cut_off_at_the_limit_while_read():
    """No Content-Length (chunked): the 16 KB limit holds while the body streams in, so a 64 MB body is
    refused after its first chunk instead of being held in memory whole."""
    import asyncio

    from starlette.exceptions import HTTPException
    from starlette.requests import Request

    from labeltree.annotate.server import DecideReq, _body

    received = []

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": b"x" * 65536, "more_body": len(received) < 1024}

    scope = {"type": "http", "method": "POST", "path": "/api/decide", "headers": [(b"content-type",
                                                                                  b"application/json")]}
    with pytest.raises(HTTPException) as e:
        asyncio.run(_body(Request(scope, receive), DecideReq))
    assert e.value.status_code == 413
    assert len(received) == 1  # 64 KiB read, not 64 MiB


def test_non_json_posts_and_wrong_methods_are_refused(api):
    assert api.post("/api/decide", data={"client": "a", "proposal": 1, "class": 3}).status_code == 415
    assert api.get("/api/decide").status_code == 405
    assert api.post("/api/next", json={"client": "a", "after": -1}).status_code == 422


def test_loopback_server_refuses_foreign_host_headers(tree: Path, tmp_path: Path):
    from starlette.testclient import TestClient

    from labeltree.annotate.server import LOOPBACK_HOSTS, create_app

    propose(tree, tmp_path / "w", min_size=5, workers=1, progress=False)
    client = TestClient(create_app(tmp_path / "w", allowed_hosts=LOOPBACK_HOSTS), base_url="http://127.0.0.1:8765")
    assert client.get("/api/progress").status_code == 200
    assert client.get("/api/progress", headers={"Host": "evil.example"}).status_code == 400


# -- a real server process ---------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server_process(workdir: Path, *options: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`labeltree annotate-extended serve` (with `options`) as a child process; yields it and its base URL."""
    import httpx2

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "labeltree", "annotate-extended", "serve", str(workdir),
                             "--port", str(port), *options], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a loaded CI machine: --gtsdb crops its examples before it binds
        while True:
            try:
                if httpx2.get(url + "/api/progress", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:  # still starting: stop it, or reading its stderr would wait forever
                    proc.kill()
                    proc.wait()
                raise RuntimeError(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def grid_work(tmp_path: Path) -> Path:
    root = tmp_path / "cs"
    write_frame(root, "val", "bonn", 1, scene_grid())
    work = tmp_path / "w"
    propose(root, work, min_size=3, workers=1, progress=False)
    return work


def test_two_clients_at_once_lose_and_double_nothing(grid_work: Path):
    import httpx2

    total = 40
    done: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[str] = []

    def annotator(name: str, url: str) -> None:
        with httpx2.Client(base_url=url, timeout=30) as c:
            after = 0
            for _ in range(total + 5):
                p = c.post("/api/next", json={"client": name, "after": after}).json()["proposal"]
                if p is None:
                    return
                cls = str(p["id"] % 43)
                r = c.post("/api/decide", json={"client": name, "proposal": p["id"], "class": cls, "previous": None})
                if r.status_code != 200 or not r.json()["changed"]:
                    errors.append(f"{name}: {r.status_code} {r.text}")
                    return
                done[name].append(p["id"])
                after = p["id"]

    with server_process(grid_work) as (_proc, url):
        threads = [threading.Thread(target=annotator, args=(n, url)) for n in done]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        # both race for the SAME proposal too: exactly one wins, the other is told who did
        con = db.connect(grid_work)
        con.execute("DELETE FROM decisions WHERE proposal_id=7")
        con.close()
        barrier = threading.Barrier(4)
        codes: list[int] = []

        def racer(k: int) -> None:
            with httpx2.Client(base_url=url, timeout=30) as c:
                barrier.wait()
                codes.append(c.post("/api/decide", json={"client": f"r{k}", "proposal": 7, "class": k,
                                                          "previous": None}).status_code)

        racers = [threading.Thread(target=racer, args=(k,)) for k in range(4)]
        for t in racers:
            t.start()
        for t in racers:
            t.join(60)
    assert not errors
    assert not set(done["a"]) & set(done["b"]) and len(done["a"]) + len(done["b"]) == total
    assert min(len(done["a"]), len(done["b"])) > 0  # both really worked
    assert sorted(codes) == [200, 409, 409, 409]
    con = db.connect(grid_work)
    rows = {r[0]: r[1] for r in con.execute("SELECT proposal_id, class FROM decisions")}
    hist = con.execute("SELECT proposal_id, COUNT(*) FROM history GROUP BY proposal_id HAVING COUNT(*) > 1").fetchall()
    con.close()
    assert len(rows) == total
    assert all(rows[pid] == str(pid % 43) for pid in rows if pid != 7)
    assert [tuple(h) for h in hist] == [(7, 2)]  # only the re-raced one was written twice (once per round)


def test_kill_9_between_decisions_loses_no_committed_decision(grid_work: Path):
    import httpx2

    acknowledged: dict[int, str] = {}
    with server_process(grid_work) as (proc, url):
        with httpx2.Client(base_url=url, timeout=30) as c:
            after = 0
            for _ in range(12):
                p = c.post("/api/next", json={"client": "k", "after": after}).json()["proposal"]
                cls = str((p["id"] * 7) % 43)
                r = c.post("/api/decide", json={"client": "k", "proposal": p["id"], "class": cls})
                assert r.status_code == 200
                acknowledged[p["id"]] = cls
                after = p["id"]
            # one more decision in flight while the server dies
            p = c.post("/api/next", json={"client": "k", "after": after}).json()["proposal"]

            def in_flight() -> None:
                with contextlib.suppress(httpx2.HTTPError), httpx2.Client(base_url=url, timeout=10) as c2:
                    c2.post("/api/decide", json={"client": "k", "proposal": p["id"], "class": "other"})

            t = threading.Thread(target=in_flight)
            t.start()
            time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            t.join()
    con = db.connect(grid_work)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    saved = {r[0]: r[1] for r in con.execute("SELECT proposal_id, class FROM decisions")}
    con.close()
    assert {k: saved.get(k) for k in acknowledged} == acknowledged
    assert set(saved) - set(acknowledged) <= {p["id"]}
    # a restarted server resumes at the first proposal nobody decided
    with server_process(grid_work) as (_proc, url):
        prog = httpx2.get(url + "/api/progress").json()
        assert prog["done"] == len(saved) and prog["total"] == 40
        undecided = set(range(1, 41)) - set(saved)
        # the tab that was killed mid-decision gets its proposal back; another tab gets the next free one
        again = httpx2.post(url + "/api/next", json={"client": "k"}).json()["proposal"]
        other = httpx2.post(url + "/api/next", json={"client": "k2"}).json()["proposal"]
        assert again["id"] == min(undecided) and other["id"] == min(undecided - {again["id"]})


def test_label_space_comes_from_the_taxonomies():
    space = sign_decisions()
    assert space.sign_id == SIGN
    assert [c.id for c in space.sign_classes] == GTSDB.ids
    ext = load_taxonomy("cityscapes-extended")
    for k in GTSDB.ids:
        assert ext.find(space.stored[k]).name == GTSDB.by_id(k).name
    assert space.export_value(None) == space.export_value("other") == space.export_value("not-a-sign") == SIGN
