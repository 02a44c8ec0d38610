"""The on-disk cache of per-image records: a re-run or a new split only decodes the files that changed."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from labeltree.datasets.base import Sample, warn
from labeltree.errors import LabeltreeError
from labeltree.stats.records import STATS_VERSION, WorkerContext


class StatsCache:
    """Per-image records in one sqlite file, keyed on a digest of path + size + mtime (+ options).

    sqlite gives atomic, concurrent-safe updates (several runs or shards on one machine may share it);
    records are committed in batches during a run so an interrupted run resumes where it stopped.
    """

    def __init__(self, cache_dir: str | Path):
        self.dir = Path(cache_dir)
        self.broken = False  # set when a write failed: the rest of the run does without the cache
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.path = self.dir / "stats.sqlite"
            self.db = sqlite3.connect(self.path, timeout=60)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, data TEXT NOT NULL)")
            self.db.commit()
        except (OSError, sqlite3.Error) as e:
            raise LabeltreeError(f"cannot open the stats cache ({e}); pass --cache-dir DIR or --no-cache",
                                 self.dir) from None

    def get(self, keys: Sequence[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        try:
            for i in range(0, len(keys), 500):
                chunk = list(keys[i:i + 500])
                q = f"SELECT key, data FROM records WHERE key IN ({','.join('?' * len(chunk))})"
                for k, d in self.db.execute(q, chunk):
                    out[k] = json.loads(d)
        except (sqlite3.Error, ValueError) as e:
            raise LabeltreeError(f"cannot read the stats cache ({e}); delete it, or pass --cache-dir DIR or "
                                 "--no-cache", self.path) from None
        return out

    def put(self, items: Iterable[tuple[str, dict]]) -> None:
        """Store records; when the cache cannot take them (disk full, read-only, I/O error) the run goes on
        without it, after one warning: the cache only saves time, the counts never depend on it."""
        if self.broken:
            return
        try:
            self.db.executemany("INSERT OR REPLACE INTO records (key, data) VALUES (?, ?)",
                                [(k, json.dumps(v, separators=(",", ":"))) for k, v in items])
            self.db.commit()
        except sqlite3.Error as e:
            self.broken = True
            try:
                self.db.rollback()
            except sqlite3.Error:
                pass
            warn(f"{self.path}: the stats cache cannot be written ({e}); this run goes on without it (free space, "
                 "or pass --cache-dir DIR or --no-cache)")

    def close(self) -> None:
        self.db.close()


def file_sig(p: Path | None) -> str:
    """A file as a cache key sees it: resolved path, size and mtime (a changed file is another key)."""
    if p is None:
        return "-"
    try:
        st = p.stat()
    except OSError:
        return f"{p}|missing"
    return f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def sample_key(ctx: WorkerContext, s: Sample, tax_digest: str) -> str:
    parts = [STATS_VERSION, tax_digest, ctx.unknown, file_sig(s.label)]
    if s.label is None:  # box datasets: the frame, its boxes and the mask mode define the record
        parts += [file_sig(s.image), ctx.mask_mode, [(b.x0, b.y0, b.x1, b.y1, b.class_id) for b in s.boxes],
                  list(s.size) if getattr(s, "size", None) else None]
    if ctx.instances and s.instances is not None:
        parts.append(file_sig(s.instances))
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()
