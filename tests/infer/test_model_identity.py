"""Opening a model checks what it carries (issue 29): an ONNX export's metadata, validated like a taxonomy
file (a tampered table, scale, layout or output name is one line, exit 2), and a `.pt` checkpoint's tree
(two sibling nodes swapped in the run's tree file: refused, naming them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from builders import run_cli
from PIL import Image

from labeltree.core.hierarchy import tree_hash
from labeltree.core.tree_file import load_hierarchy
from labeltree.export.graph import export_onnx
from labeltree.infer import open_model
from labeltree.train.checkpoint import load_checkpoint, save_checkpoint, tree_entry
from labeltree.train.config import config_from_dict
from labeltree.train.model import build_model

REPO = Path(__file__).resolve().parents[2]
TREE = REPO / "taxonomies" / "hierarchies" / "cityscapes+vistas+gtsdb.yaml"


def make_checkpoint(path: Path, tree: Path, with_tree: bool = True) -> Path:
    """A tiny hierarchical net with random weights (seed 0) on the tree file `tree`."""
    cfg = config_from_dict({
        "hierarchy": str(tree),
        "datasets": [{"name": "cityscapes", "root": "cityscapes", "resize": [32, 64]},
                     {"name": "vistas", "root": "vistas"}, {"name": "gtsdb", "root": "gtsdb"}],
        "model": {"backbone": "tiny", "width": 16, "bottleneck": 8, "tiny_channels": [8, 8, 8, 8]},
        "train": {"amp": False}})
    h = load_hierarchy(tree)
    sizes = [len(c.children) for c in h.classifiers]
    torch.manual_seed(0)
    model = build_model(cfg.model, sizes)
    state = {"config": cfg.model_dump(mode="json"), "model": model.eval().state_dict(), "head_sizes": sizes,
             "head_names": [c.name for c in h.classifiers], "step": 0}
    if with_tree:
        state["tree"] = tree_entry(h)
    save_checkpoint(path, state)
    return path


cli = run_cli


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("identity")
    shutil.copy(TREE, d / "tree.yaml")
    img = d / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(img)
    ck = make_checkpoint(d / "model.pt", d / "tree.yaml")
    export_onnx(ck, d / "leaves.onnx")
    export_onnx(ck, d / "scores.onnx", output="scores")
    return {"dir": d, "img": img, "pt": ck, "leaves": d / "leaves.onnx", "scores": d / "scores.onnx"}


# -- a .pt carries its tree --------------------------------------------------------------------------

def swap_lines(path: Path, a: str, b: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    i, j = lines.index(a), lines.index(b)
    lines[i], lines[j] = lines[j], lines[i]
    path.write_text("".join(lines))


def test_checkpoint_carries_the_hash_the_export_carries(env: dict[str, Path]) -> None:
    state = load_checkpoint(env["pt"])
    h = load_hierarchy(env["dir"] / "tree.yaml")
    assert state["tree"]["sha256"] == tree_hash(h) == open_model(env["leaves"]).tree_sha256
    assert state["tree"]["nodes"][h.index["Sky"]] == ["Sky", "root"]
    assert open_model(env["pt"]).tree_sha256 == tree_hash(h)


def test_swapped_siblings_in_the_tree_file_are_refused_naming_them(env: dict[str, Path], tmp_path: Path) -> None:
    tree = tmp_path / "tree.yaml"
    shutil.copy(TREE, tree)
    ck = make_checkpoint(tmp_path / "m.pt", tree)
    old = make_checkpoint(tmp_path / "old.pt", tree, with_tree=False)  # written before checkpoints had a tree
    cli("predict", ck, env["img"], "-o", tmp_path / "before")
    h = load_hierarchy(tree)
    building, sky = h.index["Building"], h.index["Sky"]
    swap_lines(tree, "  - Building\n", "  - Sky\n")  # same classifiers, same sizes: every logit relabelled
    for args in (["predict", ck, env["img"], "-o", tmp_path / "after"],
                 ["export", ck, tmp_path / "m.onnx"],
                 ["evaluate", "cityscapes", tmp_path, "--checkpoint", ck]):
        out = cli(*args, code=2)
        assert len(out.strip().splitlines()) == 1, out
        assert str(ck) in out and "tree 'cityscapes+vistas+gtsdb'" in out
        assert f"node {building} was 'Building' (under 'root'), now 'Sky' (under 'root')" in out, out
        assert f"node {sky} was 'Sky'" in out
    assert not (tmp_path / "after").exists() and not (tmp_path / "m.onnx").exists()
    # an old checkpoint has only its classifiers' names and sizes to go by: accepted, as before
    cli("predict", old, env["img"], "-o", tmp_path / "old")


# -- an .onnx carries its tables: tampered metadata is one line -------------------------------------

def _tables(t: dict[str, Any]) -> None:
    t["colors"] = t["colors"][:-1]


def _values(t: dict[str, Any]) -> None:
    t["datasets"]["cityscapes"]["values"] = t["datasets"]["cityscapes"]["values"][:-3]


def _level(t: dict[str, Any]) -> None:
    t["levels"][0][5] = 9999


def _children(t: dict[str, Any]) -> None:
    t["classifiers"][0]["children"][0] = -4


def _fewer_children(t: dict[str, Any]) -> None:
    t["classifiers"][0]["children"] = t["classifiers"][0]["children"][:-1]


def _fill(t: dict[str, Any]) -> None:
    t["datasets"]["cityscapes"]["fill"] = "none"


TAMPER = [  # (model, metadata key, how, what the line says)
    ("leaves", "labeltree.tables", _tables, "colors has"),
    ("leaves", "labeltree.tables", _values, "dataset 'cityscapes' values has"),
    ("leaves", "labeltree.tables", _level, "level 1 table holds 9999"),
    ("leaves", "labeltree.tables", _children, "children holds -4"),
    ("leaves", "labeltree.tables", _fill, "dataset 'cityscapes' fill holds 'none'"),
    ("scores", "labeltree.tables", _fewer_children, "output 'scores_0' has 53 classes, its classifier's table 52"),
    ("leaves", "labeltree.resize", {"cityscapes": [0, 0]}, "0x0 is outside 1..8192"),
    ("leaves", "labeltree.resize", {"cityscapes": [40000, 40000]}, "40000x40000 is outside 1..8192"),
    ("leaves", "labeltree.resize", {"cityscapes": "big"}, "expected [height, width]"),
    ("leaves", "labeltree.resize", "[512, 1024]", "expected a JSON dict"),
    ("leaves", "labeltree.layout", "nhwc", "nhwc does not fit the graph's input shape"),
    ("leaves", "labeltree.layout", "chw", "'chw' is neither nchw nor nhwc"),
    ("leaves", "labeltree.outputs", lambda o: o[0].update(name="nodes"), "output 'nodes' is not in the graph"),
    ("leaves", "labeltree.outputs", lambda o: o[0].update(kind="pixels"), "no output entry"),
    ("leaves", "labeltree.outputs", [], "no outputs"),
    ("leaves", "labeltree.input", {"size": [40, 72], "batch": None}, "does not fit the graph's input shape"),
    ("leaves", "labeltree.input", {"size": None, "batch": 0}, "batch 0 is outside"),
    ("leaves", "labeltree.tables", "{not json", "not JSON"),
]


@pytest.mark.parametrize(("model", "key", "how", "says"), TAMPER)
def test_tampered_onnx_metadata_is_one_line_exit_2(env: dict[str, Path], tmp_path: Path, model: str, key: str,
                                                   how: Any, says: str) -> None:
    proto = onnx.load(str(env[model]))
    prop = next(p for p in proto.metadata_props if p.key == key)
    if callable(how):
        value = json.loads(prop.value)
        how(value)
        prop.value = json.dumps(value)
    else:
        prop.value = how if isinstance(how, str) else json.dumps(how)
    m = tmp_path / "m.onnx"
    onnx.save(proto, str(m))
    for args in (["predict", m, env["img"], "-o", tmp_path / "P", "--dataset", "cityscapes"],
                 ["evaluate", "cityscapes", tmp_path, "--checkpoint", m]):
        out = cli(*args, code=2)
        assert len(out.strip().splitlines()) == 1 and str(m) in out and says in out, out
        assert "labeltree metadata is incomplete or wrong" in out
    assert not (tmp_path / "P").exists() or not any((tmp_path / "P").rglob("*.png"))
