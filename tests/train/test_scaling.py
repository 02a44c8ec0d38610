"""Aspect-preserving scaling (`resize_mode: cover | short`) for photo and label, in training, prepare and evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeltree.core.tree_file import load_hierarchy
from labeltree.errors import LabeltreeError
from labeltree.train.config import config_from_dict
from labeltree.train.data import MixedDataset, build_sources, prepare_cache
from labeltree.train.evaluation import eval_sets
from labeltree.train.scaling import scaled_size

H = load_hierarchy("cityscapes+vistas+gtsdb")
TAX = H.mapping("vistas").taxonomy


def test_scaled_size_by_hand() -> None:
    # 16:9 1920x1080 to cover 512x706: f = max(512/1080, 706/1920) = 0.474 -> 910.2 wide; 3:4 900x1200: f = 706/900
    assert scaled_size((1080, 1920), (512, 706), "cover") == (512, 910)
    assert scaled_size((1200, 900), (512, 706), "cover") == (941, 706)
    assert scaled_size((1080, 1920), (512, 706), "short") == (512, 910)
    assert scaled_size((1200, 900), (512, 706), "short") == (683, 512)
    assert scaled_size((1200, 900), (512, 706), "fixed") == (512, 706)
    assert scaled_size((1200, 900), None, "cover") == (1200, 900)


def _vistas(root: Path) -> Path:
    """Two Vistas photos: 160x90 (16:9) and 60x80 (3:4), labels Sky above Road with a vertical Car bar."""
    sky, road, car = (TAX.stored_value(TAX.find(n).id) for n in ("Sky", "Road", "Car"))
    for split in ("training", "validation"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for key, (h, w) in (("wide", (90, 160)), ("tall", (80, 60))):
            lab = np.full((h, w), sky, np.uint8)
            lab[h // 2:] = road
            lab[:, w // 3: w // 3 + 4] = car
            rgb = np.stack([lab * 3, lab * 5, lab * 7], axis=-1).astype(np.uint8)
            Image.fromarray(rgb).save(root / split / "images" / f"{key}.jpg", quality=95)
            p = Image.fromarray(lab, mode="L").convert("P")
            p.putpalette([c for cl in TAX.classes for c in cl.color])
            p.save(root / split / "labels" / f"{key}.png")
    return root


def _cfg(root: Path, mode: str = "cover", cache: str | None = None) -> object:
    return config_from_dict({
        "datasets": [{"name": "vistas", "root": str(root), "split": "train", "val_split": "val",
                      "resize": [48, 64], "resize_mode": mode}],
        "train": {"crop": [48, 64], "workers": 0, "cache": cache}, "data_root": str(root.parent)})


def _aspect_ok(shape: tuple[int, int], w: int, h: int) -> bool:
    """The scaled (H, W) keeps the photo's w:h within one pixel."""
    return abs(shape[1] - shape[0] * w / h) < 1 and abs(shape[0] - shape[1] * h / w) < 1


def test_aspect_kept_through_prepare_and_crops(tmp_path: Path) -> None:
    root = _vistas(tmp_path / "vistas")
    cfg = _cfg(root)
    (src,) = build_sources(cfg, H)
    raw = {src.items[i].key: src.load(i) for i in range(len(src))}
    assert raw["wide"][1].shape == (48, 85) and raw["tall"][1].shape == (85, 64)  # 160x90 * 48/90, 60x80 * 64/60
    assert _aspect_ok(raw["wide"][1].shape, 16, 9) and _aspect_ok(raw["tall"][1].shape, 3, 4)
    for img, lab in raw.values():
        assert img.shape[:2] == lab.shape
    # the Car bar keeps its place: columns 53..56 of 160; nearest output x reads input floor((x + .5) * 160 / 85):
    # x = 27 -> 51, 28 -> 53, 29 -> 55, 30 -> 57
    car = TAX.stored_value(TAX.find("Car").id)
    assert np.flatnonzero(raw["wide"][1][0] == car).tolist() == [28, 29]
    # prepare writes the same scaled pairs; training from the cache reads them back
    prepare_cache(cfg, H, tmp_path / "cache", workers=1, progress=False)
    (cached,) = build_sources(_cfg(root, cache=str(tmp_path / "cache")), H)
    assert cached.cached
    for i in range(len(cached)):
        img, lab = cached.load(i)
        np.testing.assert_array_equal(lab, raw[cached.items[i].key][1])
        assert img.shape[:2] == lab.shape
    # training crops: the crop lies inside the scaled photo, nothing padded
    ds = MixedDataset([cached], (48, 64))
    for i in range(len(cached)):
        im, lb, _ = ds[(0, i, 123 + i)]
        assert tuple(im.shape) == (3, 48, 64) and tuple(lb.shape) == (48, 64)
        assert not (lb == cached.pad_value).any()
    # evaluation reads the labels at their own size and runs the network at the training scale (as evaluate
    # --checkpoint does under --eval-size native)
    (ev,) = eval_sets(cfg, H)
    assert sorted(ev.source.load(i)[1].shape for i in range(len(ev.source))) == [(80, 60), (90, 160)]
    assert ev.scale == ((48, 64), "cover")
    # a cache prepared another way is refused
    with pytest.raises(LabeltreeError, match="rerun `labeltree prepare`"):
        build_sources(_cfg(root, mode="short", cache=str(tmp_path / "cache")), H)


def test_resize_mode_needs_a_size() -> None:
    with pytest.raises(LabeltreeError, match="resize_mode cover needs a resize"):
        config_from_dict({"datasets": [{"name": "vistas", "root": "v", "resize_mode": "cover"}]})
