"""Training loader speed on ONE core (img/s), raw and cached, per dataset, at the paper's scale (issue 16).

Run by hand (not a test):  python benchmarks/bench_loader.py [--n 6] [--repeat 2]

Per dataset (Cityscapes 2048x1024 PNG, Vistas JPEG of mixed sizes and aspects, GTSDB 1360x800 PPM,
generated under a temporary folder with label values from the taxonomies), scaled as configs/paper.yaml
does, random crop 512x706 and colour jitter (0.2, 0.2, 0.2, 0.02), one process, one torch thread:
  raw          decode the original files + scale + crop + per-sample jitter (torchvision, uint8 HSV)
  png cache    `labeltree prepare` PNG cache + crop + per-sample jitter: the baseline (issue: 18 img/s)
  npy cache    memory-mapped crop (train.cache_format npy) + per-sample float jitter on the crop
  npy + dev    memory-mapped crop, jitter factors only (train.jitter_on_device; the batch is jittered
               on the GPU after the transfer; its CPU cost per image is printed separately)
Ratios are against the PNG cache measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from labeltree.core.tree_file import load_hierarchy
from labeltree.train.config import config_from_dict
from labeltree.train.data import MixedDataset, build_sources, prepare_cache
from labeltree.train.fastload import apply_jitter

ISSUE_BASELINE = 18.0  # img/s per core from the PNG cache at the paper's scale (issue 16)
JITTER = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02}
VISTAS_SIZES = [(3000, 4000), (1080, 1920), (2448, 3264), (1200, 900), (2160, 3840), (1536, 2048)]


def _photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Street-ish photo content: smooth colour fields plus sensor noise (compresses like a photo)."""
    small = rng.integers(0, 256, (max(2, h // 64), max(2, w // 64), 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR)).astype(np.int16)
    return np.clip(big + rng.integers(-12, 13, (h, w, 3)), 0, 255).astype(np.uint8)


def _label(rng: np.random.Generator, h: int, w: int, values: list[int]) -> np.ndarray:
    """Blocky regions of valid values."""
    small = rng.choice(values, (max(2, h // 32), max(2, w // 32))).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.NEAREST))


def make_data(root: Path, n: int, seed: int = 0) -> None:
    h = load_hierarchy("cityscapes+vistas+gtsdb")
    rng = np.random.default_rng(seed)
    cs = h.mapping("cityscapes").taxonomy
    cs_vals = [cs.stored_value(c.id) for c in cs.classes if 7 <= c.id <= 33]
    for i in range(n):
        key = f"bench_{i:06d}_000019"
        for sub, name in (("leftImg8bit", f"{key}_leftImg8bit.png"), ("gtFine", f"{key}_gtFine_labelIds.png")):
            (root / "cityscapes" / sub / "train" / "bench").mkdir(parents=True, exist_ok=True)
            arr = _photo(rng, 1024, 2048) if sub == "leftImg8bit" else _label(rng, 1024, 2048, cs_vals)
            Image.fromarray(arr).save(root / "cityscapes" / sub / "train" / "bench" / name)
    vi = h.mapping("vistas").taxonomy
    vi_vals = [vi.stored_value(c.id) for c in vi.classes][:60]
    for d in ("images", "labels"):
        (root / "vistas" / "training" / d).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        hh, ww = VISTAS_SIZES[i % len(VISTAS_SIZES)]
        Image.fromarray(_photo(rng, hh, ww)).save(root / "vistas" / "training" / "images" / f"v{i:03d}.jpg",
                                                  quality=90)
        p = Image.fromarray(_label(rng, hh, ww, vi_vals), mode="L").convert("P")
        p.putpalette([c for cl in vi.classes for c in cl.color])
        p.save(root / "vistas" / "training" / "labels" / f"v{i:03d}.png")
    (root / "gtsdb").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        Image.fromarray(_photo(rng, 800, 1360)).save(root / "gtsdb" / f"{i:05d}.ppm")
        for k in range(2):
            x0, y0 = int(rng.integers(0, 1300)), int(rng.integers(0, 740))
            lines.append(f"{i:05d}.ppm;{x0};{y0};{x0 + 40};{y0 + 40};{[1, 14][k]}")
    (root / "gtsdb" / "gt.txt").write_text("\n".join(lines) + "\n")


def config(root: Path, cache: str | None, fmt: str, device_jitter: bool):
    ds = [{"name": "cityscapes", "root": "cityscapes", "val_split": None, "resize": [512, 1024], "augment": JITTER},
          {"name": "vistas", "root": "vistas", "val_split": None, "resize": [512, 706], "resize_mode": "cover",
           "augment": JITTER},
          {"name": "gtsdb", "root": "gtsdb", "val_split": None, "resize": [512, 850], "augment": JITTER}]
    return config_from_dict({"datasets": ds, "train": {"crop": [512, 706], "workers": 0, "cache": cache,
                                                       "cache_format": fmt, "jitter_on_device": device_jitter},
                             "data_root": str(root)})


def rate(ds: MixedDataset, d: int, n: int, repeat: int) -> float:
    """Best img/s over `repeat` passes of n samples of dataset d (fresh seeds each pass)."""
    best = 0.0
    for r in range(repeat):
        t = time.perf_counter()
        for i in range(n):
            ds[(d, i, 1000 * r + i)]
        best = max(best, n / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=6, help="frames per dataset")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    h = load_hierarchy("cityscapes+vistas+gtsdb")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_data(root, args.n)
        prepare_cache(config(root, None, "png", False), h, root / "png", workers=1, progress=False)
        prepare_cache(config(root, None, "npy", False), h, root / "npy", workers=1, progress=False)
        paths = {"raw": (None, "png", False), "png cache": ("png", "png", False),
                 "npy cache": ("npy", "npy", False), "npy + dev": ("npy", "npy", True)}
        sets = {k: MixedDataset(build_sources(config(root, c, f, j), h), (512, 706), j)
                for k, (c, f, j) in paths.items()}
        names = [s.name for s in sets["raw"].sources]
        print(f"img/s on one core, crop 512x706, n={args.n} per dataset (issue's PNG-cache figure: "
              f"{ISSUE_BASELINE:.0f} img/s)")
        print(f"{'dataset':<12}" + "".join(f"{k:>22}" for k in paths))
        for d, name in enumerate(names):
            rates = {k: rate(ds, d, args.n, args.repeat) for k, ds in sets.items()}
            base = rates["png cache"]
            print(f"{name:<12}" + "".join(f"{v:>12.1f} ({v / base:>5.2f}x)" for v in rates.values()))
        x = torch.randint(0, 256, (16, 3, 512, 706), dtype=torch.uint8)
        p = torch.tensor([[1.1, 0.9, 1.2, 0.01]] * 16)
        t = time.perf_counter()
        apply_jitter(x, p)
        dt = time.perf_counter() - t
        print(f"apply_jitter on a 16x3x512x706 batch on this CPU (one thread): {dt * 1000 / 16:.1f} ms per image "
              "(on the GPU in training)")


if __name__ == "__main__":
    main()
