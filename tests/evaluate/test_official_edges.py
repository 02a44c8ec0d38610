"""The official tools at their edges (issue 25): BDD100K's 0.0 for absent classes and its all-ignored missing
prediction; predicted values that are no class, counted as Vistas', BDD100K's and IDD's tools count them.

Hand-computed on tiny arrays; the rules are those read from each tool's source (evaluate/protocols.py).
BDD100K's own evaluation runs on the same kinds of cases in test_conformance_bdd100k.py (a cached venv); the
Vistas script is no installable package here (see there)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeltree.datasets.base import LabeltreeWarning
from labeltree.datasets.bdd100k import image_path, label_path
from labeltree.errors import LabeltreeError
from labeltree.evaluate.evaluator import evaluate_arrays
from labeltree.evaluate.folder import evaluate_folder


def test_bdd100k_reports_zero_for_a_class_absent_from_gt_and_prediction() -> None:
    gt = np.zeros((2, 3), np.uint8)  # road everywhere
    pred = gt.copy()
    pred[0, 0] = 1  # one sidewalk pixel
    off = evaluate_arrays("bdd100k", gt, pred, protocol="official")
    c = off["classes"]
    assert c["road"]["IoU"] == pytest.approx(5 / 6) and c["sidewalk"]["IoU"] == 0.0  # predicted, absent from gt
    assert c["building"]["IoU"] == 0.0 and c["building"]["pixels"] == 0  # absent from both: 0.0, as the tool
    assert off["mIoU"] == pytest.approx(5 / 6)  # the mean runs over the classes in the gt only
    assert off["rules"]["absent_zero"] is True
    paper = evaluate_arrays("bdd100k", gt, pred, protocol="official", drop="none", mean_over="defined")
    assert paper["classes"]["building"]["IoU"] == 0.0
    vistas = evaluate_arrays("cityscapes", np.full((2, 3), 7, np.uint8), np.full((2, 3), 7, np.uint8))
    assert vistas["classes"]["sidewalk"]["IoU"] is None  # cityscapesScripts: undefined


@pytest.mark.parametrize("dataset, gt_value, bad, counted_as, dropped", [
    ("bdd100k", 0, 100, "unlabeled", False),  # the tool: values 19..254 are 'ignored' -> a miss of the gt class
    ("idd", 0, 200, "unlabeled", False),  # the tool: any value above its classes is a miss
    ("vistas", 13, 100, "Unlabeled", True),  # the tool: outside the label list = Unlabeled, not evaluated
])
def test_predicted_values_outside_the_classes_count_as_the_tool_counts_them(
        dataset: str, gt_value: int, bad: int, counted_as: str, dropped: bool) -> None:
    gt = np.full((2, 2), gt_value, np.uint8)
    pred = gt.copy()
    pred[0, 0] = bad
    with pytest.warns(LabeltreeWarning, match=rf"1 predicted pixels in 1 file\(s\) hold values that are no "
                                              rf"{dataset} class; counted as '{counted_as}'"):
        res = evaluate_arrays(dataset, gt, pred, protocol="official")
    assert res["outside"] == {"pixels": 1, "files": 1, "counted_as": counted_as}
    row = next(v for k, v in res["classes"].items() if v["pixels"] > 0)
    if dropped:  # neither a false negative nor anyone's false positive: the pixel is out of the matrix
        assert (row["TP"], row["FN"], row["pixels"]) == (3, 0, 3)
    else:  # a false negative of the gt class, nobody's false positive
        assert (row["TP"], row["FN"], row["pixels"]) == (3, 1, 4)
    assert sum(v["FP"] for v in res["classes"].values()) == 0
    with pytest.raises(LabeltreeError, match=rf"prediction holds value\(s\) {bad} "):
        evaluate_arrays(dataset, gt, pred, protocol="paper")  # the paper protocol refuses them


def test_cityscapes_keeps_refusing_values_outside_its_classes() -> None:
    gt = np.full((2, 2), 7, np.uint8)
    pred = gt.copy()
    pred[0, 0] = 200
    with pytest.raises(LabeltreeError, match="outside the dataset's label space"):
        evaluate_arrays("cityscapes", gt, pred, protocol="official")


def _bdd(root: Path, keys: list[str], label: np.ndarray) -> None:
    for k in keys:
        for p, arr in ((label_path(root, "val", k), label),
                       (image_path(root, "val", k), np.zeros((*label.shape, 3), np.uint8))):
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(p, format="PNG" if p.suffix == ".png" else "JPEG")


def test_a_missing_bdd100k_prediction_scores_as_all_ignored(tmp_path: Path) -> None:
    lab = np.zeros((4, 6), np.uint8)
    lab[:2] = 2  # building above road
    _bdd(tmp_path / "bdd", ["a1", "b2"], lab)
    (tmp_path / "pred").mkdir()
    Image.fromarray(lab).save(tmp_path / "pred" / "a1.png")  # b2 has none
    with pytest.warns(LabeltreeWarning, match=r"1 of 2 ground-truth images have no prediction .* scored as all "
                                              r"ignored, as the official tool does \(b2\)"):
        res = evaluate_folder("bdd100k", tmp_path / "bdd", tmp_path / "pred", "val", rules="official", workers=1,
                              progress=False)
    c = res["classes"]
    assert (c["road"]["TP"], c["road"]["FN"], c["building"]["TP"], c["building"]["FN"]) == (12, 12, 12, 12)
    assert res["mIoU"] == pytest.approx(0.5) and res["images"] == 2
    with pytest.raises(LabeltreeError, match="1 of 2 ground-truth images have no prediction"):
        evaluate_folder("bdd100k", tmp_path / "bdd", tmp_path / "pred", "val", rules="paper", workers=1,
                        progress=False)


def test_cli_format_json_and_help(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from labeltree.cli import main

    lab = np.zeros((4, 6), np.uint8)
    _bdd(tmp_path / "bdd", ["a1"], lab)
    (tmp_path / "pred").mkdir()
    pred = lab.copy()
    pred[0, :2] = 77  # no BDD100K class: counted as ignored
    Image.fromarray(pred).save(tmp_path / "pred" / "a1.png")
    from labeltree.cli import _format_warning
    from labeltree.datasets.base import LabeltreeWarning

    with pytest.warns(LabeltreeWarning, match=r"2 predicted pixels in 1 file\(s\)") as caught:  # pytest records it
        res = CliRunner().invoke(main, ["evaluate", "bdd100k", str(tmp_path / "bdd"), str(tmp_path / "pred"),
                                        "--split", "val", "--format", "json", "--workers", "1"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["outside"] == {"pixels": 2, "files": 1, "counted_as": "unlabeled"}
    assert out["classes"]["road"]["FN"] == 2 and out["classes"]["sidewalk"]["IoU"] == 0.0
    w = caught[0]  # on a terminal: the CLI's one 'warning:' line
    assert _format_warning(w.message, w.category, w.filename, w.lineno).startswith("warning: 2 predicted pixels in 1 ")
    helptext = CliRunner().invoke(main, ["evaluate", "--help"]).output
    for line in ("{city}_{seq}_{frame}*.png", "vistas-v2.0: 123", "{image name}.png", "{seq}/{frame}_*.png",
                 "28 of 43"):
        assert line in helptext
