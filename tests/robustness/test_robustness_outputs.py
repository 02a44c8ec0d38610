"""Robustness, outputs: no command writes over an input, replaces an output without --force, leaves
temp files or 0600 modes behind, or shows a traceback for an output path it cannot write."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from hostile import cs_root, invoke, png, refused, snapshot

from labeltree import fsutil
from labeltree.errors import LabeltreeError


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Pre-existing files every case may name: a rules file with a comment, tables, a plot, a run."""
    (tmp_path / "rules.yaml").write_text("# my comments\nname: x\n")
    (tmp_path / "a.json").write_text('{"a": 1}\n')
    (tmp_path / "b.json").write_text('{"b": 2}\n')
    (tmp_path / "old.yaml").write_text("keep me\n")
    (tmp_path / "old.csv").write_text("keep,me\n")
    (tmp_path / "old.png").write_bytes(b"not really a png")
    (tmp_path / "file").write_text("a regular file\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir.csv").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"weights")
    (tmp_path / "run" / "train.jsonl").write_text('{"step": 1}\n')
    cs_root(tmp_path / "cs")
    cs_root(tmp_path / "gt", split="val")
    png(tmp_path / "pred" / f"{'aachen_000000_000019'}.png", np.full((8, 16), 7, np.uint8))
    return tmp_path


T = "{tmp}"
# (argv with {tmp}, words the error line must hold); every pre-existing file must keep its bytes
CASES = [
    (["stats-merge", "{tmp}/a.json", "{tmp}/b.json", "-o", "{tmp}/a.json"], ["a.json", "input"]),
    (["stats-merge", "{tmp}/a.json", "--raw", "{tmp}/b.json"], ["b.json", "--force"]),
    (["stats-merge", "{tmp}/a.json", "{tmp}/b.json", "--raw", "{tmp}/b.json", "--force"], ["b.json", "input"]),
    (["stats-merge", "{tmp}/a.json", "-o", "{tmp}/new.json", "--raw", "{tmp}/new.json"], ["same file"]),
    (["merge", "cityscapes", "--rules", "{tmp}/rules.yaml", "-o", "{tmp}/rules.yaml"], ["rules.yaml", "input"]),
    (["merge", "cityscapes", "vistas", "-o", "{tmp}/old.yaml"], ["old.yaml", "--force"]),
    (["merge", "cityscapes", "vistas", "-o", "{tmp}/dir"], ["dir", "folder"]),
    (["merge", "cityscapes", "vistas", "-o", "{tmp}/file/x.yaml"], ["file/x.yaml", "is a file"]),
    (["stats", "cityscapes", "{tmp}/cs", "--quiet", "--no-cache", "-o", "{tmp}/old.csv"], ["old.csv", "--force"]),
    (["stats", "cityscapes", "{tmp}/cs", "--quiet", "--no-cache", "--plot", "{tmp}/old.png"], ["old.png", "--force"]),
    (["stats", "cityscapes", "{tmp}/cs", "--quiet", "--no-cache", "--summary-out", "{tmp}/dir.csv"],
     ["dir.csv", "folder"]),
    (["stats", "cityscapes", "{tmp}/cs", "--quiet", "--no-cache", "-o", "{tmp}/file/o.csv"], ["file/o.csv"]),
    (["evaluate", "cityscapes", "{tmp}/gt", "{tmp}/pred", "--quiet", "-o", "{tmp}/a.json"], ["a.json", "--force"]),
    (["evaluate", "cityscapes", "{tmp}/gt", "{tmp}/pred", "--quiet", "-o", "{tmp}/pred"], ["pred", "input"]),
    (["evaluate", "cityscapes", "{tmp}/gt", "{tmp}/pred", "--plot-confusion", "{tmp}/old.png"], ["old.png"]),
    (["import", "table", "{tmp}/old.csv", "-o", "{tmp}/old.csv"], ["old.csv", "source"]),
    (["train", "cpu-tiny", "--out", "{tmp}/run", "--no-progress"], ["run", "--resume", "--force"]),
    (["train", "cpu-tiny", "--out", "{tmp}/file", "--no-progress"], ["file", "folder"]),
    (["train", "cpu-tiny", "--out", "{tmp}/run", "--resume", "--force"], ["--resume", "--force"]),
]


@pytest.mark.parametrize("argv,needles", CASES, ids=[" ".join(c[0][:2]) + f" #{i}" for i, c in enumerate(CASES)])
def test_output_policy_refusals(files: Path, argv: list[str], needles: list[str]) -> None:
    refused([a.replace(T, str(files)) for a in argv], files, *needles)


def test_force_replaces_an_output_but_never_an_input(files: Path) -> None:
    out = files / "old.yaml"
    res = invoke(["merge", "cityscapes", "vistas", "-o", out, "--force"])
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("# written by `labeltree merge cityscapes vistas`")
    refused(["merge", "cityscapes", "--rules", files / "rules.yaml", "-o", files / "rules.yaml", "--force"],
            files, "input")
    assert (files / "rules.yaml").read_text() == "# my comments\nname: x\n"


def test_force_appears_in_every_help_that_replaces_outputs() -> None:
    for cmd in (["merge"], ["stats"], ["stats-merge"], ["evaluate"], ["train"], ["gtsdb-masks"],
                ["annotate-extended", "export-labels"], ["import", "table"]):
        res = invoke([*cmd, "--help"])
        assert res.exit_code == 0 and "--force" in res.output, cmd


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_outputs_get_the_umask_mode(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        fsutil.write_text(tmp_path / "t.txt", "x")
        fsutil.write_png(tmp_path / "m.png", np.zeros((2, 2), np.uint8))
    finally:
        os.umask(old)
    for n in ("t.txt", "m.png"):
        assert stat.S_IMODE((tmp_path / n).stat().st_mode) == mode


def test_stale_temp_files_of_a_killed_run_are_removed_by_the_rerun(tmp_path: Path) -> None:
    dead = 2 ** 22 + 12345  # above Linux's pid_max default: no such process
    stale = [tmp_path / f".a.png.lt{dead}-x1y2z3.tmp", tmp_path / ".b.png.k3j_9xq2.tmp"]  # ours; old mkstemp style
    live = tmp_path / f".c.png.lt{os.getppid()}-abc.tmp"  # a running writer (our parent process)
    other = tmp_path / ".notes.tmp"  # not an atomic-write name: not ours to delete
    for p in (*stale, live, other):
        p.write_bytes(b"half")
    fsutil.write_text(tmp_path / "a.png", "new")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["a.png", live.name, other.name])


@pytest.mark.parametrize("err,hint", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"),
                                      (errno.EACCES, "no permission"), (errno.EDQUOT, "quota")])
def test_oserror_on_an_output_is_one_line_naming_it(files: Path, monkeypatch: pytest.MonkeyPatch, err: int,
                                                    hint: str) -> None:
    def fail(src, _dst):
        raise OSError(err, os.strerror(err), str(src))

    monkeypatch.setattr(fsutil.os, "replace", fail)
    line = refused(["merge", "cityscapes", "vistas", "-o", files / "new.yaml"], files, str(files / "new.yaml"), hint)
    assert line.startswith("error: ")
    assert not [p for p in files.iterdir() if p.name.endswith(".tmp")]


def test_unwritable_folder_is_refused_before_the_work(files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.access
    monkeypatch.setattr(fsutil.os, "access", lambda p, m: False if str(p) == str(files / "dir") else real(p, m))
    refused(["stats", "cityscapes", files / "cs", "--quiet", "--no-cache", "-o", files / "dir" / "x.csv"], files,
            "no permission", "x.csv")


def test_atomic_write_into_a_folder_path_raises_labeltree_error(tmp_path: Path) -> None:
    with pytest.raises(LabeltreeError, match="is a folder"):
        fsutil.write_text(tmp_path, "x")
    (tmp_path / "f").write_text("x")
    with pytest.raises(LabeltreeError, match="part of the path is a file"):
        fsutil.write_text(tmp_path / "f" / "g.txt", "x")
    assert snapshot(tmp_path) == {"f": b"x"}



def test_a_fifo_or_a_link_to_a_device_is_never_replaced(tmp_path: Path) -> None:
    """`--report /dev/null --force` renamed a JSON file over /dev/null (as root); a FIFO became a file too."""
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "null.json").symlink_to("/dev/null")
    for name, what in (("fifo.json", "a FIFO"), ("null.json", "a device")):
        for force in ([], ["--force"]):
            refused(["merge", "cityscapes", "vistas", "-o", tmp_path / name, *force], tmp_path, name, what)
        with pytest.raises(LabeltreeError, match=what):
            fsutil.write_text(tmp_path / name, "x")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo.json").st_mode)
    assert os.readlink(tmp_path / "null.json") == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)

def test_symlink_loop_as_input_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    refused(["merge", "cityscapes", tmp_path / "loop"], tmp_path, "loop")
    refused(["stats-merge", tmp_path / "loop"], tmp_path, "loop")


def test_gtsdb_masks_existing_mask_needs_force_or_skip_existing(tmp_path: Path) -> None:
    root = tmp_path / "g"
    png(root / "00000.png", np.zeros((10, 12, 3), np.uint8))
    (root / "gt.txt").write_text("00000.png;1;1;5;5;14\n")
    out = tmp_path / "m"
    assert invoke(["gtsdb-masks", root, out, "--quiet"]).exit_code == 0
    refused(["gtsdb-masks", root, out, "--quiet"], tmp_path, "00000_labelIds.png", "--force", "--skip-existing")
    assert invoke(["gtsdb-masks", root, out, "--quiet", "--force"]).exit_code == 0
    assert invoke(["gtsdb-masks", root, out, "--quiet", "--skip-existing"]).exit_code == 0
