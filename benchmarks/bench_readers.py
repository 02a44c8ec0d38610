"""Reader decode speed per dataset and GTSDB masks for 900 frames, as ratios to bare decoding.

Run by hand (not a test):  python benchmarks/bench_readers.py [--n 12] [--repeat 3] [--workers 2]

1. PNG decoders on street-like 2048x1024 label maps (8-bit grey, 8-bit palette, 16-bit): PIL,
   OpenCV (if installed) and torchvision.io.decode_png, each checked pixel for pixel against PIL.
2. `reader.read_label` over a generated Cityscapes / Cityscapes Extended / Vistas v1.2 / v2.0 set,
   as a ratio to bare decoding of the same files (PIL `np.asarray(Image.open(f))`, and the bare
   decoder the readers use) measured in the same run.
3. `labeltree gtsdb-masks` for 900 frames (1360x800, gt.txt with ~1.35 boxes per frame): rendering
   in memory, writing with 1 and N processes, and bare decoding of the 900 mask files written.
Everything is generated under a temporary folder; label values come from the taxonomies.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.draw import polygon

from labeltree.core.taxonomy import Taxonomy, load_taxonomy
from labeltree.datasets.boxmask import render_mask
from labeltree.datasets.decode import _decode_torchvision, decode_array
from labeltree.datasets.gtsdb import GTSDBReader, write_gtsdb_masks
from labeltree.datasets.registry import open_dataset

H, W = 1024, 2048


def best(fn: Callable[[], object], repeat: int) -> float:
    """Minimum wall time of `repeat` runs (the least disturbed one on a shared machine)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Minimum wall time of each function over `repeat` interleaved rounds: on a shared machine a busy
    spell then slows every contender alike instead of skewing one ratio."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            times[k].append(best(fn, 1))
    return {k: min(v) for k, v in times.items()}


def street(rng: np.random.Generator, tax: Taxonomy) -> np.ndarray:
    """A street-like label map in the taxonomy's values: sky/buildings over road/sidewalk plus objects."""
    def v(name: str) -> int:
        c = tax.find(name)
        assert c is not None, (tax.name, name)
        return tax.stored_value(c.id)

    sky, building, road, sidewalk = v("sky"), v("building"), v("road"), v("sidewalk")
    things = [tax.stored_value(c.id) for c in tax.classes if c.has_instances and c.id >= 0]
    stuff = [tax.stored_value(c.id) for c in tax.classes if not c.has_instances and c.id >= 0]
    things = things or stuff  # vistas-v2.0 has no instance flags
    a = np.full((H, W), sky, np.uint16)
    hz = int(H * rng.uniform(0.4, 0.5))
    a[hz:] = road
    for _ in range(15):
        x0, w, top = rng.integers(0, W), rng.integers(100, 400), rng.integers(50, hz)
        rr, cc = polygon([top + rng.integers(-30, 30), top + rng.integers(-30, 30), hz + 60, hz + 60],
                         [x0, x0 + w, x0 + w + rng.integers(-20, 20), x0 + rng.integers(-20, 20)], (H, W))
        a[rr, cc] = building if rng.random() < 0.7 else rng.choice(stuff)
    rr, cc = polygon([hz + 40, H, H], [0, 0, W // 4], (H, W))
    a[rr, cc] = sidewalk
    for k in range(90):
        cx, cy, r = rng.integers(0, W), rng.integers(hz - 150, H), rng.integers(5, 90)
        n = rng.integers(5, 12)
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = r * rng.uniform(0.6, 1.2, n)
        rr, cc = polygon(cy + rad * np.sin(ang) * 0.7, cx + rad * np.cos(ang), (H, W))
        a[rr, cc] = rng.choice(things) if k % 2 else rng.choice(stuff)
    return a


def save(path: Path, arr: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr)
    if palette:
        im = im.convert("P")
        im.putpalette(list(np.random.default_rng(0).integers(0, 256, 768)))
    im.save(path)


def make_cityscapes(root: Path, n: int, rng: np.random.Generator, extended: bool) -> None:
    cs = load_taxonomy("cityscapes")
    ext = load_taxonomy("cityscapes-extended")
    sign = cs.find("traffic sign").id
    gts = load_taxonomy("gtsdb")
    signs = [gts.stored_value(c.id) for c in gts.classes if ext.find(gts.stored_value(c.id)) is not None]
    inst_classes = {c.id for c in cs.classes if c.has_instances}
    for i in range(n):
        lab = street(rng, cs)
        key = f"bench_{i:06d}_000019"
        d = root / "gtFine" / "val" / "bench"
        if extended:
            e = lab.copy()
            e[lab == sign] = rng.choice(signs)
            save(d / f"{key}_gtFine_labelIds.png", e)
        else:
            save(d / f"{key}_gtFine_labelIds.png", lab.astype(np.uint8))
            inst = lab.copy()
            things = np.isin(lab, list(inst_classes))
            inst[things] = lab[things] * 1000 + (np.arange(W)[None, :] // 256).repeat(H, 0)[things]
            save(d / f"{key}_gtFine_instanceIds.png", inst)


def make_vistas(root: Path, n: int, rng: np.random.Generator, tax_name: str) -> None:
    tax = load_taxonomy(tax_name)
    for i in range(n):
        save(root / "validation" / f"v{tax.version}" / "labels" / f"b{i:04d}.png", street(rng, tax).astype(np.uint8),
             palette=True)


def make_gtsdb(root: Path, rng: np.random.Generator, frames: int = 900) -> int:
    gts = load_taxonomy("gtsdb")
    root.mkdir(parents=True, exist_ok=True)
    proto = root / "proto.jpg"
    Image.new("RGB", (1360, 800), (90, 110, 130)).save(proto, quality=80)
    data = proto.read_bytes()
    proto.unlink()
    lines = []
    for f in range(frames):
        (root / f"{f:05d}.jpg").write_bytes(data)
        if rng.random() < 741 / 900:
            for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
                s = int(rng.integers(16, 128))
                x0, y0 = int(rng.integers(0, 1360 - s)), int(rng.integers(0, 800 - s))
                lines.append(f"{f:05d}.ppm;{x0};{y0};{x0 + s - 1};{y0 + int(s * rng.uniform(0.9, 1.1)) - 1};"
                             f"{rng.choice(gts.ids)}")
    (root / "gt.txt").write_text("\n".join(lines) + "\n")
    return len(lines)


def bench_decoders(tmp: Path, repeat: int) -> None:
    print(f"\n1. PNG decoders on one 2048x1024 street-like label map (min of {repeat * 3} interleaved runs, ms; "
          "exact = equal to PIL)")
    rng = np.random.default_rng(1)
    cs = load_taxonomy("cityscapes")
    lab = street(rng, cs)
    files = {"8-bit grey": tmp / "d8.png", "8-bit palette": tmp / "dp.png", "16-bit grey": tmp / "d16.png"}
    save(files["8-bit grey"], lab.astype(np.uint8))
    save(files["8-bit palette"], lab.astype(np.uint8), palette=True)
    e = lab.copy()
    gts = load_taxonomy("gtsdb")
    e[lab == cs.find("traffic sign").id] = gts.stored_value(gts.find("stop").id)
    save(files["16-bit grey"], e)
    try:
        import cv2
        cv2.setNumThreads(1)
    except ImportError:
        cv2 = None
    for name, f in files.items():
        with Image.open(f) as im:
            ref = np.asarray(im)
        data = f.read_bytes()
        cands: dict[str, Callable[[], np.ndarray]] = {
            "PIL": lambda f=f: np.asarray(Image.open(f)),
            "torchvision": lambda data=data: _decode_torchvision(data),
        }
        if cv2 is not None:
            cands["OpenCV"] = lambda f=f: cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        exact = {}
        for cname, fn in cands.items():
            out = fn()
            exact[cname] = out is not None and out.shape == ref.shape and np.array_equal(out, ref)
        times = interleaved(cands, repeat * 3)
        t_pil = times["PIL"]
        row = [f"{name:14s} {f.stat().st_size // 1024:4d} KiB"]
        for cname in cands:
            t = times[cname]
            row.append(f"{cname} {t * 1e3:6.2f} ({t_pil / t:4.2f}x PIL{'' if exact[cname] else ', NOT exact'})")
        print("   " + " | ".join(row))
    if cv2 is None:
        print("   (OpenCV not installed: pip install opencv-python-headless to include it)")


def bench_readers(tmp: Path, n: int, repeat: int) -> None:
    print(f"\n2. read_label per dataset, {n} label maps of 2048x1024 each (min of {repeat} interleaved runs)")
    rng = np.random.default_rng(2)
    sets = {
        "cityscapes": (tmp / "cs", lambda r: make_cityscapes(r, n, rng, False)),
        "cityscapes-extended": (tmp / "ext", lambda r: make_cityscapes(r, n, rng, True)),
        "vistas": (tmp / "vi", lambda r: make_vistas(r, n, rng, "vistas")),
        "vistas-v2.0": (tmp / "vi2", lambda r: make_vistas(r, n, rng, "vistas-v2.0")),
    }
    print(f"   {'dataset':20s} {'reader':>9s} {'bare PIL':>9s} {'bare tv':>9s}  reader/PIL  reader/bare-tv")
    for name, (root, make) in sets.items():
        make(root)
        reader = open_dataset(name, root)
        samples = reader.all_samples()
        files = [s.label for s in samples]
        t = interleaved({"reader": lambda: [reader.read_label(s) for s in samples],  # noqa: B023
                         "pil": lambda: [np.asarray(Image.open(f)) for f in files],  # noqa: B023
                         "tv": lambda: [decode_array(f) for f in files]}, repeat)  # noqa: B023
        t_reader, t_pil, t_tv = t["reader"], t["pil"], t["tv"]
        print(f"   {name:20s} {t_reader / n * 1e3:7.2f}ms {t_pil / n * 1e3:7.2f}ms {t_tv / n * 1e3:7.2f}ms  "
              f"{t_reader / t_pil:9.2f}x  {t_reader / t_tv:9.2f}x")
        if name == "cityscapes":
            inst = [s.instances for s in samples]
            t = interleaved({"reader": lambda: [reader.read_instances(s) for s in samples],  # noqa: B023
                             "pil": lambda: [np.asarray(Image.open(f)) for f in inst]}, repeat)  # noqa: B023
            t_inst, t_ipil = t["reader"], t["pil"]
            print(f"   {'  instanceIds 16-bit':20s} {t_inst / n * 1e3:7.2f}ms {t_ipil / n * 1e3:7.2f}ms {'':>9s}  "
                  f"{t_inst / t_ipil:9.2f}x")


def bench_masks(tmp: Path, workers: int) -> None:
    root = tmp / "gtsdb"
    boxes = make_gtsdb(root, np.random.default_rng(3))
    print(f"\n3. GTSDB masks for 900 frames of 1360x800 ({boxes} boxes), fine shapes, 16-bit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        reader = open_dataset("gtsdb", root)
        assert isinstance(reader, GTSDBReader)
        samples = reader.all_samples()
        t_list = time.perf_counter() - t
        t = time.perf_counter()
        masks = [render_mask(s.boxes, *s.size, "fine", taxonomy=reader.taxonomy) for s in samples]
        t_render = time.perf_counter() - t
        t = time.perf_counter()
        write_gtsdb_masks(root, tmp / "m1", workers=1, progress=False)
        t_w1 = time.perf_counter() - t
        t = time.perf_counter()
        write_gtsdb_masks(root, tmp / "mN", workers=workers, progress=False)
        t_wn = time.perf_counter() - t
    outs = sorted((tmp / "m1").glob("*_labelIds.png"))
    assert len(outs) == 900 and all(np.array_equal(np.asarray(Image.open(outs[i])), masks[i]) for i in (0, 450, 899))
    t = time.perf_counter()
    for f in outs:
        np.asarray(Image.open(f))
    t_bare = time.perf_counter() - t
    t = time.perf_counter()
    for f in outs:
        decode_array(f)
    t_bare_tv = time.perf_counter() - t
    print(f"   list frames + parse gt.txt + 900 headers {t_list:6.2f}s")
    print(f"   render in memory                         {t_render:6.2f}s  {t_render / t_bare:5.2f}x bare PIL decoding")
    print(f"   write, 1 process                         {t_w1:6.2f}s  {t_w1 / t_bare:5.2f}x bare PIL decoding")
    print(f"   write, {workers} processes                       {t_wn:6.2f}s  {t_wn / t_bare:5.2f}x bare PIL decoding")
    print(f"   bare decoding of the 900 masks: PIL {t_bare:6.2f}s, torchvision {t_bare_tv:6.2f}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=12, help="label maps per dataset")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip", choices=["decoders", "readers", "masks"], action="append", default=[])
    a = ap.parse_args()
    warnings.simplefilter("ignore")  # the generated sets have labels without photos, on purpose
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix="lt-bench-") as d:
        tmp = Path(d)
        if "decoders" not in a.skip:
            bench_decoders(tmp, a.repeat)
        if "readers" not in a.skip:
            bench_readers(tmp, a.n, a.repeat)
        if "masks" not in a.skip:
            bench_masks(tmp, a.workers)


if __name__ == "__main__":
    main()
