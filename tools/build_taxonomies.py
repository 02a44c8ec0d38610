"""Regenerate the bundled taxonomy files from the datasets' own tables.

Run by hand (`python tools/build_taxonomies.py [FIXTURES_DIR]`); the YAML it writes is the
committed source of truth, this script only documents where every value came from.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from labeltree.core.importers import import_table, import_vistas_config, taxonomy_to_dict, write_taxonomy
from labeltree.core.taxonomy import Taxonomy

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "taxonomies"

# GTSDB sign shapes and colours (docs/design.md §3); the ReadMe gives names and categories only.
GTSDB_SHAPES = {
    **{k: "circle" for k in [*range(0, 11), 15, 16, 17, *range(32, 43)]},
    **{k: "triangle" for k in [11, *range(18, 32)]},
    13: "inverted-triangle",
    14: "octagon",
    12: "diamond",
}


# What the Cityscapes annotation guide folds into a class (cityscapes-dataset.com, class definitions):
# road "including the markings on the road ... e.g. bicycle lanes, roundabout lanes, or parking
# spaces" only delimited by markings; sidewalk "includes a possibly delimiting curb, traffic
# islands ... or pedestrian zones"; rider: riders of bicycles, motorbikes, scooters, ...
# `labeltree merge` uses these to flag level-of-detail conflicts with finer datasets.
CITYSCAPES_INCLUDES = {
    "road": ["lane marking", "marking", "bike lane", "bicycle lane", "roundabout lane", "parking space"],
    "sidewalk": ["curb", "traffic island", "pedestrian zone", "pedestrian area"],
    "rider": ["bicyclist", "motorcyclist", "other rider"],
    "traffic sign": ["traffic sign front"],
}


def rows(path: Path) -> list[dict[str, str]]:
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def dump(name: str, data: dict | Taxonomy) -> None:
    write_taxonomy(data, OUT / f"{name}.yaml")
    print("wrote", OUT / f"{name}.yaml")


def main(fixtures: Path) -> None:
    cs_tax = import_table(fixtures / "cityscapes/cityscapes_labels.tsv", name="cityscapes", version="gtFine",
                          description="Cityscapes fine annotations, label table of cityscapesScripts helpers/labels.py",
                          encoding={"format": "png-ids", "dtype": "uint8", "offset": 0,
                                    "file": "gtFine/{split}/{city}/*_gtFine_labelIds.png",
                                    "instances": {"factor": 1000, "stuff_factor": 1,
                                                  "file": "*_gtFine_instanceIds.png (16-bit)"}})
    for c in cs_tax.classes:
        c.includes = CITYSCAPES_INCLUDES.get(c.name, [])
    dump("cityscapes", cs_tax)
    cs = taxonomy_to_dict(cs_tax)["classes"]
    dump("vistas-v1.2", import_vistas_config(
        fixtures / "vistas/config_v1.1.json", name="vistas", version="1.2",
        description="Mapillary Vistas v1.2 (labels identical to the v1.1 config.json)",
        encoding={"format": "png-palette-index", "dtype": "uint8", "offset": 0,
                  "file": "{training,validation}/[v1.2/]labels/*.png",
                  "instances": {"factor": 256, "stuff_factor": 256,
                                "file": "[v1.2/]instances/*.png (16-bit)"}}))
    dump("vistas-v2.0", import_table(
        fixtures / "vistas/mapillary_v2.0_124_classes_from_mmseg.tsv", name="vistas-v2.0", version="2.0",
        description="Mapillary Vistas v2.0 (124 labels; names and colours from mmsegmentation's "
                    "MapillaryDataset_v2; v2.0 reuses colours, so labels are read as indices)",
        encoding={"format": "png-palette-index", "dtype": "uint8", "offset": 0,
                  "file": "{training,validation}/v2.0/labels/*.png"}))
    colours = {"prohibitory": [200, 30, 30], "danger": [230, 120, 20], "mandatory": [30, 60, 200],
               "other": [120, 120, 120]}
    gs = []
    for r in rows(fixtures / "gtsdb/gtsdb_classes.tsv"):
        k = int(r["class_id"])
        gs.append({"id": k, "name": r["name"], "color": colours[r["category"]],
                   "category": r["category"], "shape": GTSDB_SHAPES[k], "has_instances": True})
    dump("gtsdb", {
        "name": "gtsdb", "version": "FullIJCNN2013",
        "description": "German Traffic Sign Detection Benchmark: 43 classes, bounding boxes in gt.txt",
        "annotation": "boxes",
        "encoding": {"format": "gtsdb-gt-txt", "dtype": "uint16", "offset": 2000, "unlabeled": 0,
                     "file": "gt.txt lines 'NNNNN.ppm;left;top;right;bottom;ClassID' (inclusive)",
                     "masks": "16-bit {stem}_labelIds.png, 0 = unlabeled, 2000 + ClassID"},
        "ignore_ids": [],
        "classes": gs,
    })
    # Cityscapes Extended: the Cityscapes ids plus the 43 sign classes at 2000 + ClassID.
    ext = [dict(c) for c in cs]
    for g in gs:
        ext.append({"id": 2000 + g["id"], "name": g["name"], "color": g["color"],
                    "category": "traffic sign", "shape": g["shape"], "has_instances": True})
    dump("cityscapes-extended", {
        "name": "cityscapes-extended", "version": "1.0",
        "description": "Cityscapes gtFine with traffic-sign pixels relabelled 2000 + GTSDB ClassID",
        "annotation": "dense",
        "encoding": {"format": "png-ids", "dtype": "uint16", "offset": 0,
                     "file": "gtFine/{split}/{city}/*_gtFine_labelIds.png (16-bit)"},
        "ignore_ids": [0],
        "classes": ext,
    })


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared/fixtures/real")
