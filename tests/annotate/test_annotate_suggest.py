"""annotate-extended suggest: per-proposal mean of the Level-3 (GTSDB) probabilities, shown first by confidence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_annotate import GTSDB, tree  # noqa: F401 - the tree fixture

from labeltree.annotate import db
from labeltree.annotate.propose import propose
from labeltree.annotate.suggest import component_means, sign_classifier, suggest, suggest_with
from labeltree.core.tree_file import load_hierarchy

N = len(GTSDB.classes)
SPEED50, STOP = GTSDB.find("speed limit 50").id, GTSDB.find("stop").id


def halves(rgb: np.ndarray) -> np.ndarray:
    """A stand-in network: 'stop' at 0.8 on the left half of the frame, 'speed limit 50' at 0.7 on the right."""
    h, w = rgb.shape[:2]
    p = np.empty((N, h, w))
    p[:, :, : w // 2] = 0.2 / (N - 1)
    p[STOP, :, : w // 2] = 0.8
    p[:, :, w // 2:] = 0.3 / (N - 1)
    p[SPEED50, :, w // 2:] = 0.7
    return p


def test_component_means_are_exact_and_survive_downscaling():
    comps = np.zeros((8, 8), np.uint16)
    comps[0:4, 0:4] = 1
    comps[6, 6] = 2  # one pixel: gone at half resolution
    probs = np.zeros((2, 8, 8))
    probs[0, :, :2] = 1.0
    probs[1] = 1.0 - probs[0]
    m = component_means(probs, comps, [(0, 0, 3, 3), (6, 6, 6, 6)])
    assert np.allclose(m, [[0.5, 0.5], [0.0, 1.0]])
    small = probs[:, ::2, ::2]
    m2 = component_means(small, comps, [(0, 0, 3, 3), (6, 6, 6, 6)])
    assert np.allclose(m2, [[0.5, 0.5], [0.0, 1.0]])  # component 2 read at its box centre


def test_suggestions_fill_proposals_order_the_queue_and_never_touch_decisions(tree: Path, tmp_path: Path):  # noqa: F811
    from starlette.testclient import TestClient

    from labeltree.annotate.server import create_app

    work = tmp_path / "w"
    propose(tree, work, min_size=5, workers=1, progress=False)
    con = db.connect(work)
    db.decide(con, 3, "other", None, client="t")
    con.close()
    r = suggest_with(work, halves, [c.id for c in GTSDB.classes], progress=False)
    assert (r.images, r.proposals) == (2, 3)
    con = db.connect(work)
    got = {row[0]: (row[1], row[2]) for row in con.execute("SELECT proposal_id, class, confidence FROM suggestions")}
    assert [tuple(x) for x in con.execute("SELECT proposal_id, class FROM decisions")] == [(3, "other")]
    con.close()
    # aachen (40 px wide): 150 of the component's 200 pixels lie left of x=20, 50 right of it
    assert got[1][0] == str(STOP) and got[1][1] == pytest.approx((150 * 0.8 + 50 * 0.3 / (N - 1)) / 200)
    assert got[2] == (str(STOP), pytest.approx(0.8))  # frankfurt component 1, x 4..13 of 80
    assert got[3] == (str(SPEED50), pytest.approx(0.7))
    with TestClient(create_app(work, order="confidence")) as c:
        first = c.post("/api/next", json={"client": "a"}).json()["proposal"]
        assert first["id"] == 2 and first["suggestion"] == {"class": str(STOP), "name": "stop", "confidence": 0.8}
        second = c.post("/api/next", json={"client": "a", "after": 2}).json()["proposal"]
        assert second["id"] == 1  # 3 is decided already
        assert c.post("/api/next", json={"client": "a", "after": 1}).json()["proposal"]["id"] == 2  # wraps
    with TestClient(create_app(work)) as c:
        assert c.post("/api/next", json={"client": "b"}).json()["proposal"]["id"] == 1


def test_sign_classifier_is_found_in_the_tree():
    h = load_hierarchy("cityscapes+vistas+gtsdb")
    j, ids = sign_classifier(h)
    assert ids == [c.id for c in GTSDB.classes] and len(h.classifiers[j].children) == N


def test_suggest_runs_a_real_checkpoint(tree: Path, tmp_path: Path):  # noqa: F811
    pytest.importorskip("labeltree.train.predict")
    import torch

    from labeltree.train.checkpoint import save_checkpoint
    from labeltree.train.config import load_config
    from labeltree.train.model import build_model

    cfg = load_config("cpu-tiny")
    h = load_hierarchy(cfg.hierarchy)
    sizes = [len(c.children) for c in h.classifiers]
    torch.manual_seed(0)
    model = build_model(cfg.model, sizes)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, {"config": cfg.model_dump(mode="json"), "model": model.state_dict(), "head_sizes": sizes})
    work = tmp_path / "w"
    propose(tree, work, min_size=5, workers=1, progress=False)
    r = suggest(work, ckpt, device="cpu", progress=False)
    assert (r.images, r.proposals) == (2, 3)
    con = db.connect(work)
    rows = con.execute("SELECT class, confidence FROM suggestions").fetchall()
    con.close()
    assert len(rows) == 3
    assert all(int(cls) in GTSDB.ids and 1.0 / N - 1e-6 <= conf <= 1.0 for cls, conf in rows)
