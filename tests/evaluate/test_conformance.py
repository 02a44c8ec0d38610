"""`--protocol official` against the official tools themselves.

Cityscapes: cityscapesScripts' own `evalPixelLevelSemanticLabeling` runs in the venv that
tests/cityscapesscripts_env.py builds once and caches (~/.cache/labeltree-tests/; numpy < 2.4 because
the evaluator uses np.in1d, gone in numpy 2.4). It needs PyPI the first time; without it the test
says skipped and why.
Mapillary Vistas: its script is no package on PyPI, so its rules (re-derived from the source, commit
in labeltree/evaluate/protocols.py) are checked on hand-computed edge cases. BDD100K: its own evaluation runs in
test_conformance_bdd100k.py.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeltree.core.taxonomy import load_taxonomy
from labeltree.evaluate.evaluator import evaluate_arrays
from labeltree.evaluate.folder import evaluate_folder


def _venv_python() -> Path:
    """The cached cityscapesScripts venv (tests/cityscapesscripts_env.py); skipped with the reason without it."""
    from cityscapesscripts_env import cityscapesscripts_python

    try:
        return cityscapesscripts_python()
    except RuntimeError as e:
        pytest.skip(str(e))


# Runs in the cityscapesScripts venv: its evaluateImgLists on (prediction, gt) lists, one case per argument.
_OFFICIAL = """
import json, sys
import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as ev
ev.args.evalInstLevelScore = False
ev.args.JSONOutput = False
ev.args.quiet = True
out = {}
for case in json.loads(sys.argv[1]):
    r = ev.evaluateImgLists(case["pred"], case["gt"], ev.args)
    out[case["name"]] = {"classes": r["classScores"], "mean": r["averageScoreClasses"],
                         "categories": r["categoryScores"], "mean_categories": r["averageScoreCategories"]}
print(json.dumps(out))
"""


def _cases(rng: np.random.Generator) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """(gt labelIds, prediction) image pairs of each edge case (ids of cityscapesScripts' label table)."""
    H, W = 24, 40
    road, sidewalk, building, car, person, rider, bicycle, static, unlabeled = 7, 8, 11, 26, 24, 25, 33, 4, 0

    def scene() -> np.ndarray:
        g = np.full((H, W), road, np.uint8)
        g[:6] = building
        g[6:10, :12] = sidewalk
        g[12:20, 20:32] = car
        g[-2:] = unlabeled
        return g

    g1 = scene()
    p1 = g1.copy()
    p1[14:18, 2:10] = person  # classes predicted but absent from the gt: IoU 0 in the official mean
    p1[2:4, 30:36] = rider
    p1[20:22, 4:8] = bicycle
    g2 = scene()
    g2[8:12, 26:38] = static  # ignored gt ...
    p2 = g2.copy()
    p2[8:12, 26:38] = car  # ... with predictions on it: no false positive
    p2[-2:] = sidewalk  # predictions on unlabeled pixels
    p2[0:3, 0:5] = unlabeled  # a prediction of an ignored id on evaluated gt: a false negative
    g3 = np.full((H, W), static, np.uint8)  # an image that is all ignore
    g3[:5] = unlabeled
    p3 = rng.integers(0, 34, (H, W)).astype(np.uint8)  # every id, incl. ignored ones
    g4 = scene()
    p4 = np.roll(g4, 3, axis=1)
    noise = rng.random((H, W)) < 0.2
    p4[noise] = rng.choice([road, sidewalk, building, car, static], int(noise.sum()))
    return {"absent_predicted": [(g1, p1)], "ignored_pixels": [(g2, p2)], "all_ignore": [(g3, p3), (g1, g1)],
            "mixed": [(g1, p1), (g2, p2), (g3, p3), (g4, p4)]}


def test_cityscapes_official_equals_cityscapes_scripts(tmp_path: Path) -> None:
    py = _venv_python()
    rng = np.random.default_rng(3)
    cases = _cases(rng)
    jobs, ours = [], {}
    for name, pairs in cases.items():
        for bits in (8, 16):
            root = tmp_path / f"{name}{bits}"
            gts, preds = [], []
            for i, (g, p) in enumerate(pairs):
                key = f"aachen_{i:06d}_000019"
                gd = root / "gt/gtFine/val/aachen"
                gd.mkdir(parents=True, exist_ok=True)
                Image.fromarray(g).save(gd / f"{key}_gtFine_labelIds.png")
                pd = root / "pred"
                pd.mkdir(exist_ok=True)
                Image.fromarray(p.astype(np.uint16) if bits == 16 else p).save(pd / f"{key}.png")
                gts.append(str(gd / f"{key}_gtFine_labelIds.png"))
                preds.append(str(pd / f"{key}.png"))
            jobs.append({"name": f"{name}{bits}", "gt": gts, "pred": preds})
            res = evaluate_folder("cityscapes", root / "gt", root / "pred", "val", workers=1, progress=False)
            assert res["protocol"] == "official" and res["rules"]["overrides"] == []
            ours[f"{name}{bits}"] = res
    r = subprocess.run([str(py), "-c", _OFFICIAL, json.dumps(jobs)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "CITYSCAPES_DATASET": str(tmp_path), "PYTHONPATH": ""})
    assert r.returncode == 0, r.stderr[-3000:]
    ref = json.loads(r.stdout.strip().splitlines()[-1])
    cs = load_taxonomy("cityscapes")
    for name, res in ours.items():
        want = ref[name]
        evaluated = {c.display for c in cs.classes if c.id >= 0 and not c.ignore_in_eval}
        assert set(res["classes"]) == evaluated and len(evaluated) == 19
        for cname, c in res["classes"].items():
            w = want["classes"][cname]
            if c["IoU"] is None:
                assert math.isnan(w), (name, cname)
            else:
                assert abs(c["IoU"] - w) <= 1e-9, (name, cname, c["IoU"], w)
        if math.isnan(want["mean"]):
            assert res["mIoU"] is None, name
        else:
            assert abs(res["mIoU"] - want["mean"]) <= 1e-9, (name, res["mIoU"], want["mean"])
        for cat, w in want["categories"].items():
            got = res.get("categories", {}).get(cat)
            assert (got is None and math.isnan(w)) or abs(got - w) <= 1e-9, (name, cat, got, w)
    # the edge cases did what they are for
    a = ours["absent_predicted8"]["classes"]
    assert a["person"]["pixels"] == 0 and a["person"]["IoU"] == 0.0 and a["train"]["IoU"] is None
    assert ours["all_ignore8"]["pixels"] == ours["absent_predicted8"]["pixels"]  # the all-ignore frame adds nothing
    assert ours["ignored_pixels8"]["classes"]["car"]["FP"] == 0


# -- Mapillary Vistas: hand-computed edge cases of its rules -------------------------------------------

def test_vistas_official_rules_hand_computed() -> None:
    vi = load_taxonomy("vistas")
    road, car, person, unl = (vi.find(n).id for n in ("construction--flat--road", "object--vehicle--car",
                                                      "human--person", "void--unlabeled"))
    gt = np.array([[road, road, road, car, car, unl]], dtype=np.uint8)
    pred = np.array([[road, unl, person, car, road, car]], dtype=np.uint8)
    r = evaluate_arrays("vistas", gt, pred)
    c = r["classes"]
    assert r["protocol"] == "official" and r["rules"]["drop"] == "unevaluated" and r["n_classes"] == 65
    # the Unlabeled prediction on road is cut with the non-evaluated columns: neither FN nor FP
    assert (c["Road"]["TP"], c["Road"]["FN"], c["Road"]["FP"]) == (1, 1, 1)
    assert c["Road"]["IoU"] == pytest.approx(1 / 3)
    # car predicted on Unlabeled gt: the row is cut, no FP
    assert (c["Car"]["TP"], c["Car"]["FN"], c["Car"]["FP"]) == (1, 1, 0) and c["Car"]["IoU"] == 0.5
    # Person is absent from the gt but predicted: IoU 0, in the mean (the tool averages non-NaN IoUs)
    assert c["Person"]["IoU"] == 0.0
    assert r["mIoU"] == pytest.approx((1 / 3 + 1 / 2 + 0) / 3)
    # the paper protocol on the same pixels: Unlabeled is Vistas' no-class value (dropped), the mean runs
    # over classes present in the gt, and Person (absent) is out of it
    from labeltree.core.tree_file import load_hierarchy

    p = evaluate_arrays("vistas", gt, pred, hierarchy=load_hierarchy("cityscapes+vistas+gtsdb"), protocol="paper")
    assert p["protocol"] == "paper" and p["mIoU"] == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_vistas_v2_official_rules_are_the_same_script_on_the_v2_labels() -> None:
    v2 = load_taxonomy("vistas-v2.0")
    road, car, person, unl = (v2.find(n).id for n in ("Road", "Car", "Person", "Unlabeled"))
    gt = np.array([[road, road, road, car, car, unl]], dtype=np.uint8)
    pred = np.array([[road, unl, person, car, road, car]], dtype=np.uint8)
    r = evaluate_arrays("vistas-v2.0", gt, pred)
    c = r["classes"]
    assert r["protocol"] == "official" and "config_v2.0.json" in r["rules"]["tool"]
    assert r["rules"]["drop"] == "unevaluated" and r["n_classes"] == 123  # 124 labels, Unlabeled not evaluated
    assert (c["Road"]["TP"], c["Road"]["FN"], c["Road"]["FP"]) == (1, 1, 1)
    assert (c["Car"]["TP"], c["Car"]["FN"], c["Car"]["FP"]) == (1, 1, 0) and c["Person"]["IoU"] == 0.0
    assert r["mIoU"] == pytest.approx((1 / 3 + 1 / 2 + 0) / 3)
