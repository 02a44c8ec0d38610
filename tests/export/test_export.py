"""`labeltree export` -> ONNX, run with ONNX Runtime: checker, equality with the PyTorch predictor, CLI, bad input.

Models are the tiny backbone with random weights from a fixed seed (BatchNorm statistics randomised too,
so that the maps hold many classes); images come from `labeltree synth`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from builders import run_cli
from click.testing import CliRunner

import labeltree
from labeltree.cli import main
from labeltree.core.hierarchy import tree_hash
from labeltree.core.tree_file import load_hierarchy
from labeltree.datasets.decode import read_rgb
from labeltree.datasets.resize import nearest_resize, resize_photo
from labeltree.errors import LabeltreeError
from labeltree.export.graph import export_onnx
from labeltree.infer.onnx import OnnxModel
from labeltree.synth.runner import synthesize
from labeltree.train.checkpoint import save_checkpoint
from labeltree.train.config import config_from_dict
from labeltree.train.data import MEAN, STD, normalise
from labeltree.train.loss import flat_space
from labeltree.train.model import build_model
from labeltree.train.predict import Predictor, load_predictor

DATASETS = ["cityscapes", "vistas", "gtsdb"]
CS_RESIZE = (32, 64)  # cityscapes' training scale in the checkpoint's config (predict --dataset uses it)


def make_checkpoint(path: Path, kind: str, images: list[np.ndarray], seed: int = 0, tree: str | None = None) -> Path:
    """Random weights (fixed seed); BatchNorm statistics measured on `images`, so that the untrained net's
    maps hold many classes; logits x4 so that its decisions are not near-ties (as a trained net's are not)."""
    cfg = config_from_dict({
        "datasets": [{"name": "cityscapes", "root": "cityscapes", "resize": list(CS_RESIZE)},
                     {"name": "vistas", "root": "vistas"}, {"name": "gtsdb", "root": "gtsdb"}],
        "model": {"kind": kind, "backbone": "tiny", "width": 32, "bottleneck": 16, "tiny_channels": [8, 16, 24, 32]},
        "train": {"amp": False}, **({"hierarchy": tree} if tree else {})})
    h = load_hierarchy(cfg.hierarchy)
    sizes = [flat_space(h, DATASETS).n_classes] if kind == "flat" else [len(c.children) for c in h.classifiers]
    torch.manual_seed(seed)
    model = build_model(cfg.model, sizes)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batch
    with torch.no_grad():
        model.train()(normalise(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)))
        for head in model.heads:
            head.logits.weight.mul_(4)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = cfg.model.bn_momentum
    names = ["flat"] if kind == "flat" else [c.name for c in h.classifiers]
    save_checkpoint(path, {"config": cfg.model_dump(mode="json"), "model": model.eval().state_dict(),
                           "head_sizes": sizes, "head_names": names, "step": 0})
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("export")
    synthesize(d / "synth", images=5, size=(96, 48), workers=1, progress=False, gtsdb_images=2)
    images = sorted((d / "synth" / "cityscapes" / "leftImg8bit" / "train").rglob("*.png"))
    arrays = [read_rgb(p) for p in images]
    return {"dir": d, "synth": d / "synth", "images": images, "arrays": arrays,
            "hier": make_checkpoint(d / "hier.pt", "hierarchical", arrays),
            "flat": make_checkpoint(d / "flat.pt", "flat", arrays)}


@pytest.fixture(scope="module")
def preds(env: dict[str, Any]) -> dict[str, Predictor]:
    return {k: load_predictor(env[k], "cpu") for k in ("hier", "flat")}


cli = run_cli


_REFS: dict[tuple[int, int, tuple[int, ...], tuple[int, int] | None], Any] = {}


def reference(pred: Predictor, img: np.ndarray, resize: tuple[int, int] | None = None,
              ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """PyTorch: (node map at the image's size, scores at network scale, cascade stopped at each level).

    Memoised per (predictor, image) within the module: eight tests compare against the same images."""
    key = (id(pred), hash(img.tobytes()), img.shape, resize)
    if key not in _REFS:
        nodes, sc = pred.predict_array(img, resize)
        levels = [pred.nodes(sc, stop_level=k)[0].numpy() for k in range(1, pred.h.depth + 1)]
        _REFS[key] = nodes, [s[0].numpy() for s in sc], levels
    return _REFS[key]


def check_outputs(om: OnnxModel, pred: Predictor, raw: dict[str, np.ndarray], img: np.ndarray) -> None:
    """One image's raw ONNX outputs (whole image, network at the image's size) == the PyTorch prediction."""
    nodes, sc, levels = reference(pred, img)
    assert len(np.unique(nodes)) >= 4  # a map of many classes, not one colour
    for o in om.outputs:
        got = raw[o["name"]]
        assert got.dtype == np.dtype(o["dtype"])
        if o["kind"] == "nodes":
            np.testing.assert_array_equal(got, nodes)
        elif o["kind"] == "level":
            np.testing.assert_array_equal(got, levels[o["level"] - 1])
        elif o["kind"] == "dataset":
            np.testing.assert_array_equal(got, pred.dataset_values(nodes, o["dataset"]))
        else:
            j = int(o["name"].split("_")[1])
            assert got.shape == sc[j].shape
            np.testing.assert_allclose(got, sc[j], rtol=0, atol=1e-5)
            np.testing.assert_allclose(got.sum(0), 1.0, atol=1e-5)


@pytest.mark.parametrize(("model", "output"), [
    ("hier", "leaves"), ("hier", "levels"), ("hier", "scores"), ("hier", "dataset:cityscapes"),
    ("hier", "dataset:gtsdb"), ("flat", "leaves"), ("flat", "scores"), ("flat", "dataset:vistas")])
def test_output_kind_passes_the_checker_and_equals_pytorch_at_batch_1_and_3(
        env: dict[str, Any], preds: dict[str, Predictor], model: str, output: str, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    r = export_onnx(env[model], path, output=output)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["images"]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [o.name for o in proto.graph.output] == [o["name"] for o in r.outputs]
    om = OnnxModel(path, "cpu")
    pred = preds[model]
    arrays = env["arrays"][:3]
    for raw_batch, imgs in ((om.run(np.stack(arrays[:1])), arrays[:1]), (om.run(np.stack(arrays)), arrays)):
        assert all(v.shape[0] == len(imgs) for v in raw_batch.values())
        for b, img in enumerate(imgs):
            check_outputs(om, pred, {k: v[b] for k, v in raw_batch.items()}, img)
    # a whole image of another size through the same dynamic graph, and what `predict` makes of it
    odd = np.ascontiguousarray(env["arrays"][3][5:44, 3:90])
    check_outputs(om, pred, {k: v[0] for k, v in om.run(odd[None]).items()}, odd)
    p = om.predict_array(odd)
    nodes = reference(pred, odd)[0]
    if om.has_nodes:
        np.testing.assert_array_equal(p.nodes, nodes)
    for key, values in p.values.items():
        np.testing.assert_array_equal(values, pred.dataset_values(nodes, key))


def test_metadata_names_tree_ids_normalisation_layout_version(env: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "cs.onnx"
    export_onnx(env["hier"], path, output="dataset:cityscapes", layout="nhwc", size=(40, 72), batch=2)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    h = load_hierarchy("cityscapes+vistas+gtsdb")
    assert meta["labeltree.tree"] == h.name and meta["labeltree.tree_sha256"] == tree_hash(h)
    assert meta["labeltree.version"] == labeltree.__version__
    assert json.loads(meta["labeltree.mean"]) == list(MEAN) and json.loads(meta["labeltree.std"]) == list(STD)
    assert meta["labeltree.layout"] == "nhwc"
    assert json.loads(meta["labeltree.input"])["shape"] == [2, 40, 72, 3]
    (out,) = json.loads(meta["labeltree.outputs"])
    tax = h.mapping("cityscapes").taxonomy
    t = h.tables("cityscapes")
    reached = {int(t.node_to_value[n]) for n in h.leaves if t.node_to_value[n] >= 0}
    assert {int(k) for k in out["ids"]} == reached | {0}  # + the 'no class' fill (unlabeled)
    for v in reached:
        assert out["ids"][str(v)] == next(c.name for c in tax.classes if c.id >= 0 and tax.stored_value(c.id) == v)
    assert json.loads(meta["labeltree.resize"]) == {"cityscapes": list(CS_RESIZE)}
    # a tree with a changed node hashes differently
    h2 = load_hierarchy("cityscapes+vistas+gtsdb")
    h2.nodes[h2.leaves[0]].name += " (renamed)"
    assert tree_hash(h2) != tree_hash(h)


def test_fixed_size_and_batch_nhwc_equals_pytorch_at_that_size(env: dict[str, Any], preds: dict[str, Predictor],
                                                                tmp_path: Path) -> None:
    size = (40, 72)
    path = tmp_path / "fixed.onnx"
    r = export_onnx(env["hier"], path, output="leaves", size=size, batch=2, layout="nhwc")
    assert r.input_shape == [2, 40, 72, 3]
    om = OnnxModel(path, "cpu")
    assert om.session.get_inputs()[0].shape == [2, 40, 72, 3]
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        om.session.run(None, {"images": np.zeros((1, 40, 72, 3), np.uint8)})
    arrays = env["arrays"][:3]
    # three images through a batch of 2: the second run is padded; each brought back to 48x96 (nearest)
    raws = om.run_images([np.asarray(resize_photo(a, size)) for a in arrays])
    assert len(raws) == 3
    for img, raw in zip(arrays, raws, strict=True):
        nodes, _, _ = reference(preds["hier"], img, size)
        np.testing.assert_array_equal(om.interpret(raw, img.shape[:2]).nodes, nodes)
        np.testing.assert_array_equal(om.predict_array(img).nodes, nodes)
    # nearest up-sampling indices are torch's
    a = np.arange(7 * 9).reshape(7, 9)
    want = torch.nn.functional.interpolate(torch.from_numpy(a)[None, None].float(), size=(48, 97), mode="nearest")
    np.testing.assert_array_equal(nearest_resize(a, (48, 97)), want[0, 0].long().numpy())


def test_predict_and_evaluate_on_onnx_write_what_the_pt_writes(env: dict[str, Any], tmp_path: Path) -> None:
    m = tmp_path / "tiny.onnx"
    out = cli("export", env["hier"], m)
    assert "wrote" in out and "batchx3xheightxwidth" in out and "leaves (int32)" in out
    src = env["images"][0].parent.parent
    flags = ["--dataset", "cityscapes", "--levels", "--overlay"]
    cli("predict", m, src, "-o", tmp_path / "P_onnx", *flags)
    cli("predict", env["hier"], src, "-o", tmp_path / "P_pt", *flags)
    files = {p.relative_to(tmp_path / "P_pt") for p in (tmp_path / "P_pt").rglob("*.png")}
    assert files == {p.relative_to(tmp_path / "P_onnx") for p in (tmp_path / "P_onnx").rglob("*.png")}
    assert len(files) == 4 * (1 + 1 + 1 + 3)  # 4 images: tree colours, cityscapes ids, overlay, 3 levels
    for f in files:
        a, b = read_png(tmp_path / "P_pt" / f), read_png(tmp_path / "P_onnx" / f)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b, err_msg=str(f))
    res = {}
    for name, ck in (("onnx", m), ("pt", env["hier"])):
        cli("evaluate", "cityscapes", env["synth"] / "cityscapes", "--checkpoint", ck, "--split", "train", "--classes",
            "paper", "--workers", 1, "--quiet", "-o", tmp_path / f"{name}.json")
        res[name] = json.loads((tmp_path / f"{name}.json").read_text())
    same = {k: {n: v for n, v in r.items() if n != "model"} for k, r in res.items()}  # "model": which file
    assert same["onnx"] == same["pt"] and res["pt"]["images"] == 4
    # the model's node ids belong to its own tree: projecting them with another one is refused
    out = cli("evaluate", "cityscapes", env["synth"] / "cityscapes", "--checkpoint", m, "--pred-space", "tree",
              "--hierarchy", "cityscapes+vistas", "--split", "train", code=2)
    assert "exported from tree" in out and len(out.strip().splitlines()) == 1


def test_onnx_tree_predictions_are_projected_with_the_models_own_tree(env: dict[str, Any], tmp_path: Path) -> None:
    """Issue 29: `--pred-space tree` without --tree checked an .onnx model against the paper's tree (exit 2
    for any other); it now takes the model's own tree, as a .pt does."""
    tree = "cityscapes+vistas+gtsdb+bdd100k"
    ck = make_checkpoint(tmp_path / "bdd.pt", "hierarchical", env["arrays"], tree=tree)
    m = tmp_path / "bdd.onnx"
    cli("export", ck, m)
    base = ["evaluate", "cityscapes", env["synth"] / "cityscapes", "--checkpoint", m, "--pred-space", "tree",
            "--split", "train", "--workers", 1, "--quiet"]
    cli(*base, "-o", tmp_path / "own.json")
    cli(*base, "--tree", tree, "-o", tmp_path / "given.json")
    own = json.loads((tmp_path / "own.json").read_text())
    assert own == json.loads((tmp_path / "given.json").read_text()) and own["images"] == 4
    out = cli(*base, "--tree", "cityscapes+vistas+gtsdb", code=2)  # another tree is still refused
    assert "exported from tree" in out and len(out.strip().splitlines()) == 1


def read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im)


def test_dataset_model_writes_its_ids_only(env: dict[str, Any], preds: dict[str, Predictor], tmp_path: Path) -> None:
    m = tmp_path / "gtsdb.onnx"
    export_onnx(env["hier"], m, output="dataset:gtsdb")
    res = CliRunner().invoke(main, ["predict", str(m), str(env["images"][0]), "-o", str(tmp_path / "P")])
    assert res.exit_code == 0, res.output
    (f,) = (tmp_path / "P").rglob("*.png")
    assert f.relative_to(tmp_path / "P").parts == ("gtsdb", env["images"][0].stem + ".png")
    a = read_png(f)
    nodes, _, _ = reference(preds["hier"], env["arrays"][0])
    np.testing.assert_array_equal(a, preds["hier"].dataset_values(nodes, "gtsdb"))
    assert a.dtype == np.uint16
    out = cli("predict", m, env["images"][0], "-o", tmp_path / "Q", "--dataset", "cityscapes", code=2)
    assert "gives gtsdb ids only" in out and "--output dataset:cityscapes" in out
    out = cli("predict", m, env["images"][0], "-o", tmp_path / "Q", "--levels", code=2)
    assert "--levels need tree nodes" in out


FRESH = r"""
import sys, json
import numpy as np
import onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = s.get_modelmeta().custom_metadata_map
x = np.load(sys.argv[2])
(out,) = s.run(None, {"images": x})
np.save(sys.argv[3], out)
mods = sorted(m.split(".")[0] for m in sys.modules)
print(json.dumps({"tree": meta["labeltree.tree"], "torch": "torch" in mods, "labeltree": "labeltree" in mods,
                  "ids": len(json.loads(meta["labeltree.outputs"])[0]["ids"])}))
"""


def test_exported_model_runs_in_a_fresh_process_with_onnxruntime_only(env: dict[str, Any], preds: dict[str, Predictor],
                                                                      tmp_path: Path) -> None:
    m = tmp_path / "vistas.onnx"
    export_onnx(env["hier"], m, output="dataset:vistas")
    x = np.stack(env["arrays"][:2]).transpose(0, 3, 1, 2)
    np.save(tmp_path / "x.npy", x)
    env_vars = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    r = subprocess.run([sys.executable, "-I", "-c", FRESH, str(m), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                       capture_output=True, text=True, env=env_vars, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["tree"] == "cityscapes+vistas+gtsdb" and not info["torch"] and not info["labeltree"]
    y = np.load(tmp_path / "y.npy")
    for b in range(2):
        nodes, _, _ = reference(preds["hier"], env["arrays"][b])
        np.testing.assert_array_equal(y[b], preds["hier"].dataset_values(nodes, "vistas"))
    assert info["ids"] == len(np.unique(preds["hier"].h.tables("vistas").node_to_value[preds["hier"].h.leaves]))


# -- bad input -----------------------------------------------------------------------------------------

def test_existing_output_is_replaced_only_with_force_and_written_atomically(env: dict[str, Any],
                                                                            tmp_path: Path) -> None:
    m = tmp_path / "m.onnx"
    m.write_bytes(b"keep me")
    out = cli("export", env["flat"], m, "--output", "scores", code=2)
    assert "exists; pass --force" in out and m.read_bytes() == b"keep me"
    cli("export", env["flat"], m, "--output", "scores", "--force")
    assert OnnxModel(m, "cpu").output == "scores"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert m.stat().st_mode & 0o777 == 0o666 & ~umask
    out = cli("export", env["flat"], env["flat"], code=2)  # never over its input, --force or not
    assert ".onnx" in out
    twin = tmp_path / "ck.onnx"
    twin.write_bytes(env["flat"].read_bytes())
    out = cli("export", twin, twin, "--force", code=2)
    assert "overwrite the checkpoint" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--output", "pixels"], "--output: expected leaves"),
    (["--output", "dataset:kitti"], "no mapping for dataset 'kitti'"),
    (["--output", "levels"], "flat model has no cascade levels"),
    (["--size", "512"], "--size: expected WIDTHxHEIGHT"),
    (["--size", "4x100"], "at least 8 pixels"),
    (["--batch", "0"], "--batch: must be at least 1"),
    (["--opset", "9"], "--opset: 9 is outside 13.."),
    (["--dynamic", "--size", "64x64"], "--dynamic: give either"),
])
def test_bad_options_are_one_line_and_exit_2(env: dict[str, Any], tmp_path: Path, args: list[str],
                                             message: str) -> None:
    out = cli("export", env["flat"], tmp_path / "m.onnx", *args, code=2)
    assert message in out and len(out.strip().splitlines()) == 1, out
    assert not (tmp_path / "m.onnx").exists()


def test_checkpoint_of_another_tree_and_corrupt_onnx_are_one_line_and_exit_2(env: dict[str, Any],
                                                                             tmp_path: Path) -> None:
    state = torch.load(env["hier"], weights_only=True)
    state["config"]["hierarchy"] = "cityscapes+vistas"  # a tree without GTSDB: other heads
    torch.save(state, tmp_path / "other.pt")
    out = cli("export", tmp_path / "other.pt", tmp_path / "m.onnx", code=2)
    assert "do not match the tree 'cityscapes+vistas'" in out and len(out.strip().splitlines()) == 1
    state["config"]["hierarchy"] = "cityscapes+vistas+gtsdb"
    state["head_names"] = list(reversed(state["head_names"]))  # same sizes would not notice a reordering
    state["head_sizes"] = list(state["head_sizes"])
    torch.save(state, tmp_path / "renamed.pt")
    out = cli("export", tmp_path / "renamed.pt", tmp_path / "m.onnx", code=2)
    assert "are not those of the tree" in out and len(out.strip().splitlines()) == 1
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 50)
    for args in (["predict", bad, env["images"][0], "-o", tmp_path / "P"],
                 ["evaluate", "cityscapes", env["synth"] / "cityscapes", "--checkpoint", bad]):
        out = cli(*args, code=2)
        assert str(bad) in out and "cannot load the ONNX model" in out and len(out.strip().splitlines()) == 1, out
    good = tmp_path / "plain.onnx"  # a valid ONNX model that labeltree did not write
    x = onnx.helper.make_tensor_value_info("images", onnx.TensorProto.UINT8, [1])
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Identity", ["images"], ["y"])],
                                                            "g", [x], [onnx.helper.make_tensor_value_info(
                                                                "y", onnx.TensorProto.UINT8, [1])])), str(good))
    out = cli("predict", good, env["images"][0], "-o", tmp_path / "P", code=2)
    assert "without labeltree metadata" in out
    out = cli("predict", tmp_path / "missing.onnx", env["images"][0], "-o", tmp_path / "P", code=2)
    assert "not found" in out
    edited = tmp_path / "edited.onnx"  # labeltree's, with a metadata table cut by hand
    export_onnx(env["flat"], edited)
    proto = onnx.load(str(edited))
    next(p for p in proto.metadata_props if p.key == "labeltree.tables").value = '{"nodes": []}'
    onnx.save(proto, str(edited))
    out = cli("predict", edited, env["images"][0], "-o", tmp_path / "P", code=2)
    assert "labeltree metadata is incomplete" in out and len(out.strip().splitlines()) == 1


def test_missing_deploy_extra_says_how_to_install(env: dict[str, Any], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(LabeltreeError, match=r"pip install 'labeltree\[deploy\]'"):
        OnnxModel(tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)
    out = cli("export", env["flat"], tmp_path / "m.onnx", code=2)
    assert "pip install 'labeltree[deploy]'" in out and len(out.strip().splitlines()) == 1


def test_onnx_predict_never_writes_over_an_input_image(env: dict[str, Any], tmp_path: Path) -> None:
    """-o onto the image folder: a prediction that would replace one of the input images is refused, bytes kept."""
    m = tmp_path / "tiny.onnx"
    cli("export", env["hier"], m)
    src = tmp_path / "imgs"
    src.mkdir()
    photo = env["images"][0]
    (src / "a.png").write_bytes(photo.read_bytes())
    (src / "a_tree.png").write_bytes(photo.read_bytes())  # an input that `predict` would name a_tree.png
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    out = cli("predict", m, src, "-o", src, code=2)
    assert "would replace an input image" in out and "Traceback" not in out
    assert {p.name: p.read_bytes() for p in src.iterdir() if p.name in before} == before


@pytest.mark.parametrize("name,flag", [("a_conf.png", "--confidence"), ("a_L1.png", "--levels"),
                                       ("a_tree.png", "--overlay")])
def test_predict_over_an_input_image_writes_nothing(env: dict[str, Any], tmp_path: Path, name: str,
                                                    flag: str) -> None:
    """Before: a_tree.png (and the rest of the first images' files) were written, then the run stopped at the
    output that was an input; now it is refused before the first file, so the folder is as it was."""
    src = tmp_path / "imgs"
    src.mkdir()
    for n in ("a.png", name):
        (src / n).write_bytes(env["images"][0].read_bytes())
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    out = cli("predict", env["hier"], src, "-o", src, flag, code=2)
    assert "would replace an input image" in out and name in out and "Traceback" not in out
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
