"""`labeltree merge` end to end (in-process CLI): the bundled tree's JSON contract, the proposal for
sets no tree covers, -o round trips, tree-file extensions (`extends:`), and the package layout that a
non-editable install needs."""

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from labeltree.cli import main
from labeltree.core.tree_file import load_hierarchy

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> str:
    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def cli_json(*args: str) -> dict:
    return json.loads(CliRunner().invoke(main, [*args, "--format", "json"]).stdout)


@pytest.fixture(scope="module")
def paper() -> dict:
    return cli_json("merge", "cityscapes", "vistas", "gtsdb")


def test_paper_merge_json_contract(paper):
    assert [(c["node"], len(c["classes"])) for c in paper["classifiers"]] == [
        ("root", 53), ("Driveable", 10), ("Rider", 3), ("Traffic Sign", 2), ("Traffic Sign (Front)", 43)]
    assert paper["source"]["kind"] == "bundled"
    names = {n["name"] for n in paper["nodes"]}
    assert len(paper["leaves"]) == 107 and set(paper["leaves"]) <= names
    # every raw id of each dataset maps to a node of the tree or to null (ignored)
    for ds, ids in (("cityscapes", range(34)), ("vistas", range(66)), ("gtsdb", range(43))):
        m = paper["datasets"][ds]
        assert {str(i) for i in ids} <= set(m)
        assert all(m[str(i)] is None or m[str(i)] in names for i in ids)
    cs, vi, gt = (paper["datasets"][d] for d in ("cityscapes", "vistas", "gtsdb"))
    assert (cs["7"], cs["9"], cs["20"], cs["25"], cs["31"]) == (
        "Driveable", "Parking", "Traffic Sign (Front)", "Rider", "On Rails")
    assert [i for i in range(34) if cs[str(i)] is None] == [0, 2, 3, 4, 5, 6, 18] and cs["-1"] is None
    assert (vi["13"], vi["24"], vi["49"], vi["50"], vi["65"]) == (
        "Road", "Lane Marking - General", "Traffic Sign (Back)", "Traffic Sign (Front)", None)
    assert (gt["0"], gt["14"], gt["42"]) == ("Sign: speed limit 20", "Sign: stop",
                                             "Sign: restriction ends (overtaking (trucks))")
    parent = {n["name"]: n["parent"] for n in paper["nodes"]}
    assert parent["Sign: stop"] == "Traffic Sign (Front)" and parent["Traffic Sign (Front)"] == "Traffic Sign"
    assert parent["Person"] == "root" and parent["Bicyclist"] == "Rider"
    counts = {d: c["counts"] for d, c in paper["coverage"].items()}
    assert counts == {"cityscapes": {"leaves": 24, "inner": 3, "ignored": 8, "unmapped": 0},
                      "vistas": {"leaves": 64, "inner": 1, "ignored": 1, "unmapped": 0},
                      "gtsdb": {"leaves": 43, "inner": 0, "ignored": 0, "unmapped": 0}}
    trained = {c["node"]: c["datasets"] for c in paper["classifiers"]}
    assert trained["root"] == ["cityscapes", "vistas"] and trained["Driveable"] == ["vistas"]
    assert trained["Traffic Sign (Front)"] == ["gtsdb"]


def test_paper_merge_conflicts(paper):
    kinds = [c["kind"] for c in paper["conflicts"]]
    assert kinds.count("level-of-detail") == 4 and "unmapped" not in kinds
    lod = [c for c in paper["conflicts"] if c["kind"] == "level-of-detail" and c["node"] == "Driveable"]
    assert len(lod) == 1 and "cityscapes:road" in lod[0]["classes"]
    assert "vistas:Lane Marking - General" in lod[0]["classes"]
    excluded = {(c["datasets"][0], c["node"]) for c in paper["conflicts"] if c["kind"] == "excluded"}
    assert excluded == {("gtsdb", "root"), ("cityscapes", "Driveable"), ("cityscapes", "Traffic Sign"),
                        ("gtsdb", "Traffic Sign")}


def test_cityscapes_vistas_subset():
    d = cli_json("merge", "cityscapes", "vistas")
    assert [(c["node"], len(c["classes"])) for c in d["classifiers"]] == [
        ("root", 53), ("Driveable", 10), ("Rider", 3), ("Traffic Sign", 2)]
    assert d["datasets"]["cityscapes"]["20"] == "Traffic Sign (Front)" and "gtsdb" not in d["datasets"]
    assert len(d["leaves"]) == 65
    assert [len(c.children) for c in load_hierarchy("cityscapes+vistas").classifiers] == [53, 10, 3, 2]


def test_no_rules_proposes_flat_union_and_a_snippet(tmp_path):
    # Vistas v2.0's and Cityscapes' taxonomies as files of the user's: no bundled tree covers either
    # (with the bundled `cityscapes`, merge keeps the tree that knows it: test_merge_extend.py)
    v2 = tmp_path / "vistas-v2.0.yaml"
    v2.write_text((ROOT / "taxonomies" / "vistas-v2.0.yaml").read_text())
    cs = tmp_path / "cityscapes.yaml"
    cs.write_text((ROOT / "taxonomies" / "cityscapes.yaml").read_text())
    assert cli_json("merge", "cityscapes", str(v2))["source"]["kind"] == "extends"
    d = cli_json("merge", str(cs), str(v2))
    assert d["source"]["kind"] == "proposal"
    assert [len(c["classes"]) for c in d["classifiers"]] == [130]  # 34 + 123 - 27 name matches
    assert len(d["name_matches"]) == 27
    ego = {"node": "Ego Vehicle", "classes": [f"{cs}:ego vehicle", f"{v2}:Ego Vehicle"]}
    assert ego in d["name_matches"]
    assert all(v is not None for k, v in d["datasets"][str(cs)].items() if k != "0")
    includes = {c["classes"][0] for c in d["conflicts"] if c["kind"] == "includes"}
    assert includes == {f"{cs}:road", f"{cs}:sidewalk", f"{cs}:rider"}
    # the snippet is a rules file: saved and passed back, it gives the same tree
    rules = tmp_path / "rules.yaml"
    rules.write_text(d["rules_snippet"])
    assert "tree" in yaml.safe_load(d["rules_snippet"])
    again = cli_json("merge", str(cs), str(v2), "--rules", str(rules))
    assert again["source"]["kind"] == "rules"
    assert again["datasets"] == d["datasets"] and again["classifiers"] == d["classifiers"]
    text = cli("merge", str(cs), str(v2))
    assert "rules to start from" in text and "needs a rule" in text


def test_output_tree_file_reads_back(tmp_path):
    out = tmp_path / "tree.yaml"
    res = CliRunner().invoke(main, ["merge", "cityscapes", "vistas", "gtsdb", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output
    assert "ok  " in cli("validate", str(out)) and "(53/10/3/2/43), 107 leaves" in cli("validate", str(out))
    back = cli_json("merge", "cityscapes", "vistas", "gtsdb", "--rules", str(out))
    first = cli_json("merge", "cityscapes", "vistas", "gtsdb")
    assert back["datasets"] == first["datasets"] and back["classifiers"] == first["classifiers"]
    assert back["conflicts"] == first["conflicts"]


BIKES = "id,name,color,synonyms\n0,unlabeled,0 0 0,\n1,road,128 64 128,\n2,cyclist,255 0 100,bicyclist\n" \
        "3,bicycle,119 11 32,\n4,cargo bike,0 130 200,\n"
EXTENSION = """extends: cityscapes+vistas+gtsdb
datasets: [bikes.yaml]
add:
  Bicycle: [Standard Bicycle, Cargo Bike]
mappings:
  bikes.yaml:
    by_name: true
    map: {road: Driveable, bicycle: Standard Bicycle}
    ignore: [unlabeled]
"""


def bikes(tmp_path: Path, ext: str = EXTENSION) -> Path:
    (tmp_path / "bikes.csv").write_text(BIKES)
    cli("import", "table", str(tmp_path / "bikes.csv"), "--name", "bikes", "-o", str(tmp_path / "bikes.yaml"))
    p = tmp_path / "ext.yaml"
    p.write_text(ext)
    return p


def test_extension_adds_a_dataset_and_a_classifier(tmp_path):
    h = load_hierarchy(bikes(tmp_path))
    assert [(c.name, len(c.children)) for c in h.classifiers] == [
        ("root", 53), ("Driveable", 10), ("Rider", 3), ("Traffic Sign", 2), ("Traffic Sign (Front)", 43),
        ("Bicycle", 2)]
    assert h.name == "cityscapes+vistas+gtsdb+ext" and h.datasets == ["cityscapes", "vistas", "gtsdb", "bikes.yaml"]
    m = h.mapping("bikes")
    assert {c: h.nodes[n].name if n is not None else None for c, n in m.to_node.items()} == {
        0: None, 1: "Driveable", 2: "Bicyclist", 3: "Standard Bicycle", 4: "Cargo Bike"}
    # the base's mappings and overrides are kept; its bicycle classes now sit on an inner node
    assert h.nodes[h.mapping("cityscapes").to_node[33]].name == "Bicycle"
    assert [h.supervises("bikes.yaml", j) for j in range(6)] == [True, False, False, False, False, True]
    assert not h.supervises("cityscapes", 1)
    t = h.tables("bikes.yaml")
    bike = h.classifiers[5]
    assert t.targets[5, 4] == bike.children.index(h.index["Cargo Bike"]) == 1
    assert t.targets[0, 4] == h.classifiers[0].children.index(h.index["Bicycle"])
    d = cli_json("merge", "cityscapes", "vistas", "gtsdb", str(tmp_path / "bikes.yaml"), "--rules",
                 str(tmp_path / "ext.yaml"))
    assert [len(c["classes"]) for c in d["classifiers"]] == [53, 10, 3, 2, 43, 2]
    assert d["datasets"]["bikes.yaml"] == {"0": None, "1": "Driveable", "2": "Bicyclist", "3": "Standard Bicycle",
                                           "4": "Cargo Bike"}


def test_extension_of_an_extension_and_relative_paths(tmp_path):
    bikes(tmp_path)
    sub = tmp_path / "more"
    sub.mkdir()
    (sub / "ext2.yaml").write_text("extends: ../ext.yaml\nadd:\n  root: [Scooter, Skateboard]\n")
    h = load_hierarchy(sub / "ext2.yaml")
    assert len(h.classifiers[0].children) == 55 and len(h.classifiers) == 6
    assert h.mapping("bikes").taxonomy.name == "bikes"


@pytest.mark.parametrize(("ext", "needles"), [
    (EXTENSION.replace("cityscapes+vistas+gtsdb", "nosuchtree"), ["ext.yaml:1:", "unknown tree 'nosuchtree'"]),
    (EXTENSION.replace("cityscapes+vistas+gtsdb", "missing.yaml"), ["ext.yaml:1:", "base tree file not found"]),
    (EXTENSION.replace("  Bicycle:", "  Bicycles:"), ["ext.yaml:4:", "'Bicycles' is not a node of the base tree"]),
    (EXTENSION.replace("[Standard Bicycle, Cargo Bike]", "[Cargo Bike]"), ["node 'Bicycle' has one child"]),
    (EXTENSION.replace("  bikes.yaml:", "  cityscapes: {by_name: true}\n  bikes.yaml:"),
     ["ext.yaml:6:", "mappings.cityscapes: dataset is already mapped by the base tree"]),
    (EXTENSION + "tree: [A, B]\n", ["unknown top-level key(s) ['tree']", "it has no 'tree'"]),
    (EXTENSION.replace("bicycle: Standard Bicycle", "bicycle: Standard Bike"),
     ["ext.yaml:8:", "'bicycle' maps to 'Standard Bike', which is not a node"]),
    (EXTENSION.replace("extends: cityscapes+vistas+gtsdb", "extends: ext.yaml"), ["cycle", "extends itself"]),
])
def test_bad_extensions(tmp_path, ext, needles):
    p = bikes(tmp_path, ext)
    res = CliRunner().invoke(main, ["validate", str(p)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and str(p) in res.output
    for n in needles:
        assert n in res.output, (n, res.output)


def test_installed_package_ships_every_subpackage_and_data_file():
    """A non-editable `pip install .` installs only what pyproject lists: every labeltree package and the
    bundled taxonomy and tree files must be there (a missing `labeltree.commands` once broke the CLI)."""
    cfg = (ROOT / "pyproject.toml").read_text()
    listed = set(re.findall(r'"([\w.]+)"', re.search(r"^packages = \[(.*)\]$", cfg, re.M).group(1)))
    for init in sorted((ROOT / "labeltree").rglob("__init__.py")):
        pkg = ".".join(init.parent.relative_to(ROOT).parts)
        assert pkg in listed, f"{pkg} is missing from [tool.setuptools] packages"
    assert {"labeltree.taxonomies", "labeltree.taxonomies.hierarchies"} <= listed
    assert '"labeltree.taxonomies" = ["*.yaml"]' in cfg and '"labeltree.taxonomies.hierarchies" = ["*.yaml"]' in cfg


def test_partial_rules_report_unmapped_and_unlabelled(tmp_path):
    """A rules file that maps only some classes: the rest are matched by name or become new root leaves
    (reported as unmapped), and a classifier/node no dataset labels is reported as unlabelled."""
    (tmp_path / "bikes.csv").write_text(BIKES)
    cli("import", "table", str(tmp_path / "bikes.csv"), "--name", "bikes", "-o", str(tmp_path / "bikes.yaml"))
    rules = tmp_path / "rules.yaml"
    rules.write_text("tree:\n  - Road\n  - Bicycle\n  - Rider: [Bicyclist, Scooterist]\n  - Ghost: [Ghost A, Ghost B]\n"
                     "mappings:\n  bikes.yaml:\n    map: {cyclist: Bicyclist}\n")
    d = cli_json("merge", str(tmp_path / "bikes.yaml"), "--rules", str(rules))
    assert d["source"]["kind"] == "rules"
    # road and bicycle by name, cargo bike a new root leaf, unlabeled ignored (the taxonomy's ignore_ids)
    assert d["datasets"]["bikes.yaml"] == {"0": None, "1": "Road", "2": "Bicyclist", "3": "Bicycle", "4": "cargo bike"}
    assert [(c["node"], c["classes"]) for c in d["classifiers"]][0] == (
        "root", ["Road", "Bicycle", "Rider", "Ghost", "cargo bike"])
    assert d["coverage"]["bikes.yaml"]["counts"] == {"leaves": 4, "inner": 0, "ignored": 1, "unmapped": 0}
    by_kind = {}
    for c in d["conflicts"]:
        by_kind.setdefault(c["kind"], []).append(c)
    assert [c["classes"] for c in by_kind["unmapped"]] == [["bikes.yaml:cargo bike"]]
    unlabelled = {c["node"]: c["classes"] for c in by_kind["unlabelled"]}
    assert set(unlabelled) == {"Rider", "Ghost", None}
    assert unlabelled[None] == ["Scooterist", "Ghost", "Ghost A", "Ghost B"]
    assert [r["node"] for r in d["name_matches"]] == ["Road", "Bicycle"]
