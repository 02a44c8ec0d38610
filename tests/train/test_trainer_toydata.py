"""Tiny native-layout datasets for the trainer tests (built with PIL in tmp_path), and their checks.

Each image is a few flat-coloured regions whose colour encodes the class, so a tiny network can
learn them in a few dozen steps. Class ids come from the taxonomies, never from literals.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from labeltree.core.taxonomy import load_taxonomy
from labeltree.datasets.registry import open_dataset

H, W = 48, 96
RIDERS = ["Bicyclist", "Motorcyclist", "Other Rider"]  # Vistas' rider kinds: the tree's Rider classifier


@cache
def _tax(name: str):
    return load_taxonomy(name)


def _cid(tax: str, name: str) -> int:
    c = _tax(tax).find(name)
    assert c is not None, (tax, name)
    return c.id


def _colour(name: str) -> np.ndarray:
    v = sum((k + 3) * ord(ch) for k, ch in enumerate(name))
    return np.array([(v * 37) % 200 + 30, (v * 91) % 200 + 30, (v * 53) % 200 + 30], dtype=np.int16)


def _scene(rng: np.random.Generator, names: list[str], sign: tuple[int, int, int, int] | None, sign_name: str = ""):
    """(image, region map of indices into `names`): sky / building / road bands + a car + a sign box."""
    regions = np.zeros((H, W), dtype=np.int64)
    horizon = int(rng.integers(H // 3, H // 2))
    regions[:horizon // 2] = 0  # sky
    regions[horizon // 2:horizon] = 1  # building
    regions[horizon:] = 2  # road
    x0 = int(rng.integers(0, W - 30))
    regions[horizon - 4:horizon + 8, x0:x0 + 24] = 3  # car
    img = np.zeros((H, W, 3), dtype=np.int16)
    for i, n in enumerate(names):
        img[regions == i] = _colour(n)
    if sign is not None:
        y0, x0s, y1, x1 = sign
        regions[y0:y1 + 1, x0s:x1 + 1] = 4
        img[y0:y1 + 1, x0s:x1 + 1] = _colour(sign_name)
    img = img + rng.integers(-8, 9, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), regions


def make_toy(root: Path, n: int = 4, seed: int = 0, n_val: int = 2, riders: bool = False) -> Path:
    """cityscapes/, vistas/, gtsdb/, cityscapes-extended/ under `root` with n train + n_val val images.

    `riders`: each Vistas frame also shows a rider (Bicyclist / Motorcyclist / Other Rider in turn), so that every
    classifier of the tree has pixels (the calibration tests); without it the frames are as they always were."""
    rng = np.random.default_rng(seed)
    gt_lines: list[str] = []
    gt_test_start = 600  # GTSDB's test split starts at frame 00600
    signs = [1, 14, 25]  # GTSDB ClassIDs used: speed limit 30, stop, construction
    for split, count in (("train", n), ("val", n_val)):
        for i in range(count):
            # Cityscapes-format (+ Extended)
            k = signs[i % len(signs)]
            box = (4, 70, 15, 81)
            img, reg = _scene(rng, ["sky", "building", "road", "car", "traffic sign"], box, f"gtsdb{k}")
            cs_ids = np.array([_cid("cityscapes", c) for c in ["sky", "building", "road", "car", "traffic sign"]])
            lab = cs_ids[reg].astype(np.uint8)
            key = f"toy_{i:06d}_000019"
            d = root / "cityscapes"
            (d / "leftImg8bit" / split / "toy").mkdir(parents=True, exist_ok=True)
            (d / "gtFine" / split / "toy").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / "leftImg8bit" / split / "toy" / f"{key}_leftImg8bit.png")
            Image.fromarray(lab).save(d / "gtFine" / split / "toy" / f"{key}_gtFine_labelIds.png")
            e = root / "cityscapes-extended"
            (e / "leftImg8bit" / split / "toy").mkdir(parents=True, exist_ok=True)
            (e / "gtFine" / split / "toy").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(e / "leftImg8bit" / split / "toy" / f"{key}_leftImg8bit.png")
            ext = lab.astype(np.uint16)
            ext[reg == 4] = _tax("cityscapes-extended").stored_value(_cid("cityscapes-extended",
                                                                                    str(2000 + k)))
            Image.fromarray(ext).save(e / "gtFine" / split / "toy" / f"{key}_gtFine_labelIds.png")
            # Vistas-format
            vnames = ["Sky", "Building", "Road", "Car", "Traffic Sign (Front)"]
            img, reg = _scene(rng, ["sky", "building", "road", "car", "traffic sign"], (6, 20, 15, 29), "vsign")
            reg = np.where((reg == 2) & (np.arange(W)[None, :] % 24 < 4), 5, reg)  # lane markings
            rider = RIDERS[i % len(RIDERS)]
            vids = np.array([_cid("vistas", c) for c in vnames + ["Lane Marking - General", rider]])
            colour = np.array(_colour("Lane Marking - General"), dtype=np.int16)
            img = np.where((reg == 5)[..., None], colour, img).astype(np.uint8)
            if riders:
                reg[14:34, 84:92] = 6
                img[14:34, 84:92] = np.clip(_colour(rider) + rng.integers(-8, 9, size=(20, 8, 3)), 0, 255)
            vl = Image.fromarray(vids[reg].astype(np.uint8), mode="L").convert("P")
            vl.putpalette([c for cl in _tax("vistas").classes for c in cl.color])
            vs = {"train": "training", "val": "validation"}[split]
            (root / "vistas" / vs / "images").mkdir(parents=True, exist_ok=True)
            (root / "vistas" / vs / "labels").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / "vistas" / vs / "images" / f"v{split}{i:03d}.jpg", quality=98)
            vl.save(root / "vistas" / vs / "labels" / f"v{split}{i:03d}.png")
            # GTSDB-format: boxes only
            k = signs[i % len(signs)]
            frame = i if split == "train" else gt_test_start + i
            bx = (8, 30 + 10 * (i % 3), 21, 43 + 10 * (i % 3))  # y0, x0, y1, x1 (inclusive)
            img, _ = _scene(rng, ["sky", "building", "road", "car", "sign"], bx, f"gtsdb{k}")
            (root / "gtsdb").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / "gtsdb" / f"{frame:05d}.ppm")
            gt_lines.append(f"{frame:05d}.ppm;{bx[1]};{bx[0]};{bx[3]};{bx[2]};{k}")
    (root / "gtsdb" / "gt.txt").write_text("\n".join(gt_lines) + "\n")
    return root


def test_toy_datasets_read_back(tmp_path: Path) -> None:
    root = make_toy(tmp_path, n=3, n_val=1)
    cs = open_dataset("cityscapes", root / "cityscapes")
    assert len(cs.samples("train")) == 3 and len(cs.samples("val")) == 1
    lab = cs.read_label(cs.samples("train")[0])
    assert set(np.unique(lab)) <= {_cid("cityscapes", c) for c in ["sky", "building", "road", "car", "traffic sign"]}
    vi = open_dataset("vistas", root / "vistas")
    assert _cid("vistas", "Lane Marking - General") in set(np.unique(vi.read_label(vi.samples("train")[0])))
    gt = open_dataset("gtsdb", root / "gtsdb")
    tr, te = gt.samples("train"), gt.samples("test")
    assert len(tr) == 3 and len(te) == 1 and all(len(s.boxes) == 1 for s in tr + te)
