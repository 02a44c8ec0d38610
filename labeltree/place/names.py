"""Name evidence: string similarity of a class's name, synonyms and `includes` with the tree's node
names and the names of the base datasets' classes mapped to each node. No language model: names
alone cannot place classes, so this is one signal among several (see placement.py)."""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher

from labeltree.core.taxonomy import ClassDef, normalise_name

# Words that say nothing about what a class is (IDD's 'drivable fallback' is drivable ground).
VAGUE = frozenset({"other", "ambiguous", "general", "fallback", "misc", "the", "of", "and", "or", "only", "kind",
                   "group"})
IGNORE_WORDS = frozenset({"unlabeled", "unlabelled", "void", "background", "ignore", "none", "rectification",
                          "border", "roi"})
EXACT = 1.0  # the same normalised name
SOFT = 0.7  # the same words (up to spelling, plurals and vague words): at most this much


def texts(c: ClassDef) -> list[str]:
    """A class's normalised names (display, name, synonyms), each also without spaces."""
    out = [normalise_name(n) for n in (c.display, c.name, *c.synonyms)]
    return list(dict.fromkeys(out + [t.replace(" ", "") for t in out]))


def tokens(text: str) -> list[str]:
    out = []
    for w in normalise_name(text).split():
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.append(w)
    return out


def _word_match(a: str, b: str) -> bool:
    return a == b or (min(len(a), len(b)) >= 4 and SequenceMatcher(None, a, b).ratio() >= 0.85)


def soft_overlap(a: list[str], b: list[str]) -> float:
    """Share of words (vague words left out) that match a word of the other name, over the union."""
    wa, wb = [w for w in a if w not in VAGUE], [w for w in b if w not in VAGUE]
    if not wa or not wb:
        return 0.0
    hit = sum(any(_word_match(x, y) for y in wb) for x in wa)
    return hit / (len(wa) + len(wb) - hit)


def similarity(a: str, b: str) -> float:
    """1 for the same normalised name, <= SOFT for the same words; 'non-X' never matches 'X'."""
    na, nb = normalise_name(a), normalise_name(b)
    if not na or not nb:
        return 0.0
    if na == nb or na.replace(" ", "") == nb.replace(" ", ""):
        return EXACT
    ta, tb = tokens(na), tokens(nb)
    s = SOFT * soft_overlap(ta, tb)
    if ("non" in ta) != ("non" in tb):
        s *= 0.2
    return s


def contains(child: str, parent: str) -> bool:
    """The child's words hold all the parent's and more ('Traffic Light - Pedestrians' in 'Traffic Light'):
    a kind of the parent, as datasets name the classes they split."""
    tc, tp = set(tokens(child)), set(tokens(parent))
    return bool(tp) and tp < tc and not (tc - tp) <= VAGUE | {"non"}


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
