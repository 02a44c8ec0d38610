"""Opening a model by its file: `.onnx` -> OnnxModel (ONNX Runtime), anything else -> TorchModel (torch)."""

from __future__ import annotations

from pathlib import Path

from labeltree.infer.base import Model


def open_model(path: str | Path, device: str | None = None, weights: str = "ema") -> Model:
    """A `.onnx` from `labeltree export` (ONNX Runtime, no torch) or a `.pt` from `labeltree train` (torch).

    `device`: cpu, cuda, cuda:N (default: cuda where available). `weights` (a `.pt`): its moving average of the
    weights where it has one (ema), or its raw weights; an `.onnx` holds the ones its export chose."""
    from labeltree.fsutil import MAX_MODEL_BYTES, check_input

    if Path(path).exists():  # a FIFO or device as the model: refused before ONNX Runtime / torch blocks on it
        check_input(path, "model", MAX_MODEL_BYTES)
    if Path(path).suffix.lower() == ".onnx":
        from labeltree.infer.onnx import OnnxModel

        return OnnxModel(path, device)
    from labeltree.infer.pytorch import TorchModel  # torch only when a checkpoint is opened

    return TorchModel(path, device, weights)
