"""`include:` in tree-file extensions, and the default tree a command picks for a dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from labeltree.core.tree_file import default_tree, load_hierarchy
from labeltree.errors import LabeltreeError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def classifier(h, name: str) -> int:
    return [c.name for c in h.classifiers].index(name)


def test_an_included_add_on_is_applied_to_the_including_files_base(tmp_path: Path) -> None:
    # the BDD100K add-on was written against the paper's tree; applied here to the authors' variant
    t = write(tmp_path / "t.yaml", "name: authors+bdd\nextends: cityscapes+vistas+gtsdb-authors\n"
                                   "include: [cityscapes+vistas+gtsdb+bdd100k]\n")
    h = load_hierarchy(t)
    assert h.name == "authors+bdd"
    assert list(h.mappings) == ["cityscapes", "vistas", "gtsdb", "bdd100k", "cityscapes-extended"]
    # the base's supervision override (authors) is kept, the add-on's mapping arrives unchanged
    assert h.supervises("cityscapes", classifier(h, "Traffic Sign"))
    assert not load_hierarchy("cityscapes+vistas+gtsdb+bdd100k").supervises("cityscapes",
                                                                           classifier(h, "Traffic Sign"))
    road = h.mapping("bdd100k").taxonomy.find("road").id
    assert h.nodes[h.mapping("bdd100k").to_node[road]].name == "Driveable"
    assert len(h.nodes) == len(load_hierarchy("cityscapes+vistas+gtsdb").nodes)


def test_include_adds_nodes_and_own_keys_come_after(tmp_path: Path) -> None:
    write(tmp_path / "addon.yaml",
          "extends: cityscapes+vistas+gtsdb\nadd:\n  Bicycle: [Standard Bicycle, Cargo Bike]\n")
    t = write(tmp_path / "t.yaml", "extends: cityscapes+vistas+gtsdb\ninclude: [addon.yaml]\n"
                                   "add:\n  Bicycle: [Tandem]\n")
    h = load_hierarchy(t)
    kids = [h.nodes[k].name for k in h.nodes[h.index["Bicycle"]].children]
    assert kids == ["Standard Bicycle", "Cargo Bike", "Tandem"]
    assert h.name == "cityscapes+vistas+gtsdb+t"


@pytest.mark.parametrize(("include", "message"), [
    ("[missing.yaml]", "include: extension file not found"),
    ("[full.yaml]", "is not an extension"),
    ("[cityscapes+vistas+gtsdb+bdd100k, cityscapes+vistas+gtsdb+bdd100k]", "included twice"),
    ("nope", "include: expected a list"),
])
def test_bad_includes_name_the_problem(tmp_path: Path, include: str, message: str) -> None:
    write(tmp_path / "full.yaml", (Path(load_hierarchy("cityscapes+vistas+gtsdb").path)).read_text())
    t = write(tmp_path / "t.yaml", f"extends: cityscapes+vistas+gtsdb\ninclude: {include}\n")
    with pytest.raises(LabeltreeError, match=message):
        load_hierarchy(t)


def test_the_default_tree_is_the_smallest_bundled_one_that_maps_the_datasets() -> None:
    assert default_tree(["cityscapes"]) == "cityscapes+vistas+gtsdb"
    assert default_tree(["gtsdb", "cityscapes-extended"]) == "cityscapes+vistas+gtsdb"
    assert default_tree(["bdd100k"]) == "cityscapes+vistas+gtsdb+bdd100k"
    assert default_tree(["bdd100k", "vistas"]) == "cityscapes+vistas+gtsdb+bdd100k"
    assert default_tree(["no-such-dataset"]) == "cityscapes+vistas+gtsdb"  # the paper's, which then names the gap
