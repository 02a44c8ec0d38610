"""Every bundled tree maps every id of every dataset it names (or ignores it explicitly), and merge
settles the bundled combinations with nothing left unresolved."""

from __future__ import annotations

import pytest

from labeltree.core.merge import merge
from labeltree.core.tree_file import bundled_hierarchies, load_hierarchy

TREES = sorted(bundled_hierarchies())


@pytest.mark.parametrize("name", TREES)
def test_every_id_of_every_dataset_is_mapped_or_ignored(name: str) -> None:
    h = load_hierarchy(name)
    assert h.name == name
    for key, m in h.mappings.items():
        ids = {c.id for c in m.taxonomy.classes}
        assert set(m.to_node) == ids, (name, key, sorted(ids - set(m.to_node)))
        assert all(n is None or 0 < n < len(h.nodes) for n in m.to_node.values())


@pytest.mark.parametrize(("datasets", "tree", "lod"), [
    (["cityscapes", "vistas-v2.0", "gtsdb"], "cityscapes+vistas-v2.0+gtsdb", 9),
    (["cityscapes", "vistas-v2.0", "gtsdb", "bdd100k", "idd"], "cityscapes+vistas-v2.0+gtsdb+bdd100k+idd", 18),
    (["cityscapes", "vistas", "gtsdb", "bdd100k", "idd"], "cityscapes+vistas+gtsdb+bdd100k+idd", 10),
])
def test_merge_of_the_bundled_sets_leaves_nothing_unresolved(datasets: list[str], tree: str, lod: int) -> None:
    r = merge(datasets)
    assert r.source == "bundled" and r.hierarchy.name == tree
    assert all(not c.unmapped for c in r.coverage.values())
    out = r.to_json()
    assert out["unresolved"] == 0
    settled = [c for c in out["conflicts"] if c["settled"]]
    assert len(settled) == lod and all(c["kind"] == "level-of-detail" for c in settled)
    assert f"0 unresolved, {lod} level-of-detail settled by the tree file" in r.render()
