"""`labeltree evaluate` vs cityscapesScripts' evaluator on 2048x1024 Cityscapes label PNGs.

Run by hand (not a test):  python benchmarks/bench_evaluate.py [--n 500] [--repeat 3] [--cs-python PY]

A Cityscapes val split of N street-like 2048x1024 frames (labelIds + instanceIds, as in
bench_stats.py) and a noisy prediction per frame (labelIds of the 19 evaluated classes with shifted
boundaries and wrong blobs, `{city}_{seq}_{frame}_pred.png`) are generated under a temporary folder
(`--distinct` of them; the others are byte copies under their own names).
Measured in the same run:
1. wall time, each as a fresh process with default settings:
   `python -m cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling` (CITYSCAPES_DATASET /
   CITYSCAPES_RESULTS / CITYSCAPES_EXPORT_DIR set; its defaults include the instance-level iIoU,
   so it also reads the instanceIds) vs `labeltree evaluate cityscapes ROOT PRED -o FILE --quiet`
   (default: all cores). cityscapesScripts runs from its own interpreter (`--cs-python`, env
   CS_PYTHON, default /tmp/csvenv/bin/python): it is not a labeltree dependency, and its 2.3.0
   release needs numpy < 2.4 (`np.in1d`). Set up with
       python3 -m venv /tmp/csvenv && /tmp/csvenv/bin/pip install cityscapesscripts 'numpy<2.4'
   Without it that comparison is skipped with a message. Per-class IoUs of both are compared.
   Both commands also run on a 1-frame split: their fixed cost and their cost per further frame
   are printed. cityscapesScripts' venv defaults to the one tests/test_conformance.py caches.
0. start-up of each label-only command, and whether `python -X importtime` shows torch (it must not).
   cityscapesScripts is pip-installed as is: without its Cython extension it takes its numpy path.
2. per worker: `evaluate_folder(..., workers=1)` in-process vs bare decoding of the same gt and
   prediction files with labeltree.decode's fastest exact decoder (`decode_array`), interleaved
   (`--per-worker-n` frames).
Best (least disturbed) round, median and spread are printed; targets: >= 2x faster than
cityscapesScripts at 24 frames, >= 4x at 500, one worker within 1.3x of bare decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.draw import polygon

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stats import CITY, cs_key, decode_files, make_cityscapes_set  # noqa: E402

from labeltree.core.taxonomy import load_taxonomy  # noqa: E402

CS_MODULE = "cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling"
#: the venv tests/test_conformance.py builds and caches
CS_VENV_PY = Path.home() / ".cache" / "labeltree-tests" / "cityscapesscripts-venv" / "bin" / "python"
#: label-only commands: their start-up is timed and checked for torch (python -X importtime)
LABEL_ONLY = [["tree"], ["merge", "cityscapes", "vistas", "gtsdb", "--format", "json"], ["evaluate", "--help"],
              ["stats", "--help"], ["gtsdb-masks", "--help"], ["annotate-extended", "propose", "--help"]]


def startup() -> None:
    """Wall time of each label-only command in a fresh process, and whether `-X importtime` shows torch."""
    print("\n0. start-up of label-only commands (fresh process each; python -X importtime)")
    base = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    py = time.perf_counter() - base
    for args in LABEL_ONLY:
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "labeltree", *args], capture_output=True,
                           text=True)
        dt = time.perf_counter() - t
        mods = {ln.split("|")[-1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")}
        heavy = sorted(m for m in mods if m in ("torch", "torchvision"))
        print(f"   labeltree {' '.join(args):45s} {dt:5.2f}s (bare interpreter {py:.2f}s)  "
              f"torch imported: {', '.join(heavy) or 'no'}")


def noisy_prediction(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible network output: evaluated classes only, boundaries shifted band by band, wrong blobs."""
    cs = load_taxonomy("cityscapes")
    evaluated = np.array([c.id for c in cs.classes if c.id >= 0 and not c.ignore_in_eval])
    to_eval = np.arange(256, dtype=np.uint8)
    for c in cs.classes:  # classes a model does not predict become one it does (void -> road, ...)
        if c.id >= 0 and c.ignore_in_eval:
            to_eval[c.id] = rng.choice(evaluated)
    pred = to_eval[gt]
    h, w = pred.shape
    for y in range(0, h, 32):  # boundary errors: each band of rows shifted by a few pixels
        pred[y:y + 32] = np.roll(pred[y:y + 32], int(rng.integers(-6, 7)), axis=1)
    for _ in range(40):  # confusions: blobs of a wrong class
        cx, cy, r = rng.integers(0, w), rng.integers(h // 3, h), rng.integers(10, 80)
        ang = np.sort(rng.uniform(0, 2 * np.pi, 8))
        rr, cc = polygon(cy + r * np.sin(ang), cx + 1.5 * r * np.cos(ang), (h, w))
        pred[rr, cc] = rng.choice(evaluated)
    return pred


def make_data(root: Path, n: int, distinct: int, bases: int) -> tuple[Path, Path]:
    """(dataset root, prediction folder) with n frames.

    `distinct` frames are generated (gt, instances, prediction); the others are byte copies of them
    under their own names (the same decoding and counting work, without minutes of generation).
    """
    k = min(distinct, n)
    labels = make_cityscapes_set(root / "cityscapes", k, seed=5, bases=bases)
    gt_dir = root / "cityscapes" / "gtFine" / "val" / CITY
    pred_dir = root / "pred"
    pred_dir.mkdir()
    rng = np.random.default_rng(6)
    for i, gt in enumerate(labels):
        Image.fromarray(noisy_prediction(gt, rng)).save(pred_dir / f"{cs_key(i)}_pred.png")
    for i in range(k, n):
        for d in (gt_dir, pred_dir):
            for f in d.glob(f"{cs_key(i % k)}_*"):
                (d / f.name.replace(cs_key(i % k), cs_key(i))).write_bytes(f.read_bytes())
    return root, pred_dir


def subset(root: Path, pred_dir: Path, m: int, name: str) -> Path:
    """root/name with the first m frames (gt files + prediction) in the same layout."""
    gt_dir = root / "cityscapes" / "gtFine" / "val" / CITY
    for i in range(m):
        for f in [*gt_dir.glob(f"{cs_key(i)}_*"), pred_dir / f"{cs_key(i)}_pred.png"]:
            dst = root / name / ("pred" if f.parent == pred_dir else f"cityscapes/gtFine/val/{CITY}") / f.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(f.read_bytes())
    return root / name


def cs_available(py: str) -> str | None:
    """None when `py` runs cityscapesScripts' evaluator, else why not."""
    if not Path(py).exists():
        return f"{py} not found"
    r = subprocess.run([py, "-c", f"import {CS_MODULE}"], capture_output=True, text=True)
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["import failed"])[-1]


def run_cs(py: str, root: Path, pred_dir: Path, export: Path) -> float:
    """Wall time of cityscapesScripts' evaluator on root/cityscapes, as its README runs it (a fresh process)."""
    export.mkdir(exist_ok=True)
    env = dict(os.environ, CITYSCAPES_DATASET=str(root / "cityscapes"), CITYSCAPES_RESULTS=str(pred_dir),
               CITYSCAPES_EXPORT_DIR=str(export), PYTHONWARNINGS="ignore")
    t = time.perf_counter()
    r = subprocess.run([py, "-m", CS_MODULE], env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"cityscapesScripts failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return dt


def run_labeltree(root: Path, pred_dir: Path, out: Path, *extra: str) -> float:
    """Wall time of the `labeltree evaluate` command (a fresh process)."""
    cmd = [sys.executable, "-m", "labeltree", "evaluate", "cityscapes", str(root / "cityscapes"), str(pred_dir),
           "-o", str(out), "--force", "--quiet", *extra]  # rounds write the same file
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"labeltree evaluate failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return dt


def line(name: str, ts: list[float], n: int, ref: float | None = None, ref_name: str = "") -> str:
    best, med = min(ts), statistics.median(ts)
    s = (f"   {name:40s} best {best:6.2f}s ({best / n * 1e3:6.1f} ms/frame)  median {med:6.2f}s  "
         f"spread {min(ts):.2f}..{max(ts):.2f}s")
    if ref is not None:
        s += f"   {ref_name}{ref:5.2f}x"
    return s


def compare(cs_json: Path, lt_json: Path) -> str:
    cs = json.loads(cs_json.read_text())
    lt = json.loads(lt_json.read_text())
    diffs = []
    for name, iou in cs["classScores"].items():
        mine = lt["classes"].get(name, {}).get("IoU")
        if not (iou is None or (isinstance(iou, float) and np.isnan(iou))) and mine is not None:
            diffs.append(abs(iou - mine))
    return (f"   same numbers: {len(diffs)} class IoUs, max |difference| {max(diffs):.2e}; mIoU cityscapesScripts "
            f"{100 * cs['averageScoreClasses']:.3f}%, labeltree {100 * lt['mIoU']:.3f}% (--protocol "
            f"{lt['protocol']}, the default; |difference| {abs(cs['averageScoreClasses'] - lt['mIoU']):.2e})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="frames (2048x1024); 500 = the Cityscapes val split")
    ap.add_argument("--per-worker-n", type=int, default=100, help="frames of the per-worker comparison")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the per-worker comparison")
    ap.add_argument("--cs-repeat", type=int, default=2, help="rounds of the wall-time comparison")
    ap.add_argument("--distinct", type=int, default=12, help="frames generated; the rest are copies of them")
    ap.add_argument("--bases", type=int, default=4, help="street maps the distinct frames are varied from")
    ap.add_argument("--cs-python", default=os.environ.get("CS_PYTHON", str(CS_VENV_PY)),
                    help="interpreter with cityscapesscripts installed (env CS_PYTHON)")
    a = ap.parse_args()
    warnings.simplefilter("ignore")  # labels without photos, on purpose
    from labeltree.evaluate.folder import evaluate_folder
    from labeltree.parallel import default_workers

    with tempfile.TemporaryDirectory(prefix="lt-bench-eval-") as d:
        root = Path(d)
        t = time.perf_counter()
        _, pred_dir = make_data(root, a.n, a.distinct, a.bases)
        one = subset(root, pred_dir, 1, "one")
        sub = subset(root, pred_dir, min(a.per_worker_n, a.n), "sub")
        gts = sorted((root / "cityscapes" / "gtFine" / "val" / CITY).glob("*_gtFine_labelIds.png"))
        preds = sorted(pred_dir.glob("*.png"))
        print(f"{a.n} Cityscapes frames 2048x1024 + noisy predictions ({min(a.distinct, a.n)} distinct, the others "
              f"copies) generated in {time.perf_counter() - t:.1f}s "
              f"(gt {sum(f.stat().st_size for f in gts) / a.n / 1024:.0f} KiB, prediction "
              f"{sum(f.stat().st_size for f in preds) / a.n / 1024:.0f} KiB on average)")
        n = a.n
        startup()

        print(f"\n1. wall time, fresh process each, default settings ({a.cs_repeat} rounds; this machine: "
              f"{default_workers()} cores, shared)")
        why = cs_available(a.cs_python)
        lt_json = root / "lt.json"
        if why is not None:
            print(f"   cityscapesScripts comparison skipped: {why}. Install it in its own venv:\n"
                  "   python3 -m venv /tmp/csvenv && /tmp/csvenv/bin/pip install cityscapesscripts 'numpy<2.4'\n"
                  "   (or pass --cs-python / set CS_PYTHON)")
            lt = [run_labeltree(root, pred_dir, lt_json) for _ in range(a.cs_repeat)]
            print(line("labeltree evaluate (default workers)", lt, n))
        else:
            cs_t, lt, lt1, cs_one, lt_one = [], [], [], [], []
            for _ in range(a.cs_repeat):
                cs_t.append(run_cs(a.cs_python, root, pred_dir, root / "cs"))
                lt.append(run_labeltree(root, pred_dir, lt_json))
                lt1.append(run_labeltree(root, pred_dir, root / "lt1.json", "--workers", "1"))
                cs_one.append(run_cs(a.cs_python, one, one / "pred", root / "cs1"))
                lt_one.append(run_labeltree(one, one / "pred", root / "lt_one.json"))
            print(line("cityscapesScripts (defaults)", cs_t, n))
            print(line("labeltree evaluate (default workers)", lt, n, min(cs_t) / min(lt), "faster: "))
            print(line("labeltree evaluate --workers 1", lt1, n, min(cs_t) / min(lt1), "faster: "))
            print(f"   speedup over cityscapesScripts: {min(cs_t) / min(lt):.2f}x best-of-rounds, "
                  f"{statistics.median(cs_t) / statistics.median(lt):.2f}x medians (targets: >= 2x at 24 frames, "
                  f">= 4x at 500); one worker "
                  f"{min(cs_t) / min(lt1):.2f}x")
            print(compare(root / "cs" / "resultPixelLevelSemanticLabeling.json", lt_json))
            c1, l1 = min(cs_one), min(lt_one)
            cf, lf = (min(cs_t) - c1) / (n - 1), (min(lt) - l1) / (n - 1)
            print(f"   fixed cost (the same commands on a 1-frame split): cityscapesScripts {c1:.2f}s, labeltree "
                  f"{l1:.2f}s (interpreter, CLI imports, process pool); per further "
                  f"frame: {cf * 1e3:.0f} ms vs {lf * 1e3:.0f} ms ({cf / lf:.1f}x)")
            for m in (k for k in (500, 2000) if k > n):
                print(f"   projected from these, not measured: {m} frames ({'Cityscapes val' if m == 500 else 'more'})"
                      f" {c1 + (m - 1) * cf:.0f}s vs {l1 + (m - 1) * lf:.0f}s = "
                      f"{(c1 + (m - 1) * cf) / (l1 + (m - 1) * lf):.1f}x")

        m = min(a.per_worker_n, n)
        print(f"\n2. per worker, in-process: evaluate_folder(workers=1) vs bare decoding of the same {2 * m} files "
              f"(the first {m} frames, {a.repeat} rounds)")
        files = sorted((sub / "cityscapes").rglob("*_gtFine_labelIds.png")) + sorted((sub / "pred").glob("*.png"))

        def ev() -> None:
            evaluate_folder("cityscapes", sub / "cityscapes", sub / "pred", workers=1, progress=False)

        ev()
        decode_files(files)  # warm-up
        bare, one_w = [], []
        for _ in range(a.repeat):
            t = time.perf_counter()
            decode_files(files)
            bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            ev()
            one_w.append(time.perf_counter() - t)
        print(line("bare decoding (gt + prediction)", bare, m))
        print(line("labeltree evaluate, 1 worker", one_w, m, min(one_w) / min(bare), ""))
        print(f"   one worker / bare decoding: {min(one_w) / min(bare):.2f}x best-of-rounds, "
              f"{statistics.median(one_w) / statistics.median(bare):.2f}x medians, per round "
              f"{', '.join(f'{x / y:.2f}' for x, y in zip(one_w, bare, strict=True))} (target <= 1.3x)")


if __name__ == "__main__":
    main()
