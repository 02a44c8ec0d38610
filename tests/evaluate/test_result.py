"""labeltree.evaluate.result: the result object of evaluate_folder (a mapping over the JSON, numbers, table, JSON)."""

import json

import numpy as np

from labeltree.evaluate.folder import evaluate_folder
from labeltree.evaluate.report import format_table
from labeltree.evaluate.result import EvaluationResult


def test_result_is_the_json_mapping_with_numbers_table_and_text(cs_set, tree):
    root, _, _ = cs_set
    res = evaluate_folder("cityscapes", root / "gt", root / "pred", levels=True, rules="paper", hierarchy=tree,
                          workers=1,
                          progress=False)
    data = json.loads(res.to_json())
    assert res.to_json() == json.dumps(res.data, indent=2) + "\n"
    assert res == data and dict(res) == res.data and len(res) == len(data)
    assert res.miou == data["mIoU"] and res.mpa == data["mPA"] and res.pixel_accuracy == data["pixel_accuracy"]
    assert res.classes["road"] == data["classes"]["road"] and res.dataset == "cityscapes"
    assert sorted(res.levels) == [int(k) for k in data["levels"]] and res.levels[1] == data["levels"]["1"]
    assert res.table() == format_table(data)
    assert res.rules == res.evaluator.rules and res.rules.protocol == "paper"
    saved = EvaluationResult(data)  # from a saved -o file: the same rules, the same table
    assert saved.rules.as_dict() == res.rules.as_dict() and saved.table() == res.table()
    assert np.array_equal(np.asarray(data["confusion"]["matrix"]), res.evaluator.eval_matrix()[0])


def test_plot_confusion_writes_a_png(cs_set, tmp_path):
    root, _, _ = cs_set
    res = evaluate_folder("cityscapes", root / "gt", root / "pred", workers=1, progress=False)
    res.plot_confusion(tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
