"""stats.collect: the process pool, bad files, real fixtures and the synthetic datasets."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from stats_helpers import CS, cs_label_path, random_cs, rows_by_value, run, write_cs

from labeltree.cli import main
from labeltree.core.taxonomy import load_taxonomy
from labeltree.core.tree_file import load_hierarchy
from labeltree.errors import LabeltreeError
from labeltree.stats.collect import RunInfo
from labeltree.stats.report import build_report, class_rows


def test_process_pool_equals_one_process(tmp_path):
    """2 workers (the first file counted in the parent, the rest in the pool) = 1 worker, bad files included."""
    labels = random_cs(tmp_path, 6, seed=5)
    one = run(tmp_path, skip_bad=True)
    h = load_hierarchy()
    two = run(tmp_path, workers=2, skip_bad=True)
    assert build_report(two, h).classes == build_report(one, h).classes
    assert np.array_equal(two[0].pixels[:34], np.bincount(np.concatenate([a.ravel() for a in labels]), minlength=34))
    for i in (1, 4):  # aachen_000001 sorts first: the parent's file is bad too
        p = cs_label_path(tmp_path, "train", "bremen" if i % 2 == 0 else "aachen", i)
        p.write_bytes(p.read_bytes()[:70])
    one_info, two_info = RunInfo(), RunInfo()
    [g1] = run(tmp_path, skip_bad=True, info=one_info)
    [g2] = run(tmp_path, workers=2, skip_bad=True, info=two_info)
    assert len(two_info.bad) == 2 and two_info.bad == one_info.bad and g2.n_images == g1.n_images == 4
    assert np.array_equal(g2.pixels, g1.pixels)
    with pytest.raises(LabeltreeError, match="aachen_000001"):
        run(tmp_path, workers=2)


# -- bad input -----------------------------------------------------------------------------------

def test_bad_files_stop_or_are_skipped(tmp_path):
    labels = random_cs(tmp_path / "cs", 4, seed=9)
    bad = cs_label_path(tmp_path / "cs", "train", "aachen", 3)
    bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG
    with pytest.raises(LabeltreeError) as e:
        run(tmp_path / "cs")
    assert str(bad) in str(e.value) and "--skip-bad" in str(e.value)
    info = RunInfo()
    [g] = run(tmp_path / "cs", skip_bad=True, info=info)
    assert len(info.bad) == 1 and str(bad) in info.bad[0]
    assert g.n_images == 3 and g.bad == info.bad
    direct = np.bincount(np.concatenate([labels[i].ravel() for i in (0, 1, 2)]), minlength=34)
    assert np.array_equal(g.pixels[:34], direct)
    r = CliRunner()
    res = r.invoke(main, ["stats", "cityscapes", str(tmp_path / "cs"), "--workers", "1", "--no-cache", "--quiet"])
    assert res.exit_code == 2 and str(bad) in res.output and "Traceback" not in res.output
    res = r.invoke(main, ["stats", "cityscapes", str(tmp_path / "cs"), "--workers", "1", "--no-cache", "--quiet",
                          "--skip-bad"])
    assert res.exit_code == 0 and "skipped bad file" in res.output and str(bad) in res.output
    # a value the taxonomy lacks is bad input too, named with the file
    stray = write_cs(tmp_path / "cs2", "train", "aachen", 0, np.full((4, 4), 77, np.uint8))
    with pytest.raises(LabeltreeError) as e:
        run(tmp_path / "cs2")
    assert str(stray) in str(e.value) and "77" in str(e.value)
    res = r.invoke(main, ["stats", "cityscapes", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "nowhere" in res.output


# -- conformance on real files and synthetic datasets --------------------------------------------

def test_real_cityscapes_fixture(real_fixtures):
    root = real_fixtures / "cityscapes"
    [g] = run(root, splits=["val"])
    label = next((root / "gtFine" / "val").glob("*/*_labelIds.png"))
    arr = np.array(Image.open(label))
    direct = np.bincount(arr.ravel(), minlength=34)
    assert np.array_equal(g.pixels[:34], direct)
    inst = np.array(Image.open(label.with_name(label.name.replace("labelIds", "instanceIds"))))
    ids = np.unique(inst[inst >= 1000])
    rows = rows_by_value(class_rows(g))
    for c in (CS.find("person").id, CS.find("car").id):
        assert rows[c]["instances"] == int(np.sum(ids // 1000 == c))


def test_synthetic_datasets_counts(tmp_path):
    synth = pytest.importorskip("labeltree.synth.runner")
    synth.synthesize(tmp_path, images=5, seed=1, size=(96, 48), workers=1, progress=False)
    for ds, sub in (("cityscapes", "cityscapes"), ("vistas", "vistas"), ("cityscapes-extended",
                                                                       "cityscapes-extended")):
        root = tmp_path / sub
        groups = run(root, ds)
        tax = load_taxonomy(ds)
        files = sorted(p for p in root.rglob("*.png") if p.parent.name == "labels") if ds == "vistas" \
            else sorted(root.rglob("*_gtFine_labelIds.png"))
        assert files and sum(g.n_images for g in groups) == len(files)
        per_file = [np.bincount(np.array(Image.open(f)).ravel(), minlength=tax.lut_size) for f in files]
        total = sum(g.pixels for g in groups)
        assert np.array_equal(total, sum(per_file)[:tax.lut_size]), ds
        images = sum(g.images for g in groups)  # images holding each value
        assert np.array_equal(images, sum((c > 0).astype(np.int64) for c in per_file)[:tax.lut_size]), ds
        assert (images > 1).any(), ds
    [gt] = run(tmp_path / "gtsdb", "gtsdb", splits=["train"])
    lines = (tmp_path / "gtsdb" / "gt.txt").read_text().splitlines()
    assert int(gt.boxes.sum()) == sum(1 for ln in lines if int(ln[:5]) < 600)
