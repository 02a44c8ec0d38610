"""Regenerate the bundled taxonomy files from the datasets' own tables.

Run by hand (`python tools/build_taxonomies.py [FIXTURES_DIR]`); the YAML it writes is the
committed source of truth, this script only documents where every value came from.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "taxonomies"

# GTSDB sign shapes and colours (DESIGN §3); the ReadMe gives names and categories only.
GTSDB_SHAPES = {
    **{k: "circle" for k in [*range(0, 11), 15, 16, 17, *range(32, 43)]},
    **{k: "triangle" for k in [11, *range(18, 32)]},
    13: "inverted-triangle",
    14: "octagon",
    12: "diamond",
}


def rows(path: Path) -> list[dict[str, str]]:
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data):  # noqa: ARG002 - shared colour lists must not become anchors
        return True


def _flow(obj) -> str:
    return yaml.dump(obj, Dumper=_NoAliases, default_flow_style=True, sort_keys=False, width=10_000,
                     allow_unicode=True).strip().removesuffix("...").strip()


def dump(name: str, data: dict) -> None:
    """One class per line: readable in a diff and in an editor."""
    head = {k: v for k, v in data.items() if k not in ("encoding", "classes", "ignore_ids")}
    text = yaml.dump(head, Dumper=_NoAliases, sort_keys=False, allow_unicode=True, width=120)
    text += f"ignore_ids: {_flow(data['ignore_ids'])}\n"
    text += "encoding:\n" + "".join(f"  {k}: {_flow(v)}\n" for k, v in data["encoding"].items())
    text += "classes:\n" + "".join(f"- {_flow(c)}\n" for c in data["classes"])
    (OUT / f"{name}.yaml").write_text(text)
    print("wrote", OUT / f"{name}.yaml")


def main(fixtures: Path) -> None:
    cs = []
    for r in rows(fixtures / "cityscapes/cityscapes_labels.tsv"):
        cs.append({
            "id": int(r["id"]), "name": r["name"],
            "color": [int(r["color_r"]), int(r["color_g"]), int(r["color_b"])],
            "category": r["category"], "category_id": int(r["categoryId"]),
            "train_id": int(r["trainId"]), "has_instances": r["hasInstances"] == "True",
            "ignore_in_eval": r["ignoreInEval"] == "True",
        })
    dump("cityscapes", {
        "name": "cityscapes", "version": "gtFine",
        "description": "Cityscapes fine annotations, label table of cityscapesScripts helpers/labels.py",
        "annotation": "dense",
        "encoding": {"format": "png-ids", "dtype": "uint8", "offset": 0,
                     "file": "gtFine/{split}/{city}/*_gtFine_labelIds.png",
                     "instances": "id*1000+k in *_gtFine_instanceIds.png (16-bit)"},
        "ignore_ids": [0],
        "classes": cs,
    })
    cfg = json.loads((fixtures / "vistas/config_v1.1.json").read_text())
    vs = []
    for i, lab in enumerate(cfg["labels"]):
        vs.append({"id": i, "name": lab["name"], "readable": lab["readable"], "color": lab["color"],
                   "category": lab["name"].split("--")[0], "has_instances": lab["instances"],
                   "ignore_in_eval": not lab["evaluate"]})
    dump("vistas-v1.2", {
        "name": "vistas", "version": "1.2",
        "description": "Mapillary Vistas v1.2 (labels identical to the v1.1 config.json)",
        "annotation": "dense",
        "encoding": {"format": "png-palette-index", "dtype": "uint8", "offset": 0,
                     "file": "{training,validation}/[v1.2/]labels/*.png",
                     "instances": "class*256+k in [v1.2/]instances/*.png (16-bit)"},
        "ignore_ids": [65],
        "classes": vs,
    })
    v2 = []
    for r in rows(fixtures / "vistas/mapillary_v2.0_124_classes_from_mmseg.tsv"):
        v2.append({"id": int(r["id"]), "name": r["readable"], "readable": r["readable"],
                   "color": [int(r["color_r"]), int(r["color_g"]), int(r["color_b"])],
                   "ignore_in_eval": r["readable"] == "Unlabeled"})
    dump("vistas-v2.0", {
        "name": "vistas-v2.0", "version": "2.0",
        "description": "Mapillary Vistas v2.0 (124 labels; names and colours from mmsegmentation's "
                       "MapillaryDataset_v2; v2.0 reuses colours, so labels are read as indices)",
        "annotation": "dense",
        "encoding": {"format": "png-palette-index", "dtype": "uint8", "offset": 0,
                     "file": "{training,validation}/v2.0/labels/*.png"},
        "ignore_ids": [123],
        "classes": v2,
    })
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
