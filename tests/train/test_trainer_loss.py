"""The loss of docs/design.md §2.3-2.4 against hand computations on a tiny hand-made mixed batch.

Expected values are plain `torch.nn.functional.cross_entropy` over pixels chosen by hand from the
paper's rules (which dataset supervises which classifier, exclusions, box gating); the loss module's
tables are not used to build the expectation.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labeltree.core.tree_file import load_hierarchy
from labeltree.train.config import config_from_dict
from labeltree.train.loss import LabelMapper, gating_chain, hierarchical_loss, pooled_ce

H = load_hierarchy("cityscapes+vistas+gtsdb")
DATASETS = ["cityscapes", "vistas", "gtsdb"]
HEAD = {c.name: j for j, c in enumerate(H.classifiers)}  # root, Driveable, Rider, Traffic Sign, Traffic Sign (Front)


def pos(head: str, child: str) -> int:
    """Logit position of tree node `child` in classifier `head`."""
    return H.classifiers[HEAD[head]].children.index(H.index[child])


def cid(dataset: str, name: str) -> int:
    tax = H.mapping(dataset).taxonomy
    c = tax.find(name)
    assert c is not None, (dataset, name)
    return tax.stored_value(c.id)


def gtsdb(k: int) -> int:
    return H.mapping("gtsdb").taxonomy.stored_value(k)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """3 images of 2x4 pixels: Cityscapes, Vistas, GTSDB (ds positions 0, 1, 2)."""
    pad_cs = H.tables("cityscapes").targets.shape[1]  # crop padding value: supervises nothing
    cs = [[cid("cityscapes", "road"), cid("cityscapes", "parking"), cid("cityscapes", "traffic sign"),
           cid("cityscapes", "rider")],
          [cid("cityscapes", "unlabeled"), cid("cityscapes", "sky"), pad_cs, cid("cityscapes", "car")]]
    vi = [[cid("vistas", "marking--general"), cid("vistas", "human--rider--bicyclist"),
           cid("vistas", "object--traffic-sign--back"), cid("vistas", "object--traffic-sign--front")],
          [cid("vistas", "void--unlabeled"), cid("vistas", "construction--flat--road"), cid("vistas", "nature--sky"),
           cid("vistas", "human--person")]]
    gt = [[gtsdb(14), gtsdb(1), gtsdb(25), gtsdb(2)],
          [0, 0, 0, 0]]
    return torch.tensor([cs, vi, gt]), torch.tensor([0, 1, 2])


def logits_with_decisions(seed: int = 0) -> list[torch.Tensor]:
    """Random logits, except that the GTSDB image's root / Traffic Sign decisions are forced per pixel."""
    g = torch.Generator().manual_seed(seed)
    out = [torch.randn(3, len(c.children), 2, 4, generator=g) for c in H.classifiers]
    # (y, x) -> (root decision, Traffic Sign decision)
    forced = {(0, 0): ("Traffic Sign", "Traffic Sign (Front)"),  # full path to Front
              (0, 1): ("Traffic Sign", "Traffic Sign (Back)"),  # L1 right, L2 wrong
              (0, 2): ("Sky", "Traffic Sign (Front)"),  # L1 wrong, L2 right
              (0, 3): ("Sky", "Traffic Sign (Back)"),  # both wrong
              (1, 0): ("Traffic Sign", "Traffic Sign (Front)")}  # background pixel on the path
    for (y, x), (r, t) in forced.items():
        out[HEAD["root"]][2, pos("root", r), y, x] += 50.0
        out[HEAD["Traffic Sign"]][2, pos("Traffic Sign", t), y, x] += 50.0
    return [o.requires_grad_() for o in out]


# Hand-derived supervision: (image, y, x, target child) per classifier, before box gating.
DENSE = {
    "root": [(0, 0, 0, "Driveable"), (0, 0, 1, "Driveable"), (0, 0, 2, "Traffic Sign"), (0, 0, 3, "Rider"),
             (0, 1, 1, "Sky"), (0, 1, 3, "Car"),
             (1, 0, 0, "Driveable"), (1, 0, 1, "Rider"), (1, 0, 2, "Traffic Sign"), (1, 0, 3, "Traffic Sign"),
             (1, 1, 1, "Driveable"), (1, 1, 2, "Sky"), (1, 1, 3, "Person")],
    # Cityscapes labels only Parking under Driveable, only Front under Traffic Sign and no rider
    # subclass: it is excluded from those classifiers. Only Vistas pixels remain.
    "Driveable": [(1, 0, 0, "Lane Marking - General"), (1, 1, 1, "Road")],
    "Rider": [(1, 0, 1, "Bicyclist")],
    "Traffic Sign": [(1, 0, 2, "Traffic Sign (Back)"), (1, 0, 3, "Traffic Sign (Front)")],
}
# GTSDB box pixels: (y, x, ClassID, gated-in under path / l1 / l2). The background row never counts.
BOX = [(0, 0, 14, {"path", "l1", "l2"}), (0, 1, 1, {"l1"}), (0, 2, 25, {"l2"}), (0, 3, 2, set())]


def expected(logits: list[torch.Tensor], gating: str) -> dict[str, torch.Tensor]:
    out = {}
    for head, pix in DENSE.items():
        lg = logits[HEAD[head]]
        x = torch.stack([lg[b, :, y, xx] for b, y, xx, _ in pix])
        t = torch.tensor([pos(head, c) for *_, c in pix])
        out[head] = F.cross_entropy(x, t)
    front = "Traffic Sign (Front)"
    sel = [(y, x, k) for y, x, k, ok in BOX if gating in ok]
    if sel:
        lg = logits[HEAD[front]]
        out[front] = F.cross_entropy(torch.stack([lg[2, :, y, x] for y, x, _ in sel]),
                                     torch.tensor([k for *_, k in sel]))  # children in GTSDB ClassID order
    else:
        out[front] = torch.tensor(0.0)
    return out


@pytest.mark.parametrize("gating", ["path", "l1", "l2"])
def test_per_head_losses_equal_hand_computation(gating: str) -> None:
    labels, ds = batch()
    logits = logits_with_decisions()
    mapper = LabelMapper(H, DATASETS)
    chains = {4: gating_chain(H, 4, gating)}
    lambdas = [1.0, 0.1, 0.1, 0.1, 0.1]
    total, per_head = hierarchical_loss(logits, labels, ds, mapper, lambdas, chains)
    exp = expected(logits, gating)
    for j, c in enumerate(H.classifiers):
        torch.testing.assert_close(per_head[j], exp[c.name], rtol=1e-6, atol=1e-6, msg=c.name)
    torch.testing.assert_close(total, exp["root"] + 0.1 * sum(exp[n] for n in exp if n != "root"))
    # the gradient reaches exactly the supervising pixels of each head
    total.backward()
    g = logits[HEAD["Traffic Sign (Front)"]].grad
    assert g is not None
    touched = {(b, y, x) for b, y, x in (g.abs().sum(1) > 0).nonzero().tolist()}
    assert touched == {(2, y, x) for y, x, _, ok in BOX if gating in ok}
    g_root = logits[HEAD["root"]].grad
    assert {(b, y, x) for b, y, x in (g_root.abs().sum(1) > 0).nonzero().tolist()} == \
        {(b, y, x) for b, y, x, _ in DENSE["root"]}  # no loss from GTSDB above the box node


def test_box_gating_chains_follow_the_tree() -> None:
    ts, front = pos("root", "Traffic Sign"), pos("Traffic Sign", "Traffic Sign (Front)")
    assert gating_chain(H, 4, "path") == [(0, ts), (3, front)]
    assert gating_chain(H, 4, "l1") == [(0, ts)]
    assert gating_chain(H, 4, "l2") == [(3, front)]


def test_loss_is_pooled_over_the_batch_not_averaged_per_image() -> None:
    # image 0: one supervising pixel, image 1: three; pooled mean weighs pixels, not images
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 0.0]]], [[[0.0, 1.0]], [[3.0, 0.0]]]]).view(2, 2, 1, 2)
    target = torch.tensor([[[0, 255]], [[1, 0]]], dtype=torch.uint8)
    loss, count = pooled_ce(logits, target)
    pix = [(0, 0, 0), (1, 0, 0), (1, 0, 1)]
    exp = F.cross_entropy(torch.stack([logits[b, :, y, x] for b, y, x in pix]), torch.tensor([0, 1, 0]))
    assert int(count) == 3
    torch.testing.assert_close(loss, exp)
    # no supervising pixel: 0, still connected to the graph (DDP needs every head in the backward)
    empty, n = pooled_ce(logits.requires_grad_(), torch.full_like(target, 255))
    assert float(empty.detach()) == 0.0 and int(n) == 0 and empty.requires_grad


def test_config_lambdas_per_level() -> None:
    cfg = config_from_dict({"datasets": [{"name": "cityscapes", "root": "x"}],
                            "loss": {"lambdas": {1: 1.0, 3: 0.5}, "lambda_default": 0.1}})
    assert [cfg.lam(c.level) for c in H.classifiers] == [1.0, 0.1, 0.1, 0.1, 0.5]
