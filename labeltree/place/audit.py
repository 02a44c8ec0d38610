"""`labeltree audit`: a tree's mapping of one dataset checked against data.

Every class of the dataset is placed as `labeltree place` would place it against the same tree,
from the other datasets' evidence (so a wrong mapping cannot vouch for itself); a class whose
best placement scores clearly higher than the node the tree maps it to is flagged as a wrong node,
mapped too fine (the better node is an ancestor) or too coarse (a descendant). Classes of other
datasets sharing a node whose model fingerprints differ are listed as annotation-policy differences.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labeltree.core.class_names import affinity, box_only, ignored_names, node_texts, outside_boxes
from labeltree.core.tree_file import load_hierarchy
from labeltree.errors import LabeltreeError
from labeltree.place.base import MIN_PIXELS, node_evidence
from labeltree.place.evidence import ClassEvidence, scan
from labeltree.place.model import open_node_model
from labeltree.place.placement import js_distance
from labeltree.place.propose import _Ctx, base_roots, class_candidates

THRESHOLD = 0.12  # score gap above which a mapping is flagged
POLICY_JS = 0.5  # fingerprint distance above which two datasets' classes on one node disagree


@dataclass
class Finding:
    cls: str
    mapped: str
    kind: str  # wrong-node | too-fine | too-coarse | ok
    better: str
    gap: float
    pixels: int
    frames: list[str] = field(default_factory=list)  # where it shows most (see `disagreement_frames`)
    frame_pixels: list[int] = field(default_factory=list)  # per frame: the class's pixels predicted off its node

    @property
    def flagged(self) -> bool:
        return self.gap > THRESHOLD

    def to_json(self) -> dict[str, Any]:
        return {"class": self.cls, "mapped": self.mapped, "kind": self.kind, "better": self.better,
                "gap": round(self.gap, 3), "pixels": self.pixels, "flagged": self.flagged, "frames": self.frames,
                "frame_pixels": self.frame_pixels}


@dataclass
class AuditResult:
    tree: str
    dataset: str
    findings: list[Finding]  # ranked: most suspicious first
    policy: list[dict[str, Any]]
    info: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"tree": self.tree, "dataset": self.dataset, "threshold": THRESHOLD, "info": self.info,
                "flagged": sum(f.flagged for f in self.findings), "findings": [f.to_json() for f in self.findings],
                "policy": self.policy}


def audit(dataset: str, root: str | Path, tree: str, checkpoint: str | Path | None = None,
          base_root: str | Path | None = None, frames: int = 50, base_frames: int = 50) -> AuditResult:
    t0 = time.perf_counter()
    h = load_hierarchy(tree)
    m = h.mapping(dataset)
    tax = m.taxonomy
    model = open_node_model(checkpoint) if checkpoint is not None else None
    if model is not None:
        model.check_tree(h)
    n = len(h.nodes)
    roots = {k: r for k, r in base_roots(h, Path(base_root) if base_root else None, model).items() if k != m.dataset}
    ev = scan(tax.name, tax, root, model, n, frames)
    if int(ev.pixels.sum()) == 0:
        raise LabeltreeError(f"no labelled pixels in {ev.frames} frames of {tax.name}: is this the dataset's root?",
                             root)
    scans = [scan(k, h.mapping(k).taxonomy, r, model, n, base_frames) for k, r in roots.items()]
    base = node_evidence(h, scans) if scans else None
    dense = tax.annotation != "boxes"
    others = [k for k in h.mappings if k != m.dataset]
    aff = {k: v for k, v in affinity(h, tax.classes).items() if k in others}
    texts = node_texts(_without(h, m.dataset), dense, aff)
    ctx = _Ctx(h, base, texts, box_only(h) if dense else outside_boxes(h), ignored_names(h), model is not None)
    findings = []
    for slot, c in enumerate(tax.classes):
        node = m.to_node.get(c.id)
        if node is None or int(ev.pixels[slot]) < MIN_PIXELS:
            continue
        # against the other existing nodes: 'a new node' is what a class nothing fits gets, not a verdict on a mapping
        cands = [x for x in class_candidates(c, slot, ev, ctx) if x.kind in ("node", "inner")]
        here = next((x.score for x in cands if x.kind in ("node", "inner") and x.node == h.nodes[node].name), 0.0)
        best = cands[0]
        kind = "ok"
        if best.node != h.nodes[node].name:
            b = h.index[str(best.node)]
            kind = "too-fine" if b in h.ancestors(node) else "too-coarse" if node in h.ancestors(b) else "wrong-node"
        keys, off = disagreement_frames(ev, slot, h.descendants(node))
        findings.append(Finding(c.display, h.nodes[node].name, kind, best.label(), max(0.0, best.score - here),
                                int(ev.pixels[slot]), keys, off))
    findings.sort(key=lambda f: (-round(f.gap, 2), -f.pixels))
    policy = _policy(h, m.dataset, ev, scans) if model is not None else []
    info = {"frames": ev.frames, "base": {k: str(r) for k, r in roots.items()},
            "model": str(checkpoint) if checkpoint else None, "seconds": round(time.perf_counter() - t0, 2)}
    return AuditResult(h.name, tax.name, findings, policy, info)


def disagreement_frames(ev: ClassEvidence, slot: int, subtree: list[int], n: int = 3) -> tuple[list[str], list[int]]:
    """The frames where a mapping shows most: most of the class's pixels predicted outside the mapped node's
    subtree (stride grid), most first, frames with none left out; without a model, where the class is largest."""
    if ev.frame_pred is None:
        return ev.examples.get(slot, [])[:n], []
    rows = ev.frame_pred[:, slot, :]
    off = rows.sum(1) - rows[:, subtree].sum(1)
    order = [int(f) for f in np.argsort(-off, kind="stable")[:n] if off[f] > 0]
    return [ev.frame_keys[f] for f in order], [int(off[f]) for f in order]


def _without(h: Any, key: str) -> Any:
    """The tree's name evidence without the audited dataset's own class names."""
    import copy

    g = copy.copy(h)
    g.mappings = {k: v for k, v in h.mappings.items() if k != key}
    return g


def _policy(h: Any, key: str, ev: Any, scans: list[Any]) -> list[dict[str, Any]]:
    """Classes of the audited dataset and another one on the same node whose fingerprints differ."""
    m = h.mapping(key)
    out = []
    for other in scans:
        om = h.mapping(other.dataset)
        for i, c in enumerate(m.taxonomy.classes):
            node = m.to_node.get(c.id)
            if node is None or ev.pred is None or other.pred is None or ev.pixels[i] < MIN_PIXELS:
                continue
            for j, d in enumerate(other.taxonomy.classes):
                if om.to_node.get(d.id) == node and other.pixels[j] >= MIN_PIXELS:
                    dist = js_distance(ev.pred[i].astype(float), other.pred[j].astype(float))
                    if dist > POLICY_JS:
                        out.append({"node": h.nodes[node].name, "class": c.display, "other": f"{other.dataset}:"
                                    f"{d.display}", "distance": round(dist, 3), "pixels": int(ev.pixels[i])})
    return sorted(out, key=lambda x: -x["distance"] * np.log1p(x["pixels"]))


def render_audit(r: AuditResult, markdown: bool = False) -> str:
    flagged = [f for f in r.findings if f.flagged]
    head = (f"audit {r.dataset} in {r.tree}: {len(flagged)} of {len(r.findings)} mappings flagged "
            f"(score gap > {THRESHOLD}), {r.info.get('frames')} frames, {r.info.get('seconds')} s")
    cols = ["class", "mapped", "kind", "better", "gap", "pixels", "frames"]
    rows = [[f.cls, f.mapped, f.kind if f.flagged else "ok", f.better, f"{f.gap:.2f}", str(f.pixels),
             _frames(f)] for f in r.findings]
    if markdown:
        out = [f"# {head}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        out += ["| " + " | ".join(x.replace("|", "/") for x in row) + " |" for row in rows]
        if r.policy:
            out += ["", "## Same node, different pixels", ""]
            out += [f"- {p['node']}: {p['class']} vs {p['other']} (distance {p['distance']})" for p in r.policy]
        return "\n".join(out) + "\n"
    width = [max(len(c), *(len(row[k]) for row in rows)) if rows else len(c) for k, c in enumerate(cols)]
    out = [head, "", "  ".join(c.ljust(w) for c, w in zip(cols, width, strict=True))]
    out += ["  ".join(x.ljust(w) for x, w in zip(row, width, strict=True)) for row in rows]
    if r.policy:
        out += ["", "same node, different pixels (annotation policies):"]
        out += [f"  {p['node']}: {p['class']} vs {p['other']} (distance {p['distance']})" for p in r.policy[:20]]
    return "\n".join(out)


def _frames(f: Finding) -> str:
    """The first two frames, with the pixels predicted off the node where a model counted them."""
    if not f.frame_pixels:
        return ", ".join(f.frames[:2])
    return ", ".join(f"{k} ({n} px off)" for k, n in zip(f.frames[:2], f.frame_pixels, strict=False))


def render_audit_json(r: AuditResult) -> str:
    return json.dumps(r.to_json(), indent=1)
