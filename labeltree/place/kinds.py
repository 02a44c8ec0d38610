"""What a new dataset's taxonomy says its classes are kinds of, beyond string similarity (`labeltree place`).

Machine names that spell a path (Vistas' 'construction--barrier--concrete-block': category--group--kind,
kept as synonyms in the bundled taxonomy) say where a class of a new version of a dataset comes from:
- a path below a class of the old version ('object--traffic-light--cyclists' below v1.2's
  'object--traffic-light'): a kind of that class's node;
- a path in a category whose catch-all the old version had ('other-barrier', 'general'): the old version
  folded every kind it did not list into the catch-all, so the new kind splits the catch-all's node;
- a group of new classes in a category no base class has ('object--sign--*'), beside exactly one class of
  the old version (the base dataset sharing most paths) in the parent category that the new version no
  longer has ('object--billboard'): that class, split into kinds;
- a kind whose last segment only says "of this group" ('ambiguous', 'person-group'): the node itself;
- nothing of the above: a new node, under the parent most of its category's base classes sit under.
Name-based kinds ('Traffic Light - Cyclists' of Traffic Light) are class_names.kind_of; `cross_kinds`
finds the kinds that cut across siblings ('Traffic Sign - Direction (Back)' / '(Front)'): an attribute of
the signs, not a finer kind of one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labeltree.core.class_names import UNSPECIFIC, VAGUE, class_path, kind_of, tokens
from labeltree.core.hierarchy import Hierarchy
from labeltree.core.taxonomy import ClassDef, normalise_name

CATCH_ALL = frozenset({"other", "general"})  # a category's member for every kind it does not list


@dataclass
class Hint:
    kind: str  # children (of a leaf) | node (the node itself) | new (a new node under it)
    node: int
    strength: float  # 0..1, as a name score
    why: str
    catch_all: bool = False  # from a category's catch-all (its node stands for the category once it is split)


@dataclass
class _Base:
    dataset: str
    raw: tuple[str, ...]
    key: tuple[str, ...]
    node: int
    display: str


def _key(path: list[str]) -> tuple[str, ...]:
    """Segments as words; the categories' without vague words ('marking-only' -> 'marking'), the kind's all
    of them ('other-vehicle' and 'vehicle-group' are two classes)."""
    cats = [" ".join(w for w in tokens(seg.replace("-", " ")) if w not in VAGUE) for seg in path[:-1]]
    return (*cats, " ".join(tokens(path[-1].replace("-", " "))))


def _base_paths(h: Hierarchy, skip: set[int]) -> list[_Base]:
    out = []
    for key, m in h.mappings.items():
        if m.is_boxes:
            continue
        for c in m.taxonomy.classes:
            node, path = m.to_node.get(c.id), class_path(c)
            if node is not None and node not in skip and path:
                out.append(_Base(key, tuple(path), _key(path), node, c.display))
    return out


def _unspecific(path: list[str]) -> bool:
    """The last segment says 'of this group' and nothing more ('ambiguous', 'person-group')."""
    above = {w for seg in path[:-1] for w in tokens(seg.replace("-", " "))}
    return set(tokens(path[-1].replace("-", " "))) - above <= UNSPECIFIC


def _hint(h: Hierarchy, path: list[str], node: int, strength: float, why: str) -> Hint:
    if _unspecific(path):
        return Hint("node", node, strength, why + "; of that group, no kind named")
    return Hint("new" if h.nodes[node].children else "children", node, strength, why)


def _prefix_hint(h: Hierarchy, path: list[str], base: list[_Base]) -> Hint | None:
    key = _key(path)
    for j in range(len(key) - 1, 0, -1):
        pre = key[:j]
        own = [b for b in base if b.key == pre]
        if own:
            return _hint(h, path, own[0].node, 0.9, f"its machine name '{'--'.join(path)}' is a kind of "
                                                     f"{own[0].dataset} '{'--'.join(own[0].raw)}'")
        catch = [b for b in base if b.key[:-1] == pre and CATCH_ALL & set(tokens(b.raw[-1].replace("-", " ")))]
        if catch:
            x = _hint(h, path, catch[0].node, 0.85, f"a new kind in {catch[0].dataset}'s category "
                                                    f"'{'--'.join(catch[0].raw[:-1])}', whose catch-all "
                                                    f"'{catch[0].raw[-1]}' held every unlisted kind")
            x.catch_all = True
            return x
    return None


def _orphans(classes: list[ClassDef], base: list[_Base], used: set[int]) -> list[_Base]:
    """Classes of the old version (the base dataset sharing most paths) that the new one no longer has."""
    keys = {_key(p) for c in classes if (p := class_path(c))}
    share: dict[str, int] = {}
    for b in base:
        share[b.dataset] = share.get(b.dataset, 0) + (b.key in keys)
    if not share or max(share.values()) < 2:
        return []
    old = max(share, key=lambda d: share[d])
    names = {normalise_name(c.display) for c in classes}
    return [b for b in base if b.dataset == old and b.key not in keys and b.node not in used
            and not any(k[:len(b.key)] == b.key for k in keys) and normalise_name(b.display) not in names]


def _group_hints(h: Hierarchy, classes: list[ClassDef], paths: dict[int, list[str]], free: set[int],
                 base: list[_Base], used: set[int]) -> dict[int, Hint]:
    groups: dict[tuple[str, ...], list[int]] = {}
    for i in free:
        groups.setdefault(_key(paths[i])[:-1], []).append(i)
    orphans = _orphans(classes, base, used)
    out = {}
    for cat, members in groups.items():
        if len(members) < 2 or len(cat) < 2 or any(b.key[:len(cat)] == cat for b in base):
            continue
        fit = [o for o in orphans if o.key[:-1] == cat[:-1]]
        if len(fit) != 1:
            continue
        o = fit[0]
        for i in members:
            out[i] = _hint(h, paths[i], o.node, 0.8, f"'{'--'.join(paths[i][:-1])}' is new, and {o.dataset}'s "
                                                      f"'{'--'.join(o.raw)}' in the same category is gone: its kinds")
    return out


def kind_hints(h: Hierarchy, classes: list[ClassDef], skip: set[int], exact: set[int]
               ) -> tuple[dict[int, Hint], dict[int, np.ndarray]]:
    """Per slot of the new dataset: a Hint where its path says what it is a kind of, and (classes without
    one) where the base classes of its category sit, as a share per parent node."""
    base = _base_paths(h, skip)
    old = {b.key for b in base}  # a path the old version has is that class, no kind of anything
    paths = {i: p for i, c in enumerate(classes) if (p := class_path(c)) and i not in exact and _key(p) not in old}
    if not base or not paths:
        return {}, {}
    hints = {i: x for i, p in paths.items() if (x := _prefix_hint(h, p, base)) is not None}
    split = {x.node for x in hints.values() if x.kind != "node"}
    # 'of this group' on a catch-all that no new kind splits: the catch-all's node is no node of the category
    hints = {i: x for i, x in hints.items() if not (x.catch_all and x.kind == "node" and x.node not in split)}
    free = set(paths) - set(hints)
    hints.update(_group_hints(h, classes, paths, free, base, {x.node for x in hints.values()}))
    parents = {}
    for i in set(paths) - set(hints):
        members = [b.node for b in base if b.key[:-1] == _key(paths[i])[:-1]]
        if members:
            votes = np.bincount([h.nodes[n].parent for n in members], minlength=len(h.nodes)).astype(float)
            parents[i] = votes / votes.sum()
    return hints, parents


def cross_kinds(h: Hierarchy, classes: list[ClassDef]) -> set[tuple[int, int]]:
    """(slot, node) pairs where a class's name makes it a kind of a node, but the same kind words also qualify
    a sibling of that node in another class: an attribute across the siblings, not a finer kind of one."""
    kinds: dict[int, list[tuple[int, frozenset[str]]]] = {}
    for i in range(1, len(h.nodes)):
        for s, c in enumerate(classes):
            if kind_of(c.display, h.nodes[i].name):
                kinds.setdefault(i, []).append((s, frozenset(tokens(c.display)) - set(tokens(h.nodes[i].name))))
    out = set()
    for i, members in kinds.items():
        sibs = [j for j in h.nodes[h.nodes[i].parent].children if j != i and j in kinds]
        for s, words in members:
            if words and any(words == w for j in sibs for _, w in kinds[j]):
                out.add((s, i))
    return out
