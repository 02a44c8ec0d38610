"""Cost of the PNG image-data check (decode.check_png_pixels) against the decode it protects.

Run by hand: `python benchmarks/bench_png_check.py`. Prints, for a 2048x1024 label map and a
2048x1024 RGB photo-like PNG, the decode time with the check, without it, and their ratio
(measured in the same run on the same bytes).
"""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image

from labeltree.datasets import decode


def _best(fn, n: int = 7) -> float:
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


def main() -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:1024, 0:2048]
    label = ((x // 100 + y // 50) % 30).astype(np.uint8)
    photo = np.stack([(x / 8 + rng.integers(0, 20, x.shape)) % 256, (y / 4) % 256,
                      ((x + y) / 16 + rng.integers(0, 8, x.shape)) % 256], -1).astype(np.uint8)
    for name, arr in (("label 8-bit 2048x1024", label), ("photo RGB 2048x1024", photo)):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        data = buf.getvalue()
        hdr = decode.png_header(data[:33])
        dec = decode._decode_torchvision if arr.ndim == 2 else decode._decode_pil

        def plain(data=data, dec=dec):
            return dec(data)

        def checked(data=data, hdr=hdr, plain=plain):
            decode.check_png_chunks(data, None, hdr)
            return plain()

        a, b = _best(plain), _best(checked)
        print(f"{name}: decode {a:.1f} ms, with check {b:.1f} ms, ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
