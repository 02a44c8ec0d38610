"""Robustness, issue 29: convert's paths (split names, outputs inside OUT, never onto an input), adopting
an existing OUT, one writer per output (locks), split lists that parse back, files that are no regular
file or absurdly large, size options, and the smaller items. Every refusal goes through the CLI: exit 2,
one line naming the file or option, no traceback, every pre-existing file byte-identical."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hostile import CS_KEY, cs_root, invoke, png, refused

from labeltree.datasets.split_list import read_split_list
from labeltree.fsutil import hold_output, lock_path, release_outputs

CONV = ["--quiet", "--workers", "1"]


def _overrides(t: Path) -> Path:
    p = t / "over.yaml"
    p.write_text("road: ignore\n")
    return p


def _earlier_output(t: Path) -> Path:
    """OUT written by a convert to cityscapes:trainids (its manifest), for a rerun with another target."""
    res = invoke(["convert", "cityscapes", cs_root(t / "cs"), t / "o", "--to", "cityscapes:trainids"] + CONV)
    assert res.exit_code == 0, res.output
    return t / "o"


def _users_folder(t: Path) -> Path:
    (t / "o").mkdir()
    (t / "o/train.txt").write_text("my own list\n")
    return t / "o"


# each case: (the command, built in tmp path t) and the words its one error line must hold
CONVERT_PATHS: dict[str, tuple[Callable[[Path], list], tuple[str, ...]]] = {
    "absolute split (the dataset's own folder)": (
        lambda t: ["convert", "cityscapes", cs_root(t / "cs"), t / "o", "--to", "cityscapes:trainids", "--split",
                   t / "cs/gtFine/train"] + CONV, ("--split", "not a path")),
    "split ../": (lambda t: ["convert", "cityscapes", cs_root(t / "cs"), t / "o", "--to", "cityscapes:trainids",
                             "--split", "../train"] + CONV, ("--split", "not a path")),
    "split ..": (lambda t: ["convert", "cityscapes", cs_root(t / "cs"), t / "o", "--to", "tree", "--split", ".."]
                 + CONV, ("--split",)),
    "split with a slash": (lambda t: ["convert", "cityscapes", cs_root(t / "cs"), t / "o", "--to", "tree",
                                      "--split", "train/aachen"] + CONV, ("--split",)),
    "split with a newline": (lambda t: ["convert", "cityscapes", cs_root(t / "cs"), t / "o", "--to", "tree",
                                        "--split", "train\nval"] + CONV, ("--split",)),
    "split empty": (lambda t: ["convert", "cityscapes", cs_root(t / "cs"), t / "o", "--to", "tree", "--split", ""]
                    + CONV, ("--split",)),
    "--report is the overrides file": (
        lambda t: ["convert", "cityscapes", cs_root(t / "cs"), t / "o", "--to", "cityscapes:trainids",
                   "--overrides", _overrides(t), "--report", t / "over.yaml", "--force"] + CONV,
        ("--report", "input")),
    "--report is the tree file": (
        lambda t: ["convert", "cityscapes", cs_root(t / "cs"), t / "o", "--to", "cityscapes:trainids",
                   "--hierarchy", _tree_copy(t), "--report", t / "tree.yaml", "--force"] + CONV,
        ("--report", "input")),
    "OUT is a user's folder": (lambda t: ["convert", "cityscapes", cs_root(t / "cs"), _users_folder(t), "--to",
                                          "cityscapes:trainids"] + CONV, ("OUT", "--force")),
    "OUT is another conversion": (lambda t: ["convert", "cityscapes", cs_root(t / "cs2"), _earlier_output(t),
                                             "--to", "tree"] + CONV, ("another conversion", "--force")),
    "gtsdb-masks OUT_DIR is the GTSDB folder": (lambda t: ["gtsdb-masks", _gtsdb(t), t / "g", "--quiet", "--force"],
                                                ("OUT_DIR", "outside the GTSDB folder")),
    "gtsdb-masks OUT_DIR inside the GTSDB folder": (lambda t: ["gtsdb-masks", _gtsdb(t), t / "g/masks", "--quiet"],
                                                    ("OUT_DIR", "outside the GTSDB folder")),
    "split in stats": (lambda t: ["stats", "cityscapes", cs_root(t / "cs"), "--split", "/etc", "--quiet",
                                  "--no-cache", "--workers", "1"], ("--split",)),
    "split in evaluate": (lambda t: ["evaluate", "cityscapes", cs_root(t / "cs"), t / "cs", "--split", "../x"],
                          ("--split",)),
}


def _tree_copy(t: Path) -> Path:
    from labeltree.core.tree_file import bundled_hierarchies

    src = bundled_hierarchies()["cityscapes+vistas+gtsdb"]
    (t / "tree.yaml").write_bytes(Path(src).read_bytes())
    return t / "tree.yaml"


@pytest.mark.parametrize("case", list(CONVERT_PATHS))
def test_convert_paths_refused(tmp_path: Path, case: str) -> None:
    build, needles = CONVERT_PATHS[case]
    args = build(tmp_path)
    refused(args, tmp_path, *needles)


def test_convert_adopts_its_own_output_and_an_empty_folder(tmp_path: Path) -> None:
    out = _earlier_output(tmp_path)
    res = invoke(["convert", "cityscapes", tmp_path / "cs", out, "--to", "cityscapes:trainids"] + CONV)
    assert res.exit_code == 0, res.output
    assert "0 labels written, 1 kept" in res.stderr
    (tmp_path / "empty").mkdir()
    res = invoke(["convert", "cityscapes", tmp_path / "cs", tmp_path / "empty", "--to", "tree"] + CONV)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "empty/labeltree-convert.json").is_file()
    assert not list(tmp_path.glob(".*.lock")), "the lock is removed when the command ends"


def test_second_writer_on_one_output_is_refused(tmp_path: Path) -> None:
    """A lock held by another live process refuses the command; once that process is gone, its lock file
    (left by kill -9) is taken over."""
    cs_root(tmp_path / "cs")
    for target, args in ((tmp_path / "o", ["convert", "cityscapes", tmp_path / "cs", tmp_path / "o", "--to",
                                           "tree"] + CONV),
                         (tmp_path / "s.json", ["stats", "cityscapes", tmp_path / "cs", "-o", tmp_path / "s.json",
                                                "--quiet", "--no-cache", "--workers", "1"])):
        holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from labeltree.fsutil import "
                                   f"hold_output; hold_output({str(target)!r}, 'x'); print('held', flush=True); "
                                   "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            line = refused(args, tmp_path, "writing this output now", str(holder.pid))
            assert target.name in line
        finally:
            holder.kill()
            holder.wait()
        assert lock_path(target).exists()  # killed: its lock file stays, no process holds it
        res = invoke(args)
        assert res.exit_code == 0, res.output
        assert not lock_path(target).exists()


@pytest.mark.parametrize("command", ["gtsdb-masks", "synth", "merge", "export"])
def test_other_writers_are_refused_while_one_runs(tmp_path: Path, command: str) -> None:
    """Found by the rerun: two gtsdb-masks (or synth, merge -o, export) onto one output both ran."""
    target = tmp_path / ("out.yaml" if command == "merge" else "m.onnx" if command == "export" else "out")
    args = {"gtsdb-masks": ["gtsdb-masks", _gtsdb(tmp_path), target, "--quiet"],
            "synth": ["synth", target, "--images", "1", "--gtsdb-images", "0", "--size", "32x32", "-j", "1"],
            "merge": ["merge", "cityscapes", "vistas", "-o", target],
            "export": ["export", tmp_path / "m.pt", target]}[command]
    holder = subprocess.Popen([sys.executable, "-c", "import time; from labeltree.fsutil import hold_output; "
                               f"hold_output({str(target)!r}, 'x'); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused(args, tmp_path, "writing this output now", str(holder.pid))
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_reentrant_and_released(tmp_path: Path) -> None:
    hold_output(tmp_path / "x.json", "-o")
    hold_output(tmp_path / "x.json", "-o")
    assert lock_path(tmp_path / "x.json").read_text().strip() == str(os.getpid())
    release_outputs()
    assert not lock_path(tmp_path / "x.json").exists()


@pytest.mark.parametrize("root_name", ["my data/cs", "odd 'quote\" $x", "ünï cöde", "tab\there", "a#b\\c"])
def test_split_lists_parse_back(tmp_path: Path, root_name: str) -> None:
    root = cs_root(tmp_path / root_name)
    out = tmp_path / "out dir"
    res = invoke(["convert", "cityscapes", root, out, "--to", "cityscapes:trainids"] + CONV)
    assert res.exit_code == 0, res.output
    line = (out / "train.txt").read_text()
    assert not line.startswith("/"), "paths are relative to the list's folder"
    pairs = read_split_list(out / "train.txt")
    image = root / f"leftImg8bit/train/aachen/{CS_KEY}_leftImg8bit.png"
    label = out / f"gtFine/train/aachen/{CS_KEY}_gtFine_labelTrainIds.png"
    assert [(a.resolve(), b.resolve()) for a, b in pairs] == [(image.resolve(), label.resolve())]
    assert len(shlex.split(line)) == 2


def test_split_list_refuses_a_newline_in_a_name(tmp_path: Path) -> None:
    root = cs_root(tmp_path / "cs", city="aa\nbb", key="aa\nbb_000000_000019")
    refused(["convert", "cityscapes", root, tmp_path / "o", "--to", "cityscapes:trainids"] + CONV, tmp_path,
            "line break")


# -- files that are no regular file, or absurdly large: refused before a byte is read -----------------

@pytest.fixture
def no_hang():
    """A case that hangs fails after 30 s instead of blocking the suite."""
    import signal

    def boom(*_):
        raise TimeoutError("hung: the input was read without a check")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def fifo(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.exists() or p.is_symlink():
        p.unlink()
    os.mkfifo(p)
    return p


def zero_link(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.exists() or p.is_symlink():
        p.unlink()
    p.symlink_to("/dev/zero")
    return p


def sparse(p: Path, size: int = 3 << 30) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as f:
        f.truncate(size)
    return p


CS_LABEL = f"cs/gtFine/train/aachen/{CS_KEY}_gtFine_labelIds.png"
TREE = "tree:\n  root:\n    things: [a, b]\n"


def _gtsdb(t: Path, ppm: Callable[[Path], Path] | None = None, gt: Callable[[Path], Path] | None = None) -> Path:
    root = t / "g"
    root.mkdir()
    frame = root / "00000.ppm"
    frame.write_bytes(b"P6\n16 8\n255\n" + bytes(16 * 8 * 3))
    (root / "gt.txt").write_text("00000.ppm;1;1;5;5;14\n")
    if ppm is not None:
        ppm(frame)
    if gt is not None:
        gt(root / "gt.txt")
    return root


def _tree_including(t: Path, target: Callable[[Path], Path]) -> Path:
    target(t / "inc.yaml")
    (t / "t.yaml").write_text("name: t\nextends: cityscapes+vistas+gtsdb\ninclude: [inc.yaml]\n")
    return t / "t.yaml"


STATS = ["--quiet", "--no-cache", "--workers", "1"]
FILE_CASES: dict[str, tuple[Callable[[Path], list], tuple[str, ...]]] = {
    "label is a FIFO": (lambda t: ["stats", "cityscapes", _cs_with(t, fifo)] + STATS, ("FIFO", "labelIds.png")),
    "label links to /dev/zero": (lambda t: ["stats", "cityscapes", _cs_with(t, zero_link)] + STATS,
                                 ("device", "labelIds.png")),
    "label is a 3 GiB sparse file": (lambda t: ["stats", "cityscapes", _cs_with(t, sparse)] + STATS,
                                     ("MiB", "labelIds.png")),
    "label is a FIFO in convert": (lambda t: ["convert", "cityscapes", _cs_with(t, fifo), t / "o", "--to", "tree"]
                                   + CONV, ("FIFO",)),
    "GTSDB photo is a FIFO": (lambda t: ["stats", "gtsdb", _gtsdb(t, ppm=fifo)] + STATS, ("FIFO", "00000.ppm")),
    "GTSDB photo links to /dev/zero": (lambda t: ["gtsdb-masks", _gtsdb(t, ppm=zero_link), t / "m", "--quiet",
                                                  "--workers", "1"], ("device", "00000.ppm")),
    "gt.txt is a FIFO": (lambda t: ["stats", "gtsdb", _gtsdb(t, gt=fifo)] + STATS, ("FIFO", "gt.txt")),
    "gt.txt is sparse": (lambda t: ["stats", "gtsdb", _gtsdb(t, gt=lambda p: sparse(p, 200 << 20))] + STATS,
                         ("MiB", "gt.txt")),
    "--overrides is a FIFO": (lambda t: ["convert", "cityscapes", cs_root(t / "cs"), t / "o", "--to", "tree",
                                         "--overrides", fifo(t / "over.yaml")] + CONV, ("FIFO", "over.yaml")),
    "--overrides links to /dev/urandom": (
        lambda t: ["convert", "cityscapes", cs_root(t / "cs"), t / "o", "--to", "tree", "--overrides",
                   _link(t / "over.yaml", "/dev/urandom")] + CONV, ("device", "over.yaml")),
    "validate a FIFO": (lambda t: ["validate", fifo(t / "x.yaml")], ("FIFO", "x.yaml")),
    "validate a sparse giant": (lambda t: ["validate", sparse(t / "x.yaml")], ("MiB", "x.yaml")),
    "include: target is a FIFO": (lambda t: ["validate", _tree_including(t, fifo)], ("FIFO", "inc.yaml")),
    "include: target links to /dev/zero": (lambda t: ["validate", _tree_including(t, zero_link)],
                                           ("device", "inc.yaml")),
    "taxonomy path is a FIFO": (lambda t: ["stats", fifo(t / "tax.yaml"), cs_root(t / "cs")] + STATS,
                                ("FIFO", "tax.yaml")),
    "import table from a FIFO": (lambda t: ["import", "table", fifo(t / "t.csv"), "-o", t / "x.yaml"],
                                 ("FIFO", "t.csv")),
    "training config is a FIFO": (lambda t: ["train", fifo(t / "c.yaml"), "--out", t / "run"], ("FIFO", "c.yaml")),
    # found by the rerun campaign
    "predict with an .onnx model that is a FIFO": (lambda t: ["predict", fifo(t / "m.onnx"), cs_root(t / "cs"), "-o",
                                                              t / "out"], ("FIFO", "m.onnx")),
    "evaluate --checkpoint .onnx that is a FIFO": (
        lambda t: ["evaluate", "cityscapes", cs_root(t / "cs", split="val"), "--checkpoint", fifo(t / "m.onnx")],
        ("FIFO", "m.onnx")),
    "stats-merge part is a FIFO": (lambda t: ["stats-merge", fifo(t / "a.json"), "-o", t / "m.json"],
                                   ("FIFO", "a.json")),
    "Vistas config.json is a FIFO": (lambda t: ["stats", "vistas", _vistas_with_fifo_config(t)] + STATS,
                                     ("FIFO", "config.json")),
}


def _vistas_with_fifo_config(t: Path) -> Path:
    png(t / "v/training/labels/a.png", np.zeros((8, 16), np.uint8))
    fifo(t / "v/config.json")
    return t / "v"


def _link(p: Path, to: str) -> Path:
    p.symlink_to(to)
    return p


def _cs_with(t: Path, spoil: Callable[[Path], Path]) -> Path:
    cs_root(t / "cs")
    spoil(t / CS_LABEL)
    return t / "cs"


@pytest.mark.usefixtures("no_hang")
@pytest.mark.parametrize("case", list(FILE_CASES))
def test_files_that_are_no_regular_file_are_refused(tmp_path: Path, case: str) -> None:
    build, needles = FILE_CASES[case]
    args = build(tmp_path)
    refused(args, tmp_path, *needles)


# -- gtsdb-masks --style authors: time bounded by the frame, output byte-identical ------------------------

def _loop_line(out: np.ndarray, x0: int, y0: int, x1: int, y1: int, value: int) -> None:
    """The Bresenham loop authors_masks.draw_line replaced (one step per pixel of the whole line)."""
    h, w = out.shape
    dx, xs = (x1 - x0, 1) if x1 >= x0 else (x0 - x1, -1)
    dy, ys = (y1 - y0, 1) if y1 >= y0 else (y0 - y1, -1)
    x_major = dx > dy
    major, minor = (dx, dy) if x_major else (dy, dx)
    e = 2 * minor - major
    for _ in range(major):
        if 0 <= x0 < w and 0 <= y0 < h:
            out[y0, x0] = value
        if minor and e >= 0:
            if x_major:
                y0 += ys
            else:
                x0 += xs
            e -= 2 * major
        e += 2 * minor
        if x_major:
            x0 += xs
        else:
            y0 += ys


def test_authors_outline_equals_the_pixel_loop() -> None:
    from labeltree.datasets.authors_masks import draw_line

    rng = np.random.default_rng(29)
    for _ in range(4000):
        h, w = (int(v) for v in rng.integers(1, 24, 2))
        r = int(rng.choice([4, 30, 300]))
        x0, y0, x1, y1 = (int(v) for v in rng.integers(-r, r + 1, 4))
        a, b = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
        _loop_line(a, x0, y0, x1, y1, 1)
        draw_line(b, x0, y0, x1, y1, 1)
        assert (a == b).all(), (h, w, x0, y0, x1, y1)


def _boxes(root: Path, scale: int) -> None:
    lines = [f"00000.ppm;{-k * 4 * scale};{-k * 3 * scale};{k * 9 * scale};{k * 7 * scale};{c}"
             for k, c in zip(range(1, 9), (14, 13, 11, 12, 1, 17, 33, 0), strict=True)]
    (root / "gt.txt").write_text("\n".join(lines) + "\n")


def test_authors_masks_of_huge_boxes_are_fast_and_byte_identical(tmp_path: Path, monkeypatch) -> None:
    import time

    from labeltree.datasets import authors_masks

    root = _gtsdb(tmp_path)
    _boxes(root, 10000)  # up to 720000 px off a 16x8 frame
    t = time.perf_counter()
    res = invoke(["gtsdb-masks", root, tmp_path / "m", "--style", "authors", "--quiet", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert time.perf_counter() - t < 10  # the pixel loop walked every pixel of each outline: minutes
    for scale in (1, 30):  # against the pixel loop, on boxes it walks in reasonable time
        _boxes(root, scale)
        outs = []
        for name, line in (("new", authors_masks.draw_line), ("loop", _loop_line)):
            monkeypatch.setattr(authors_masks, "draw_line", line)
            res = invoke(["gtsdb-masks", root, tmp_path / f"{name}{scale}", "--style", "authors", "--quiet",
                          "--workers", "1"])
            assert res.exit_code == 0, res.output
            outs.append((tmp_path / f"{name}{scale}/00000_labelIds.png").read_bytes())
        assert outs[0] == outs[1]


# -- readers: any name the release allows, and one warning with a count for what no key can hold ------------

def _idd_frame(root: Path, seq: str, frame: str) -> None:
    png(root / "gtFine/train" / seq / f"{frame}_gtFine_labellevel3Ids.png", np.zeros((8, 16), np.uint8))
    png(root / "leftImg8bit/train" / seq / f"{frame}_leftImg8bit.png", np.full((8, 16, 3), 90, np.uint8))


def run_cli(args: list) -> subprocess.CompletedProcess:
    """The CLI in a subprocess: its warnings reach stderr as the user sees them."""
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    return subprocess.run([sys.executable, "-m", "labeltree", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_idd_reads_odd_sequence_and_frame_names(tmp_path: Path) -> None:
    root = tmp_path / "idd"
    for seq, frame in (("0", "005506"), ("seq 2", "005507"), ("ünï", "000102"), ("3", "000_102")):
        _idd_frame(root, seq, frame)
    res = run_cli(["stats", "idd", root] + STATS)
    assert res.returncode == 0, res.stderr
    assert "4 files read" in res.stderr
    assert "warning" not in res.stderr


def test_idd_names_what_no_key_can_hold_in_one_warning(tmp_path: Path) -> None:
    root = tmp_path / "idd"
    _idd_frame(root, "0", "005506")
    _idd_frame(root, "a_b", "005507")
    _idd_frame(root, "a_c", "005508")
    res = run_cli(["stats", "idd", root] + STATS)
    assert res.returncode == 0, res.stderr
    assert "1 files read" in res.stderr
    warned = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warned) == 2, res.stderr  # labels, then photos: each one line with its count
    assert "2 file(s) left out" in warned[0] and "a_b/005507" in warned[0]


def test_cityscapes_and_gtsdb_name_what_they_leave_out(tmp_path: Path) -> None:
    root = cs_root(tmp_path / "cs")
    png(root / "gtFine/train/aachen/aachen_1_2_gtFine_labelIds.png", np.zeros((8, 16), np.uint8))
    res = run_cli(["stats", "cityscapes", root] + STATS)
    assert res.returncode == 0, res.stderr
    assert "1 files read" in res.stderr
    assert "1 *_gtFine_labelIds.png file(s) left out" in res.stderr and "aachen_1_2" in res.stderr
    g = _gtsdb(tmp_path)
    (g / "00000 copy.ppm").write_bytes((g / "00000.ppm").read_bytes())
    res = run_cli(["stats", "gtsdb", g] + STATS)
    assert res.returncode == 0, res.stderr
    assert "1 image file(s) left out" in res.stderr and "00000 copy.ppm" in res.stderr


# -- import table: a quoted cell with a line break ----------------------------------------------------------

CSV_CASES = {
    "a name with a quoted line break": ('id,name,color\n0,"ro\nad","1,2,3"\n1,car,"4,5,6"\n', "in.csv:2"),
    "a colour with a quoted line break": ('id,name,color\n0,road,"1,2,\n3"\n', "in.csv:2"),
    "an unterminated quote running to the end": ('id,name,color\n0,road,"1,2,3\n1,car,"4,5,6"\n', "in.csv:2"),
    "a header with a quoted line break": ('id,"na\nme",color\n0,road,"1,2,3"\n', "in.csv:1"),
    "after a comment": ('# classes\nid,name,color\n\n0,road,"1,2,3"\n1,"c\nar","4,5,6"\n', "in.csv:5"),
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_import_table_refuses_a_cell_over_lines(tmp_path: Path, case: str) -> None:
    text, where = CSV_CASES[case]
    (tmp_path / "in.csv").write_text(text)
    line = refused(["import", "table", tmp_path / "in.csv", "-o", tmp_path / "t.yaml"], tmp_path, where)
    assert "line break" in line


def test_import_table_still_reads_quoted_commas_and_comments(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text('# a comment, with "quotes\nid,name,color\n\n0,"road, paved","1,2,3"\n')
    res = invoke(["import", "table", tmp_path / "in.csv", "-o", tmp_path / "t.yaml"])
    assert res.exit_code == 0, res.output
    assert "road, paved" in (tmp_path / "t.yaml").read_text()


# -- size options: upper bounds that protect memory, checked before any work --------------------------------

SIZE_CASES = {
    "export --size 100000x100000": (["export", "m.pt", "m.onnx", "--size", "100000x100000"], "--size"),
    "export --batch 100000": (["export", "m.pt", "m.onnx", "--batch", "100000"], "--batch"),
    "export --batch x --size over the trace budget": (["export", "m.pt", "m.onnx", "--batch", "64", "--size",
                                                       "2048x2048"], "--batch"),
    "demo --steps 10**20": (["demo", "--out", "d", "--steps", str(10**20)], "--steps"),
    "demo --images 10**12": (["demo", "--out", "d", "--images", str(10**12)], "--images"),
    "demo --seed -5": (["demo", "--out", "d", "--seed", "-5"], "--seed"),
    "stats --workers 100000": (["stats", "cityscapes", "cs", "--workers", "100000", "--quiet", "--no-cache"],
                               "--workers 100000"),
    "convert --workers 100000": (["convert", "cityscapes", "cs", "o", "--to", "tree", "--workers", "100000",
                                  "--quiet"], "--workers 100000"),
}


@pytest.mark.parametrize("case", list(SIZE_CASES))
def test_size_options_have_upper_bounds(tmp_path: Path, case: str, monkeypatch) -> None:
    pytest.importorskip("onnx") if case.startswith("export") else None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.pt").write_bytes(b"not read: the option is refused first")
    cs_root(tmp_path / "cs", key="aachen_000001_000019")
    cs_root(tmp_path / "cs")
    args, option = SIZE_CASES[case]
    usage = case.startswith("demo")  # click ranges: its usage error
    refused(args, tmp_path, option, usage=usage)


# -- the stats cache: a full disk mid-run is one warning, the counts stay right --------------------------------

def test_stats_cache_that_fills_the_disk_mid_run(tmp_path: Path, monkeypatch) -> None:
    import sqlite3

    from labeltree.stats import cache

    root = tmp_path / "cs"
    for i in range(300):  # more than one batch of 256 records
        cs_root(root, key=f"aachen_{i:06d}_000019")
    connect = sqlite3.connect

    def small_disk(*a, **k):  # SQLITE_FULL, as on a full disk: the cache may grow by a few pages only
        con = connect(*a, **k)
        con.execute("PRAGMA max_page_count = 8")
        return con

    monkeypatch.setattr(cache.sqlite3, "connect", small_disk)
    with pytest.warns(UserWarning, match="the stats cache cannot be written .*full"):
        res = invoke(["stats", "cityscapes", root, "--quiet", "--workers", "1", "--cache-dir", tmp_path / "c",
                      "-o", tmp_path / "s.json"])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output and "300 files read" in res.stderr
    monkeypatch.setattr(cache.sqlite3, "connect", connect)
    res2 = invoke(["stats", "cityscapes", root, "--quiet", "--workers", "1", "--no-cache", "-o", tmp_path / "t.json"])
    assert res2.exit_code == 0
    assert (tmp_path / "s.json").read_text() == (tmp_path / "t.json").read_text()


# -- exit codes --------------------------------------------------------------------------------------------

def test_stats_skip_bad_with_every_file_bad_is_exit_2(tmp_path: Path) -> None:
    """Was exit 0 with a table of zeros written to -o: a run that counted nothing is no success."""
    root = cs_root(tmp_path / "cs", label=b"garbage")
    refused(["stats", "cityscapes", root, "--skip-bad", "-o", tmp_path / "s.json"] + STATS, tmp_path,
            "none of the 1 label file(s) could be read", "labelIds.png")


def test_a_data_warning_made_an_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Was a traceback and exit 1 under `python -W error` / PYTHONWARNINGS=error (as CI runs often set)."""
    root = cs_root(tmp_path / "cs")
    (root / "leftImg8bit/train/aachen" / f"{CS_KEY}_leftImg8bit.png").unlink()  # a label without its photo
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    res = subprocess.run([sys.executable, "-m", "labeltree", "stats", "cityscapes", str(root), *STATS],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "without their photo" in lines[0], res.stderr


def test_convert_a_split_named_twice_is_converted_once(tmp_path: Path) -> None:
    """Was exit 2, 'two samples would be written to the same output file'."""
    root = cs_root(tmp_path / "cs")
    res = invoke(["convert", "cityscapes", root, tmp_path / "o", "--to", "tree", "--split", "train", "--split",
                  "train"] + CONV)
    assert res.exit_code == 0, res.output
    assert "1 labels written" in res.stderr


def test_idd_to_idd_keeps_odd_names_and_lists_parse_back(tmp_path: Path) -> None:
    """Found by the rerun: an IDD frame named 000_102 (or a sequence 'seq 2') was renamed in an IDD target
    (seq2/000102), so 'seq 2' and 'seq2' would collide; the names are now kept."""
    root = tmp_path / "idd"
    for seq, frame in (("seq 2", "000_102"), ("seq2", "000102"), ("ünï", "005506")):
        _idd_frame(root, seq, frame)
    res = invoke(["convert", "idd", root, tmp_path / "o", "--to", "idd:trainids"] + CONV)
    assert res.exit_code == 0, res.output
    written = sorted(str(p.relative_to(tmp_path / "o/gtFine/train")) for p in (tmp_path / "o").rglob("*.png"))
    assert written == ["seq 2/000_102_gtFine_labelTrainIds.png", "seq2/000102_gtFine_labelTrainIds.png",
                       "ünï/005506_gtFine_labelTrainIds.png"]
    pairs = read_split_list(tmp_path / "o/train.txt")
    assert all(a.exists() and b.exists() for a, b in pairs) and len(pairs) == 3


# -- found by the third rerun (newest commands): checked before the model or any file is read ----------------

def _two_images_one_stem(t: Path) -> list[Path]:
    for sub in ("a", "b"):
        png(t / "img" / sub / "x.png", np.full((8, 16, 3), 90, np.uint8))
    return [t / "img/a", t / "img/b"]


def _junk_checkpoint(t: Path) -> Path:
    (t / "m.pt").write_bytes(b"not read: the command is refused first")
    return t / "m.pt"


def _config(t: Path) -> Path:
    (t / "c.yaml").write_text(CONFIG_TEXT)
    return t / "c.yaml"


def _proposed(t: Path, rule: str) -> Path:
    """A WORKDIR of an earlier propose with --rule `rule`."""
    res = invoke(["annotate-extended", "propose", cs_root(t / "cs"), t / "work", "--rule", rule, "--workers", "1"])
    assert res.exit_code == 0, res.output
    return t / "work"


def _extending(t: Path) -> Path:
    """top.yaml: `extends: ./tree.yaml` (a copy of the bundled tree): tree.yaml is read, so it is an input."""
    _tree_copy(t)
    (t / "top.yaml").write_text("name: top\nextends: ./tree.yaml\n")
    return t / "top.yaml"


def _including(t: Path) -> Path:
    (t / "inc.yaml").write_text("name: inc\nextends: cityscapes+vistas+gtsdb\n")
    (t / "top2.yaml").write_text("name: top2\nextends: cityscapes+vistas+gtsdb\ninclude: [inc.yaml]\n")
    return t / "top2.yaml"


CONFIG_TEXT = "datasets:\n  - {name: cityscapes, root: cs}\n"
RC = ["evaluate", "cityscapes", "cs", "--checkpoint", "m.pt", "--risk-coverage", "rc"]
RERUN3: dict[str, tuple[Callable[[Path], list], tuple[str, ...]]] = {
    "predict: two images of one name (a/x.png, b/x.png) into one -o": (
        lambda t: ["predict", _junk_checkpoint(t), *_two_images_one_stem(t), "-o", t / "out"],
        ("x.png", "separate -o")),
    "calibrate --plot is the training config (--force)": (
        lambda t: ["calibrate", _junk_checkpoint(t), _config(t), "-o", t / "c.pt", "--plot", t / "c.yaml", "--force"],
        ("--plot", "input", "c.yaml")),
    "calibrate --plot inside --data-root (--force)": (
        lambda t: ["calibrate", _junk_checkpoint(t), _config(t), "--data-root", cs_root(t / "cs").parent, "-o",
                   t / "c.pt", "--plot", t / CS_LABEL, "--force"], ("--plot", "inside the input folder")),
    "evaluate --risk-coverage with --min-confidence": (lambda _t: RC + ["--min-confidence", "0.5"],
                                                       ("--risk-coverage", "--min-confidence")),
    "evaluate --risk-coverage with -o": (lambda _t: RC + ["-o", "e.json"], ("--risk-coverage", "-o")),
    "evaluate --risk-coverage with --sliding-window": (lambda _t: RC + ["--sliding-window"], ("--sliding-window",)),
    "evaluate --risk-coverage with --eval-size": (lambda _t: RC + ["--eval-size", "paper"], ("--eval-size",)),
    "evaluate --risk-coverage with --format json": (lambda _t: RC + ["--format", "json"], ("--format json",)),
    "evaluate --risk-coverage ''": (lambda _t: RC[:-1] + [""], ("--risk-coverage", "prefix")),
    "evaluate --eval-size 100000x100000": (lambda _t: ["evaluate", "cityscapes", "cs", "p", "--eval-size",
                                                      "100000x100000"], ("--eval-size", "8192")),
    "place --report onto a label inside ROOT (--force)": (
        lambda t: ["place", "idd", cs_root(t / "cs"), "-o", t / "e.yaml", "--report", t / CS_LABEL, "--force"],
        ("--report", "inside the input folder")),
    "audit --report onto a label inside --base-root (--force)": (
        lambda t: ["audit", "idd", t, "--tree", "cityscapes+vistas+gtsdb+idd", "--base-root", cs_root(t / "cs").parent,
                   "--report", t / CS_LABEL, "--force"], ("--report", "inside the input folder")),
    "place --base-root that holds none of the tree's datasets": (
        lambda t: ["place", "idd", t, "-o", t / "e.yaml", "--base-root", t / "nowhere"], ("--base-root", "nowhere")),
    "annotate-extended propose: WORKDIR inside the Cityscapes root": (
        lambda t: ["annotate-extended", "propose", cs_root(t / "cs"), t / "cs/work", "--workers", "1"],
        ("WORKDIR", "inside the Cityscapes root")),
    "annotate-extended propose: WORKDIR is a folder of other files": (
        lambda t: ["annotate-extended", "propose", cs_root(t / "cs"), _users_folder(t), "--workers", "1"],
        ("WORKDIR", "no annotations.sqlite")),
    "annotate-extended propose: a rerun with another --rule": (
        lambda t: ["annotate-extended", "propose", cs_root(t / "cs"), _proposed(t, "connected"), "--rule", "authors",
                   "--workers", "1"], ("--rule connected, not authors", "annotations.sqlite")),
    "merge -o is the file --rules extends (--force)": (
        lambda t: ["merge", "cityscapes", "vistas", "gtsdb", "--rules", _extending(t), "-o", t / "tree.yaml",
                   "--force"], ("-o", "input", "tree.yaml")),
    "merge -o is the file --rules includes (--force)": (
        lambda t: ["merge", "cityscapes", "vistas", "gtsdb", "--rules", _including(t), "-o", t / "inc.yaml",
                   "--force"], ("-o", "input", "inc.yaml")),
    "audit --report is the file --tree extends (--force)": (
        lambda t: ["audit", "cityscapes", t / "cs", "--tree", _extending(t), "--report", t / "tree.yaml", "--force"],
        ("--report", "names an input")),
    "evaluate -o is the file --tree extends (--force)": (
        lambda t: ["evaluate", "cityscapes", t / "cs", t / "p", "--tree", _extending(t), "-o", t / "tree.yaml",
                   "--force"], ("-o", "names an input")),
    "convert --report is the file --hierarchy includes (--force)": (
        lambda t: ["convert", "cityscapes", cs_root(t / "cs"), t / "o", "--to", "tree", "--hierarchy",
                   _including(t), "--report", t / "inc.yaml", "--force"] + CONV, ("--report", "input")),
    "evaluate --gtsdb-size 9000x10": (lambda _t: ["evaluate", "gtsdb", "g", "p", "--gtsdb-size", "9000x10"],
                                      ("--gtsdb-size", "8192")),
}


@pytest.mark.parametrize("case", list(RERUN3))
def test_rerun3_refusals(tmp_path: Path, case: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    build, needles = RERUN3[case]
    args = build(tmp_path)
    _junk_checkpoint(tmp_path)
    refused(args, tmp_path, *needles)


@pytest.mark.parametrize("command", ["merge", "place", "calibrate"])
def test_no_output_replaces_a_bundled_file(tmp_path: Path, monkeypatch, command: str) -> None:
    """Found by the third rerun: `merge cityscapes vistas -o <the bundled cityscapes.yaml> --force` replaced
    it, and every later command failed on it. Here the bundled folder is a copy (a regression breaks no checkout)."""
    from labeltree import resources

    bundled = tmp_path / "bundled"
    bundled.mkdir()
    target = bundled / "mine.yaml"
    target.write_text("name: mine\n")
    monkeypatch.setattr(resources, "config_dir", lambda: bundled)
    args = {"merge": ["merge", "cityscapes", "vistas", "-o", target, "--force"],
            "place": ["place", "idd", tmp_path, "-o", target, "--force"],
            "calibrate": ["calibrate", _junk_checkpoint(tmp_path), _config(tmp_path), "-o", tmp_path / "c.pt",
                          "--plot", target, "--force"]}[command]
    refused(args, tmp_path, "bundled with labeltree")


# -- the Python API: numbers checked where they enter the library, not only in the CLI ------------------------

API_CASES = {
    "lt.evaluate eval_size (100000, 100000)": (lambda t: __import__("labeltree").evaluate(
        "cityscapes", t / "cs", t / "p", eval_size=(100000, 100000)), "at most 8192"),
    "lt.evaluate pixel_size (100000, 100000)": (lambda t: __import__("labeltree").evaluate(
        "gtsdb", t / "g", t / "p", rules="paper", pixel_size=(100000, 100000)), "at most 8192"),
    "lt.synthesize size (100000, 100000)": (lambda t: __import__("labeltree").synthesize(
        t / "s", images=1, size=(100000, 100000)), "32..8192"),
    "lt.synthesize size (0, 0)": (lambda t: __import__("labeltree").synthesize(t / "s", images=1, size=(0, 0)),
                                  "32..8192"),
}


@pytest.mark.parametrize("case", list(API_CASES))
def test_api_sizes_are_bounded(tmp_path: Path, case: str) -> None:
    """Were a MemoryError (18.6 GiB arrays) or a ValueError from numpy: one LabeltreeError, nothing written."""
    from hostile import snapshot

    from labeltree.errors import LabeltreeError

    call, words = API_CASES[case]
    before = snapshot(tmp_path)
    with pytest.raises(LabeltreeError, match=words.replace(".", r"\.")):
        call(tmp_path)
    assert snapshot(tmp_path) == before and not (tmp_path / "s").exists()


def test_api_one_split_as_a_string_is_that_split(tmp_path: Path) -> None:
    """lt.stats(..., splits="train") read the splits 't', 'r', ... (refused as 'no split t')."""
    import labeltree as lt

    root = cs_root(tmp_path / "cs")
    one, listed = lt.stats("cityscapes", root, "train", workers=1), lt.stats("cityscapes", root, ["train"], workers=1)
    assert one.summary == listed.summary and one.summary[0]["images"] == 1


def test_train_refuses_a_missing_val_split_before_the_first_step(tmp_path: Path) -> None:
    """Found by the third rerun: `synth --images 4` has no Cityscapes val; train ran every step, then failed at
    the final evaluation with no checkpoint written (hours lost on a real run). Now refused up front."""
    import labeltree as lt

    lt.synthesize(tmp_path / "d", images=4, size=(64, 32), workers=1)
    config = Path(__file__).resolve().parents[2] / "configs" / "cpu-tiny.yaml"
    res = invoke(["train", config, "--data-root", tmp_path / "d", "--out", tmp_path / "r", "--steps", "3"])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "no Cityscapes split 'val'" in res.stderr
    assert not (tmp_path / "r/train.jsonl").exists()  # no step was run
