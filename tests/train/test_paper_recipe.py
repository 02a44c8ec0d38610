"""configs/paper.yaml is the authors' recipe, and its tree trains Traffic Sign (Back / Front) on Cityscapes."""

from __future__ import annotations

import numpy as np

from labeltree.core.hierarchy import NO_TARGET
from labeltree.core.tree_file import load_hierarchy
from labeltree.train.config import Augment, load_config


def test_authors_tree_trains_back_front_on_cityscapes() -> None:
    base, authors = load_hierarchy("cityscapes+vistas+gtsdb"), load_hierarchy("cityscapes+vistas+gtsdb-authors")
    assert [c.name for c in base.classifiers] == [c.name for c in authors.classifiers]  # same tree
    j = [c.name for c in base.classifiers].index("Traffic Sign")
    tax = base.mapping("cityscapes").taxonomy
    sign = tax.stored_value(tax.find("traffic sign").id)
    front = authors.classifiers[j].children.index(authors.index["Traffic Sign (Front)"])
    assert not base.tables("cityscapes").supervised[j]  # the single-child rule: Cityscapes labels Front only
    assert base.tables("cityscapes").targets[j, sign] == NO_TARGET
    assert authors.tables("cityscapes").supervised[j]
    assert authors.tables("cityscapes").targets[j, sign] == front
    # nothing else changes: Driveable stays excluded, other datasets' tables are identical
    d = [c.name for c in base.classifiers].index("Driveable")
    assert not authors.tables("cityscapes").supervised[d]
    for ds in ("vistas", "gtsdb"):
        np.testing.assert_array_equal(base.tables(ds).targets, authors.tables(ds).targets)
    rest = [k for k in range(len(base.classifiers)) if k != j]
    np.testing.assert_array_equal(base.tables("cityscapes").targets[rest], authors.tables("cityscapes").targets[rest])


def test_paper_config_is_the_authors_recipe() -> None:
    c = load_config("paper")
    assert c.hierarchy == "cityscapes+vistas+gtsdb-authors"
    assert (c.model.width, c.model.bottleneck) == (256, 256)
    ds = {d.name: d for d in c.datasets}
    assert [ds[n].share for n in ("cityscapes", "vistas", "gtsdb")] == [1, 2, 1]
    assert ds["gtsdb"].resize == (512, 850) and ds["vistas"].resize_mode == "cover"
    assert ds["vistas"].resize == tuple(c.train.crop) == (512, 706)
    assert (c.optim.lr, c.optim.momentum, c.optim.weight_decay, c.optim.gamma) == (0.01, 0.9, 1.7e-4, 0.5)
    assert (c.optim.milestones, c.optim.milestone_unit, c.optim.epoch_dataset) == ([8, 15], "epochs", "vistas")
    assert c.loss.gating == "l2" and c.loss.class_weights is None


def test_paper_config_uses_the_authors_augmentation_on_cityscapes_and_gtsdb_only() -> None:
    for name in ("paper", "paper-vistas-v2"):
        styles = {d.name: d.augment for d in load_config(name).datasets}
        assert [styles[n].style for n in ("cityscapes", "gtsdb")] == ["authors", "authors"]
        vistas = next(a for n, a in styles.items() if n.startswith("vistas"))
        assert vistas == Augment()  # none
        assert all(a.scale == (1.0, 1.0) and not a.hflip for a in styles.values())  # no rescale, no flip
