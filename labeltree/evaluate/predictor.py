"""What the evaluator needs of a model it runs itself (`evaluate --checkpoint`), as an interface.

`labeltree.infer.Model.predictor(...)` returns one (for a `.pt` or an `.onnx` alike); the evaluator
uses it through this protocol only, so that it never imports a model runtime. A plain
`predict(sample) -> array` callable is still accepted by `evaluate_folder`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # an official evaluation imports no tree machinery
    import numpy as np

    from labeltree.core.hierarchy import Hierarchy
    from labeltree.datasets.base import Sample


@runtime_checkable
class SamplePredictor(Protocol):
    """`predictor(sample, rules) -> map`: tree node ids (pred_space 'tree') or the dataset's stored values."""

    pred_space: str  # "tree" or "dataset": how the evaluator reads the maps
    hierarchy: Hierarchy | None  # the model's own tree where it carries one (a `.pt`), else None

    def __call__(self, sample: Sample, rules: Any = None) -> np.ndarray:
        """`rules`: the evaluator's resolved rules (the flat model's sign rule follows `rules.sign_rule`)."""
        ...
