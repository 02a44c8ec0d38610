"""Deployment: `labeltree export` writes one self-contained ONNX model (export.py, needs torch + onnx);
runtime.py runs it with ONNX Runtime alone for `labeltree predict` / `evaluate --checkpoint`."""
