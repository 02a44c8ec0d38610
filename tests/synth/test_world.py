"""synth.world: one painted frame gives consistent labels in every dataset (Vistas' classes fold into Cityscapes')."""

from __future__ import annotations

from synth_helpers import SIZE

from labeltree.core.taxonomy import load_taxonomy
from labeltree.synth.paint import render_scene
from labeltree.synth.world import get_world


def test_vistas_fine_classes_fold_into_cityscapes() -> None:
    """The same frame in both label spaces: every Vistas driveable class is Cityscapes road, riders are rider."""
    world = get_world()
    cs, vi = load_taxonomy("cityscapes"), load_taxonomy("vistas")
    road = cs.find("road").id
    counted = 0
    for i in range(6):
        sc = render_scene("vistas", 11, i, *SIZE, world=world)
        lv, lc = world.labels("vistas", sc.nodes), world.labels("cityscapes", sc.nodes)
        for name in ("Lane Marking - General", "Lane Marking - Crosswalk", "Manhole", "Bike Lane",
                     "Crosswalk - Plain", "Catch Basin", "Road"):
            m = lv == vi.find(name).id
            counted += int(m.sum())
            assert (lc[m] == road).all(), name
        for name in ("Bicyclist", "Motorcyclist"):
            assert (lc[lv == vi.find(name).id] == cs.find("rider").id).all()
        assert (lc[lv == vi.find("Traffic Sign (Front)").id] == cs.find("traffic sign").id).all()
    assert counted > 0
