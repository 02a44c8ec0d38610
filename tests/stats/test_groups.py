"""stats.groups: shards merged equal one run; raw-count files and the CLI outputs."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner
from stats_helpers import random_cs, run

from labeltree.cli import main
from labeltree.core.tree_file import load_hierarchy
from labeltree.errors import LabeltreeError
from labeltree.stats.groups import merge_groups, read_raw, write_raw
from labeltree.stats.report import build_report

# -- shards, merge, CLI --------------------------------------------------------------------------

def test_shards_merged_equal_one_run(tmp_path):
    random_cs(tmp_path, 7, seed=3, split="train")
    random_cs(tmp_path, 4, seed=4, split="val")
    whole = run(tmp_path)
    parts = []
    for k in (1, 2, 3):
        gs = run(tmp_path, shard=(k, 3))
        assert sum(g.n_images for g in gs) in (3, 4)
        write_raw(tmp_path / f"part{k}.json", gs)
        parts += [(f"part{k}", g) for g in read_raw(tmp_path / f"part{k}.json")]
    merged = merge_groups(parts)
    h = load_hierarchy()
    assert build_report(merged, h).classes == build_report(whole, h).classes
    assert build_report(merged, h).summary == build_report(whole, h).summary
    with pytest.raises(LabeltreeError, match="2/3 missing"):
        merge_groups([p for p in parts if p[0] != "part2"])
    with pytest.raises(LabeltreeError, match="given twice"):
        merge_groups(parts + parts[:1])


def test_cli_shards_and_outputs(tmp_path):
    random_cs(tmp_path / "cs", 6, seed=5)
    r = CliRunner()
    env = {"LABELTREE_CACHE": str(tmp_path / "cache")}
    one = r.invoke(main, ["stats", "cityscapes", str(tmp_path / "cs"), "--workers", "1", "--quiet",
                          "-o", str(tmp_path / "one.json"), "--summary-out", str(tmp_path / "sum.csv"),
                          "--tree-out", str(tmp_path / "tree.parquet"), "--plot", str(tmp_path / "p.png")], env=env)
    assert one.exit_code == 0, one.output
    for k in (1, 2):
        res = r.invoke(main, ["stats", "cityscapes", str(tmp_path / "cs"), "--workers", "1", "--quiet", "--no-cache",
                              "--shard", f"{k}/2", "-o", str(tmp_path / f"s{k}.json")], env=env)
        assert res.exit_code == 0, res.output
    res = r.invoke(main, ["stats-merge", str(tmp_path / "s1.json"), str(tmp_path / "s2.json"),
                          "-o", str(tmp_path / "merged.json"), "--quiet"])
    assert res.exit_code == 0, res.output
    a = json.loads((tmp_path / "one.json").read_text())
    assert isinstance(a, list) and {"dataset", "class_id", "name", "pixels", "images"} <= set(a[0])
    assert a == json.loads((tmp_path / "merged.json").read_text())
    assert pd.read_csv(tmp_path / "sum.csv")["images"].tolist() == [6]
    tree = pd.read_parquet(tmp_path / "tree.parquet")
    assert tree[tree.classifier == "root"]["pixels"].sum() == sum(x["pixels"] for x in a if not x["ignored"])
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv = r.invoke(main, ["stats", "cityscapes", str(tmp_path / "cs"), "--workers", "1", "--quiet",
                          "-o", str(tmp_path / "one.csv")], env=env)
    assert csv.exit_code == 0
    df = pd.read_csv(tmp_path / "one.csv")
    assert df["pixels"].tolist() == [x["pixels"] for x in a]
    # the terminal table names classes and weights
    shown = r.invoke(main, ["stats", "cityscapes", str(tmp_path / "cs"), "--workers", "1"], env=env)
    assert shown.exit_code == 0 and "w medfreq" in shown.output and "Classifiers of tree" in shown.output
    # a missing shard is bad usage: exit 2, one line, no traceback
    res = r.invoke(main, ["stats-merge", str(tmp_path / "s1.json"), "-o", str(tmp_path / "m.json")])
    assert res.exit_code == 2 and "2/2 missing" in res.output and "Traceback" not in res.output
    res = r.invoke(main, ["stats-merge", str(tmp_path / "one.json"), "-o", str(tmp_path / "m.json")])
    assert res.exit_code == 2 and "not a raw-count stats file" in res.output
