"""The annotation database: one SQLite file in WORKDIR (WAL mode), shared by propose, serve and export.

Why SQLite: every decision is one short transaction, so a killed server loses nothing that it
acknowledged, and several browser tabs (threads of one server, or several servers) can write at
once. A proposal is handed to one client at a time through a lease (`claims`); a decision write is
a compare-and-set on the proposal's current class, so a repeated request is a no-op and a stale
one is refused instead of silently overwriting someone else's work.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from labeltree.errors import LabeltreeError

DB_NAME = "annotations.sqlite"
SCHEMA_VERSION = "1"
LEASE_S = 300.0  # how long a proposal stays reserved for the tab that was shown it

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images(
    id INTEGER PRIMARY KEY, split TEXT NOT NULL, key TEXT NOT NULL UNIQUE, city TEXT NOT NULL,
    label TEXT NOT NULL, image TEXT, components TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    n_small INTEGER NOT NULL, n_split INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS proposals(
    id INTEGER PRIMARY KEY, image_id INTEGER NOT NULL REFERENCES images(id), component INTEGER NOT NULL,
    x0 INTEGER NOT NULL, y0 INTEGER NOT NULL, x1 INTEGER NOT NULL, y1 INTEGER NOT NULL, area INTEGER NOT NULL,
    UNIQUE(image_id, component));
CREATE TABLE IF NOT EXISTS decisions(
    proposal_id INTEGER PRIMARY KEY REFERENCES proposals(id), class TEXT NOT NULL,
    annotator TEXT, client TEXT, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS claims(proposal_id INTEGER PRIMARY KEY, client TEXT NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS claims_client ON claims(client);
CREATE TABLE IF NOT EXISTS history(
    id INTEGER PRIMARY KEY AUTOINCREMENT, proposal_id INTEGER NOT NULL, old TEXT, new TEXT,
    client TEXT, annotator TEXT, at REAL NOT NULL, undone INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS history_client ON history(client, id);
CREATE TABLE IF NOT EXISTS suggestions(
    proposal_id INTEGER PRIMARY KEY REFERENCES proposals(id), class TEXT NOT NULL, confidence REAL NOT NULL,
    model TEXT, at REAL NOT NULL);
"""
ORDERS = {"image": "p.id * 0", "confidence": "-COALESCE(s.confidence, -1.0)"}  # rank expression, then proposal id


def db_path(workdir: str | Path) -> Path:
    return Path(workdir) / DB_NAME


def connect(workdir: str | Path, create: bool = False) -> sqlite3.Connection:
    """Open the WORKDIR database (autocommit; callers use `transaction`)."""
    path = db_path(workdir)
    if not create and not path.exists():
        raise LabeltreeError(f"no annotation database here (searched {path}); run "
                             "'labeltree annotate-extended propose CITYSCAPES_ROOT WORKDIR' first", Path(workdir))
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("PRAGMA busy_timeout=60000")
        con.executescript(SCHEMA)  # IF NOT EXISTS: also brings older databases up to date
    except sqlite3.DatabaseError as e:
        raise LabeltreeError(f"cannot open the annotation database ({e})", path) from None
    return con


@contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front so two writers never deadlock."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def get_meta(con: sqlite3.Connection) -> dict[str, str]:
    return {r["key"]: r["value"] for r in con.execute("SELECT key, value FROM meta")}


def set_meta(con: sqlite3.Connection, **values: object) -> None:
    con.executemany("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    [(k, str(v)) for k, v in values.items()])


def registered_root(con: sqlite3.Connection, workdir: str | Path) -> Path:
    root = get_meta(con).get("root")
    if not root:
        raise LabeltreeError("the annotation database has no registered Cityscapes root; run propose first",
                             db_path(workdir))
    return Path(root)


class Conflict(Exception):
    """A decision was made against a state that is no longer current (someone else changed it)."""

    def __init__(self, proposal_id: int, current: str | None):
        super().__init__(f"proposal {proposal_id} is now {current!r}")
        self.proposal_id = proposal_id
        self.current = current


@dataclass
class DecideResult:
    proposal_id: int
    old: str | None
    new: str | None
    changed: bool


def current_class(con: sqlite3.Connection, proposal_id: int) -> str | None:
    row = con.execute("SELECT class FROM decisions WHERE proposal_id=?", (proposal_id,)).fetchone()
    return row["class"] if row else None


def proposal_exists(con: sqlite3.Connection, proposal_id: int) -> bool:
    return con.execute("SELECT 1 FROM proposals WHERE id=?", (proposal_id,)).fetchone() is not None


def write_decision(con: sqlite3.Connection, proposal_id: int, old: str | None, new: str | None,
           client: str | None, annotator: str | None, now: float) -> None:
    if new is None:
        con.execute("DELETE FROM decisions WHERE proposal_id=?", (proposal_id,))
    else:
        con.execute("INSERT INTO decisions(proposal_id, class, annotator, client, at) VALUES(?,?,?,?,?) "
                    "ON CONFLICT(proposal_id) DO UPDATE SET class=excluded.class, annotator=excluded.annotator, "
                    "client=excluded.client, at=excluded.at", (proposal_id, new, annotator, client, now))
    con.execute("INSERT INTO history(proposal_id, old, new, client, annotator, at) VALUES(?,?,?,?,?,?)",
                (proposal_id, old, new, client, annotator, now))


def decide(con: sqlite3.Connection, proposal_id: int, new: str | None, previous: str | None,
           client: str | None = None, annotator: str | None = None) -> DecideResult:
    """Set a proposal's class in one transaction, if it still is `previous` (compare-and-set).

    Repeating a request that already took effect is a no-op (changed=False), so a retried POST
    never records a decision twice; a request made against an outdated view raises Conflict.
    """
    now = time.time()
    with transaction(con):
        if not proposal_exists(con, proposal_id):
            raise KeyError(proposal_id)
        cur = current_class(con, proposal_id)
        if cur == new:
            con.execute("DELETE FROM claims WHERE proposal_id=? AND client=?", (proposal_id, client))
            return DecideResult(proposal_id, cur, new, False)
        if cur != previous:
            raise Conflict(proposal_id, cur)
        write_decision(con, proposal_id, cur, new, client, annotator, now)
        con.execute("DELETE FROM claims WHERE proposal_id=?", (proposal_id,))
    return DecideResult(proposal_id, cur, new, True)


def undo(con: sqlite3.Connection, client: str, annotator: str | None = None) -> DecideResult | None:
    """Revert this client's latest decision that is still in force; the proposal is re-claimed for it."""
    now = time.time()
    with transaction(con):
        for h in con.execute("SELECT id, proposal_id, old, new FROM history WHERE client=? AND undone=0 "
                             "AND new IS NOT NULL ORDER BY id DESC LIMIT 50", (client,)).fetchall():
            cur = current_class(con, h["proposal_id"])
            if cur != h["new"]:
                continue  # someone changed it since; not ours to revert
            con.execute("UPDATE history SET undone=1 WHERE id=?", (h["id"],))
            write_decision(con, h["proposal_id"], cur, h["old"], client, annotator, now)
            con.execute("UPDATE history SET undone=1 WHERE id=last_insert_rowid()")
            _claim(con, h["proposal_id"], client, now)
            return DecideResult(h["proposal_id"], cur, h["old"], True)
    return None


def _claim(con: sqlite3.Connection, proposal_id: int, client: str, now: float) -> None:
    con.execute("DELETE FROM claims WHERE client=?", (client,))
    con.execute("INSERT INTO claims(proposal_id, client, expires) VALUES(?,?,?) ON CONFLICT(proposal_id) DO UPDATE "
                "SET client=excluded.client, expires=excluded.expires", (proposal_id, client, now + LEASE_S))


def claim_next(con: sqlite3.Connection, client: str, after: int = 0, lease_s: float = LEASE_S,
               order: str = "image") -> int | None:
    """Reserve the first undecided proposal after `after` (wrapping) that no other client holds.

    `order`: "image" (proposal order) or "confidence" (most confident suggestion first).
    One transaction, so two tabs asking at the same moment get different proposals.
    """
    now = time.time()
    rank = ORDERS[order]
    query = ("SELECT p.id FROM proposals p LEFT JOIN decisions d ON d.proposal_id=p.id "
             "LEFT JOIN claims c ON c.proposal_id=p.id LEFT JOIN suggestions s ON s.proposal_id=p.id "
             "WHERE d.proposal_id IS NULL AND (c.proposal_id IS NULL OR c.expires < ? OR c.client = ?) "
             f"AND ({rank}, p.id) > (?, ?) ORDER BY {rank}, p.id LIMIT 1")
    start = (-1e9, 0)
    with transaction(con):
        if after > 0:
            r = con.execute(f"SELECT {rank} AS k FROM proposals p LEFT JOIN suggestions s ON s.proposal_id=p.id "
                            "WHERE p.id=?", (after,)).fetchone()
            if r is not None:
                start = (r["k"], after)
        row = con.execute(query, (now, client, *start)).fetchone()
        if row is None and after > 0:
            row = con.execute(query, (now, client, -1e9, 0)).fetchone()
        if row is None:
            con.execute("DELETE FROM claims WHERE client=?", (client,))
            return None
        con.execute("DELETE FROM claims WHERE client=?", (client,))
        con.execute("INSERT INTO claims(proposal_id, client, expires) VALUES(?,?,?) ON CONFLICT(proposal_id) DO "
                    "UPDATE SET client=excluded.client, expires=excluded.expires", (row["id"], client, now + lease_s))
        return int(row["id"])


def held_by_others(con: sqlite3.Connection, client: str) -> int:
    """Undecided proposals currently reserved by other clients (shown while waiting for them)."""
    return con.execute("SELECT COUNT(*) FROM claims c LEFT JOIN decisions d ON d.proposal_id=c.proposal_id "
                       "WHERE d.proposal_id IS NULL AND c.client != ? AND c.expires >= ?",
                       (client, time.time())).fetchone()[0]


def progress(con: sqlite3.Connection) -> list[dict[str, object]]:
    """Done / total proposals per split, in split order of first appearance."""
    rows = con.execute("SELECT i.split AS split, COUNT(p.id) AS total, COUNT(d.proposal_id) AS done, MIN(i.id) AS o "
                       "FROM images i JOIN proposals p ON p.image_id=i.id "
                       "LEFT JOIN decisions d ON d.proposal_id=p.id GROUP BY i.split ORDER BY o").fetchall()
    return [{"split": r["split"], "done": r["done"], "total": r["total"]} for r in rows]


def proposal_row(con: sqlite3.Connection, proposal_id: int) -> sqlite3.Row | None:
    return con.execute("SELECT p.*, i.split, i.key, i.city, i.label, i.image, i.components, i.width, i.height, "
                       "d.class AS class, s.class AS suggestion, s.confidence AS confidence "
                       "FROM proposals p JOIN images i ON i.id=p.image_id "
                       "LEFT JOIN decisions d ON d.proposal_id=p.id LEFT JOIN suggestions s ON s.proposal_id=p.id "
                       "WHERE p.id=?", (proposal_id,)).fetchone()
