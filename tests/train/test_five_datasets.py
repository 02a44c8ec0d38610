"""Five datasets in one tree (issue 19): synthetic Cityscapes, Vistas v2.0, GTSDB, BDD100K and IDD,
each in its own layout, read back, counted, trained on together and evaluated one by one."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from labeltree.cli import main
from labeltree.core.hierarchy import UNKNOWN
from labeltree.core.tree_file import load_hierarchy
from labeltree.datasets import open_dataset, read_label
from labeltree.stats.collect import collect_stats
from labeltree.synth.runner import synthesize
from labeltree.synth.writers import gtsdb_layout
from labeltree.train.config import config_from_dict
from labeltree.train.loop import train

REPO = Path(__file__).resolve().parents[2]
FIVE = "cityscapes+vistas-v2.0+gtsdb+bdd100k+idd"
N, W, H = 5, 128, 64


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("five") / "D"
    synthesize(out, images=N, seed=1, size=(W, H), workers=1, progress=False, hierarchy=FIVE)
    return out


def test_synth_writes_every_dataset_of_the_tree_in_its_layout(data: Path) -> None:
    h = load_hierarchy(FIVE)
    assert list(h.mappings) == ["cityscapes", "vistas-v2.0", "gtsdb", "bdd100k", "idd", "cityscapes-extended"]
    n_gtsdb = len(gtsdb_layout(N))
    for ds, m in h.mappings.items():
        reader = open_dataset(m.taxonomy, data / ds)
        samples = [s for split in reader.splits() for s in reader.samples(split)]
        assert len(samples) == (n_gtsdb if ds == "gtsdb" else N), ds
        assert all(s.image is not None and s.image.exists() for s in samples), ds
        v2n = h.tables(ds).value_to_node
        for s in samples:
            lab = read_label(s, m.taxonomy)
            assert lab.shape == (H, W)
            assert not (v2n[lab] == UNKNOWN).any(), (ds, s.key)  # every stored value is a class of the taxonomy
    # the layouts' own folders
    assert len(list((data / "vistas-v2.0" / "training" / "v2.0" / "labels").glob("*.png"))) == 4
    assert (data / "vistas-v2.0" / "config_v2.0.json").is_file()
    assert len(list((data / "bdd100k" / "labels" / "sem_seg" / "masks" / "train").glob("*.png"))) == 4
    assert len(list((data / "idd" / "gtFine" / "train").glob("*/*_gtFine_labellevel3Ids.png"))) == 4


def test_stats_count_every_pixel_of_each_new_dataset(data: Path) -> None:
    for ds in ("vistas-v2.0", "bdd100k", "idd"):
        groups = collect_stats(ds, data / ds, workers=1, cache=False, progress=False)
        reader = open_dataset(ds, data / ds)
        for g in groups:
            samples = reader.samples(g.split)
            want = sum(np.bincount(read_label(s, reader.taxonomy).ravel(), minlength=g.lut_size) for s in samples)
            assert g.pixels.sum() == len(samples) * W * H, (ds, g.split)
            assert np.array_equal(g.pixels, want), (ds, g.split)


@pytest.mark.slow
def test_a_short_training_on_all_five_evaluates_each(data: Path, tmp_path: Path) -> None:
    cfg = yaml.safe_load((REPO / "configs" / "cpu-tiny-five.yaml").read_text())
    cfg["data_root"] = str(data)
    cfg["model"]["tiny_channels"] = [8, 16, 24, 32]
    cfg["train"].update({"steps": 2, "crop": [H, W], "workers": 0, "threads": 1, "eval_every": 100,
                         "eval_at_end": True, "checkpoint_every": 100})
    # the official tools' rules: after 2 steps the paper's (the config's) drop nearly every prediction of these
    # datasets as of classes they lack; official keeps them, so every dense dataset has numbers to compare
    cfg["eval"] = {"protocol": "official"}
    res = train(config_from_dict(cfg), tmp_path / "R", progress=False, log=lambda *_: None)
    assert [r["step"] for r in res.losses] == [1, 2]
    assert all(math.isfinite(r["loss"]) for r in res.losses)
    rec = [json.loads(ln) for ln in (tmp_path / "R" / "metrics.jsonl").read_text().splitlines()][-1]
    assert list(rec["datasets"]) == ["cityscapes", "vistas-v2.0", "gtsdb", "bdd100k", "idd", "cityscapes-extended"]
    for ds, r in rec["datasets"].items():  # the sign datasets use the paper's rules (no official tool)
        assert (r["mIoU"] is None and ds in ("gtsdb", "cityscapes-extended")) or 0.0 <= r["mIoU"] <= 1.0, ds
        assert r["pixels"] > 0 or ds in ("gtsdb", "cityscapes-extended"), ds
    # the checkpoint evaluates each new dataset on its own through the CLI, as the in-training evaluation
    for ds in ("bdd100k", "idd"):
        out = tmp_path / f"{ds}.json"
        r = CliRunner().invoke(main, ["evaluate", ds, str(data / ds), "--checkpoint", str(res.last), "--split", "val",
                                      "--protocol", "official", "--eval-size", "native", "-o", str(out)])
        assert r.exit_code == 0, r.output
        got = json.loads(out.read_text())
        assert got["pixels"] == rec["datasets"][ds]["pixels"] and got["mIoU"] == rec["datasets"][ds]["mIoU"], ds
