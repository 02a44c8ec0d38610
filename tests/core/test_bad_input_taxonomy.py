"""Bad taxonomy / tree / rules files through the CLI: exit 2, one message naming file, line and class,
no traceback (docs/design.md §5, issue 2 item 8)."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from labeltree.cli import main

TAX_HEAD = """name: tiny
annotation: dense
encoding: {format: png-ids, dtype: uint8}
classes:
"""
GOOD_CLASSES = """- {id: 0, name: void, color: [0, 0, 0]}
- {id: 1, name: road, color: [128, 64, 128]}
- {id: 2, name: car, color: [0, 0, 142]}
"""


def run(*args: str):
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output  # click >= 8.2: stdout and stderr interleaved


def bad(args: list[str], *needles: str) -> str:
    code, out = run(*args)
    assert code == 2, out
    assert "Traceback" not in out
    for n in needles:
        assert n in out, f"{n!r} not in {out!r}"
    return out


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def tax(tmp_path: Path, classes: str = GOOD_CLASSES, name: str = "tiny.yaml", head: str = TAX_HEAD) -> Path:
    return write(tmp_path, name, head + classes)


def tree(tmp_path: Path, body: str, name: str = "tree.yaml") -> Path:
    """A tree file over the tiny taxonomy (written next to it)."""
    tax(tmp_path)
    return write(tmp_path, name, "name: t\ndatasets: [tiny.yaml]\n" + body)


GOOD_TREE = """tree:
  - Road
  - Car
mappings:
  tiny.yaml:
    map: {road: Road, car: Car}
    ignore: [void]
"""


def test_good_files_pass(tmp_path):
    code, out = run("validate", str(tax(tmp_path)), str(tree(tmp_path, GOOD_TREE)))
    assert code == 0, out
    assert "2 leaves" in out


def test_yaml_syntax_error_names_line(tmp_path):
    p = tax(tmp_path, GOOD_CLASSES + "- {id: 3, name: [unclosed, color: [1, 2, 3]}\n")
    out = bad(["validate", str(p)], str(p), "YAML syntax error")
    assert f"{p}:8:" in out  # the broken class is on line 8


def test_empty_file(tmp_path):
    p = write(tmp_path, "empty.yaml", "  \n")
    bad(["validate", str(p)], str(p), "empty")


def test_binary_file(tmp_path):
    p = write(tmp_path, "bin.yaml", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    bad(["validate", str(p)], str(p), "binary")


def test_missing_file(tmp_path):
    p = tmp_path / "nope.yaml"
    bad(["validate", str(p)], str(p), "not found")
    bad(["merge", "cityscapes", str(p)], "nope.yaml", "not found")


def test_unknown_dataset_name():
    out = bad(["merge", "cityscapez", "vistas"], "unknown dataset 'cityscapez'", "cityscapes")
    assert "searched" in out


def test_unknown_dataset_in_tree_file(tmp_path):
    p = write(tmp_path, "t.yaml", "datasets: [cityscapez]\ntree: [A, B]\nmappings:\n  cityscapez: {by_name: true}\n")
    bad(["validate", str(p)], f"{p}:4:", "unknown dataset 'cityscapez'")


def test_duplicate_ids(tmp_path):
    p = tax(tmp_path, GOOD_CLASSES + "- {id: 2, name: bus, color: [0, 60, 100]}\n")
    bad(["validate", str(p)], f"{p}:8:", "'bus'", "duplicate id 2", "'car'")


def test_duplicate_names(tmp_path):
    p = tax(tmp_path, GOOD_CLASSES + "- {id: 3, name: car, color: [0, 60, 100]}\n")
    bad(["validate", str(p)], f"{p}:8:", "'car'", "duplicate name")


def test_class_mapped_twice(tmp_path):
    p = tree(tmp_path, GOOD_TREE.replace("ignore: [void]", "ignore: [void, car]"))
    bad(["validate", str(p)], f"{p}:9:", "'car'", "mapped twice", "in map and in ignore")


def test_class_mapped_twice_by_duplicate_key(tmp_path):
    p = tree(tmp_path, GOOD_TREE.replace("map: {road: Road, car: Car}", "map: {road: Road, car: Car, road: Car}"))
    bad(["validate", str(p)], f"{p}:8:", "'road' appears twice")


def test_class_neither_mapped_nor_ignored(tmp_path):
    p = tree(tmp_path, GOOD_TREE.replace("ignore: [void]\n", ""))
    bad(["validate", str(p)], f"{p}:7:", "'void' (id 0)", "neither mapped", "ignore")


def test_rule_names_missing_class(tmp_path):
    p = tree(tmp_path, GOOD_TREE.replace("car: Car}", "car: Car, truck: Car}"))
    bad(["validate", str(p)], f"{p}:8:", "'truck' is not a class")
    # the same through merge --rules
    bad(["merge", str(tmp_path / "tiny.yaml"), "--rules", str(p)], "'truck' is not a class", str(p))


def test_rule_maps_to_missing_node(tmp_path):
    p = tree(tmp_path, GOOD_TREE.replace("car: Car}", "car: Truck}"))
    bad(["validate", str(p)], f"{p}:8:", "'car'", "'Truck'", "not a node")


def test_node_with_one_child(tmp_path):
    p = tree(tmp_path, GOOD_TREE.replace("  - Car\n", "  - Vehicle:\n      - Car\n"))
    bad(["validate", str(p)], f"{p}:5:", "'Vehicle' has one child ('Car')")


def test_duplicate_node_name(tmp_path):
    p = tree(tmp_path, GOOD_TREE.replace("  - Car\n", "  - Car\n  - Road\n"))
    bad(["validate", str(p)], f"{p}:6:", "'Road' appears twice")


def test_cycle_via_yaml_alias(tmp_path):
    body = "tree:\n  - Road\n  - &v {Vehicle: [Car, *v]}\nmappings:\n  tiny.yaml: {by_name: true, ignore: [void]}\n"
    p = tree(tmp_path, body)
    bad(["validate", str(p)], str(p), "cycle", "'Vehicle' appears inside itself")


def test_colour_not_rgb(tmp_path):
    p = tax(tmp_path, GOOD_CLASSES.replace("[0, 0, 142]", "[0, 142]"))
    bad(["validate", str(p)], f"{p}:7:", "classes.2.color", "'car'", "RGB triple")
    p = tax(tmp_path, GOOD_CLASSES.replace("[0, 0, 142]", "[0, 0, 300]"), name="t2.yaml")
    bad(["validate", str(p)], f"{p}:7:", "0..255")


def test_id_does_not_fit_encoding(tmp_path):
    p = tax(tmp_path, GOOD_CLASSES + "- {id: 256, name: bus, color: [0, 60, 100]}\n")
    bad(["validate", str(p)], f"{p}:8:", "'bus'", "does not fit uint8")


def test_bad_import_table_row(tmp_path):
    p = write(tmp_path, "t.csv", "id,name,color\n0,void,\"0,0,0\"\n1,road,\"128,64\"\n")
    bad(["import", "table", str(p)], f"{p}:3:", "'road'", "colour")
    p = write(tmp_path, "d.tsv", "id\tname\tcolor\n0\tvoid\t0,0,0\n0\troad\t1,2,3\n")
    bad(["import", "table", str(p)], f"{p}:3:", "'road'", "duplicate id 0")


@pytest.mark.parametrize("text", ["[1, 2, 3]\n", "just a string\n"])
def test_not_a_mapping(tmp_path, text):
    p = write(tmp_path, "x.yaml", text)
    bad(["validate", str(p)], str(p), "neither a taxonomy")
