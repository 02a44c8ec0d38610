"""Issue 28: what `predict --confidence` costs, and the risk-coverage table of back-off on a trained model.

    python benchmarks/bench_confidence.py CHECKPOINT IMAGES_DIR [--data DATA_ROOT]

Times `predict` over the images with and without --confidence (alternating rounds after a warm-up; one
torch thread) and prints the median ratio (the issue's bound: at most 1.10). With --data (a `labeltree synth` /
demo data folder) it prints the selective-prediction sweep (labeltree.infer.selective) on cityscapes-extended and
cityscapes val, writing CSV + PNG beside the checkpoint's name in the working folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from labeltree.infer import open_model, predict_files


def timed(model, images: list[Path], confidence: bool) -> float:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        predict_files(model, images, d, dataset="cityscapes", progress=False, confidence=confidence)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("images")
    ap.add_argument("--data")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3, help="a shared machine's load varies: best of N each")
    a = ap.parse_args()
    torch.set_num_threads(1)
    images = sorted(Path(a.images).rglob("*.png"))[:a.n]
    model = open_model(a.checkpoint, "cpu")
    timed(model, images[:2], False)  # warm-up
    runs = [(timed(model, images, False), timed(model, images, True)) for _ in range(a.rounds)]  # alternating
    ratios = sorted(c / p for p, c in runs)
    plain, conf = runs[0]
    print(f"predict {len(images)} images: {plain:.2f} s, with --confidence {conf:.2f} s (first round); ratio median "
          f"{ratios[len(ratios) // 2]:.3f} of {a.rounds} alternating rounds (per round: "
          + ", ".join(f"{c / p:.3f}" for p, c in runs) + ")")
    if a.data:
        from labeltree.infer.selective import area, selective_sweep, write_sweep

        for ds in ("cityscapes-extended", "cityscapes"):
            rows = selective_sweep(a.checkpoint, ds, Path(a.data) / ds, "val")
            write_sweep(rows, Path(f"risk_coverage_{ds}.csv"), Path(f"risk_coverage_{ds}.png"))
            print(ds, "area", round(area(rows), 4))
            for r in rows:
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}))


if __name__ == "__main__":
    main()
