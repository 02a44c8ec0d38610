"""Per-item work over a process pool with a progress bar, results in input order.

The pool (concurrent.futures) and the bar (tqdm) are imported only when used: a one-worker or quiet
run, e.g. `labeltree evaluate --workers 1 --quiet`, does not pay for them at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


WORKERS_PER_CPU = 4  # more processes than this only add memory (each holds its own decoders and buffers)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_workers(workers: int) -> int:
    """`--workers N` (or `workers=N` from Python) within what works and protects memory: a whole number of at
    least 1 and at most WORKERS_PER_CPU processes per CPU of this machine."""
    from labeltree.errors import LabeltreeError

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise LabeltreeError(f"workers={workers!r}: give a whole number of processes, at least 1 (1 runs in-process)")
    cap = WORKERS_PER_CPU * default_workers()
    if workers > cap:
        raise LabeltreeError(f"--workers {workers}: at most {cap} here ({WORKERS_PER_CPU} per CPU); each worker is "
                             "a process with its own memory")
    return workers


def resolve_workers(workers: int | None) -> int:
    """The process count to use: all CPUs for None, else `workers` checked by check_workers."""
    return default_workers() if workers is None else check_workers(workers)


class _NoBar:
    """What pmap needs of a tqdm bar, doing nothing (progress off)."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, desc: str, progress: bool) -> Any:
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", leave=False)


def pmap(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None, desc: str = "",
         progress: bool = True, chunksize: int = 1) -> Iterator[R]:
    """Yield fn(item) in order. workers=1 runs in-process (no pickling, easy to debug/profile).

    `fn` must be a module-level function (picklable). Exceptions propagate to the caller.
    """
    items = list(items)
    workers = resolve_workers(workers)
    bar = _bar(len(items), desc, progress)
    try:
        if workers == 1 or len(items) <= 1:
            for it in items:
                yield fn(it)
                bar.update()
            return
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(workers, len(items))) as ex:
            for r in ex.map(fn, items, chunksize=chunksize):
                yield r
                bar.update()
    finally:
        bar.close()
