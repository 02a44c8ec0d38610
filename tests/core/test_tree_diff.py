"""`labeltree tree-diff` (issue 27): per dataset, which classes keep their node (comparable numbers), which
moved and where, which datasets are new or gone; on the bundled trees and small edits of the paper's tree."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import labeltree as lt
from labeltree.cli import main
from labeltree.core.hierarchy import tree_signature
from labeltree.core.tree_diff import diff_signatures, node_paths

PAPER = "cityscapes+vistas+gtsdb"
PAPER_FILE = Path(__file__).resolve().parents[2] / "taxonomies" / "hierarchies" / f"{PAPER}.yaml"


def run(*args: str, code: int = 0) -> str:
    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == code, res.output
    return res.output


def test_idd_add_on_keeps_every_old_class() -> None:
    d = lt.tree_diff(PAPER, f"{PAPER}+idd")
    assert d.added_datasets == ["idd"] and d.removed_datasets == []
    counts = {x.name: (len(x.kept), len(x.moved), len(x.added), len(x.removed), x.comparable) for x in d.datasets}
    assert counts == {"cityscapes": (34, 0, 0, 0, True), "vistas": (66, 0, 0, 0, True), "gtsdb": (43, 0, 0, 0, True),
                      "cityscapes-extended": (77, 0, 0, 0, True)}


def test_vistas_v2_tree_splits_traffic_light_and_replaces_vistas() -> None:
    out = json.loads(run("tree-diff", PAPER, "cityscapes+vistas-v2.0+gtsdb", "--format", "json"))
    assert out["added_datasets"] == ["vistas-v2.0"] and out["removed_datasets"] == ["vistas"]
    cs = out["datasets"]["cityscapes"]
    assert cs["comparable"] and cs["refined"] == ["traffic light"] and cs["moved"] == []
    assert "traffic light" in cs["kept"] and len(cs["kept"]) == 34
    text = run("tree-diff", PAPER, "cityscapes+vistas-v2.0+gtsdb")
    assert "dataset 'vistas' is not in the new tree" in text and "'traffic light'" in text


def test_a_moved_class_and_a_renamed_node_are_not_comparable(tmp_path: Path) -> None:
    text = PAPER_FILE.read_text()
    (tmp_path / "moved.yaml").write_text(text.replace("caravan: Caravan", "caravan: Trailer"))
    (tmp_path / "renamed.yaml").write_text(text.replace("  - Rider:\n", "  - Riders:\n")
                                           .replace("rider: Rider ", "rider: Riders "))
    d = lt.tree_diff(PAPER, tmp_path / "moved.yaml").to_json()["datasets"]
    assert d["cityscapes"]["moved"] == [{"class": "caravan", "from": "Caravan", "to": "Trailer"}]
    assert not d["cityscapes"]["comparable"] and d["vistas"]["comparable"]
    out = run("tree-diff", PAPER, str(tmp_path / "renamed.yaml"))
    assert "cityscapes: 'rider' moved: 'Rider' -> 'Riders'" in out
    assert "vistas: 'Bicyclist' moved: 'Rider > Bicyclist' -> 'Riders > Bicyclist'" in out


def test_signatures_compare_by_value_and_path() -> None:
    old = {"nodes": [["root", None], ["A", "root"], ["B", "root"], ["C", "A"]],
           "datasets": {"x": [[1, "C"], [2, "B"], [3, None], [4, "A"]], "gone": [[0, "A"]]}}
    new = {"nodes": [["root", None], ["A", "root"], ["B", "root"], ["C", "B"], ["D", "B"]],
           "datasets": {"x": [[1, "C"], [2, "B"], [3, None], [5, "D"]], "fresh": [[0, "D"]]}}
    assert node_paths(new)[0]["C"] == "B > C" and node_paths(new)[1] == {"root", "B"}
    d = diff_signatures(old, new, {"x": {1: "one", 2: "two"}})
    (x,) = d.datasets
    assert x.moved == [{"class": "one", "from": "A > C", "to": "B > C"}]
    assert x.kept == ["two", "value 3"] and x.refined == ["two"]
    assert x.added == ["value 5"] and x.removed == ["value 4"]
    assert d.added_datasets == ["fresh"] and d.removed_datasets == ["gone"]
    renamed = {**new, "nodes": [["root", None], ["A2", "root"], ["B", "root"], ["C", "A2"]],
               "datasets": {"x": [[1, "C"], [4, "A2"]]}}
    (x,) = diff_signatures(old, renamed, renames={"A": "A2"}).datasets
    assert x.kept == ["value 1", "value 4"] and x.removed == ["value 2", "value 3"] and not x.moved


def test_tree_diff_of_a_tree_with_itself_and_bad_input(tmp_path: Path) -> None:
    d = lt.tree_diff(PAPER, PAPER)
    assert all(x.comparable and not x.refined for x in d.datasets) and not d.added_datasets
    assert d.to_json() == lt.tree_diff(lt.load_tree(PAPER), PAPER).to_json()
    assert tree_signature(lt.load_tree(PAPER))["nodes"][0] == ["root", None]
    out = run("tree-diff", PAPER, str(tmp_path / "missing.yaml"), code=2)
    assert out.startswith("error: ") and len(out.strip().splitlines()) == 1
