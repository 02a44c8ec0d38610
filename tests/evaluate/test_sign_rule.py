"""labeltree.evaluate.signs: the flat model's second-choice traffic-sign rule, by hand and in GTSDB."""

import numpy as np
import pytest

from labeltree.core.taxonomy import load_taxonomy
from labeltree.errors import LabeltreeError
from labeltree.evaluate.evaluator import Evaluator
from labeltree.evaluate.signs import second_choice


def ids(tax, *names):
    return [tax.find(n).id for n in names]



def test_second_choice_rule_hand_cases():
    # 5 classes, generic = 1, subclasses = 2, 3; one row of 4 pixels
    s = np.zeros((5, 1, 4))
    s[:, 0, 0] = [0, 9, 1, 5, 2]  # generic, second = 3 (subclass) -> 3
    s[:, 0, 1] = [0, 9, 1, 2, 5]  # generic, second = 4 (no subclass) -> stays 1
    s[:, 0, 2] = [0, 1, 9, 2, 0]  # top is a subclass -> unchanged
    s[:, 0, 3] = [0, 9, 6, 5, 2]  # generic, second = 2 -> 2
    assert second_choice(s, 1, [2, 3]).tolist() == [[3, 1, 2, 2]]
    assert second_choice(np.moveaxis(s, 0, -1), 1, [2, 3], axis=-1).tolist() == [[3, 1, 2, 2]]


def test_second_choice_recorded_right_in_gtsdb(tree):
    gts = load_taxonomy("gtsdb")
    k_a, k_b = ids(gts, "speed limit 80", "stop")
    front = tree.index["Traffic Sign (Front)"]
    na, nb = tree.index["Sign: speed limit 80"], tree.index["Sign: stop"]
    gt = np.full((1, 3), gts.stored_value(k_a), dtype=np.uint16)
    scores = np.zeros((len(tree.nodes), 1, 3), dtype=np.float32)
    scores[front] = 9
    scores[na, 0, 0] = 5  # second choice right -> correct
    scores[nb, 0, 1] = 5  # second choice wrong -> recorded as 'stop' (a confusion, FP of stop)
    scores[na, 0, 2] = 10  # top choice right
    ev = Evaluator("gtsdb", hierarchy=tree, pred_space="tree", paper_protocol=True)
    ev.add_scores(gt, scores)
    r = ev.result()
    assert r["classes"]["speed limit 80"]["TP"] == 2 and r["classes"]["speed limit 80"]["FN"] == 1
    assert r["classes"]["stop"]["FP"] == 1
    # without the rule the generic sign is no GTSDB class: 2 errors in 'other'
    flat = Evaluator("gtsdb", hierarchy=tree, pred_space="tree", sign_rule=False, drop="none")
    flat.add_scores(gt, scores)
    f = flat.result()
    assert f["classes"]["speed limit 80"]["TP"] == 1 and f["other_pixels"] == 2
    with pytest.raises(LabeltreeError, match="one channel per tree"):
        flat.add_scores(gt, scores[:5])
