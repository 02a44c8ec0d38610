"""The mean of the last two evaluations of a run, the number the paper reports (the mean of its last two epoch
evaluations, docs/design.md §2.6), kept beside best.pt as `last2_mean.json`.

Why a file: best.pt is chosen on the very splits the paper reports on, which flatters it; the paper's number is
the mean of the last two evaluations, and a reader should not have to compute it from metrics.jsonl. Per dataset
it holds the keys of `labeltree evaluate -o` (docs/design.md §5: protocol, mIoU, mPA, pixel_accuracy, classes
with IoU / PA / pixels), each the mean of the two evaluations' values; a value undefined in either (no pixels
left to score) is null. Rewritten after every evaluation and on resume (from metrics.jsonl as truncated to the
checkpoint), atomically; absent until the run has evaluated twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from labeltree.fsutil import write_json

LAST_MEAN_FILE = "last2_mean.json"
LAST_N = 2
#: per-dataset keys that are the same in every evaluation of a run (the rules that produced the numbers)
_SAME = ("protocol", "rules", "split", "images")
_MEANS = ("mIoU", "mPA", "pixel_accuracy")
_CLASS_MEANS = ("IoU", "PA")


def _mean(values: list[Any]) -> float | None:
    return None if any(v is None for v in values) else sum(values) / len(values)


def _dataset_mean(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One dataset's results of the last evaluations -> their mean, in `labeltree evaluate`'s keys."""
    last = results[-1]
    out: dict[str, Any] = {k: last[k] for k in _SAME if k in last}
    for k in _MEANS:
        out[k] = _mean([r.get(k) for r in results])
    classes: dict[str, Any] = {}
    for name, c in last.get("classes", {}).items():
        per = [r.get("classes", {}).get(name, {}) for r in results]
        classes[name] = {k: _mean([p.get(k) for p in per]) for k in _CLASS_MEANS}
        classes[name]["pixels"] = c.get("pixels")  # the same gt in every evaluation
    out["classes"] = classes
    return out


def last_mean(records: list[dict[str, Any]], n: int = LAST_N) -> dict[str, Any] | None:
    """The mean of the last `n` metrics.jsonl records, or None before there are `n`."""
    if len(records) < n:
        return None
    last = records[-n:]
    names = [d for d in last[-1]["datasets"] if all(d in r["datasets"] for r in last)]
    return {"what": f"the mean of the last {n} evaluations, as the paper reports its numbers",
            "steps": [r["step"] for r in last], "weights": last[-1].get("weights"),
            "datasets": {d: _dataset_mean([r["datasets"][d] for r in last]) for d in names}}


def write_last_mean(run_dir: Path, metrics_file: str = "metrics.jsonl") -> dict[str, Any] | None:
    """Rewrite run_dir/last2_mean.json from run_dir/metrics.jsonl (removed while there are fewer than two)."""
    path = run_dir / metrics_file
    records = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []
    mean = last_mean(records)
    if mean is None:
        (run_dir / LAST_MEAN_FILE).unlink(missing_ok=True)
    else:
        write_json(run_dir / LAST_MEAN_FILE, mean)
    return mean
