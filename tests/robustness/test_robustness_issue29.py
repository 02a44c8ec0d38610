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

import pytest
from hostile import CS_KEY, cs_root, invoke, refused

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


def test_lock_is_reentrant_and_released(tmp_path: Path) -> None:
    hold_output(tmp_path / "x.json", "-o")
    hold_output(tmp_path / "x.json", "-o")
    assert lock_path(tmp_path / "x.json").read_text().strip() == str(os.getpid())
    release_outputs()
    assert not lock_path(tmp_path / "x.json").exists()


@pytest.mark.parametrize("root_name", ["my data/cs", "odd 'quote\" $x", "ünï cöde"])
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
