"""One YAML rule for every file kind (issue 24 step 4, issue 29 deep nesting): a key given twice, a key the
file kind does not know and nesting beyond the bound are one line naming the file and the line, exit 2, no
traceback, for taxonomies, tree files and training configs alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from labeltree.cli import main
from labeltree.core.yamlio import MAX_DEPTH
from labeltree.errors import LabeltreeError
from labeltree.train.config import load_config

TAX = ("name: tiny\nannotation: dense\nencoding: {format: png-ids, ofset: 5}\n"
       "classes:\n- {id: 0, name: a, color: [0, 0, 0]}\n")
CONFIG = "datasets:\n  - {name: cityscapes, root: cs}\ntrain:\n  steps: 10\n  crop: [64, 64]\n"


def refused(args: list[str], *needles: str) -> str:
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output
    for n in needles:
        assert n in res.output, (n, res.output)
    return res.output


def config_error(tmp_path: Path, text: str, *overrides: str) -> str:
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(LabeltreeError) as e:
        load_config(tmp_path / "c.yaml", overrides)
    return str(e.value)


def test_a_training_config_refuses_a_duplicate_key_with_its_line(tmp_path: Path) -> None:
    msg = config_error(tmp_path, CONFIG + "  steps: 20\n")  # YAML alone would train 20 steps
    assert msg.startswith(f"{tmp_path / 'c.yaml'}:6: ") and "'steps' appears twice" in msg and "lines 4 and 6" in msg
    msg = config_error(tmp_path, "train: {steps: 10, steps: 20}\n")
    assert ":1: " in msg and "'steps' appears twice" in msg


def test_training_config_errors_carry_the_line_of_the_key(tmp_path: Path) -> None:
    msg = config_error(tmp_path, CONFIG.replace("steps: 10", "steps: -1"))
    assert f"{tmp_path / 'c.yaml'}:4: invalid training config: train.steps:" in msg and "(got -1)" in msg
    msg = config_error(tmp_path, CONFIG + "  stepz: 5\n")
    assert ":6: " in msg and "unknown key(s) ['stepz'] in train" in msg and "steps" in msg
    msg = config_error(tmp_path, CONFIG.replace("root: cs}", "root: cs, shares: 2}"))
    assert ":2: " in msg and "['shares'] in datasets.0" in msg
    # a bad value that a --set put there is blamed on the --set, not on a line of the file
    msg = config_error(tmp_path, CONFIG, "train.steps=-5")
    assert "train.steps" in msg and "(from --set train.steps=-5)" in msg and "c.yaml: " in msg


def test_a_misspelt_encoding_key_names_itself_and_its_line(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(TAX)  # was loaded silently as offset 0
    refused(["validate", tmp_path / "t.yaml"], f"{tmp_path / 't.yaml'}:3:", "unknown key(s) ['ofset'] in encoding",
            "offset")


@pytest.mark.parametrize(("body", "needles"), [
    ("datasets: [cityscapes]\ntree: [A, B]\nmappings:\n  cityscapes: {by_name: true}\nsupervison: {}\n",
     [":5:", "unknown top-level key(s) ['supervison']", "supervision"]),
    ("datasets: [cityscapes]\ntree: [A, B]\nmappings:\n  cityscapes:\n    by_name: true\n    ignroe: [void]\n",
     [":6:", "unknown key(s) ['ignroe'] in mappings.cityscapes", "allowed: map, ignore, by_name, inherit"]),
    ("datasets: [cityscapes]\ntree: [A, B]\nmappings:\n  cityscapes: {by_name: true}\nsupervision:\n"
     "  overrides:\n    - {dataset: cityscapes, classifier: root, supervize: false}\n",
     [":7:", "['supervize'] in supervision.overrides.0"]),
    ("extends: cityscapes+vistas+gtsdb\nadd:\n  root: [A, B]\nmapings: {}\n", [":4:", "['mapings']"]),
    ("datasets: cityscapes\ntree: [A, B]\nmappings: {}\n", [":1:", "'datasets' must be a list", "not a text"]),
])
def test_unknown_or_misshapen_keys_in_a_tree_file_name_key_and_line(tmp_path: Path, body: str,
                                                                   needles: list[str]) -> None:
    (tmp_path / "t.yaml").write_text(body)
    refused(["validate", tmp_path / "t.yaml"], str(tmp_path / "t.yaml"), *needles)


def test_a_deep_extends_and_include_chain_is_one_line(tmp_path: Path) -> None:
    """40 extensions, each extending the one before and including an add-on: refused at the 16th link
    (it was a RecursionError traceback at about 300)."""
    (tmp_path / "addon.yaml").write_text("extends: cityscapes+vistas+gtsdb\nadd:\n  root: [Kiosk Q, Stall Q]\n")
    prev = "cityscapes+vistas+gtsdb"
    for i in range(40):
        (tmp_path / f"e{i}.yaml").write_text(f"extends: {prev}\ninclude: [addon.yaml]\n" if i == 0
                                             else f"extends: {prev}\n")
        prev = f"e{i}.yaml"
    refused(["validate", tmp_path / "e39.yaml"], "extends: more than 16 tree files extend one another")
    ok = CliRunner().invoke(main, ["validate", str(tmp_path / "e10.yaml")]).output  # 11 links: fine
    assert "ok  " in ok and "(55/10/3/2/43)" in ok


@pytest.mark.parametrize(("text", "line"), [
    ("tree: " + "[" * 5000 + "]" * 5000 + "\n", 1),  # flow style
    ("".join("  " * i + f"k{i}:\n" for i in range(300)) + "  " * 300 + "x\n", MAX_DEPTH),  # block style
    ("a: &a " + "[" * 90 + "1" + "]" * 90 + "\nb: " + "[" * 20 + "*a" + "]" * 20 + "\n", 2),  # through an alias
])
def test_deep_yaml_nesting_is_one_line(tmp_path: Path, text: str, line: int) -> None:
    for name in ("t.yaml", "c.yaml"):
        (tmp_path / name).write_text(text)
    refused(["validate", tmp_path / "t.yaml"], f"t.yaml:{line}:", f"nested more than {MAX_DEPTH} levels deep")
    with pytest.raises(LabeltreeError, match="nested more than"):
        load_config(tmp_path / "c.yaml")


def test_a_tree_nested_too_deep_is_one_line(tmp_path: Path) -> None:
    tree = "".join(f"[{{N{i}: " for i in range(40)) + "[x, y]" + "}]" * 40
    (tmp_path / "t.yaml").write_text(f"datasets: [cityscapes]\ntree: {tree}\nmappings:\n  cityscapes: {{}}\n")
    refused(["validate", tmp_path / "t.yaml"], "t.yaml:2:", "more than 32 levels deep")


def test_train_and_merge_rules_refuse_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(CONFIG + "  steps: 20\n")
    refused(["train", tmp_path / "c.yaml", "--out", tmp_path / "run"], "c.yaml:6:", "'steps' appears twice")
    assert not (tmp_path / "run").exists()
    (tmp_path / "r.yaml").write_text("tree: [Road, Car]\nmappings:\n  cityscapes: {by_name: true, ignroe: []}\n")
    refused(["merge", "cityscapes", "--rules", tmp_path / "r.yaml"], "r.yaml:3:", "['ignroe']")
