"""labeltree.evaluate.folder: matching prediction files to the gt, the process pool, GTSDB fine vs coarse boxes."""

from pathlib import Path

import numpy as np
import pytest

from labeltree.datasets.base import Sample
from labeltree.errors import LabeltreeError
from labeltree.evaluate.folder import evaluate_folder, match_predictions
from labeltree.evaluate.protocols import resolve_rules
from labeltree.fsutil import write_png


def test_process_pool_gives_the_same_matrix(cs_set):
    root, _, _ = cs_set
    one = evaluate_folder("cityscapes", root / "gt", root / "pred", workers=1, progress=False)
    two = evaluate_folder("cityscapes", root / "gt", root / "pred", workers=2, progress=False)
    ev1, ev2 = one.evaluator, two.evaluator
    assert np.array_equal(ev1.matrix, ev2.matrix) and one["mIoU"] == two["mIoU"]


# -- matching rules ------------------------------------------------------------------------------------

def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
    return p


def _sample(key, split="val"):
    return Sample("cityscapes", split, key, None, Path(f"/gt/{key}_gtFine_labelIds.png"))


def test_cityscapes_matching_is_recursive_by_prefix(tmp_path):
    a = _touch(tmp_path / "x" / "y" / "aachen_000000_000019_whatever.png")
    b = _touch(tmp_path / "bonn_000001_000002.png")
    _touch(tmp_path / ".hidden" / "aachen_000000_000019.png")  # hidden folders are not searched
    _touch(tmp_path / "notes.txt")  # not a prediction file
    pairs = match_predictions([_sample("aachen_000000_000019"), _sample("bonn_000001_000002")], tmp_path,
                              "cityscapes")
    assert [p for _, p in pairs] == [a, b]


def test_matching_errors_name_the_files(tmp_path):
    _touch(tmp_path / "aachen_000000_000019_pred.png")
    _touch(tmp_path / "extra" / "zurich_000000_000001_pred.png")
    _touch(tmp_path / "confusion.png")
    with pytest.raises(LabeltreeError) as e:
        match_predictions([_sample("aachen_000000_000019"), _sample("bonn_000001_000002")], tmp_path, "cityscapes")
    msg = str(e.value)
    assert "1 of 2 ground-truth images have no prediction: bonn_000001_000002" in msg
    assert "2 prediction file(s) match no ground-truth image" in msg
    assert "confusion.png" in msg and "zurich_000000_000001_pred.png" in msg
    _touch(tmp_path / "other" / "aachen_000000_000019_v2.png")
    with pytest.raises(LabeltreeError, match="several predictions"):
        match_predictions([_sample("aachen_000000_000019")], tmp_path, "cityscapes")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LabeltreeError, match="no predictions"):
        match_predictions([_sample("a")], tmp_path / "empty", "vistas")
    with pytest.raises(LabeltreeError, match="prediction folder not found"):
        match_predictions([_sample("a")], tmp_path / "nowhere", "vistas")


def test_vistas_and_gtsdb_match_by_stem(tmp_path):
    v = _touch(tmp_path / "v" / "__CRyFzoDOXn6unQ6a3DnQ.png")
    assert match_predictions([_sample("__CRyFzoDOXn6unQ6a3DnQ")], tmp_path / "v", "vistas")[0][1] == v
    _touch(tmp_path / "g" / "00600.png")
    with pytest.raises(LabeltreeError, match="00601"):
        match_predictions([_sample("00600"), _sample("00601")], tmp_path / "g", "gtsdb")


def test_gtsdb_fine_vs_coarse_boxes(real_gtsdb_root, tmp_path):
    from labeltree.datasets.boxmask import render_mask
    from labeltree.datasets.registry import open_dataset

    root = real_gtsdb_root
    with pytest.warns(UserWarning):
        reader = open_dataset("gtsdb", root)
        samples = reader.samples("train")
    tax = reader.taxonomy
    unl = tax.encoding.unlabeled
    expect: dict[int, list[int]] = {}  # value -> [TP, FN, FP] with gt = filled boxes, prediction = shapes
    for s in samples:
        h, w = s.size
        fine = render_mask(s.boxes, h, w, "fine", taxonomy=tax)
        coarse = render_mask(s.boxes, h, w, "coarse", taxonomy=tax)
        write_png(tmp_path / "fine" / f"{s.key}.png", fine)
        for v in np.unique(coarse[coarse != unl]):
            e = expect.setdefault(int(v), [0, 0, 0])
            e[0] += int(((coarse == v) & (fine == v)).sum())
            e[1] += int(((coarse == v) & (fine != v)).sum())
            e[2] += int(((fine == v) & (coarse != v) & (coarse != unl)).sum())
    assert len(expect) >= 5
    with pytest.warns(UserWarning):
        res = evaluate_folder("gtsdb", root, tmp_path / "fine", "train", workers=1, progress=False)
    # shapes against shape gt: perfect; predictions on unlabeled background would not count anyway
    assert res["mIoU"] == 1.0 and res["n_present"] == len(expect)
    with pytest.warns(UserWarning):
        res = evaluate_folder("gtsdb", root, tmp_path / "fine", "train", workers=1, progress=False,
                              mask_mode="coarse", rules=resolve_rules("official", "gtsdb", drop="none"))
    # against filled boxes the corners the shapes leave 'unlabeled' are errors ("other")
    for v, (tp, fn, fp) in expect.items():
        c = res["classes"][tax.by_id(v - tax.encoding.offset).display]
        assert (c["TP"], c["FN"], c["FP"]) == (tp, fn, fp)
        assert c["IoU"] == pytest.approx(tp / (tp + fn + fp))
    assert res["mIoU"] < 0.9 and res["other_pixels"] > 0
