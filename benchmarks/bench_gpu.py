"""Training images/s and inference frames/s of the hierarchical ResNet-50 network (docs/design.md §2.7).

Run by hand on a GPU:   python benchmarks/bench_gpu.py            (512x706, batch 1 and 16)
Check the code on CPU:  python benchmarks/bench_gpu.py --quick    (tiny frames, 2 iterations)

Measures the network on device-resident synthetic frames (the loader is not timed: `labeltree
prepare` exists so that it keeps up), in two settings measured in the same run:
  baseline  fp32, default memory format
  fast      bf16 autocast + channels_last (what `labeltree train` / `predict` use on CUDA)
Inference = normalise + forward + hard cascade to the leaf map at full resolution (argmax of the
logits: the same decisions as of the softmax). Training = forward + the docs/design.md §2.3-2.4 loss on a
mixed Cityscapes:Vistas:GTSDB batch (1:2:1, with box gating) + backward + SGD step.
Printed beside the paper's 17 fps (Titan X Pascal, 520x706) and this project's targets for one
H100: inference >= 500 fps at batch 16 and >= 60 fps at batch 1, training >= 150 images/s.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from labeltree.core.hierarchy import Hierarchy
from labeltree.core.tree_file import load_hierarchy
from labeltree.train.config import ModelCfg
from labeltree.train.data import normalise
from labeltree.train.loss import LabelMapper, gating_chain, hierarchical_loss
from labeltree.train.model import build_model

PAPER_FPS = 17.0
TARGETS = {"infer_b1": 60.0, "infer_b16": 500.0, "train": 150.0}
DATASETS = ["cityscapes", "vistas", "gtsdb"]
SHARES = [1, 2, 1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Seconds per call after `warmup` calls (CUDA synchronised around the timed loop)."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / iters


def random_labels(h: Hierarchy, batch: int, size: tuple[int, int], device: torch.device,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Stored label values of a mixed batch: blocks of valid classes of each image's dataset."""
    per = [d for d, s in zip(range(len(DATASETS)), SHARES, strict=True) for _ in range(s)]
    ds = torch.tensor([per[i % len(per)] for i in range(batch)])
    H, W = size
    labels = torch.zeros(batch, H, W, dtype=torch.int32)
    for b in range(batch):
        valid = np.flatnonzero(h.tables(DATASETS[int(ds[b])]).value_to_node >= 0)
        coarse = torch.as_tensor(valid)[torch.randint(len(valid), (max(H // 16, 1), max(W // 16, 1)), generator=gen)]
        labels[b] = torch.nn.functional.interpolate(coarse[None, None].float(), size=size, mode="nearest")[0, 0]
    return labels.to(device), ds.to(device)


def build(h: Hierarchy, backbone: str, device: torch.device, channels_last: bool) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no pretrained weights": random init is fine for timing
        model = build_model(ModelCfg(backbone=backbone), [len(c.children) for c in h.classifiers]).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def bench_inference(h: Hierarchy, model: torch.nn.Module, batch: int, size: tuple[int, int], device: torch.device,
                    bf16: bool, channels_last: bool, warmup: int, iters: int) -> float:
    model.eval()
    frames = torch.randint(0, 256, (batch, 3, *size), dtype=torch.uint8, device=device)

    @torch.inference_mode()
    def step() -> torch.Tensor:
        x = normalise(frames)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        return h.cascade(logits)

    return batch / timed(step, device, warmup, iters)


def bench_training(h: Hierarchy, model: torch.nn.Module, batch: int, size: tuple[int, int], device: torch.device,
                   bf16: bool, channels_last: bool, warmup: int, iters: int) -> float:
    model.train()
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (batch, 3, *size), dtype=torch.uint8, generator=gen).to(device)
    labels, ds = random_labels(h, batch, size, device, gen)
    mapper = LabelMapper(h, DATASETS, device)
    lambdas = [1.0 if c.level == 1 else 0.1 for c in h.classifiers]
    chains = {j: gating_chain(h, j, "path") for j in {b for b in mapper.box_classifier if b is not None}}
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1.7e-4)

    def step() -> None:
        x = normalise(frames)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss, _ = hierarchical_loss(logits, labels, ds, mapper, lambdas, chains)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return batch / timed(step, device, warmup, iters)


def _oom_safe(fn: Callable[[int], float], batch: int, device: torch.device) -> tuple[float | None, int]:
    """Run at `batch`; on CUDA out-of-memory halve it (and say so) rather than give no figure."""
    while batch >= 1:
        try:
            return fn(batch), batch
        except torch.OutOfMemoryError:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            batch //= 2
    return None, 0


def run_setting(h: Hierarchy, a: argparse.Namespace, size: tuple[int, int], batches: list[int],
                device: torch.device, bf16: bool, cl: bool, compile_: bool) -> dict[str, tuple[float | None, int]]:
    """All figures of one setting, on a fresh model (freed afterwards)."""
    model = build(h, a.backbone, device, cl)
    fwd_model = torch.compile(model) if compile_ else model
    r: dict[str, tuple[float | None, int]] = {}
    for b in batches:
        r[f"infer_b{b}"] = _oom_safe(
            lambda n: bench_inference(h, fwd_model, n, size, device, bf16, cl, a.warmup, a.iters), b, device)
    r["train"] = _oom_safe(
        lambda n: bench_training(h, fwd_model, n, size, device, bf16, cl, a.warmup, a.iters), a.train_batch, device)
    return r  # the model is freed with this frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="32x48 frames, batches 1/2, 2 iterations: checks the code "
                    "on CPU (OS8 ResNet-50 still takes ~1 min on 2 busy cores)")
    ap.add_argument("--size", default="512x706", help="HxW (default: the paper's crop)")
    ap.add_argument("--batches", default="1,16", help="inference batch sizes")
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--backbone", default="resnet50", choices=["resnet50", "resnet18", "tiny"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile the fast setting's model")
    ap.add_argument("--skip-baseline", action="store_true", help="only the bf16 + channels_last setting")
    a = ap.parse_args()
    if a.quick:
        a.size, a.batches, a.train_batch, a.iters, a.warmup = "32x48", "1,2", 2, 2, 1
    size = tuple(int(v) for v in a.size.lower().split("x"))
    assert len(size) == 2, "--size is HxW"
    batches = [int(b) for b in a.batches.split(",")]
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU ({torch.get_num_threads()} threads)"
    h = load_hierarchy("cityscapes+vistas+gtsdb")
    print(f"{a.backbone} hierarchical ({len(h.classifiers)} heads), {size[0]}x{size[1]}, {name}, "
          f"torch {torch.__version__}" + ("  [--quick: code check, not a measurement]" if a.quick else ""))

    settings = [("fast", True, True)] if a.skip_baseline else [("baseline", False, False), ("fast", True, True)]
    results = {}
    for label, bf16, cl in settings:
        results[label] = run_setting(h, a, size, batches, device, bf16, cl, a.compile and label == "fast")
        if device.type == "cuda":
            torch.cuda.empty_cache()

    print(f"{'':24}" + "".join(f"{s:>16}" for s, *_ in settings) + f"{'fast/baseline':>15}{'paper':>8}{'target':>9}")
    for key in results[settings[0][0]]:
        what = (f"inference b={key[len('infer_b'):]} fps" if key.startswith("infer") else
                f"training img/s (b={a.train_batch})")
        row = f"{what:24}"
        for s, *_ in settings:
            v, b = results[s][key]
            cell = "OOM" if v is None else f"{v:.1f}" + (f" (b={b})" if b and b != _want(key, a.train_batch) else "")
            row += f"{cell:>16}"
        base, fast = results.get("baseline", {}).get(key, (None, 0))[0], results["fast"][key][0]
        row += f"{(fast / base) if base and fast else float('nan'):>14.2f}x"
        row += f"{PAPER_FPS:>8.0f}" if key.startswith("infer") else f"{'-':>8}"
        target = TARGETS.get(key)
        if target is None:
            row += f"{'-':>9}"
        else:
            measured = not a.quick and device.type == "cuda" and fast is not None
            verdict = (" ok" if fast >= target else " MISS") if measured else ""
            row += f"{'>=' + str(int(target)) + verdict:>9}"
        print(row)
    infer = results["fast"].get("infer_b1", (None, 0))[0]
    if infer:
        print(f"fast inference at batch 1 = {infer / PAPER_FPS:.2f}x the paper's {PAPER_FPS:.0f} fps")
    if device.type != "cuda" or a.quick:
        print("targets are for one H100 at 512x706; this run does not measure them")


def _want(key: str, train_batch: int) -> int:
    return int(key[len("infer_b"):]) if key.startswith("infer") else train_batch


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
