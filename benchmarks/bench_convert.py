"""`labeltree convert` per core against decoding plus encoding the same files (the floor of any converter).

Run by hand (not a test):  python benchmarks/bench_convert.py [--n 8] [--repeat 3]

Generates street-like 2048x1024 Cityscapes labelIds (bench_readers.street) in a temporary Cityscapes
root, then times, interleaved in the same run:
  baseline   decode each file with the readers' decoder (datasets.decode.decode_array) and encode the
             decoded array as PNG (fsutil.write_png: atomic, as convert writes);
  convert    convert_dataset(..., workers=1, force=True) to cityscapes:trainids and to vistas (palette
             PNGs), the whole call (listing, tree, LUT, read_label with its checks, histogram, write);
  rerun      the same call keeping every output: the fixed cost per call, amortised over a dataset.
Prints ms per image and the ratio convert / baseline (target: <= 1.3), with and without the fixed cost.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_readers import interleaved, street  # noqa: E402

from labeltree.convert import convert_dataset  # noqa: E402
from labeltree.core.taxonomy import load_taxonomy  # noqa: E402
from labeltree.datasets import cityscapes as cs  # noqa: E402
from labeltree.datasets.decode import decode_array  # noqa: E402
from labeltree.fsutil import write_png  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="label files")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (minimum kept)")
    args = ap.parse_args()
    tax = load_taxonomy("cityscapes")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cityscapes"
        files = []
        for i in range(args.n):
            p = cs.label_path(root, "val", "bench", f"bench_{i:06d}_000019")
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(street(rng, tax).astype(np.uint8)).save(p)
            files.append(p)
        decode_array(files[0])  # import the decoder (torchvision) outside the timing

        def baseline() -> None:
            for i, f in enumerate(files):
                write_png(Path(tmp) / "base" / f"{i}.png", decode_array(f))

        def convert(to: str, force: bool = True) -> None:
            convert_dataset("cityscapes", root, Path(tmp) / to.replace(":", "-"), to, workers=1, force=force,
                            progress=False)

        import warnings

        warnings.simplefilter("ignore")  # labels without photos: reported once per run, not timed noise
        t = interleaved({"baseline": baseline, "vistas": lambda: convert("vistas"),
                         "trainids": lambda: convert("cityscapes:trainids"),
                         "rerun": lambda: convert("cityscapes:trainids", force=False)}, args.repeat)
    n = args.n
    print(f"{n} Cityscapes labelIds files 2048x1024, 1 process, best of {args.repeat} interleaved rounds")
    print(f"  decode + encode (baseline)        {t['baseline'] / n * 1000:7.1f} ms/image")
    print(f"  fixed cost of one convert call    {t['rerun'] * 1000:7.1f} ms (a rerun that keeps every output: "
          "listing, tree, LUT, manifest)")
    for k, name in (("trainids", "convert --to cityscapes:trainids"), ("vistas", "convert --to vistas (palette)")):
        per = (t[k] - t["rerun"]) / n
        print(f"  {name:<33} {t[k] / n * 1000:7.1f} ms/image   ratio {t[k] / t['baseline']:.2f}x "
              f"(without the fixed cost {per * 1000:.1f} ms/image, {per * n / t['baseline']:.2f}x)")


if __name__ == "__main__":
    main()
