"""synth.signs: the sign glyphs are distinct and shaped."""

from __future__ import annotations

import numpy as np

from labeltree.core.taxonomy import load_taxonomy
from labeltree.datasets.shapes import shape_mask
from labeltree.synth.signs import draw_sign, glyph_code

# -- signs ----------------------------------------------------------------------------------------------

def test_signs_distinct_and_shaped() -> None:
    gt = load_taxonomy("gtsdb")
    assert len({glyph_code(c.id) for c in gt.classes}) == len(gt.classes)
    pics = {}
    for c in gt.classes:
        for h, w in ((12, 12), (21, 24), (40, 40)):
            pic, mask = draw_sign(c, h, w)
            assert np.array_equal(mask, shape_mask(c.shape, h, w))
            assert (pic[~mask] == 0).all()
        pic, mask = draw_sign(c, 20, 20)
        pics[c.id] = pic
    # every class looks different from every other at 20 px
    ids = sorted(pics)
    for i in ids:
        for j in ids:
            if i < j:
                assert not np.array_equal(pics[i], pics[j]), (i, j)
    # families: mandatory signs are mostly blue, stop mostly red, priority road has yellow
    stop = draw_sign(gt.find("stop"), 30, 30)
    red = (stop[0][..., 0] > 150) & (stop[0][..., 1] < 60)
    assert red.sum() > 0.35 * stop[1].sum()
    go = draw_sign(gt.find("go straight"), 30, 30)
    blue = (go[0][..., 2] > 150) & (go[0][..., 0] < 60)
    assert blue.sum() > 0.4 * go[1].sum()
