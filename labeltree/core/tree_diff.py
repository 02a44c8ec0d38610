"""Which evaluation numbers stay comparable when a tree changes (`labeltree tree-diff OLD NEW`, and the
summary `labeltree migrate` prints).

A dataset's class keeps its meaning for a model when it maps to the same node at the same place (the same
chain of ancestors): its pixels are predicted through the same decisions, so its IoU before and after the
change measure the same thing. A class whose node changed, moved, or that is new or gone is not comparable,
and neither is a dataset's mean over classes that include one. A kept class whose node became an inner node
(a leaf split into kinds) is still comparable: every kind under it is that class.

Both trees are compared as `tree_signature`s (nodes by name and parent; each dataset's stored value -> node),
so that a checkpoint's saved tree (`tree` entry) and a tree file compare alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labeltree.core.hierarchy import Hierarchy


@dataclass
class DatasetDiff:
    """One dataset found in both trees: its classes by status (class names; `moved` with the old and new node)."""

    name: str
    kept: list[str] = field(default_factory=list)
    refined: list[str] = field(default_factory=list)  # kept classes whose node is now an inner node
    moved: list[dict[str, Any]] = field(default_factory=list)  # {"class", "from", "to"}: node paths, None = ignored
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def comparable(self) -> bool:
        """Are the dataset's means comparable across the change (no class moved, added or removed)?"""
        return not (self.moved or self.added or self.removed)


@dataclass
class TreeDiff:
    old: str  # the trees' names
    new: str
    datasets: list[DatasetDiff]
    added_datasets: list[str]
    removed_datasets: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "added_datasets": self.added_datasets,
                "removed_datasets": self.removed_datasets,
                "datasets": {d.name: {"comparable": d.comparable, "kept": d.kept, "refined": d.refined,
                                      "moved": d.moved, "added": d.added, "removed": d.removed}
                             for d in self.datasets}}

    def table(self) -> str:
        """Per dataset: counts, then every class that moved, was added or removed."""
        out = [f"tree '{self.old}' -> '{self.new}'",
               f"{'dataset':<22} {'kept':>5} {'split':>5} {'moved':>5} {'added':>5} {'gone':>5}  means comparable"]
        for d in self.datasets:
            out.append(f"{d.name[:22]:<22} {len(d.kept):>5} {len(d.refined):>5} {len(d.moved):>5} "
                       f"{len(d.added):>5} {len(d.removed):>5}  {'yes' if d.comparable else 'no'}")
        for d in self.datasets:
            out += [f"  {d.name}: '{m['class']}' moved: {_where(m['from'])} -> {_where(m['to'])}" for m in d.moved]
            out += [f"  {d.name}: '{c}' is new" for c in d.added]
            out += [f"  {d.name}: '{c}' is gone" for c in d.removed]
            if d.refined:
                out.append(f"  {d.name}: split into kinds below their node (still comparable): "
                           + ", ".join(f"'{c}'" for c in d.refined))
        out += [f"dataset '{n}' is new (no numbers to compare)" for n in self.added_datasets]
        out += [f"dataset '{n}' is not in the new tree" for n in self.removed_datasets]
        return "\n".join(out)

    def to_text(self, fmt: str) -> str:
        return json.dumps(self.to_json(), indent=2) if fmt == "json" else self.table()


def _where(path: str | None) -> str:
    return "ignored" if path is None else f"'{path}'"


def node_paths(signature: dict[str, Any]) -> tuple[dict[str, str], set[str]]:
    """Node name -> its path from the root ('A > B > C'), and the names of inner nodes, of a `tree_signature`."""
    parent = {str(n): p for n, p in signature.get("nodes", [])}
    paths: dict[str, str] = {}
    for name in parent:
        chain, cur = [], name
        while parent.get(cur) is not None and len(chain) <= len(parent):
            chain.append(cur)
            cur = parent[cur]
        paths[name] = " > ".join(reversed(chain))
    inner = {p for p in parent.values() if p is not None}
    return paths, inner


def class_names(h: Hierarchy) -> dict[str, dict[int, str]]:
    """Per dataset (taxonomy name, as the signature keys it): stored value -> class name (readable where it has one)."""
    return {m.taxonomy.name: {m.taxonomy.stored_value(c): m.taxonomy.by_id(c).display for c in m.to_node if c >= 0}
            for m in h.mappings.values()}


def diff_signatures(old: dict[str, Any], new: dict[str, Any], names: dict[str, dict[int, str]] | None = None,
                    old_name: str = "old", new_name: str = "new", renames: dict[str, str] | None = None) -> TreeDiff:
    """Compare two `tree_signature`s per dataset; `names`: dataset -> stored value -> class name (else 'value N');
    `renames`: old node name -> its name in the new tree (`migrate --rename`: a renamed node is the same node)."""
    names = names or {}
    if renames:
        old = rename_nodes(old, renames)
    old_paths, old_inner = node_paths(old)
    new_paths, new_inner = node_paths(new)
    a, b = old.get("datasets", {}), new.get("datasets", {})
    diffs = []
    for ds in [d for d in b if d in a]:
        x = {int(v): n for v, n in a[ds]}
        y = {int(v): n for v, n in b[ds]}
        label = names.get(ds, {})
        d = DatasetDiff(ds)
        for v in sorted(set(x) | set(y)):
            cls = label.get(v, f"value {v}")
            if v not in y:
                d.removed.append(cls)
            elif v not in x:
                d.added.append(cls)
            else:
                was = None if x[v] is None else old_paths.get(x[v], x[v])
                now = None if y[v] is None else new_paths.get(y[v], y[v])
                if was != now:
                    d.moved.append({"class": cls, "from": was, "to": now})
                else:
                    d.kept.append(cls)
                    if y[v] is not None and y[v] in new_inner and x[v] not in old_inner:
                        d.refined.append(cls)
        diffs.append(d)
    return TreeDiff(old_name, new_name, diffs, [d for d in b if d not in a], [d for d in a if d not in b])


def rename_nodes(signature: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    """A signature with nodes renamed (old name -> new name)."""
    def r(n: Any) -> Any:
        return renames.get(n, n) if isinstance(n, str) else n

    return {**signature, "nodes": [[r(n), r(p)] for n, p in signature.get("nodes", [])],
            "datasets": {d: [[v, r(n)] for v, n in rows] for d, rows in signature.get("datasets", {}).items()}}


def tree_diff(old: Hierarchy, new: Hierarchy) -> TreeDiff:
    """`labeltree tree-diff OLD NEW`: per dataset of both trees, which classes keep their node and which moved."""
    from labeltree.core.hierarchy import tree_signature

    names = {**class_names(old), **class_names(new)}
    return diff_signatures(tree_signature(old), tree_signature(new), names, old.name, new.name)
