"""`labeltree evaluate` on prediction folders: errors (exit 2), JSON / PNG outputs."""

import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

from labeltree.cli import main
from labeltree.core.taxonomy import load_taxonomy
from labeltree.core.tree_file import load_hierarchy
from labeltree.datasets.base import decode_label
from labeltree.evaluate.evaluator import Evaluator
from labeltree.evaluate.folder import evaluate_folder
from labeltree.evaluate.protocols import resolve_rules
from labeltree.fsutil import write_png


def _run(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in res.output
    return res


def test_cli_json_plot_and_numbers_match_the_library(cs_set, tmp_path):
    root, gts, preds = cs_set
    out, png = tmp_path / "r.json", tmp_path / "cm.png"
    res = _run("evaluate", "cityscapes", root / "gt", root / "pred", "--levels", "-o", out,
               "--plot-confusion", png, "--workers", "1")
    assert res.exit_code == 0, res.output
    assert "mIoU" in res.output and "tree level 1" in res.output
    data = json.loads(out.read_text())
    for k in ("mIoU", "mPA", "pixel_accuracy"):
        assert 0 <= data[k] <= 1
    assert data["images"] == 3 and data["split"] == "val"
    for c in data["classes"].values():
        assert set(c) >= {"IoU", "PA", "pixels"}
        assert c["IoU"] is None or 0 <= c["IoU"] <= 1
    assert set(data["levels"]) == {"1", "2"}
    ref = Evaluator("cityscapes")
    for key in gts:
        ref.add(gts[key], preds[key])
    assert data["classes"] == ref.result()["classes"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        assert im.size[0] > 300


def test_paper_classes_and_tree_predictions(cs_set, tmp_path):
    root, gts, _ = cs_set
    r = _run("evaluate", "cityscapes", root / "gt", root / "pred", "--classes", "paper", "-o", tmp_path / "p.json",
             "--quiet")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "p.json").read_text())["n_classes"] == 27
    # tree-node predictions (16-bit PNG): the gt's own nodes give a perfect score
    h = load_hierarchy()
    t = h.tables("cityscapes")
    for key, g in gts.items():
        nodes = t.value_to_node[g]
        nodes = np.where(nodes >= 0, nodes, h.index["Sky"]).astype(np.uint16)  # ignored gt: anything
        write_png(tmp_path / "tree" / f"{key}.png", nodes)
    r = _run("evaluate", "cityscapes", root / "gt", tmp_path / "tree", "--pred-space", "tree", "-o",
             tmp_path / "t.json")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "t.json").read_text())["mIoU"] == 1.0


def test_score_maps_and_predict_hook(cs_set, tmp_path):
    root, gts, _ = cs_set
    h = load_hierarchy()
    t = h.tables("cityscapes")
    for key, g in gts.items():
        nodes = t.value_to_node[g]
        scores = np.zeros((len(h.nodes), *g.shape), dtype=np.float32)
        np.put_along_axis(scores, np.where(nodes >= 0, nodes, 1)[None].astype(np.int64), 1.0, axis=0)
        np.save(tmp_path / f"{key}.npy", scores)
    r = _run("evaluate", "cityscapes", root / "gt", tmp_path, "--pred-space", "tree", "--paper-protocol",
             "-o", tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "s.json").read_text())["mIoU"] == 1.0
    # the in-process hook the trainer's --checkpoint uses: predict(sample) -> dataset values
    res = evaluate_folder("cityscapes", root / "gt", predict=lambda s: gts[s.key])
    assert res["mIoU"] == 1.0 and res["images"] == 3


# -- errors through the CLI ----------------------------------------------------------------------------

def test_cli_errors_exit_2(cs_set, tmp_path):
    root, gts, preds = cs_set
    keys = list(gts)
    # missing prediction
    d = tmp_path / "missing"
    for k in keys[:2]:
        write_png(d / f"{k}.png", preds[k])
    r = _run("evaluate", "cityscapes", root / "gt", d)
    assert r.exit_code == 2 and keys[2] in r.output
    # RGB prediction
    d = tmp_path / "rgb"
    for k in keys:
        write_png(d / f"{k}.png", np.stack([preds[k]] * 3, axis=-1))
    r = _run("evaluate", "cityscapes", root / "gt", d, "--workers", "1")
    assert r.exit_code == 2 and "RGB" in r.output and "not colour visualisations" in r.output
    # size mismatch
    d = tmp_path / "size"
    for k in keys:
        write_png(d / f"{k}.png", preds[k][:, :-8])
    r = _run("evaluate", "cityscapes", root / "gt", d, "--workers", "1")
    assert r.exit_code == 2 and "prediction is 248x128 but the ground truth" in r.output
    # ids outside the label space, named with the file
    d = tmp_path / "ids"
    for k in keys:
        p = preds[k].copy()
        p[0, 0] = 250
        write_png(d / f"{k}.png", p)
    r = _run("evaluate", "cityscapes", root / "gt", d, "--workers", "1")
    assert r.exit_code == 2 and "250" in r.output and f"{keys[0]}.png" in r.output
    # no PRED_DIR, bad split
    assert _run("evaluate", "cityscapes", root / "gt").exit_code == 2
    assert _run("evaluate", "cityscapes", root / "gt", d, "--split", "train").exit_code == 2


# -- the other datasets' layouts ------------------------------------------------------------------------

def test_vistas_folder(real_fixtures, tmp_path):
    src = real_fixtures / "vistas/v1.2/labels/__CRyFzoDOXn6unQ6a3DnQ.png"
    lab = tmp_path / "vistas" / "validation" / "labels" / src.name
    lab.parent.mkdir(parents=True)
    lab.write_bytes(src.read_bytes())
    gt = decode_label(lab, load_taxonomy("vistas"))
    write_png(tmp_path / "pred" / src.name, gt)  # grey indices
    r = _run("evaluate", "vistas", tmp_path / "vistas", tmp_path / "pred", "-o", tmp_path / "v.json")
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "v.json").read_text())
    assert data["mIoU"] == 1.0 and data["n_classes"] == 65 and data["split"] == "val"


def test_protocols_named_in_table_and_json(cs_set, tmp_path):
    root, gts, preds = cs_set
    out = {}
    for protocol in ("official", "paper"):
        res = _run("evaluate", "cityscapes", root / "gt", root / "pred", "--protocol", protocol, "--workers", "1",
                   "-o", tmp_path / f"{protocol}.json")
        assert res.exit_code == 0, res.output
        assert f"protocol {protocol} (" in res.output
        out[protocol] = json.loads((tmp_path / f"{protocol}.json").read_text())
        assert out[protocol]["protocol"] == protocol and out[protocol]["rules"]["overrides"] == []
    o, p = out["official"], out["paper"]
    assert o["n_classes"] == 19 and o["mean_over"] == "defined" and o["rules"]["drop"] == "none"
    assert p["n_classes"] == 27 and p["mean_over"] == "gt" and p["rules"]["drop"] == "foreign"
    assert "cityscapesScripts" in o["rules"]["tool"]
    # the paper drops Cityscapes' no-class value (0, what `labeltree predict` writes for nodes it lacks), and
    # scores at the authors' network size by default
    assert p["eval_size"] != "native" and o["eval_size"] == "native"
    rules = resolve_rules("paper", "cityscapes", eval_size="paper")
    ref = Evaluator("cityscapes", hierarchy=load_hierarchy("cityscapes+vistas+gtsdb"), protocol=rules)
    for key in gts:
        ref.add(gts[key], preds[key])
    assert p["classes"] == ref.result()["classes"]
    # an override is named
    res = _run("evaluate", "cityscapes", root / "gt", root / "pred", "--mean-over", "gt", "--workers", "1")
    assert res.exit_code == 0 and "overridden: mean_over=gt" in res.output


def test_cityscapes_extended_paper_rule_needs_gtsdb(tmp_path, real_gtsdb_root):
    ext = load_taxonomy("cityscapes-extended")
    s80, stop, give = (ext.stored_value(ext.find(n).id) for n in ("speed limit 80", "stop", "give way"))
    lab = np.full((40, 80), 7, np.uint16)
    lab[10:30, 5:25] = s80  # 400 pixels
    lab[10:12, 40:45] = give  # 10 pixels
    write_png(tmp_path / "ext/gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png", lab)
    write_png(tmp_path / "pred/aachen_000000_000019.png", lab)
    res = _run("evaluate", "cityscapes-extended", tmp_path / "ext", tmp_path / "pred", "--protocol", "official")
    assert res.exit_code == 2 and "--gtsdb-root" in res.output
    h = load_hierarchy("cityscapes+vistas+gtsdb")
    r = evaluate_folder("cityscapes-extended", tmp_path / "ext", tmp_path / "pred", hierarchy=h, workers=1,
                        progress=False, gtsdb_root=real_gtsdb_root,
                        rules=resolve_rules("official", "cityscapes-extended", min_pixels=50, pixel_size=None))
    assert r["protocol"] == "paper" and "no official" in r["rules"]["note"]
    from labeltree.datasets.registry import open_dataset
    from labeltree.evaluate.classes import box_counts_as, gtsdb_class_pixels

    g = open_dataset("gtsdb", real_gtsdb_root)
    both = [box_counts_as(h, "cityscapes-extended", gtsdb_class_pixels(g, sp, None)) for sp in ("train", "test")]
    want = sorted(ext.find(n).id for n in ("speed limit 80", "give way", "stop")
                  if all(c.get(ext.find(n).id, 0) >= 50 for c in both)
                  and int((lab == ext.stored_value(ext.find(n).id)).sum()) >= 50)
    assert r["paper_rule"]["classes"] == want
    assert want == [ext.find("speed limit 80").id]  # give way: 10 pixels in this split; stop: none
    assert list(r["classes"]) == ["speed limit 80"] and r["mIoU"] == 1.0
