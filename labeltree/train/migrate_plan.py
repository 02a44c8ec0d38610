"""What `labeltree migrate` does to each classifier, decided by node names alone (no weights touched here).

The old tree is the checkpoint's own saved tree (`tree` entry: nodes by name and parent), which is what its
logits mean, whatever its tree file says today; a checkpoint from before trees were saved uses its tree file.
Every old node must be in the new tree under the same parent (after `--rename OLD=NEW`), or be dropped with
`--drop NODE`; a classifier of the new tree then either existed (its rows: old rows, possibly reordered,
plus new children) or is new (a leaf that became an inner node, or a new inner node: a fresh head).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labeltree.core.hierarchy import Hierarchy
from labeltree.errors import LabeltreeError


@dataclass
class HeadPlan:
    """One classifier of the new tree and where its rows come from."""

    name: str  # the owner node's name in the new tree ("root" for Level 1)
    source: int | None  # the old head index, None for a new head
    rows: list[int | None]  # per child (new order): its old row, None = a new row
    children: list[str]  # the children's names (new order)
    dropped: list[str] = field(default_factory=list)  # old children dropped (--drop)

    @property
    def added(self) -> list[str]:
        return [c for c, r in zip(self.children, self.rows, strict=True) if r is None]

    @property
    def status(self) -> str:
        if self.source is None:
            return "new"
        if self.added or self.dropped:
            return "changed"
        return "reordered" if self.rows != sorted(self.rows) else "kept"  # type: ignore[type-var]


@dataclass
class Plan:
    heads: list[HeadPlan]
    renamed: dict[str, str]
    dropped: list[str]


def parse_renames(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`--rename OLD=NEW` options -> {OLD: NEW}; one OLD twice or two OLD onto one NEW refused."""
    out: dict[str, str] = {}
    for p in pairs:
        old, sep, new = p.partition("=")
        old, new = old.strip(), new.strip()
        if not sep or not old or not new:
            raise LabeltreeError(f"--rename {p!r}: expected OLD=NEW (an old node name = its name in the new tree)")
        if old in out and out[old] != new:
            raise LabeltreeError(f"--rename: '{old}' is renamed twice ('{out[old]}' and '{new}'); give one NEW per OLD")
        twin = [o for o, n in out.items() if n == new and o != old]
        if twin:
            raise LabeltreeError(f"--rename: '{twin[0]}' and '{old}' are both renamed to '{new}'; one node per name")
        out[old] = new
    return out


def signature_nodes(signature: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(name, parent name) per node of a saved tree, checked to be a tree (root first, unique names)."""
    nodes = signature.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise ValueError("no nodes")
    out = [(str(n), None if p is None else str(p)) for n, p in nodes]
    names = [n for n, _ in out]
    if len(set(names)) != len(names) or out[0][1] is not None or any(p not in names for _, p in out[1:]):
        raise ValueError("not a tree")
    return out


def old_classifiers(nodes: list[tuple[str, str | None]]) -> list[tuple[str, list[str]]]:
    """(owner name, children in logit order) of every classifier, as `Hierarchy` builds them: in node order,
    nodes with at least two children, children in node order."""
    children: dict[str, list[str]] = {n: [] for n, _ in nodes}
    for n, p in nodes:
        if p is not None:
            children[p].append(n)
    return [(n, children[n]) for n, _ in nodes if len(children[n]) >= 2]


def plan(old_nodes: list[tuple[str, str | None]], new: Hierarchy, renames: dict[str, str],
         drops: list[str]) -> Plan:
    """The per-classifier plan; one line for any node that the new tree lost, renamed or moved unasked."""
    old_parent = dict(old_nodes)
    new_parent = {n.name: (new.nodes[n.parent].name if n.parent >= 0 else None) for n in new.nodes}
    _check_options(old_parent, new_parent, renames, drops)
    to_new = {n: renames.get(n, n) for n in old_parent if n not in drops}
    lost = [n for n, m in to_new.items() if m not in new_parent]
    if lost:
        more = f" and {len(lost) - 3} more" if len(lost) > 3 else ""
        raise LabeltreeError(f"the new tree has no node {', '.join(repr(n) for n in lost[:3])}{more} of the "
                             "checkpoint's tree; say what became of each: --rename OLD=NEW (the node's new name) "
                             "or --drop NODE (its logit is removed)")
    for n, m in to_new.items():
        p = old_parent[n]
        if p is not None and p in drops:
            raise LabeltreeError(f"--drop {p!r}: its child '{n}' is kept; drop the children too, or do not drop it")
        want = None if p is None else to_new.get(p, p)
        if new_parent[m] != want:
            raise LabeltreeError(f"node '{m}' moved from under '{want}' to under '{new_parent[m]}': its logit "
                                 "would mean another decision; migrate keeps nodes where they are (move it back, "
                                 "or --drop it and add a new node)")
    index = {owner: j for j, (owner, _) in enumerate(old_classifiers(old_nodes))}
    old_children = dict(old_classifiers(old_nodes))
    from_new = {m: n for n, m in to_new.items()}
    heads = []
    for c in new.classifiers:
        kids = [new.nodes[k].name for k in c.children]
        src = from_new.get(c.name)
        if src is None or src not in index:
            heads.append(HeadPlan(c.name, None, [None] * len(kids), kids))
            continue
        old_kids = old_children[src]
        rows = [old_kids.index(from_new[k]) if k in from_new else None for k in kids]
        heads.append(HeadPlan(c.name, index[src], rows, kids, [k for k in old_kids if k in drops]))
    gone = [owner for owner in index if owner not in drops and to_new[owner] not in {h.name for h in heads}]
    if gone:  # an inner node that kept its place but lost all but one child (only --drop does that)
        raise LabeltreeError(f"the classifier of '{gone[0]}' would keep a single child; drop that child too")
    return Plan(heads, {o: n for o, n in renames.items() if o != n}, list(drops))


def _check_options(old_parent: dict[str, str | None], new_parent: dict[str, str | None], renames: dict[str, str],
                   drops: list[str]) -> None:
    """--rename / --drop name nodes of the right trees, and no node ends up under two names."""
    for o, n in renames.items():
        if o not in old_parent:
            raise LabeltreeError(f"--rename {o}={n}: the checkpoint's tree has no node '{o}'")
        if n not in new_parent:
            raise LabeltreeError(f"--rename {o}={n}: the new tree has no node '{n}'")
        if n in old_parent and n not in renames and n not in drops:
            raise LabeltreeError(f"--rename {o}={n}: the checkpoint's tree has its own '{n}', which the new tree "
                                 f"keeps; two old nodes would become '{n}' (rename or drop that one too)")
    for d in drops:
        if d not in old_parent:
            raise LabeltreeError(f"--drop {d}: the checkpoint's tree has no node '{d}'")
        if d == old_nodes_root(old_parent):
            raise LabeltreeError("--drop: the root cannot be dropped")
        if d in renames:
            raise LabeltreeError(f"--drop {d}: it is also renamed (--rename {d}={renames[d]}); give one of the two")


def old_nodes_root(old_parent: dict[str, str | None]) -> str:
    return next(n for n, p in old_parent.items() if p is None)
