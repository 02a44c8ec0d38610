"""The optional parts of the install: which extra brings which third-party package.

`pip install labeltree` is the label toolkit (merge, tree, validate, stats, evaluate, convert, synth,
gtsdb-masks, annotate-extended propose / import / export). The trainer, the labelling server and
ONNX Runtime are extras (pyproject.toml's [project.optional-dependencies]); a command that needs a
missing one stops with one line naming the extra to install.
"""

from __future__ import annotations

#: top-level module -> the extra that installs it (pyproject.toml lists the same packages)
EXTRA_OF_MODULE: dict[str, str] = {
    "torch": "train",
    "torchvision": "train",
    "starlette": "annotate",
    "uvicorn": "annotate",
    "onnx": "deploy",
    "onnxruntime": "deploy",
}

#: what each extra is for, said in the message
PURPOSE: dict[str, str] = {
    "train": "the trainer (train, predict, prepare, export, demo, evaluate --checkpoint with a .pt)",
    "annotate": "the labelling server (annotate-extended serve)",
    "deploy": "ONNX export and ONNX Runtime (export, predict / evaluate with a .onnx model)",
}


def install_hint(extra: str) -> str:
    return f"pip install 'labeltree[{extra}]'"


def missing_extra_message(exc: ImportError) -> str | None:
    """One line for an import of a package an extra provides ('... needs the train extra: pip install ...'),
    or None when the missing module belongs to no extra (a real bug: let it raise)."""
    name = (getattr(exc, "name", None) or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(name)
    if extra is None:
        return None
    return (f"{name} is not installed; it is part of the '{extra}' extra, {PURPOSE[extra]}: "
            f"{install_hint(extra)}")
