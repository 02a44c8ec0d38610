"""Frames/s of the exported network: ONNX Runtime vs PyTorch, measured in the same run (DESIGN §2.7 sizes).

Run by hand:   python benchmarks/bench_export.py                 (512x706, tiny and resnet18, CPU)
Quick check:   python benchmarks/bench_export.py --quick         (96x128, 1 iteration)

Every setting does the same work per frame: uint8 frame -> normalise -> network -> argmax + hard
cascade -> leaf map at full resolution, on random weights (speed does not depend on them):
  pytorch predict   labeltree.train.predict.Predictor: softmax + cascade, as `labeltree predict CK.pt` runs it
  pytorch graph     the graph that is exported (argmax of the logits + gathers), run eagerly
  ort               `labeltree export --output leaves --size HxW --batch B` in ONNX Runtime
Ratios are against `pytorch predict`. On a GPU (torch sees CUDA and onnxruntime has the CUDA execution
provider) it adds ResNet-50 at batch 1 and 16 with the CUDA (and TensorRT, if present) providers;
otherwise it says that there was none.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from labeltree.core.tree_file import load_hierarchy
from labeltree.export.graph import build_graph, export_onnx
from labeltree.infer.onnx import import_ort
from labeltree.train.checkpoint import save_checkpoint
from labeltree.train.config import config_from_dict
from labeltree.train.model import build_model
from labeltree.train.predict import load_predictor

TINY = {"backbone": "tiny", "width": 32, "bottleneck": 16, "tiny_channels": [16, 32, 48, 64]}  # configs/cpu-tiny


def quiet_load(ck: Path, device: str) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights on purpose (no model.pretrained)
        return load_predictor(ck, device)


def checkpoint(folder: Path, model: dict) -> Path:
    cfg = config_from_dict({"datasets": [{"name": "cityscapes", "root": "c"}, {"name": "vistas", "root": "v"},
                                         {"name": "gtsdb", "root": "g"}], "model": model, "train": {"amp": False}})
    h = load_hierarchy(cfg.hierarchy)
    sizes = [len(c.children) for c in h.classifiers]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights on purpose (no model.pretrained)
        net = build_model(cfg.model, sizes)
    path = folder / f"{model['backbone']}.pt"
    save_checkpoint(path, {"config": cfg.model_dump(mode="json"), "model": net.state_dict(), "head_sizes": sizes,
                           "head_names": [c.name for c in h.classifiers], "step": 0})
    return path


def fps(fn: Callable[[], object], batch: int, iters: int, sync: Callable[[], None] = lambda: None) -> float:
    fn()  # warm-up (allocations, ORT's first-run optimisations)
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return batch * iters / (time.perf_counter() - t0)


def session(path: Path, providers: list, threads: int | None) -> object:
    ort = import_ort()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=providers)


def cpu_row(folder: Path, model: dict, size: tuple[int, int], iters: int, threads: int) -> None:
    frame = np.random.default_rng(0).integers(0, 256, (1, 3, *size), dtype=np.uint8)
    x = torch.from_numpy(frame)
    ck = checkpoint(folder, model)
    pred = quiet_load(ck, "cpu")
    graph = build_graph(pred)[0]
    onnx_path = folder / f"{model['backbone']}.onnx"
    export_onnx(ck, onnx_path, size=size, batch=1, force=True)
    sess = session(onnx_path, ["CPUExecutionProvider"], threads)
    with torch.no_grad():
        base = fps(lambda: pred.nodes(pred.scores(x)), 1, iters)
        eager = fps(lambda: graph(x), 1, iters)
    ort = fps(lambda: sess.run(None, {"images": frame}), 1, iters)
    print(f"{model['backbone']:>9} CPU {size[0]}x{size[1]} batch 1, {threads} threads:  pytorch predict "
          f"{base:6.2f} fps   pytorch graph {eager:6.2f} fps ({eager / base:4.2f}x)   onnxruntime {ort:6.2f} fps "
          f"({ort / base:4.2f}x)")


def gpu_row(folder: Path, ck: Path, pred: object, kinds: list, size: tuple[int, int], batch: int, iters: int) -> None:
    frames = np.random.default_rng(0).integers(0, 256, (batch, 3, *size), dtype=np.uint8)
    x = torch.from_numpy(frames)
    base = fps(lambda: pred.nodes(pred.scores(x)).cpu(), batch, iters, torch.cuda.synchronize)
    line = f"resnet50 GPU {size[0]}x{size[1]} batch {batch:>2}:  pytorch predict {base:7.1f} fps"
    onnx_path = folder / f"resnet50_b{batch}.onnx"
    export_onnx(ck, onnx_path, size=size, batch=batch, force=True)
    for name, providers in kinds:
        sess = session(onnx_path, providers, None)
        f = fps(lambda s=sess: s.run(None, {"images": frames}), batch, iters)
        line += f"   onnxruntime {name} {f:7.1f} fps ({f / base:4.2f}x)"
    print(line)


def gpu_rows(folder: Path, size: tuple[int, int], iters: int) -> None:
    ort = import_ort()
    have = ort.get_available_providers()
    if not torch.cuda.is_available() or "CUDAExecutionProvider" not in have:
        print(f"no GPU at hand (torch.cuda.is_available() = {torch.cuda.is_available()}, onnxruntime providers: "
              f"{', '.join(have)}): ResNet-50 with the CUDA / TensorRT execution providers not measured")
        return
    ck = checkpoint(folder, {"backbone": "resnet50"})
    pred = quiet_load(ck, "cuda")
    kinds = [("CUDA", ["CUDAExecutionProvider"])]
    if "TensorrtExecutionProvider" in have:
        kinds.append(("TensorRT", [("TensorrtExecutionProvider", {"trt_fp16_enable": False}), "CUDAExecutionProvider"]))
    for batch in (1, 16):
        gpu_row(folder, ck, pred, kinds, size, batch, iters)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="96x128 frames, 1 iteration (checks the code)")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for both runtimes (1: an oversubscribed "
                    "OpenMP pool slows torch many times over on a busy machine)")
    a = ap.parse_args()
    size = (96, 128) if a.quick else (512, 706)
    iters = 1 if a.quick else a.iters
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load} before the run")
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for model in (TINY, {"backbone": "resnet18"}):
            cpu_row(Path(tmp), model, size, iters, a.threads)
        gpu_rows(Path(tmp), size, iters)


if __name__ == "__main__":
    main()
