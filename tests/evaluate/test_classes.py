"""labeltree.evaluate.classes: the class sets, and the paper's >= 1000-pixel rule on the real GTSDB gt."""

import pytest

from labeltree.core.taxonomy import load_taxonomy
from labeltree.errors import LabeltreeError
from labeltree.evaluate.classes import classes_with_pixels_in_both, resolve_classes
from labeltree.evaluate.space import LabelSpace

# -- class sets ---------------------------------------------------------------------------------------

def test_class_sets(tree):
    def n(ds, spec, **kw):
        tax = load_taxonomy(ds)
        return int(resolve_classes(spec, LabelSpace.of(tax), tree, ds, **kw).sum())

    assert n("cityscapes", "official") == 19
    assert n("vistas", "official") == 65
    assert n("gtsdb", "official") == 43
    assert n("cityscapes", "paper") == 27
    assert n("vistas", "paper") == 65
    assert n("cityscapes-extended", "paper") == 43  # the sign classes; means run over those present
    with pytest.raises(LabeltreeError, match="pixel counts"):
        n("gtsdb", "paper")
    counts_a = {0: 5000, 1: 999, 2: 1000}
    counts_b = {0: 1000, 1: 5000, 3: 9000}
    assert classes_with_pixels_in_both(counts_a, counts_b) == [0]
    assert classes_with_pixels_in_both(counts_a, counts_b, min_pixels=999) == [0, 1]
    assert n("gtsdb", "paper", pixel_counts=(counts_a, {0: 1000, 2: 1000})) == 2
    with pytest.raises(LabeltreeError, match="needs the tree"):
        resolve_classes("paper", LabelSpace.of(load_taxonomy("cityscapes")))


def test_gtsdb_paper_rule_on_the_real_gt_gives_the_papers_28(real_gtsdb_root):
    from labeltree.datasets.registry import open_dataset
    from labeltree.evaluate.classes import gtsdb_class_pixels

    root = real_gtsdb_root
    with pytest.warns(UserWarning):
        reader = open_dataset("gtsdb", root)
        train = gtsdb_class_pixels(reader, "train", (512, 850))
    test = gtsdb_class_pixels(reader, "test", (512, 850))
    assert len(classes_with_pixels_in_both(train, test)) == 28
    native = classes_with_pixels_in_both(gtsdb_class_pixels(reader, "train"), gtsdb_class_pixels(reader, "test"))
    assert len(native) > 28  # more pixels at full size: the scale matters
