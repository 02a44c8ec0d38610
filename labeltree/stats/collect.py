"""Class statistics and class weights per dataset, split and tree classifier (docs/design.md §4.5, paper Table I):
running over a dataset.

Pipeline: each label file is decoded once in a worker (`labeltree.parallel.pmap`) and reduced to a
small per-image record (`stats.records`: sparse `np.bincount` of the stored label values, image size,
instance / sign / box counts). Records are cached on disk keyed on the file's path, size and mtime
(`stats.cache`), so a re-run or a new split only decodes what changed. Records are summed into
`GroupStats` (`stats.groups`, one per dataset and split) that hold RAW counts only; everything derived
(shares, weights, roll-ups: `stats.report`; tables and plots: `stats.render`) is computed from raw counts
at report time, which is why shard outputs (`--shard K/N`) are raw-count files and `stats-merge` is an
exact sum.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labeltree.core.hierarchy import IGNORE, Hierarchy
from labeltree.core.taxonomy import Taxonomy, load_taxonomy, resolve_taxonomy_path
from labeltree.core.tree_file import default_tree, load_hierarchy
from labeltree.datasets.base import Sample
from labeltree.datasets.boxmask import DEFAULT_MASK_MODE
from labeltree.errors import LabeltreeError
from labeltree.parallel import pmap, resolve_workers
from labeltree.resources import user_cache_dir
from labeltree.stats.cache import StatsCache, sample_key
from labeltree.stats.groups import MAX_SHARDS, GroupStats
from labeltree.stats.records import WorkerContext, cached_reader, record_task


@dataclass
class RunInfo:
    computed: int = 0  # samples decoded in this run
    cached: int = 0  # samples served from the cache
    bad: list[str] = field(default_factory=list)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)) <= MAX_SHARDS:
        raise LabeltreeError(f"--shard must be K/N with 1 <= K <= N <= {MAX_SHARDS} (e.g. 2/8), got '{text}'")
    return int(m.group(1)), int(m.group(2))


def shard_of(samples: Sequence[Sample], shard: tuple[int, int] | None) -> list[Sample]:
    """Deterministic partition: sorted by (split, key), sample i goes to shard i mod N + 1."""
    if shard is None:
        return list(samples)
    k, n = shard
    ordered = sorted(samples, key=lambda s: (s.split, s.key))
    return [s for i, s in enumerate(ordered) if i % n == k - 1]


def resolve_hierarchy(ref: str | Path | None, taxonomy: Taxonomy) -> Hierarchy | None:
    """`None` -> the smallest bundled tree that maps the dataset, if any; 'none' -> no tree; else that
    tree file/name."""
    if ref is not None and str(ref).lower() == "none":
        return None
    if ref is None:
        h = load_hierarchy(default_tree([taxonomy.name]))
        return h if any(m.taxonomy.name == taxonomy.name for m in h.mappings.values()) else None
    h = load_hierarchy(ref)
    h.mapping(taxonomy.name)  # raises with the mapped datasets listed
    return h


def ignored_values(taxonomy: Taxonomy, hierarchy: Hierarchy | None) -> list[int]:
    """Stored values that carry no class: unlabeled, ignore_ids and (with a tree) what its mapping ignores."""
    out = set()
    if taxonomy.encoding.unlabeled is not None:
        out.add(taxonomy.encoding.unlabeled)
    out.update(taxonomy.stored_value(i) for i in taxonomy.ignore_ids if i >= 0)
    if hierarchy is not None:
        v2n = hierarchy.tables(hierarchy.mapping(taxonomy.name).dataset).value_to_node
        out.update(np.flatnonzero(v2n == IGNORE).tolist())
    return sorted(int(v) for v in out)


def collect_stats(dataset: str | Path, root: str | Path, splits: Sequence[str] | None = None, *,
                  hierarchy: Hierarchy | None | str = "default", workers: int | None = None,
                  shard: tuple[int, int] | None = None, cache_dir: str | Path | None = None, cache: bool = True,
                  skip_bad: bool = False, instances: bool = True, mask_mode: str = DEFAULT_MASK_MODE,
                  unknown: str = "error", progress: bool = True,
                  info: RunInfo | None = None) -> list[GroupStats]:
    """Raw counts of `dataset` at `root`, one GroupStats per split (of this shard when `shard`).

    Bad files stop the run with a LabeltreeError naming the file, or with `skip_bad` are listed in
    `GroupStats.bad` / `info.bad` and left out.
    """
    info = info if info is not None else RunInfo()
    tax_path = resolve_taxonomy_path(dataset)
    tax_ref = str(dataset) if str(dataset) == tax_path.stem or not tax_path.exists() else str(tax_path.resolve())
    tax = load_taxonomy(tax_ref)
    h = resolve_hierarchy(None, tax) if hierarchy == "default" else hierarchy
    if isinstance(h, str):
        h = resolve_hierarchy(h, tax)
    reader = cached_reader(tax_ref, str(Path(root)), unknown, mask_mode)
    all_splits = reader.splits()
    if splits:
        for sp in splits:
            if sp not in all_splits:
                raise LabeltreeError(f"dataset has no split '{sp}' (splits here: {', '.join(all_splits)})", root)
        chosen = list(dict.fromkeys(splits))
    else:
        chosen = all_splits
    per_split = {sp: reader.samples(sp) for sp in chosen}
    mine = shard_of([s for sp in chosen for s in per_split[sp]], shard)
    ign = ignored_values(tax, h)
    hname = None if h is None else (str(h.path) if h.path and h.path.stem != h.name else h.name)
    groups = {sp: GroupStats(tax.name, tax_ref, sp, tax.lut_size, ign, tax.annotation,
                             mask_mode if tax.annotation == "boxes" else None, hname, shard, len(per_split[sp]))
              for sp in chosen}
    ctx = WorkerContext(tax_ref, str(Path(root)), unknown, mask_mode, instances)
    tax_digest = hashlib.sha1(tax.model_dump_json().encode()).hexdigest()[:16]
    keys = [sample_key(ctx, s, tax_digest) for s in mine]
    store = StatsCache(cache_dir or user_cache_dir()) if cache else None
    try:
        hits = store.get(keys) if store else {}
        todo = [i for i, k in enumerate(keys) if k not in hits]
        records: dict[int, dict] = {i: hits[keys[i]] for i in range(len(mine)) if keys[i] in hits}
        info.cached += len(records)
        pending: list[tuple[str, dict]] = []
        tasks = [(ctx, mine[i]) for i in todo]
        nw = resolve_workers(workers)
        first = []
        if nw > 1 and len(tasks) > 1:
            # The first file is counted here, before the pool forks: that loads the PNG decoders (pyspng,
            # PIL) once, and the forked workers inherit them instead of each importing them.
            first, tasks = [record_task(tasks[0])], tasks[1:]
        results = itertools.chain(first, pmap(record_task, tasks, nw, desc=f"stats {tax.name} {'+'.join(chosen)}",
                                              progress=progress, chunksize=max(1, min(16, len(tasks) // (8 * nw)))))
        for i, (status, payload) in zip(todo, results, strict=True):
            s = mine[i]
            if status == "bad":
                if not skip_bad:
                    raise LabeltreeError(f"{payload} (pass --skip-bad to report and skip bad files)")
                info.bad.append(payload)
                groups[s.split].bad.append(payload)
                continue
            info.computed += 1
            records[i] = payload
            if store:
                pending.append((keys[i], payload))
                if len(pending) >= 256:
                    store.put(pending)
                    pending = []
        if store and pending:
            store.put(pending)
    finally:
        if store:
            store.close()
    for i in sorted(records):
        groups[mine[i].split].add(records[i])
    return [groups[sp] for sp in chosen]
