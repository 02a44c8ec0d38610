"""Deployment: `labeltree export` writes one self-contained ONNX model (graph.py: torch + onnx), which
labeltree.infer.onnx runs with ONNX Runtime alone for `labeltree predict` / `evaluate --checkpoint`."""
