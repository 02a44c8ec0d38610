"""`labeltree place`: the candidates of every class of a new dataset, and the dataset-wide pass
that settles them (one class per existing node, kinds of one leaf as its new children)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labeltree.core import class_names as names
from labeltree.core.class_names import (
    affinity,
    box_only,
    ignored_names,
    includes_nodes,
    lowest_common,
    name_scores,
    node_texts,
    outside_boxes,
)
from labeltree.core.hierarchy import Hierarchy
from labeltree.core.taxonomy import ClassDef, Taxonomy, load_taxonomy
from labeltree.core.tree_file import load_hierarchy
from labeltree.errors import LabeltreeError
from labeltree.place.base import MIN_PIXELS, NodeEvidence, level_histogram, node_evidence, top_level
from labeltree.place.evidence import ClassEvidence, scan
from labeltree.place.kinds import Hint, cross_kinds, kind_hints
from labeltree.place.model import NodeModel, open_node_model
from labeltree.place.placement import WEIGHTS, Candidate, Placement, model_scores, stats_scores

KEEP = 6  # candidates kept per class
NO_NAME = 0.6  # what "no node is named like it" says for a new node


@dataclass
class PlaceResult:
    h: Hierarchy
    tree_ref: str
    dataset: str  # the dataset as given (bundled name or taxonomy file)
    taxonomy: Taxonomy
    placements: list[Placement]
    info: dict[str, Any] = field(default_factory=dict)
    evidence: ClassEvidence | None = None  # the new dataset's (for example crops)
    base_scans: list[ClassEvidence] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"tree": self.h.name, "dataset": self.taxonomy.name, "info": self.info,
                "classes": [p.to_json() for p in self.placements]}


@dataclass
class _Ctx:
    h: Hierarchy
    base: NodeEvidence | None
    texts: list[list[tuple[str, float]]]
    skip: set[int]  # nodes never proposed (kind rule)
    ignored_names: list[str]  # base classes that base datasets ignore
    model: bool
    neighbours: np.ndarray | None = None  # [K, N] per slot: its neighbours as level-1 nodes (second pass)
    hints: dict[int, Hint] = field(default_factory=dict)  # per slot: what its taxonomy path says (kinds.py)
    parents: dict[int, np.ndarray] = field(default_factory=dict)  # per slot: where its category's classes sit
    cross: set[tuple[int, int]] = field(default_factory=set)  # (slot, node): kinds across siblings (kinds.py)
    memo: dict[int, tuple[np.ndarray, list[str]]] = field(default_factory=dict)  # name scores per slot

    def names(self, c: ClassDef, slot: int) -> tuple[np.ndarray, list[str]]:
        if slot not in self.memo:
            self.memo[slot] = name_scores(c, self.h, self.texts, self.skip)
        return self.memo[slot]


def _combine(parts: dict[str, float]) -> float:
    w = sum(WEIGHTS[k] for k in parts)
    return sum(WEIGHTS[k] * v for k, v in parts.items()) / w if w else 0.0


def class_candidates(c: ClassDef, slot: int, ev: ClassEvidence, ctx: _Ctx) -> list[Candidate]:
    """Every placement of one class, scored from the evidence there is for it."""
    h = ctx.h
    if c.id in ev.taxonomy.ignore_ids or names.is_void(c):
        return [Candidate("ignore", None, 1.0, {"names": 1.0}, ["the taxonomy ignores it" if c.id in
                                                                 ev.taxonomy.ignore_ids else "a void name"])]
    nm, nwhy = ctx.names(c, slot)
    exact = float(nm.max()) >= 0.9 * names.EXACT
    has_data = int(ev.pixels[slot]) >= MIN_PIXELS
    parts: dict[str, np.ndarray] = {"names": nm}
    why: dict[str, list[str]] = {i: [nwhy[i]] if nwhy[i] else [] for i in range(len(h.nodes))}
    resid, deepest = 1.0, 0
    if has_data and ctx.model and ctx.base is not None and ev.pred is not None:
        ms, resid, deepest = model_scores(ev.pred[slot].astype(float), ctx.base, ctx.skip)
        parts["model"] = ms
    if has_data and ctx.base is not None and ctx.base.known.any():
        nb = ctx.neighbours[slot] if ctx.neighbours is not None else None
        parts["stats"] = stats_scores(ev, slot, ctx.base, nb)
    inc = [] if exact else includes_nodes(c, h, ctx.texts, ctx.skip)
    own = int(np.argmax(nm)) if nm.max() >= 0.45 else None
    covers = lowest_common(h, inc + ([own] if own else [])) if inc else None
    if covers is not None and covers == (inc[0] if len(inc) == 1 and own is None else -1):
        covers = h.nodes[covers].parent  # it includes that node and is more than it
    out: list[Candidate] = []
    for i in range(1, len(h.nodes)):
        if i in ctx.skip:
            continue
        ev_i = {k: float(v[i]) for k, v in parts.items()}
        score = _combine(ev_i)
        w = list(why[i])
        if covers is not None and covers == i:
            score = min(1.0, score + 0.2)
            w.append(f"includes {', '.join(c.includes)}")
        if "model" in parts and i == deepest:
            w.append("model: deepest node covering its pixels")
        out.append(Candidate("inner" if h.nodes[i].children else "node", h.nodes[i].name, score, ev_i, w))
    out.sort(key=lambda x: -x.score)
    best = out[0].score if out else 0.0
    out = out[:KEEP]
    out.append(_new_node(c, slot, nm, parts, (resid, deepest, covers, best), ctx))
    if slot in ctx.hints:
        out.append(_hinted(ctx.hints[slot], h, parts))
    if not exact:
        out += _children(c, slot, h, parts, ctx)
    ign, what = names.best_text_score(c, ctx.ignored_names)
    if ign > 0:
        out.append(Candidate("ignore", None, 0.9 * ign, {"names": ign}, [f"base datasets ignore '{what}'"]))
    out.sort(key=lambda x: -x.score)
    return _distinct(out)


def _distinct(cands: list[Candidate]) -> list[Candidate]:
    """One candidate per placement (the best scored), with the reasons of all that proposed it: two sources
    of one placement are no alternative to it."""
    out: dict[tuple[str, str | None], Candidate] = {}
    for x in cands:
        have = out.get((x.kind, x.node))
        if have is None:
            out[(x.kind, x.node)] = x
        else:
            have.shares = have.shares or x.shares
            have.why += [w for w in x.why if w not in have.why]
    return list(out.values())


def _new_node(c: ClassDef, slot: int, nm: np.ndarray, parts: dict[str, np.ndarray],
              model: tuple[float, int, int | None, float], ctx: _Ctx) -> Candidate:
    """A new node, under the node the model puts the class in, the lowest node its `includes` cover, or
    (names only) the parent its category's base classes share and its closest-named node has."""
    h = ctx.h
    resid, deepest, covers, best = model
    new_parts = {"names": NO_NAME * (1.0 - float(nm.max()))}  # no name matching is weak evidence
    if "model" in parts:
        new_parts["model"] = float(resid)
    parent = deepest if "model" in parts else 0
    new_why = [f"unexplained by the tree's nodes: {resid:.0%}" if "model" in parts else "no node name matches"]
    new_score = _combine(new_parts)
    if covers == 0 and ("model" not in parts or float(parts["model"].max()) < 0.6):  # unless the model finds a node
        new_score = max(new_score, min(1.0, best + 0.05))
        new_why.append(f"includes {', '.join(c.includes)}: nodes with no common parent but the root")
    elif covers is not None:
        parent = covers
    elif "model" not in parts and slot in ctx.parents:
        votes = 0.6 * ctx.parents[slot]
        if nm.max() >= 0.2:  # a word of its name names a node: a sibling of it ('Parking Aisle' beside Parking)
            votes[h.nodes[int(np.argmax(nm))].parent] += 0.25
        parent = int(np.argmax(votes))
        new_why.append(f"beside the classes of its category and its closest name, under '{h.nodes[parent].name}'")
    return Candidate("new", h.nodes[parent].name, new_score, new_parts, new_why)


def _hinted(x: Hint, h: Hierarchy, parts: dict[str, np.ndarray]) -> Candidate:
    """What the class's taxonomy path says (kinds.py), scored with the other evidence on that node."""
    ev = {key: float(v[x.node]) for key, v in parts.items() if key != "names"}
    ev["names"] = x.strength
    kind = "inner" if x.kind == "node" and h.nodes[x.node].children else x.kind
    return Candidate(kind, h.nodes[x.node].name, _combine(ev), ev, [x.why], shares=True)


def _children(c: ClassDef, slot: int, h: Hierarchy, parts: dict[str, np.ndarray], ctx: _Ctx) -> list[Candidate]:
    """A kind of a node by its name ('Traffic Light - Pedestrians'): a new child of a leaf, or the inner
    node itself (it has a classifier over its kinds already); the more of the node's words, the better.
    A kind of no kind ('- Ambiguous') or one across siblings ('- Direction (Back)' beside '- Direction
    (Front)') is the node itself."""
    out = []
    for i in range(1, len(h.nodes)):
        k = names.kind_of(c.display, h.nodes[i].name)
        if i in ctx.skip or not k:
            continue
        ev_i = {key: float(v[i]) for key, v in parts.items() if key != "names"}
        ev_i["names"] = min(1.0, 0.8 + 0.05 * k)
        leaf = not h.nodes[i].children
        across = (slot, i) in ctx.cross
        kind = "inner" if not leaf else "node" if names.is_ambiguous(c) or across else "children"
        why = [f"its name makes it a kind of '{h.nodes[i].name}'"]
        if across:
            why.append("the same kind words qualify a sibling in another class: an attribute, no finer node")
        out.append(Candidate(kind, h.nodes[i].name, _combine(ev_i), ev_i, why, shares=True))
    return out


def settle(placements: list[Placement], h: Hierarchy, dataset: str) -> None:
    """Dataset-wide: two classes never share an existing node (assigned greedily by score: the class that
    fits it best keeps it, the other takes its next candidate; kinds of one node may share it); a leaf
    with one proposed kind keeps it as the leaf itself, a leaf with several gets them as new children,
    and then its same-named class too."""
    taken: set[str] = set()
    chosen: dict[int, int] = {}
    pairs = sorted(((c.score, i, k) for i, p in enumerate(placements) for k, c in enumerate(p.candidates)),
                   key=lambda t: (-t[0], t[1], t[2]))
    for _score, i, k in pairs:  # greedy by score: a node goes to the class that fits it best
        cand = placements[i].candidates[k]
        if i in chosen or (cand.kind in ("node", "inner") and cand.node in taken and not cand.shares):
            continue
        chosen[i] = k
        if cand.kind in ("node", "inner") and not cand.shares:
            taken.add(str(cand.node))
    for i, k in chosen.items():
        p = placements[i]
        if k:
            p.candidates.insert(0, p.candidates.pop(k))
            p.candidates[0].why.append(f"'{p.candidates[1].label()}' went to a class that fits it better")
    kids: dict[str, list[Placement]] = {}
    for p in placements:
        if p.chosen.kind == "children":
            kids.setdefault(str(p.chosen.node), []).append(p)
    for leaf, group in kids.items():
        own = [p for p in placements if p.chosen.kind == "node" and p.chosen.node == leaf and not p.chosen.shares]
        if len(group) == 1 and not own:
            cand = group[0].chosen
            group[0].candidates[0] = Candidate("node", leaf, cand.score, cand.evidence,
                                               cand.why + ["the only kind of it in this dataset"])
            continue
        for p in placements:  # the leaf's own class is one of the kinds now, unless it says 'ambiguous'
            c = p.chosen
            if c.kind == "node" and c.node == leaf and not c.shares and not names.is_ambiguous(p.cls):
                p.candidates[0] = Candidate("children", leaf, c.score, c.evidence, c.why + ["the leaf gets kinds"])
    have = {n.name for n in h.nodes}
    for p in placements:
        if p.chosen.kind in ("new", "children"):
            name = p.cls.display.title() if p.cls.display.islower() else p.cls.display
            if name in have:
                name = f"{name} ({dataset})"
            while name in have:
                name += " (new)"
            have.add(name)
            p.new_name = name


# -- the whole run -------------------------------------------------------------------------------

def base_roots(h: Hierarchy, base_root: Path | None, model: NodeModel | None) -> dict[str, Path]:
    """Where each base dataset's frames are: BASE_ROOT/<key or taxonomy name>, else the root the
    model was trained with (its checkpoint's config)."""
    out: dict[str, Path] = {}
    cfg = model.config if model is not None else None
    trained = {}
    if cfg:
        data_root = Path(cfg.get("data_root") or ".")
        trained = {d["name"]: data_root / d["root"] for d in cfg.get("datasets") or [] if d.get("root")}
    for key in h.datasets:
        tax = h.mapping(key).taxonomy
        tries = [base_root / key, base_root / tax.name] if base_root is not None else []
        tries += [p for k, p in trained.items() if k in (key, tax.name)]
        found = next((p for p in tries if p.is_dir()), None)
        if found is not None:
            out[key] = found
    if base_root is not None and not any(base_root / k in out.values() or base_root / h.mapping(k).taxonomy.name
                                         in out.values() for k in h.datasets):
        # a typo here silently dropped the strongest evidence but the names
        raise LabeltreeError(f"--base-root: no folder of the tree's datasets here (expected {', '.join(h.datasets)} "
                             "as <dataset>/, e.g. a `labeltree synth` output)", base_root)
    return out


def place(dataset: str, root: str | Path, tree: str = "cityscapes+vistas+gtsdb", checkpoint: str | Path | None = None,
          base_root: str | Path | None = None, frames: int = 50, base_frames: int = 50) -> PlaceResult:
    """Propose a placement for every class of `dataset` (frames under `root`) in `tree`."""
    t0 = time.perf_counter()
    h = load_hierarchy(tree)
    tax = load_taxonomy(dataset)
    if any(m.taxonomy.name == tax.name for m in h.mappings.values()):
        raise LabeltreeError(f"tree '{h.name}' already maps {tax.name}; check its mapping with `labeltree audit`, or "
                             "place it against a tree without it")
    model = open_node_model(checkpoint) if checkpoint is not None else None
    if model is not None:
        model.check_tree(h)
    n = len(h.nodes)
    roots = base_roots(h, Path(base_root) if base_root else None, model)
    if model is not None and not roots:
        raise LabeltreeError("--checkpoint: no frames of the tree's own datasets found (give --base-root, the folder "
                             f"holding {', '.join(h.datasets)})")
    ev = scan(tax.name, tax, root, model, n, frames)
    if int(ev.pixels.sum()) == 0:
        raise LabeltreeError(f"no labelled pixels in {ev.frames} frames of {tax.name}: is this the dataset's root "
                             "and its taxonomy?", root)
    scans = [scan(k, h.mapping(k).taxonomy, r, model, n, base_frames) for k, r in roots.items()]
    base = node_evidence(h, scans) if scans else None
    dense = tax.annotation != "boxes"
    skip = box_only(h) if dense else outside_boxes(h)
    ctx = _Ctx(h, base, node_texts(h, dense, affinity(h, tax.classes)), skip, ignored_names(h), model is not None)
    exact = {slot for slot, c in enumerate(tax.classes) if float(ctx.names(c, slot)[0].max()) >= 0.9 * names.EXACT}
    ctx.hints, ctx.parents = kind_hints(h, tax.classes, skip, exact)
    ctx.cross = cross_kinds(h, tax.classes)
    first = [class_candidates(c, slot, ev, ctx)[0] for slot, c in enumerate(tax.classes)]
    if base is not None:  # second pass: neighbours, through the other classes' first placements
        top = top_level(h)
        slot_top = [None if f.kind == "ignore" or f.node is None else top[h.index[f.node]] for f in first]
        ctx.neighbours = np.array([level_histogram(ev.touch[k], slot_top, len(h.nodes)) for k in range(len(first))])
    placements = [Placement(c, int(ev.pixels[slot]), int(ev.images[slot]), class_candidates(c, slot, ev, ctx),
                            ev.examples.get(slot, [])) for slot, c in enumerate(tax.classes)]
    settle(placements, h, tax.name)
    info = {"frames": ev.frames, "base": {k: str(r) for k, r in roots.items()},
            "model": str(checkpoint) if checkpoint else None, "seconds": round(time.perf_counter() - t0, 2),
            "evidence": [e for e, on in (("model", model is not None), ("stats", base is not None),
                                         ("names", True)) if on]}
    return PlaceResult(h, str(tree), dataset, tax, placements, info, ev, scans)


def expected_of(full: Hierarchy, base: Hierarchy, dataset: str) -> dict[str, tuple[str, str | None]]:
    """How tree `full` maps a dataset, as placements (kind, node) against `base` (the tree without it):
    used to score `place` against a bundled add-on (benchmarks, tests)."""
    m = full.mapping(dataset)
    out: dict[str, tuple[str, str | None]] = {}
    for c in m.taxonomy.classes:
        node = m.to_node.get(c.id)
        if node is None:
            out[c.display] = ("ignore", None)
            continue
        name = full.nodes[node].name
        if name in base.index:
            out[c.display] = ("inner" if base.nodes[base.index[name]].children else "node", name)
            continue
        parent = full.nodes[full.nodes[node].parent].name
        b = base.index.get(parent)
        out[c.display] = ("children" if b is not None and b > 0 and not base.nodes[b].children else "new", parent)
    return out
