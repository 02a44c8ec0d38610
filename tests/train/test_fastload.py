"""The fast loader path: npy cache crops read from memory maps, colour jitter on the batch, determinism by slot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from test_scaling import H, _vistas

from labeltree.train.config import Augment, config_from_dict
from labeltree.train.data import MixedDataset, build_loader, build_sources, prepare_cache
from labeltree.train.fastload import apply_jitter, crop_from, draw_jitter


def _cfg(root: Path, cache: str | None, fmt: str = "npy", device_jitter: bool = True) -> object:
    return config_from_dict({
        "datasets": [{"name": "vistas", "root": str(root), "split": "train", "val_split": "val",
                      "resize": [48, 64], "resize_mode": "cover", "share": 2,
                      "augment": {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.05, "hflip": True}}],
        "train": {"crop": [40, 56], "workers": 0, "cache": cache, "cache_format": fmt, "steps": 5,
                  "jitter_on_device": device_jitter},
        "data_root": str(root.parent)})


def test_jitter_by_hand() -> None:
    x = torch.tensor([[[[200.0]], [[100.0]], [[50.0]]], [[[10.0]], [[20.0]], [[30.0]]]])  # 2 images, 1 pixel
    same = apply_jitter(x, torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 2))
    torch.testing.assert_close(same, x)
    half = apply_jitter(x, torch.tensor([[0.5, 1.0, 1.0, 0.0], [2.0, 1.0, 1.0, 0.0]]))
    torch.testing.assert_close(half[0].flatten(), torch.tensor([100.0, 50.0, 25.0]))
    torch.testing.assert_close(half[1].flatten(), torch.tensor([20.0, 40.0, 60.0]))
    grey = apply_jitter(x, torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 2))  # saturation 0: the pixel's grey value
    torch.testing.assert_close(grey[0].flatten(), torch.full((3,), 0.299 * 200 + 0.587 * 100 + 0.114 * 50))
    turn = apply_jitter(x, torch.tensor([[1.0, 1.0, 1.0, 1.0]] * 2))  # a full turn of the chroma plane
    torch.testing.assert_close(turn, x, atol=1e-3, rtol=0)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = Augment(brightness=0.2, hue=0.05)
    p = draw_jitter(a, g1)
    assert torch.equal(p, draw_jitter(a, g2)) and 0.8 <= p[0] <= 1.2 and p[1] == p[2] == 1 and abs(p[3]) <= 0.05


def test_npy_cache_crops_and_determinism(tmp_path: Path) -> None:
    root = _vistas(tmp_path / "vistas")
    prepare_cache(_cfg(root, None, "png"), H, tmp_path / "png", workers=1, progress=False)
    prepare_cache(_cfg(root, None, "npy"), H, tmp_path / "npy", workers=1, progress=False)
    (png,) = build_sources(_cfg(root, str(tmp_path / "png")), H)
    (npy,) = build_sources(_cfg(root, str(tmp_path / "npy")), H)
    assert npy.items[0].image.endswith(".npy") and npy.cached
    for i in range(len(npy)):
        a, b = png.load(i), npy.load(i)
        assert isinstance(b[0], np.memmap) and isinstance(b[1], np.memmap)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        # the memory-mapped crop is the crop of the whole arrays, for the same slot seed
        for seed in (1, 2, 3):
            m = crop_from(b[0], b[1], (40, 56), 7, True, torch.Generator().manual_seed(seed))
            f = crop_from(np.array(b[0]), np.array(b[1]), (40, 56), 7, True, torch.Generator().manual_seed(seed))
            np.testing.assert_array_equal(m[0], f[0])
            np.testing.assert_array_equal(m[1], f[1])
    ds = MixedDataset([npy], (40, 56), jitter_on_device=True)
    im, lb, d, jit = ds[(0, 1, 99)]
    assert tuple(im.shape) == (3, 40, 56) and im.dtype == torch.uint8 and lb.dtype == torch.int32 and d == 0
    assert not (lb == npy.pad_value).any()  # the cover-scaled photo holds the crop
    again = ds[(0, 1, 99)]
    assert torch.equal(im, again[0]) and torch.equal(lb, again[1]) and torch.equal(jit, again[3])
    # resume: a loader started at step 2 yields exactly the batches 2.. of one started at 0
    cfg = _cfg(root, str(tmp_path / "npy"))
    full = list(build_loader(cfg, [npy], 0))
    resumed = list(build_loader(cfg, [npy], 2))
    assert len(full) == 5 and len(resumed) == 3
    for x, y in zip(full[2:], resumed, strict=True):
        assert all(torch.equal(x[k], y[k]) for k in ("image", "label", "ds", "jitter"))
    assert not torch.equal(full[0]["jitter"], full[1]["jitter"])
    # jitter per sample on the CPU (jitter_on_device off) gives the device path's result, rounded
    cpu = MixedDataset([npy], (40, 56), jitter_on_device=False)[(0, 1, 99)]
    assert len(cpu) == 3
    torch.testing.assert_close(cpu[0].float(), apply_jitter(im[None], jit[None])[0].round(), atol=0, rtol=0)


def test_training_on_the_fast_path(tmp_path: Path) -> None:
    from labeltree.train.loop import train

    root = _vistas(tmp_path / "vistas")
    prepare_cache(_cfg(root, None), H, tmp_path / "npy", workers=1, progress=False)
    data = _cfg(root, str(tmp_path / "npy")).model_dump(mode="json")
    data["model"] = {"backbone": "tiny", "width": 16, "bottleneck": 8, "tiny_channels": [8, 8, 16, 16]}
    data["train"].update({"steps": 2, "threads": 1, "amp": False, "eval_at_end": False, "check_labels": True})
    r = train(config_from_dict(data), tmp_path / "run", progress=False, log=lambda *_: None)
    assert len(r.losses) == 2 and all(np.isfinite(x["loss"]) and x["loss"] > 0 for x in r.losses)


def test_authors_augmentation_on_both_loader_paths(tmp_path: Path) -> None:
    """`augment: authors`: the loader draws 12 parameters per sample; the device path applies them to the batch,
    the CPU path to the sample (rounded), with the same result; the PNG (torchvision) path applies them too."""
    root = _vistas(tmp_path / "vistas")
    data = _cfg(root, str(tmp_path / "npy")).model_dump(mode="json")
    data["datasets"][0]["augment"] = "authors"
    cfg = config_from_dict(data)
    prepare_cache(cfg, H, tmp_path / "npy", workers=1, progress=False)
    (npy,) = build_sources(cfg, H)
    dev = MixedDataset([npy], (40, 56), jitter_on_device=True)
    changed = 0
    for seed in range(12):
        im, lb, d, params = dev[(0, 1, seed)]
        assert params.shape == (12,) and params[:4].tolist() == [1.0, 1.0, 1.0, 0.0]
        cpu = MixedDataset([npy], (40, 56), jitter_on_device=False)[(0, 1, seed)]
        want = apply_jitter(im[None], params[None])[0].round()
        torch.testing.assert_close(cpu[0].float(), want, atol=0, rtol=0)
        changed += int(not torch.equal(cpu[0], im))
    assert 3 <= changed <= 12  # colour 1/2, blur 3/8: most of the 12 samples change, not necessarily all
    batch = next(iter(build_loader(cfg, [npy], 0)))
    assert tuple(batch["jitter"].shape) == (2, 12)
    prepare_cache(_cfg(root, None, "png"), H, tmp_path / "png", workers=1, progress=False)
    data["train"]["cache"], data["train"]["cache_format"], data["train"]["jitter_on_device"] = str(tmp_path / "png"), \
        "png", False
    (png,) = build_sources(config_from_dict(data), H)
    slow = MixedDataset([png], (40, 56), jitter_on_device=False)
    a, b = slow[(0, 1, 5)], slow[(0, 1, 5)]
    assert len(a) == 3 and a[0].dtype == torch.uint8 and torch.equal(a[0], b[0])
