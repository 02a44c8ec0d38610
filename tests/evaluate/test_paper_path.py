"""The paper protocol's decision path (the authors' define_estimator.py:515-566): on GTSDB and Cityscapes
Extended, Level 1 'Traffic Sign' goes straight to the sign classifier; Back / Front is never asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_evaluate_checkpoint import H, W, _dataset

from labeltree.core.taxonomy import load_taxonomy
from labeltree.core.tree_file import load_hierarchy
from labeltree.evaluate.classes import decision_skips
from labeltree.evaluate.evaluator import Evaluator
from labeltree.evaluate.folder import evaluate_folder
from labeltree.evaluate.protocols import resolve_rules

torch = pytest.importorskip("torch")

TREE = load_hierarchy("cityscapes+vistas+gtsdb")
NAMES = [c.name for c in TREE.classifiers]
TS, FRONT = NAMES.index("Traffic Sign"), NAMES.index("Traffic Sign (Front)")


def _scores(first: str, second: str, third: str) -> list[np.ndarray]:
    """One pixel's hand-built scores: each classifier's argmax is the named child (others score 0)."""
    out = []
    for c in TREE.classifiers:
        s = np.zeros((len(c.children), 1, 1))
        for name in (first, second, third):
            if TREE.index[name] in c.children:
                s[c.children.index(TREE.index[name])] = 1.0
        out.append(s)
    return out


def test_which_classifiers_the_authors_path_skips() -> None:
    front = TREE.index["Traffic Sign (Front)"]
    for ds in ("gtsdb", "cityscapes-extended"):
        assert decision_skips(resolve_rules("paper", ds), TREE, ds) == {TS: front}
        assert decision_skips(resolve_rules("official", ds), TREE, ds) == {TS: front}  # no tool: paper rules
    for ds in ("cityscapes", "vistas"):  # Cityscapes' 'traffic sign' is Front itself; Vistas has Back and Front
        assert decision_skips(resolve_rules("paper", ds), TREE, ds) == {}
    assert decision_skips(resolve_rules("official", "cityscapes"), TREE, "cityscapes") == {}
    assert resolve_rules("paper", "gtsdb").as_dict()["path"] == "direct"
    assert resolve_rules("official", "vistas").path == "cascade"


def test_l1_sign_l2_back_l3_right_is_counted_right() -> None:
    scores = _scores("Traffic Sign", "Traffic Sign (Back)", "Sign: stop")
    assert int(TREE.cascade(scores)[0, 0]) == TREE.index["Traffic Sign (Back)"]
    skip = decision_skips(resolve_rules("paper", "gtsdb"), TREE, "gtsdb")
    node = TREE.cascade(scores, skip=skip)
    assert int(node[0, 0]) == TREE.index["Sign: stop"]
    assert int(TREE.cascade([torch.from_numpy(s) for s in scores], skip=skip)[0, 0]) == TREE.index["Sign: stop"]
    gts = load_taxonomy("gtsdb")
    stop = gts.stored_value(gts.find("stop").id)
    for path_node, tp in ((node, 1), (TREE.cascade(scores), 0)):
        ev = Evaluator("gtsdb", hierarchy=TREE, pred_space="tree", protocol="paper", classes=[gts.find("stop").id])
        ev.add(np.full((1, 1), stop, np.uint16), path_node)
        assert ev.result()["classes"]["stop"]["TP"] == tp  # the full cascade says Back: the pixel is dropped
    # Level 1 still decides: a pixel Level 1 calls Car is no sign, whatever the classifiers below say
    car = TREE.cascade(_scores("Car", "Traffic Sign (Front)", "Sign: stop"), skip=skip)
    assert int(car[0, 0]) == TREE.index["Car"]


def test_evaluate_checkpoint_takes_the_authors_path_on_cityscapes_extended(tmp_path: Path) -> None:
    from labeltree.infer import open_model
    from labeltree.train.checkpoint import save_checkpoint
    from labeltree.train.config import load_config
    from labeltree.train.model import build_model

    cfg = load_config("cpu-tiny")
    h = load_hierarchy(cfg.hierarchy)
    assert [c.name for c in h.classifiers] == NAMES
    sizes = [len(c.children) for c in h.classifiers]
    torch.manual_seed(0)
    model = build_model(cfg.model, sizes)
    with torch.no_grad():  # constant logits: Level 1 Traffic Sign, Back / Front says Back, the sign head stop
        for j, head in enumerate(model.heads):
            head.logits.weight.zero_()
            head.logits.bias.zero_()
            for name in ("Traffic Sign", "Traffic Sign (Back)", "Sign: stop"):
                if h.index[name] in h.classifiers[j].children:
                    head.logits.bias[h.classifiers[j].children.index(h.index[name])] = 10.0
    ckpt = tmp_path / "h.pt"
    save_checkpoint(ckpt, {"config": cfg.model_dump(mode="json"), "model": model.state_dict(), "head_sizes": sizes})
    ext = load_taxonomy("cityscapes-extended")
    stop = ext.stored_value(ext.find("stop").id)
    lab = np.full((H, W), 7, np.uint16)
    lab[16:, 40:] = stop
    _dataset(tmp_path / "ext", lab, n=1)
    predict = open_model(ckpt).predictor("cityscapes-extended")
    res = evaluate_folder("cityscapes-extended", tmp_path / "ext", None, "val", predict=predict, hierarchy=h,
                          rules=resolve_rules("paper", "cityscapes-extended", classes="all"), workers=1, progress=False)
    n = int((lab == stop).sum())
    assert res["rules"]["path"] == "direct"
    assert (res["classes"]["stop"]["TP"], res["classes"]["stop"]["FP"]) == (n, H * W - n)  # every pixel: stop
    full = resolve_rules("paper", "cityscapes-extended", classes="all", path="cascade")
    cascade = evaluate_folder("cityscapes-extended", tmp_path / "ext", None, "val", predict=predict, hierarchy=h,
                              rules=full, workers=1, progress=False)
    assert cascade["rules"]["overrides"] == ["classes=all", "path=cascade"]
    assert cascade["classes"]["stop"]["TP"] == 0  # Back: a node Extended lacks, dropped
