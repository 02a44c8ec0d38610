"""Deployment: `labeltree export` writes one self-contained ONNX model (graph.py: torch + onnx);
runtime.py runs it with ONNX Runtime alone, for `labeltree predict` / `evaluate --checkpoint`."""
