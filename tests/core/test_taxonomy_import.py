"""Importers: the real Vistas config and label tables give the bundled taxonomies; tables round-trip."""

import sys
import types
from collections import namedtuple

import pytest
from click.testing import CliRunner

from labeltree.cli import main
from labeltree.core.importers import (
    import_cityscapes_scripts,
    import_table,
    import_vistas_config,
    read_table,
    table_text,
)
from labeltree.core.taxonomy import load_taxonomy

BUNDLED = ["cityscapes", "vistas", "vistas-v2.0", "gtsdb", "cityscapes-extended"]


def test_real_vistas_config_equals_bundled_v12(real_fixtures):
    t = import_vistas_config(real_fixtures / "vistas/config_v1.1.json")
    b = load_taxonomy("vistas")
    assert len(t.classes) == 66
    assert t.classes == b.classes
    assert t.ignore_ids == b.ignore_ids == [b.find("Unlabeled").id]
    assert t.encoding.format == "png-palette-index" and t.encoding.dtype == "uint8"
    assert t.find("Lane Marking - General").id == 24


@pytest.mark.parametrize(("table", "bundled"), [
    ("cityscapes/cityscapes_labels.tsv", "cityscapes"),
    ("vistas/mapillary_v1.2_66_classes.tsv", "vistas"),
    ("vistas/mapillary_v2.0_124_classes_from_mmseg.tsv", "vistas-v2.0"),
])
def test_real_tables_equal_bundled(real_fixtures, table, bundled):
    t = import_table(real_fixtures / table)
    b = load_taxonomy(bundled)
    for c in b.classes:  # annotation-guide notes and v2.0's config names (synonyms) are not in the source tables
        c = c.model_copy(update={"includes": [], "synonyms": [] if bundled == "vistas-v2.0" else c.synonyms})
        assert t.by_id(c.id) == c
    assert len(t.classes) == len(b.classes)
    assert t.ignore_ids == b.ignore_ids


@pytest.mark.parametrize("name", BUNDLED)
@pytest.mark.parametrize("delim", ["\t", ","])
def test_bundled_round_trip_through_table(tmp_path, name, delim):
    b = load_taxonomy(name)
    p = tmp_path / ("t.tsv" if delim == "\t" else "t.csv")
    p.write_text(table_text(b, delim))
    t = import_table(p)
    assert t.classes == b.classes
    assert t.ignore_ids == b.ignore_ids


def test_table_columns_and_lines(tmp_path):
    p = tmp_path / "bikes.csv"
    p.write_text("# my bike-lane set\n\nID,Name,Colour,evaluate,trainId,extra\n"
                 "0,unlabeled,#000000,false,255,x\n1,bike lane,\"128, 64, 255\",true,0,y\n"
                 "2,lane marking,(255 255 255),true,,z\n")
    classes, lines = read_table(p)
    assert lines == [4, 5, 6]
    t = import_table(p, name="bikes")
    assert t.name == "bikes" and t.ignore_ids == [0]
    assert [c.color for c in t.classes] == [(0, 0, 0), (128, 64, 255), (255, 255, 255)]
    assert [c.ignore_in_eval for c in t.classes] == [True, False, False]
    assert t.by_id(2).train_id is None and t.by_id(1).train_id == 0


def test_table_auto_palette_gives_distinct_colours(real_fixtures):
    t = import_table(real_fixtures / "gtsdb/gtsdb_classes.tsv", palette="auto", annotation="boxes",
                     encoding={"format": "gtsdb-gt-txt", "dtype": "uint16", "offset": 2000, "unlabeled": 0})
    g = load_taxonomy("gtsdb")
    assert [(c.id, c.name, c.category) for c in t.classes] == [(c.id, c.name, c.category) for c in g.classes]
    assert len({c.color for c in t.classes}) == 43


def test_cli_import_writes_valid_file_and_refuses_overwrite(tmp_path, real_fixtures):
    out = tmp_path / "v.yaml"
    r = CliRunner().invoke(main, ["import", "vistas-config", str(real_fixtures / "vistas/config_v1.1.json"),
                                  "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert load_taxonomy(out).classes == load_taxonomy("vistas").classes
    r = CliRunner().invoke(main, ["validate", str(out)])
    assert r.exit_code == 0 and "66 classes" in r.output
    r = CliRunner().invoke(main, ["import", "vistas-config", str(real_fixtures / "vistas/config_v1.1.json"),
                                  "-o", str(out)])
    assert r.exit_code == 2 and "--force" in r.output and "Traceback" not in r.output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_cli_import_table_to_stdout(real_fixtures):
    r = CliRunner().invoke(main, ["import", "table", str(real_fixtures / "cityscapes/cityscapes_labels.tsv"),
                                  "--name", "cityscapes"])
    assert r.exit_code == 0, r.output
    assert "- {id: 7, name: road, color: [128, 64, 128]" in r.output


def test_cityscapes_scripts_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "cityscapesscripts", None)  # import fails even if installed
    r = CliRunner().invoke(main, ["import", "cityscapes-scripts"])
    assert r.exit_code == 2
    assert "pip install cityscapesscripts" in r.output and "Traceback" not in r.output


def test_cityscapes_scripts_table(monkeypatch, real_fixtures):
    """The importer reads cityscapesScripts' `labels` list of Label namedtuples (here built from the
    fixture's copy of that table, so the test runs without the package)."""
    Label = namedtuple("Label", ["name", "id", "trainId", "category", "categoryId", "hasInstances",
                                 "ignoreInEval", "color"])
    rows = [ln.split("\t") for ln in (real_fixtures / "cityscapes/cityscapes_labels.tsv").read_text().splitlines()
            if ln and not ln.startswith("#")][1:]
    labels = [Label(r[0], int(r[1]), int(r[2]), r[3], int(r[4]), r[5] == "True", r[6] == "True",
                    (int(r[7]), int(r[8]), int(r[9]))) for r in rows]
    pkg = types.ModuleType("cityscapesscripts")
    helpers = types.ModuleType("cityscapesscripts.helpers")
    mod = types.ModuleType("cityscapesscripts.helpers.labels")
    mod.labels = labels
    helpers.labels = mod
    pkg.helpers = helpers
    monkeypatch.setitem(sys.modules, "cityscapesscripts", pkg)
    monkeypatch.setitem(sys.modules, "cityscapesscripts.helpers", helpers)
    monkeypatch.setitem(sys.modules, "cityscapesscripts.helpers.labels", mod)
    t = import_cityscapes_scripts()
    b = load_taxonomy("cityscapes")
    assert [c.model_copy(update={"includes": []}) for c in b.classes] == t.classes
    assert t.ignore_ids == [0] and t.by_id(-1).name == "license plate"
