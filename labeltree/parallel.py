"""Per-item work over a process pool with a progress bar, results in input order."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pmap(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None, desc: str = "",
         progress: bool = True, chunksize: int = 1) -> Iterator[R]:
    """Yield fn(item) in order. workers=1 runs in-process (no pickling, easy to debug/profile).

    `fn` must be a module-level function (picklable). Exceptions propagate to the caller.
    """
    items = list(items)
    workers = default_workers() if workers is None else max(1, workers)
    bar = tqdm(total=len(items), desc=desc, unit="img", disable=not progress, leave=False)
    try:
        if workers == 1 or len(items) <= 1:
            for it in items:
                yield fn(it)
                bar.update()
            return
        with ProcessPoolExecutor(max_workers=min(workers, len(items))) as ex:
            for r in ex.map(fn, items, chunksize=chunksize):
                yield r
                bar.update()
    finally:
        bar.close()
