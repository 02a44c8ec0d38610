"""What a merged tree leaves for a person to decide: the conflicts `labeltree merge` lists.

`analyse` reads the tree and its mappings only, so a tree file written with `merge -o` gives the
same list when read back; `name_hints` adds the name-based suspects a flat union cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labeltree.core.hierarchy import Hierarchy
from labeltree.core.taxonomy import ClassDef, normalise_name

# Words that say nothing about what a class is; a name made only of them matches nothing.
_VAGUE = {"other", "ambiguous", "general", "unlabeled", "unlabelled", "void", "misc", "the", "of", "and", "or"}


def class_keys(c: ClassDef) -> list[str]:
    """Match keys of a class: normalised display name, name and synonyms, each also without spaces
    (Cityscapes 'polegroup' = Vistas 'Pole Group')."""
    keys = [normalise_name(n) for n in (c.display, c.name, *c.synonyms)]
    return list(dict.fromkeys(keys + [k.replace(" ", "") for k in keys]))


@dataclass
class Conflict:
    """Something the merge cannot settle alone (or settles by a rule a person should know about)."""

    kind: str  # level-of-detail | name-clash | partial | unmatched | unmapped | unlabelled | excluded
    #            | contains | includes
    message: str
    datasets: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)  # "dataset:class name"
    node: str | None = None
    # a level-of-detail choice the tree file makes on purpose (its own mapping of the class to an
    # inner node), not one the merge made by matching names: reported, nothing left to resolve
    settled: bool = False

    @property
    def unresolved(self) -> bool:
        return self.kind in ("unmapped", "unmatched") or (self.kind in SETTLEABLE and not self.settled)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "datasets": self.datasets,
                "classes": self.classes, "node": self.node, "settled": self.settled}


SETTLEABLE = ("level-of-detail", "includes", "contains")  # kinds a tree file settles by its mappings


def _tokens(name: str) -> frozenset[str]:
    out = set()
    for w in normalise_name(name).split():
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.add(w)
    return frozenset(out)


def name_hints(h: Hierarchy) -> list[Conflict]:
    """Level-of-detail suspects a flat union cannot see: one dataset's class name is part of
    another's ('traffic sign' vs 'Traffic Sign (Front)'), or a class's declared `includes` names
    other datasets' classes (Cityscapes 'road' includes lane markings)."""
    out: list[Conflict] = []
    classes = [(d, c, m.to_node.get(c.id)) for d, m in h.mappings.items() for c in m.taxonomy.classes
               if m.to_node.get(c.id) is not None]
    for d, a, na in classes:
        ta = _tokens(a.display)
        if not ta or ta <= _VAGUE:
            continue
        per_ds: dict[str, list[str]] = {}
        inc: dict[str, list[str]] = {}
        terms = [_tokens(t) for t in a.includes]
        for e, b, nb in classes:
            if e == d or nb == na:
                continue
            tb = _tokens(b.display)
            if ta < tb:
                per_ds.setdefault(e, []).append(b.display)
            elif any(t and t <= tb for t in terms):
                inc.setdefault(e, []).append(b.display)
        for e, names in per_ds.items():
            out.append(Conflict(
                "contains", f"{d} '{a.display}' is part of the name of {e} {_list(names)}: if it covers them, "
                f"make '{h.nodes[na].name}' their parent node (a rule); if not, keep them apart",
                [d, e], [f"{d}:{a.display}"] + [f"{e}:{n}" for n in names], h.nodes[na].name))
        for e, names in inc.items():
            out.append(Conflict(
                "includes", f"{d} '{a.display}' includes {', '.join(a.includes)} (its annotation guide) but {e} "
                f"labels {_list(names)} separately: needs a rule (a parent node for '{a.display}' over them)",
                [d, e], [f"{d}:{a.display}"] + [f"{e}:{n}" for n in names], h.nodes[na].name))
    return out


def _list(names: list[str], k: int = 6) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:k])
    return shown + (f" and {len(names) - k} more" if len(names) > k else "")


def analyse(h: Hierarchy, added: dict[str, list[int]] | None = None) -> list[Conflict]:
    """Conflicts of a merged tree: level of detail, name clashes, partial labelling, unmapped
    classes, unlabelled classifiers/nodes, and datasets kept out of classifiers."""
    desc = {i: set(h.descendants(i)) for i in range(len(h.nodes))}
    labelled: dict[str, set[int]] = {d: {n for n in m.to_node.values() if n is not None}
                                     for d, m in h.mappings.items()}
    return (_level_of_detail(h, desc, labelled) + _name_clashes(h) + _unmapped(h, added or {})
            + _classifier_conflicts(h, desc, labelled) + _unlabelled_nodes(h, desc, labelled))


def _level_of_detail(h: Hierarchy, desc: dict[int, set[int]], labelled: dict[str, set[int]]) -> list[Conflict]:
    """A class on an inner node whose descendants other datasets label."""
    out: list[Conflict] = []
    for d, m in h.mappings.items():
        for c in m.taxonomy.classes:
            n = m.to_node.get(c.id)
            if n is None or not h.nodes[n].children:
                continue
            finer = {e: sorted(labelled[e] & (desc[n] - {n})) for e in h.mappings if e != d}
            finer = {e: v for e, v in finer.items() if v}
            if not finer:
                continue
            detail = "; ".join(f"{e} labels {_list([h.nodes[k].name for k in v], 5)}" for e, v in finer.items())
            out.append(Conflict(
                "level-of-detail",
                f"{d} '{c.display}' -> '{h.nodes[n].name}' (inner node) while {detail}: its pixels train only the "
                f"classifiers above '{h.nodes[n].name}', and {d} is evaluated with these folded into "
                f"'{c.display}'", [d, *finer],
                [f"{d}:{c.display}"] + [f"{e}:{x.display}" for e in finer for x in h.mappings[e].taxonomy.classes
                                        if h.mappings[e].to_node.get(x.id) in desc[n] - {n}],
                h.nodes[n].name))
    return out


def _name_clashes(h: Hierarchy) -> list[Conflict]:
    """The same normalised name on different nodes, or a class not on the node of its name."""
    out: list[Conflict] = []
    groups: dict[str, list[tuple[str, ClassDef, int | None]]] = {}
    for d, m in h.mappings.items():
        for c in m.taxonomy.classes:
            if c.id in m.to_node:
                for k in dict.fromkeys(class_keys(c)):
                    groups.setdefault(k, []).append((d, c, m.to_node[c.id]))
    reported: set[tuple[str, int]] = set()
    for k, members in groups.items():
        dsets = {d for d, _, _ in members}
        if len(dsets) < 2 or len({n for _, _, n in members}) < 2:
            continue
        if all((d, c.id) in reported for d, c, _ in members):
            continue
        reported.update((d, c.id) for d, c, _ in members)
        where = ", ".join(f"{d} '{c.display}' -> {h.nodes[n].name if n is not None else 'ignored'}"
                          for d, c, n in members)
        out.append(Conflict("name-clash", f"name '{k}' is matched in some datasets only: {where}",
                            sorted(dsets), [f"{d}:{c.display}" for d, c, _ in members]))
    node_by_norm = {normalise_name(n.name): i for i, n in enumerate(h.nodes) if i > 0}
    for d, m in h.mappings.items():
        for c in m.taxonomy.classes:
            n = m.to_node.get(c.id)
            k = normalise_name(c.display)
            if n is None or (d, c.id) in reported or k not in node_by_norm or node_by_norm[k] == n:
                continue
            out.append(Conflict("name-clash", f"{d} '{c.display}' -> '{h.nodes[n].name}', not to the node of the "
                                f"same name '{h.nodes[node_by_norm[k]].name}'", [d], [f"{d}:{c.display}"],
                                h.nodes[n].name))
    return out


def _unmapped(h: Hierarchy, added: dict[str, list[int]]) -> list[Conflict]:
    """Classes the rules left unmapped (rules mode: added as new root leaves)."""
    out: list[Conflict] = []
    for d, ids in added.items():
        tax = h.mappings[d].taxonomy
        names = [tax.by_id(i).display for i in ids]
        out.append(Conflict("unmapped", f"{d}: {len(ids)} class(es) neither mapped nor ignored by the rules nor "
                            f"matched by name: {_list(names, 12)} (proposed as new root leaves)", [d],
                            [f"{d}:{n}" for n in names]))
    return out


def _classifier_conflicts(h: Hierarchy, desc: dict[int, set[int]], labelled: dict[str, set[int]]) -> list[Conflict]:
    """Per classifier: who trains it, who is excluded, children labelled by some datasets only."""
    out: list[Conflict] = []
    trained = [d for d, m in h.mappings.items() if not m.evaluation_only]
    for j, cl in enumerate(h.classifiers):
        sup = [d for d in trained if h.supervises(d, j)]
        if not sup:
            out.append(Conflict("unlabelled", f"classifier '{cl.name}' ({len(cl.children)} classes): no dataset "
                                "trains it (no dataset labels two of its classes)", [], [], cl.name))
        for d in trained:
            m = h.mappings[d]
            reached = h.children_reached(d, j)
            if d in sup or not reached:
                continue
            names = [h.nodes[k].name for k in sorted(reached)]
            if m.is_boxes:
                why = ("box dataset: boxes never train classifiers above their node (docs/design.md §2.4)")
            elif (d, cl.name) in h.overrides:
                why = "supervise: false override in the tree file"
            else:
                why = (f"labels only {_list(names)} among its {len(cl.children)} classes; training would "
                       f"teach 'everything is {names[0]}' (supervision rule; override in the tree file)")
            out.append(Conflict("excluded", f"{d} does not train classifier '{cl.name}': {why}", [d], [],
                                cl.name))
        dense = [d for d in sup if not h.mappings[d].is_boxes]
        if len(dense) >= 2:
            by_set: dict[tuple[str, ...], list[str]] = {}
            for child in cl.children:
                who = tuple(d for d in dense if labelled[d] & desc[child])
                if 0 < len(who) < len(dense):
                    by_set.setdefault(who, []).append(h.nodes[child].name)
            for who, names in by_set.items():
                missing = [d for d in dense if d not in who]
                kind = "unmatched" if h.path is None and len(who) == 1 else "partial"
                out.append(Conflict(
                    kind, f"classifier '{cl.name}': {len(names)} class(es) labelled by {', '.join(who)} only "
                    f"({', '.join(missing)} has no class for them; its pixels of these carry another class or "
                    f"none): {_list(names, 12)}", list(who), names, cl.name))
    return out


def _unlabelled_nodes(h: Hierarchy, desc: dict[int, set[int]], labelled: dict[str, set[int]]) -> list[Conflict]:
    """Nodes that no dataset labels at or below."""
    out: list[Conflict] = []
    any_label = set().union(*labelled.values()) if labelled else set()
    dead = [i for i in range(1, len(h.nodes)) if not (desc[i] & any_label)]
    if dead:
        names = [h.nodes[i].name for i in dead]
        out.append(Conflict("unlabelled", f"{len(dead)} node(s) that no dataset labels (the network can predict "
                            f"them but nothing trains them): {_list(names, 12)}", [], names))
    return out


