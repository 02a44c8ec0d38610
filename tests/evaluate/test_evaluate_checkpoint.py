"""`evaluate --checkpoint` under the protocols: tree nodes vs `labeltree predict` ids, the flat model's sign rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from labeltree.core.taxonomy import load_taxonomy  # noqa: E402
from labeltree.core.tree_file import load_hierarchy  # noqa: E402
from labeltree.evaluate.folder import evaluate_folder  # noqa: E402
from labeltree.evaluate.protocols import resolve_rules  # noqa: E402

H, W = 32, 64


def _checkpoint(tmp_path: Path, kind: str, bias: dict[str, float] | None = None) -> Path:
    from labeltree.train.checkpoint import save_checkpoint
    from labeltree.train.config import load_config
    from labeltree.train.loss import flat_space
    from labeltree.train.model import build_model

    cfg = load_config("cpu-tiny")
    cfg.model.kind = kind
    h = load_hierarchy(cfg.hierarchy)
    if kind == "flat":
        fs = flat_space(h, [d.name for d in cfg.datasets])
        sizes = [fs.n_classes]
    else:
        sizes = [len(c.children) for c in h.classifiers]
    torch.manual_seed(0)
    model = build_model(cfg.model, sizes)
    if bias is not None:  # constant logits: every pixel's ranking is known
        names = fs.names(h)
        with torch.no_grad():
            model.heads[0].logits.weight.zero_()
            model.heads[0].logits.bias.zero_()
            for name, v in bias.items():
                model.heads[0].logits.bias[names.index(name)] = v
    path = tmp_path / f"{kind}.pt"
    save_checkpoint(path, {"config": cfg.model_dump(mode="json"), "model": model.state_dict(), "head_sizes": sizes})
    return path


def _dataset(root: Path, label: np.ndarray, n: int = 2) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        key = f"aachen_{i:06d}_000019"
        (root / "gtFine/val/aachen").mkdir(parents=True, exist_ok=True)
        (root / "leftImg8bit/val/aachen").mkdir(parents=True, exist_ok=True)
        Image.fromarray(label).save(root / f"gtFine/val/aachen/{key}_gtFine_labelIds.png")
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(
            root / f"leftImg8bit/val/aachen/{key}_leftImg8bit.png")


def test_hierarchical_checkpoint_ids_and_tree_nodes_agree_under_paper(tmp_path: Path) -> None:
    from labeltree.infer import open_model, predict_files

    lab = np.full((H, W), 7, np.uint8)
    lab[:8] = 23  # sky
    lab[20:, 30:50] = 26  # car
    lab[-2:] = 0
    _dataset(tmp_path / "cs", lab)
    ckpt = _checkpoint(tmp_path, "hierarchical")
    predict_files(ckpt, [tmp_path / "cs/leftImg8bit/val"], tmp_path / "out", dataset="cityscapes", colour=False,
                  device="cpu", progress=False)
    h = load_hierarchy("cityscapes+vistas+gtsdb")
    predict = open_model(ckpt).predictor("cityscapes")
    assert predict.pred_space == "tree"
    for protocol in ("paper", "official"):
        ids = evaluate_folder("cityscapes", tmp_path / "cs", tmp_path / "out/cityscapes", "val", hierarchy=h,
                              rules=protocol, workers=1, progress=False)
        nodes = evaluate_folder("cityscapes", tmp_path / "cs", None, "val", predict=predict, hierarchy=h,
                                rules=protocol, workers=1, progress=False)
        ev = nodes.evaluator
        dropped = int(ev.matrix[np.flatnonzero(ev.evaluated)][:, ev._col_drop()].sum())
        assert (dropped > 0) == (protocol == "paper")  # the random net predicts nodes Cityscapes lacks
        assert ids["protocol"] == nodes["protocol"] == protocol
        assert ids["classes"] == nodes["classes"] and ids["mIoU"] == nodes["mIoU"], protocol
        assert ids["confusion"]["matrix"] == nodes["confusion"]["matrix"]


def test_flat_checkpoint_second_choice_rule_equals_hand_computation(tmp_path: Path) -> None:
    from labeltree.infer import open_model

    ext = load_taxonomy("cityscapes-extended")
    s80, stop = (ext.stored_value(ext.find(n).id) for n in ("speed limit 80", "stop"))
    lab = np.full((H, W), 7, np.uint16)  # road
    lab[16:, :20] = s80
    lab[16:, 40:] = stop
    _dataset(tmp_path / "ext", lab, n=1)
    # every pixel: top-1 the generic sign class, top-2 'speed limit 80'
    ckpt = _checkpoint(tmp_path, "flat", {"Traffic Sign (Front)": 10.0, "Sign: speed limit 80": 5.0})
    predict = open_model(ckpt).predictor("cityscapes-extended")
    assert predict.pred_space == "dataset"  # a flat model's ids, never read as tree nodes
    h = load_hierarchy("cityscapes+vistas+gtsdb")
    res = evaluate_folder("cityscapes-extended", tmp_path / "ext", None, "val", predict=predict, hierarchy=h,
                          rules=resolve_rules("paper", "cityscapes-extended", classes="all"), workers=1, progress=False)
    assert res["rules"]["sign_rule"] is True
    n80, nstop, nroad = int((lab == s80).sum()), int((lab == stop).sum()), int((lab == 7).sum())
    c = res["classes"]
    # the rule turns every pixel into 'speed limit 80': right on its signs, a confusion on the stop sign
    assert (c["speed limit 80"]["TP"], c["speed limit 80"]["FP"]) == (n80, nstop + nroad)
    assert c["speed limit 80"]["IoU"] == pytest.approx(n80 / (n80 + nstop + nroad))
    assert c["stop"]["FN"] == nstop and c["stop"]["IoU"] == 0.0 and c["road"]["IoU"] == 0.0
    assert res["mIoU"] == pytest.approx(n80 / (n80 + nstop + nroad) / 3)
    # without the rule the generic sign is Cityscapes Extended's 'traffic sign' everywhere: no sign class right
    off = evaluate_folder("cityscapes-extended", tmp_path / "ext", None, "val", predict=predict, hierarchy=h,
                          rules=resolve_rules("paper", "cityscapes-extended", classes="all", sign_rule=False),
                          workers=1, progress=False)
    assert off["rules"]["overrides"] == ["classes=all", "sign_rule=False"]
    assert off["classes"]["speed limit 80"]["TP"] == 0 and off["classes"]["traffic sign"]["FP"] == H * W
