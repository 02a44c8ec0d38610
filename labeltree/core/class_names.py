"""Class names as evidence (used by `labeltree place` and by `labeltree merge`): string similarity of a
class's name, synonyms and `includes` with the tree's node names and the names of the base datasets'
classes mapped to each node. No language model: names alone cannot place classes, so for `place` this
is one signal among several."""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache

import numpy as np

from labeltree.core.hierarchy import Hierarchy
from labeltree.core.taxonomy import ClassDef
from labeltree.core.taxonomy import normalise_name as _normalise_name

# Words that say nothing about what a class is (IDD's 'drivable fallback' is drivable ground).
VAGUE = frozenset({"other", "ambiguous", "general", "fallback", "misc", "the", "of", "and", "or", "only", "kind",
                   "group"})
IGNORE_WORDS = frozenset({"unlabeled", "unlabelled", "void", "background", "ignore", "none", "rectification",
                          "border", "roi"})
# Words that say a class is of a group but not which kind of it ('Lane Marking - Ambiguous', 'Person Group').
UNSPECIFIC = frozenset({"ambiguous", "group"})
EXACT = 1.0  # the same normalised name
SOFT = 0.7  # the same words (up to spelling, plurals and vague words): at most this much


@lru_cache(maxsize=65536)  # pure; the same few hundred names are normalised ~10^5 times per placement
def normalise_name(name: str) -> str:
    return _normalise_name(name)


def texts(c: ClassDef) -> list[str]:
    """A class's normalised names (display, name, synonyms), each also without spaces."""
    out = [normalise_name(n) for n in (c.display, c.name, *c.synonyms)]
    return list(dict.fromkeys(out + [t.replace(" ", "") for t in out]))


def tokens(text: str) -> list[str]:
    """A name's words, normalised, a plural's s dropped."""
    return list(_tokens(text))


@lru_cache(maxsize=65536)  # pure, and placing one dataset compares the same few hundred names ~10^5 times
def _tokens(text: str) -> tuple[str, ...]:
    out = []
    for w in normalise_name(text).split():
        if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us")):  # 'ambiguous' stays
            w = w[:-1]
        out.append(w)
    return tuple(out)


@lru_cache(maxsize=65536)
def _word_match(a: str, b: str) -> bool:
    if a == b:
        return True
    if min(len(a), len(b)) < 4:
        return False
    m = SequenceMatcher(None, a, b)  # the quick ratios bound ratio() from above: most pairs stop there
    return m.real_quick_ratio() >= 0.85 and m.quick_ratio() >= 0.85 and m.ratio() >= 0.85


def soft_overlap(a: list[str], b: list[str]) -> float:
    """Share of words (vague words left out) that match a word of the other name, over the union."""
    wa, wb = [w for w in a if w not in VAGUE], [w for w in b if w not in VAGUE]
    if not wa or not wb:
        return 0.0
    hit = sum(any(_word_match(x, y) for y in wb) for x in wa)
    return hit / (len(wa) + len(wb) - hit)


@lru_cache(maxsize=65536)
def similarity(a: str, b: str) -> float:
    """1 for the same normalised name, <= SOFT for the same words; 'non-X' never matches 'X'."""
    na, nb = normalise_name(a), normalise_name(b)
    if not na or not nb:
        return 0.0
    if na == nb or na.replace(" ", "") == nb.replace(" ", ""):
        return EXACT
    if "--" in a or "--" in b:  # a machine path ('construction--flat--road') is a name only as a whole
        return 0.0
    ta, tb = tokens(na), tokens(nb)
    s = SOFT * soft_overlap(ta, tb)
    if ("non" in ta) != ("non" in tb):
        s *= 0.2
    return s


def kind_of(child: str, parent: str) -> int:
    """How many of the parent's words the child's name extends as a kind of it, else 0. Datasets name
    kinds 'Category - Kind' ('Traffic Light - Pedestrians', 'Traffic Sign - Direction (Front)'), or put
    the head word last ('Temporary Barrier'); 'Parking Meter' is no kind of Parking, nor 'Traffic Sign -
    Parking' of it."""
    if {"other", "ambiguous"} & set(tokens(parent)):  # 'Other Vehicle' is what no other node is, no category
        return 0
    tp = set(tokens(parent)) - VAGUE
    tc = tokens(child)
    if not tp or not tp <= set(tc) or set(tc) <= set(tokens(parent)):
        return 0
    if set(tc) - VAGUE == tp and " - " not in child:  # 'Lane Marking - Other' is a kind, 'vehicle fallback' none
        return 0
    if " - " in child:
        category = set(tokens(child.split(" - ")[0])) - VAGUE
        return len(tp) if category <= set(tokens(parent)) else 0
    heads = [w for w in tc if w not in VAGUE]
    return len(tp) if heads and heads[-1] in tp else 0


def is_ambiguous(c: ClassDef) -> bool:
    """'Lane Marking - Ambiguous': says which group, not which kind (stays on the group's node)."""
    return "ambiguous" in tokens(c.display) or "ambiguous" in tokens(c.name)


def class_path(c: ClassDef) -> list[str] | None:
    """A machine name that spells what the class is a kind of ('construction--barrier--concrete-block':
    category--group--kind, as Vistas names its classes), from its name or a synonym; None without one."""
    for n in (c.name, *c.synonyms):
        if "--" in n:
            return [seg for seg in n.split("--") if seg]
    return None


def is_void(c: ClassDef) -> bool:
    words = set(tokens(c.display)) | set(tokens(c.name))
    return bool(words) and words <= IGNORE_WORDS | VAGUE


@dataclass
class NameHit:
    node: int
    score: float
    why: str


def best_text_score(c: ClassDef, names: list[str]) -> tuple[float, str]:
    best, what = 0.0, ""
    for t in texts(c):
        for n in names:
            s = similarity(t, n)
            if s > best:
                best, what = s, n
    return best, what


# -- per node -------------------------------------------------------------------------------------

def node_texts(h: Hierarchy, dense: bool, affinity: dict[str, float] | None = None) -> list[list[tuple[str, float]]]:
    """Per node: (name, weight) for its own name and the base classes mapped to it. A class name
    weighs 0.9 + 0.1 x its dataset's affinity (share of the new dataset's classes it names alike: BDD100K
    names its classes as Cityscapes does); the node's own name 0.9. For a dense dataset the nodes
    only box datasets label keep their own name alone (a sign type is never joined with terrain)."""
    out: list[list[tuple[str, float]]] = [[(n.name, 0.9)] for n in h.nodes]
    for key, m in h.mappings.items():
        if m.is_boxes and dense:
            continue
        w = 0.9 + 0.1 * (affinity or {}).get(key, 0.0)
        for c in m.taxonomy.classes:
            node = m.to_node.get(c.id)
            if node is not None:
                out[node] += [(t, w) for t in (c.display, c.name, *c.synonyms)]
    return out


def affinity(h: Hierarchy, new: list[ClassDef]) -> dict[str, float]:
    """Per base dataset: the share of the new dataset's classes that have a class of the same name there."""
    out = {}
    for key, m in h.mappings.items():
        have = {normalise_name(t) for c in m.taxonomy.classes for t in (c.display, c.name, *c.synonyms)}
        out[key] = sum(any(normalise_name(t) in have for t in (c.display, c.name)) for c in new) / max(len(new), 1)
    return out


def box_only(h: Hierarchy) -> set[int]:
    """Nodes whose subtree only box datasets label (GTSDB's 43 sign types)."""
    dense: set[int] = set()
    for m in h.mappings.values():
        if not m.is_boxes and not m.evaluation_only:
            for node in m.to_node.values():
                if node is not None:
                    dense.update(h.ancestors(node))
    return {i for i in range(1, len(h.nodes)) if i not in dense}


def name_scores(c: ClassDef, h: Hierarchy, nodes: list[list[tuple[str, float]]], skip: set[int],
                ) -> tuple[np.ndarray, list[str]]:
    """Per node the best weighted similarity of the class's names to the node's texts (`node_texts`)."""
    out = np.zeros(len(h.nodes))
    why = [""] * len(h.nodes)
    own = texts(c)
    for i in range(1, len(h.nodes)):
        if i in skip:
            continue
        for t, w in nodes[i]:
            s = max(similarity(x, t) for x in own)
            if s * w > out[i]:
                out[i], why[i] = s * w, f"name ~ '{t}'"
    return out, why


def includes_nodes(c: ClassDef, h: Hierarchy, texts: list[list[tuple[str, float]]], skip: set[int]) -> list[int]:
    """Nodes the class's `includes` terms name (exactly)."""
    hit = []
    for term in c.includes:
        for i in range(1, len(h.nodes)):
            if i not in skip and any(similarity(term, t) >= EXACT for t, _ in texts[i]):
                hit.append(i)
                break
    return hit


def lowest_common(h: Hierarchy, nodes: list[int]) -> int:
    common = set(h.ancestors(nodes[0]))
    for n in nodes[1:]:
        common &= set(h.ancestors(n))
    return max(common, key=lambda i: h.nodes[i].level)


def outside_boxes(h: Hierarchy) -> set[int]:
    """For a box dataset: every node outside the subtrees box datasets of the tree label."""
    region: set[int] = set()
    for m in h.mappings.values():
        if m.is_boxes:
            for node in m.to_node.values():
                if node is not None:
                    region.update(h.descendants(h.nodes[node].parent))
    return set(range(1, len(h.nodes))) - region if region else set()


def ignored_names(h: Hierarchy) -> list[str]:
    out: list[str] = []
    for m in h.mappings.values():
        for c in m.taxonomy.classes:
            if m.to_node.get(c.id, 0) is None and c.id not in m.taxonomy.ignore_ids and not is_void(c):
                out += [c.display, c.name]
    return out
