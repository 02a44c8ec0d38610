"""A name is a bundled taxonomy, tree or config; a path is a path (issue 29): commands run from a data
folder holding cityscapes/, vistas/, gtsdb/, idd/, bdd100k/ (the layout configs/paper.yaml prescribes)
read the bundled taxonomies, never those folders."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from labeltree.cli import main
from labeltree.core.taxonomy import bundled_taxonomies, load_taxonomy, resolve_taxonomy_path
from labeltree.core.tree_file import load_hierarchy
from labeltree.core.yamlio import load_yaml
from labeltree.errors import LabeltreeError
from labeltree.resources import is_path_ref, taxonomy_dir
from labeltree.train.config import find_config, load_config

DATASET_FOLDERS = ("cityscapes", "vistas", "gtsdb", "idd", "bdd100k", "cpu-tiny", "cityscapes+vistas+gtsdb")


@pytest.fixture
def data_folder(tmp_path, monkeypatch):
    """A working directory holding a folder named like each dataset (and a config, and a tree)."""
    for name in DATASET_FOLDERS:
        (tmp_path / name).mkdir()
    d = tmp_path / "cityscapes/gtFine/val/aachen"
    d.mkdir(parents=True)
    (tmp_path / "pred").mkdir()
    for k in range(2):
        lab = np.full((8, 16), 7, np.uint8)
        lab[: 2 + k, :5] = 26
        Image.fromarray(lab).save(d / f"aachen_00000{k}_000019_gtFine_labelIds.png")
        Image.fromarray(np.where(lab == 26, 24, lab).astype(np.uint8)).save(
            tmp_path / "pred" / f"aachen_00000{k}_000019.png")
    (tmp_path / "gtsdb/gt.txt").write_text("00000.ppm;2;2;9;9;14\n")
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(tmp_path / "gtsdb/00000.ppm")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _ok(*args: str) -> str:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, (args, r.output, r.exception)
    return r.output


def test_the_rule():
    assert not is_path_ref("cityscapes") and not is_path_ref("cityscapes+vistas+gtsdb")
    assert not is_path_ref("vistas-v2.0")  # a dot is no suffix
    assert is_path_ref("./cityscapes") and is_path_ref("mine.yaml") and is_path_ref("a/b") and is_path_ref("x.YML")


def test_commands_from_a_data_folder(data_folder):
    out = json.loads(_ok("merge", "cityscapes", "vistas", "gtsdb", "--format", "json"))
    assert set(out["datasets"]) == {"cityscapes", "vistas", "gtsdb"}
    assert "cityscapes" in _ok("tree", "--no-color")
    assert "cityscapes" in _ok("tree", "cityscapes+vistas+gtsdb", "--no-color")
    _ok("stats", "cityscapes", "cityscapes", "--no-cache", "--quiet", "-o", "s.json")
    rows = json.loads((data_folder / "s.json").read_text())
    assert sum(r["pixels"] for r in rows if r["class_id"] == 26) == 25  # 2x5 + 3x5 car pixels
    _ok("evaluate", "cityscapes", "cityscapes", "pred", "--workers", "1", "--quiet", "-o", "e.json")
    assert json.loads((data_folder / "e.json").read_text())["dataset"] == "cityscapes"
    _ok("gtsdb-masks", "gtsdb", "masks", "--workers", "1", "--quiet")
    assert (data_folder / "masks/00000_labelIds.png").is_file()
    for name in ("idd", "bdd100k", "gtsdb", "vistas"):
        assert resolve_taxonomy_path(name) == bundled_taxonomies()[name]
    assert find_config("cpu-tiny").parent.name == "configs"
    cfg = load_config("cpu-tiny", data_root=".")  # what `train cpu-tiny --data-root .` reads first
    assert [d.name for d in cfg.datasets][:3] == ["cityscapes", "vistas", "gtsdb"]
    assert _ok("train", "--help").startswith("Usage")


def test_a_path_is_a_path(data_folder):
    with pytest.raises(LabeltreeError, match="found a directory"):
        load_taxonomy("./cityscapes")
    (data_folder / "mine.yaml").write_text((taxonomy_dir() / "gtsdb.yaml").read_text())
    assert load_taxonomy("mine.yaml").name == "gtsdb"
    with pytest.raises(LabeltreeError, match="write ./mine"):
        (data_folder / "mine").write_text("x")
        load_taxonomy("mine")
    with pytest.raises(LabeltreeError, match="found a directory"):
        load_hierarchy("./cityscapes+vistas+gtsdb")


def test_bundled_names_read_without_parsing_match_the_files():
    for name, path in bundled_taxonomies().items():
        data = load_yaml(path, "taxonomy")
        assert name in (path.stem, data["name"])
    assert bundled_taxonomies()["vistas"].name == "vistas-v1.2.yaml"
