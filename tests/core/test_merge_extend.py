"""merge keeps the bundled tree it knows and places only the new dataset's classes (issue 26)."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from labeltree.cli import main
from labeltree.core.merge import merge
from labeltree.core.tree_file import load_hierarchy
from labeltree.resources import taxonomy_dir

FIVE = ["root", "Driveable", "Rider", "Traffic Sign", "Traffic Sign (Front)"]


def _renamed_bdd(tmp_path: Path) -> Path:
    data = yaml.safe_load((taxonomy_dir() / "bdd100k.yaml").read_text())
    data["name"] = "newbdd"
    out = tmp_path / "newbdd.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def test_merge_extends_the_papers_tree(tmp_path: Path) -> None:
    new = _renamed_bdd(tmp_path)
    r = merge(["cityscapes", "vistas", "gtsdb", str(new)])
    assert r.source == "extends" and r.source_path is not None and r.source_path.name == "cityscapes+vistas+gtsdb.yaml"
    h = r.hierarchy
    assert [c.name for c in h.classifiers] == FIVE
    snow = next(c for c in h.mapping("gtsdb").taxonomy.classes if "snow" in c.name.lower())
    assert h.nodes[h.mapping("gtsdb").to_node[snow.id]].parent == h.index["Traffic Sign (Front)"]
    m = h.mapping(str(new))
    got = {c.name: (h.nodes[m.to_node[c.id]].name if m.to_node[c.id] is not None else None)
           for c in m.taxonomy.classes}
    bundled = load_hierarchy("cityscapes+vistas+gtsdb+bdd100k")
    b = bundled.mapping("bdd100k")
    want = {c.name: (bundled.nodes[b.to_node[c.id]].name if b.to_node[c.id] is not None else None)
            for c in b.taxonomy.classes}
    assert got == want  # the bundled add-on, class for class


def test_merge_writes_an_extension_file(tmp_path: Path) -> None:
    new = _renamed_bdd(tmp_path)
    out = tmp_path / "ext.yaml"
    res = CliRunner().invoke(main, ["merge", "cityscapes", "vistas", "gtsdb", str(new), "-o", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert 'extends: "cityscapes+vistas+gtsdb"' in text and 'datasets: ["newbdd.yaml"]' in text
    h = load_hierarchy(out)
    assert [c.name for c in h.classifiers] == FIVE
    assert h.nodes[h.mapping("newbdd").to_node[0]].name == "Driveable"


def test_flat_union_never_joins_a_sign_type_with_terrain(tmp_path: Path) -> None:
    """No bundled tree knows either file: the flat union by name keeps GTSDB's 'snow' sign off 'Snow'."""
    gt, vi = tmp_path / "signs.yaml", tmp_path / "streets.yaml"
    gt.write_text((taxonomy_dir() / "gtsdb.yaml").read_text())
    vi.write_text((taxonomy_dir() / "vistas-v1.2.yaml").read_text())
    r = merge([str(vi), str(gt)])
    assert r.source == "proposal"
    h = r.hierarchy
    snow_sign = next(c for c in h.mapping(str(gt)).taxonomy.classes if "snow" in c.name.lower())
    snow = next(c for c in h.mapping(str(vi)).taxonomy.classes if c.display == "Snow")
    assert h.mapping(str(gt)).to_node[snow_sign.id] != h.mapping(str(vi)).to_node[snow.id]
