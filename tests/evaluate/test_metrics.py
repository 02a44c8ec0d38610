"""Confusion-matrix metrics against hand computations on tiny matrices."""

import math

import numpy as np
import pytest

from labeltree.evaluate.metrics import confusion, fold, group_iou, per_class, summarize


def test_confusion_bincount_skips_ignored_gt():
    gt = np.array([0, 0, 1, 2, -1, 2])
    pred = np.array([0, 1, 1, 2, 0, 0])
    cm = confusion(gt, pred, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_per_class_square_hand_numbers():
    # rows = gt: class 0 has 3 px (2 right, 1 -> class 1); class 1 has 2 px (both right); class 2 absent
    cm = np.array([[2, 1, 0],
                   [0, 2, 0],
                   [0, 0, 0]])
    pc = per_class(cm)
    assert pc["pixels"].tolist() == [3, 2, 0]
    assert pc["PA"][0] == pytest.approx(2 / 3)
    assert pc["PA"][1] == 1.0
    assert math.isnan(pc["PA"][2]) and math.isnan(pc["IoU"][2])
    assert pc["IoU"][0] == pytest.approx(2 / 3)  # TP 2, FN 1, FP 0
    assert pc["IoU"][1] == pytest.approx(2 / 3)  # TP 2, FN 0, FP 1
    s = summarize(cm)
    assert s["mIoU"] == pytest.approx(2 / 3)  # absent class 2 not in the mean
    assert s["mPA"] == pytest.approx((2 / 3 + 1) / 2)
    assert s["pixel_accuracy"] == pytest.approx(4 / 5)
    assert s["fwIoU"] == pytest.approx(3 / 5 * 2 / 3 + 2 / 5 * 2 / 3)


def test_other_column_is_an_error_but_no_false_positive():
    # 2 evaluated classes + an "other" column
    cm = np.array([[5, 1, 4],
                   [0, 3, 0]])
    pc = per_class(cm)
    assert pc["pixels"].tolist() == [10, 3]
    assert pc["PA"][0] == pytest.approx(0.5)
    assert pc["IoU"][0] == pytest.approx(5 / 10)  # TP 5, FN 5, FP 0
    assert pc["IoU"][1] == pytest.approx(3 / 4)  # TP 3, FN 0, FP 1
    assert pc["FP"].tolist() == [0, 1] and pc["FN"].tolist() == [5, 0]
    assert summarize(cm)["pixel_accuracy"] == pytest.approx(8 / 13)


def test_mean_over_defined_counts_predicted_absent_classes_as_zero():
    # class 2 absent in the gt but predicted on a class-0 pixel: IoU 0 (defined), cityscapesScripts averages it
    cm = np.array([[3, 0, 1],
                   [0, 2, 0],
                   [0, 0, 0]])
    gt_mean = summarize(cm, mean_over="gt")["mIoU"]
    defined_mean = summarize(cm, mean_over="defined")["mIoU"]
    assert gt_mean == pytest.approx((3 / 4 + 1) / 2)
    assert defined_mean == pytest.approx((3 / 4 + 1 + 0) / 3)
    with pytest.raises(ValueError):
        summarize(cm, mean_over="everything")


def test_evaluated_mask_restricts_means_and_pixel_accuracy():
    cm = np.array([[4, 0], [2, 0]])
    s = summarize(cm, evaluated=np.array([True, False]))
    assert s["mIoU"] == pytest.approx(4 / 6)  # FP from row 1 still counts for class 0 here
    assert s["pixel_accuracy"] == 1.0  # only row 0 counted


def test_group_iou_is_cityscapes_category_formula():
    # classes 0, 1 form a group, class 2 outside; one "other" column
    cm = np.array([[5, 2, 1, 1],
                   [1, 4, 0, 0],
                   [2, 1, 6, 0]])
    # TP = 5+2+1+4 = 12; FN = rows 0,1 total (9 + 5) - 12 = 2; FP = row 2 in group columns = 3
    assert group_iou(cm, np.array([True, True, False])) == pytest.approx(12 / 17)
    assert math.isnan(group_iou(cm, np.array([False, False, False])))


def test_fold_sums_blocks_and_drops():
    cm = np.arange(16).reshape(4, 4)
    out = fold(cm, np.array([0, 0, 1, -1]), np.array([1, 0, 0, -1]), 2, 2)
    # rows 0+1 -> 0, row 2 -> 1, row 3 dropped; col 0 -> 1, cols 1+2 -> 0, col 3 dropped
    assert out.tolist() == [[1 + 2 + 5 + 6, 0 + 4], [9 + 10, 8]]
