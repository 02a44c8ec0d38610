"""The result of evaluating one dataset split: its numbers, the rules behind them, and ways to show them.

`EvaluationResult` is a read-only mapping over the JSON dict of docs/design.md §5 (so `res["mIoU"]`
works as before), with the numbers per class and per tree level as attributes, `.table()` (what
`labeltree evaluate` prints), `.to_json()` (what `-o` writes) and `.plot_confusion(path)`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labeltree.evaluate.protocols import Rules


@dataclass(frozen=True, eq=False)
class EvaluationResult(Mapping[str, Any]):
    """Numbers of one evaluation; `data` is the JSON dict, `evaluator` the Evaluator that counted them.

    Example::

        res = lt.evaluate("cityscapes", "data/cityscapes", "preds/")
        res.miou, res.classes["road"]["IoU"], res.levels   # numbers (fractions, None = undefined)
        print(res.table()); Path("r.json").write_text(res.to_json())
    """

    data: dict[str, Any]
    evaluator: Any = None

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __eq__(self, other: object) -> bool:
        return dict(self.data) == (dict(other) if isinstance(other, Mapping) else other)

    __hash__ = None  # type: ignore[assignment]

    @property
    def dataset(self) -> str:
        return self.data["dataset"]

    @property
    def rules(self) -> Rules:
        """The rules that produced the numbers (the evaluator's, else rebuilt from the JSON)."""
        if self.evaluator is not None:
            return self.evaluator.rules
        r = self.data["rules"]
        return Rules(**{**r, "classes": r["classes"] if isinstance(r["classes"], str) else tuple(r["classes"]),
                        "overrides": tuple(r["overrides"])})

    @property
    def miou(self) -> float | None:
        return self.data["mIoU"]

    @property
    def mpa(self) -> float | None:
        return self.data["mPA"]

    @property
    def pixel_accuracy(self) -> float | None:
        return self.data["pixel_accuracy"]

    @property
    def classes(self) -> dict[str, dict[str, Any]]:
        """Per evaluated class: IoU, PA, pixels, TP, FP, FN."""
        return self.data["classes"]

    @property
    def levels(self) -> dict[int, dict[str, Any]]:
        """Per tree level (with levels=True): the same numbers over the tree's nodes at that level."""
        return {int(k): v for k, v in (self.data.get("levels") or {}).items()}

    def table(self) -> str:
        """The text table `labeltree evaluate` prints."""
        from labeltree.evaluate.report import format_table

        return format_table(self.data)

    def to_json(self) -> str:
        """The JSON text `labeltree evaluate -o` writes."""
        return json.dumps(self.data, indent=2) + "\n"

    def plot_confusion(self, path: str | Path) -> None:
        """The confusion matrix as a PNG (log colour scale; imports matplotlib)."""
        from labeltree.evaluate.report import plot_confusion

        plot_confusion(self.data, path)
