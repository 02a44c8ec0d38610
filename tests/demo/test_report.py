"""demo.report: the verdict says whichever way the numbers fall."""

from __future__ import annotations

from labeltree.demo.report import verdict


def test_verdict_says_when_flat_wins():
    flat_better = {"mPA": 0.5, "mIoU": 0.4}
    hier = {"mPA": 0.3, "mIoU": 0.2}
    m = {"hierarchical": {"cityscapes": hier, "cityscapes-extended": hier},
         "flat": {"cityscapes": flat_better, "cityscapes-extended": flat_better}}
    text = "\n".join(verdict(m, 1 / 43))
    assert "the flat baseline wins" in text and "hierarchical better on none" in text
