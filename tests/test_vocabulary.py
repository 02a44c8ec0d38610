"""One word for one thing on the command line (issue 24 step 5): --tree (old --hierarchy accepted, not
shown), sizes as WIDTHxHEIGHT converted to the library's (height, width), one progress flag."""

import importlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from labeltree.cli import main


def _help(*cmd: str) -> str:
    r = CliRunner().invoke(main, [*cmd, "--help"], terminal_width=200)
    assert r.exit_code == 0, r.output
    return r.output


@pytest.mark.parametrize("cmd", [("evaluate",), ("convert",), ("stats",), ("stats-merge",), ("synth",)])
def test_tree_option_everywhere_hierarchy_hidden(cmd):
    text = _help(*cmd)
    assert "--tree TREE" in text and "--hierarchy" not in text
    assert "slash or a .yaml suffix" in text  # the name-or-path rule


@pytest.mark.parametrize("cmd", [("synth",), ("demo",), ("train",), ("gtsdb-masks",), ("stats",), ("convert",),
                                 ("evaluate",)])
def test_one_progress_flag(cmd):
    text = _help(*cmd)
    assert "--progress / --no-progress" in text and "--no-progress " not in text.replace("--no-progress  ", "")


def test_sizes_say_width_x_height():
    assert "WIDTHxHEIGHT" in _help("synth") and "WIDTHxHEIGHT" in _help("export")
    assert "WIDTHxHEIGHT" in _help("evaluate") and "850x512" in _help("evaluate")


class _Result:
    def table(self) -> str:
        return "table"

    def to_json(self) -> str:
        return "{}"


@pytest.fixture
def evaluate_calls(monkeypatch) -> list[dict[str, Any]]:
    """The keyword arguments `labeltree evaluate` passes to the library (which is not run)."""
    folder = importlib.import_module("labeltree.evaluate.folder")

    calls: list[dict[str, Any]] = []

    def fake(*_args: Any, **kw: Any) -> _Result:
        calls.append(kw)
        return _Result()

    monkeypatch.setattr(folder, "evaluate_folder", fake)
    return calls


def _evaluate(tmp_path: Path, *extra: str) -> str:
    r = CliRunner().invoke(main, ["evaluate", "gtsdb", str(tmp_path), str(tmp_path), *extra])
    assert r.exit_code == 0, r.output
    return r.output


def test_evaluate_gtsdb_size_is_width_x_height(tmp_path, evaluate_calls):
    _evaluate(tmp_path, "--protocol", "paper")  # the default: the authors' 850 wide, 512 high, as before
    _evaluate(tmp_path, "--protocol", "paper", "--gtsdb-size", "850x512")
    _evaluate(tmp_path, "--protocol", "paper", "--gtsdb-size", "native")
    assert [c["rules"].pixel_size for c in evaluate_calls] == [(512, 850), (512, 850), None]
    r = CliRunner().invoke(main, ["evaluate", "gtsdb", str(tmp_path), str(tmp_path), "--gtsdb-size", "512"])
    assert r.exit_code == 2 and "--gtsdb-size: expected WIDTHxHEIGHT" in r.output


def test_evaluate_quiet_draws_no_bar(tmp_path, evaluate_calls):
    assert "table" not in _evaluate(tmp_path, "--quiet")  # no table and no bar
    assert "table" in _evaluate(tmp_path)
    assert "table" in _evaluate(tmp_path, "--no-progress")
    assert [c["progress"] for c in evaluate_calls] == [False, True, False]


def test_hierarchy_still_accepted(tmp_path, evaluate_calls):
    _evaluate(tmp_path, "--hierarchy", "cityscapes+vistas+gtsdb", "--levels")
    _evaluate(tmp_path, "--tree", "cityscapes+vistas+gtsdb", "--levels")
    assert [c["hierarchy"].name for c in evaluate_calls] == ["cityscapes+vistas+gtsdb"] * 2


def test_export_size_is_width_x_height(tmp_path, monkeypatch):
    graph = pytest.importorskip("labeltree.export.graph")
    seen: list[Any] = []

    class _R:
        path, input_shape, outputs, opset = tmp_path / "m.onnx", [1, 3, 512, 706], [], 17

    monkeypatch.setattr(graph, "export_onnx", lambda *_a, **kw: seen.append(kw["size"]) or _R())
    r = CliRunner().invoke(main, ["export", str(tmp_path / "m.pt"), str(tmp_path / "m.onnx"), "--size", "706x512"])
    assert r.exit_code == 0, r.output
    assert seen == [(512, 706)]  # (height, width), as the exporter and the tensors lay it out
