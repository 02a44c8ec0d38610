"""How fast `labeltree synth` makes frames, and where the time goes.

Run by hand:  python benchmarks/bench_synth.py [--images 60] [--size 256x128] [--workers 2]

Prints frames per minute for (a) rendering only (the baseline: no encoding, no files), (b) the full
pipeline in one process (render + PNG/JPEG/PPM encoding + atomic writes), (c) the full pipeline over
the process pool; and the ratios (b)/(a) and (c)/(b), all measured in this run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from labeltree.synth.paint import gtsdb_sign_classes, render_scene
from labeltree.synth.runner import parse_size, synthesize
from labeltree.synth.world import get_world
from labeltree.synth.writers import gtsdb_layout


def render_only(images: int, size: tuple[int, int], seed: int) -> tuple[int, float]:
    world = get_world()
    t0 = time.perf_counter()
    n = 0
    for ds in ("cityscapes", "vistas"):
        for i in range(images):
            render_scene(ds, seed, i, *size, world=world)
            n += 1
    for i in gtsdb_layout(min(images, 900)):
        render_scene("gtsdb", seed, i, *size, gtsdb_sign_classes(seed, i, len(world.signs)), world)
        n += 1
    return n, time.perf_counter() - t0


def full(images: int, size: tuple[int, int], seed: int, workers: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as d:
        res = synthesize(Path(d) / "out", images=images, seed=seed, size=size, workers=workers, progress=False)
        return res.images, res.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=60, help="frames per dataset")
    ap.add_argument("--size", default="256x128")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    size = parse_size(a.size)
    get_world()  # load taxonomies and tree once, outside the timings
    render_scene("cityscapes", a.seed, 10_000, *size)  # warm caches

    n_r, t_r = render_only(a.images, size, a.seed)
    n_1, t_1 = full(a.images, size, a.seed, 1)
    n_p, t_p = full(a.images, size, a.seed, a.workers)
    fpm = lambda n, t: 60 * n / t  # noqa: E731
    print(f"size {size[0]}x{size[1]}, {a.images} frames per dataset ({n_1} frames in all)")
    print(f"  render only (baseline)        {fpm(n_r, t_r):8.0f} frames/min  ({1000 * t_r / n_r:.1f} ms/frame)")
    print(f"  full, 1 process               {fpm(n_1, t_1):8.0f} frames/min  ({1000 * t_1 / n_1:.1f} ms/frame)"
          f"  = {t_1 / t_r * n_r / n_1:.2f}x the baseline's time per frame")
    print(f"  full, {a.workers} workers               {fpm(n_p, t_p):8.0f} frames/min  "
          f"({1000 * t_p / n_p:.1f} ms/frame)  = {t_1 / t_p:.2f}x faster than 1 process")


if __name__ == "__main__":
    main()
