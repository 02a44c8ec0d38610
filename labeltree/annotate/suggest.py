"""Pre-fill proposals with a trained network's Level-3 guess (the classifier over the GTSDB classes).

Why: most Cityscapes signs are a handful of common classes; with a guess shown as a one-key accept
(and the most confident guesses first) labelling becomes mostly confirming. Suggestions live in
their own table: they never change a decision, and re-running replaces only suggestions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from labeltree.annotate import db
from labeltree.annotate.propose import read_components
from labeltree.datasets.decode import read_rgb
from labeltree.errors import LabeltreeError

# image HxWx3 uint8 -> probabilities [n_classes, h, w] over the GTSDB classes (any h, w)
ScoreFn = Callable[[np.ndarray], np.ndarray]


def sign_classifier(h) -> tuple[int, list[int]]:
    """The classifier whose children are exactly the GTSDB classes' nodes, and its child -> ClassID."""
    m = h.mapping("gtsdb")
    node_to_class = {n: cid for cid, n in m.to_node.items() if n is not None}
    for j, c in enumerate(h.classifiers):
        if c.children and all(ch in node_to_class for ch in c.children):
            return j, [node_to_class[ch] for ch in c.children]
    raise LabeltreeError(f"tree '{h.name}' has no classifier over the GTSDB classes; suggest needs one")


def component_means(probs: np.ndarray, comps: np.ndarray, boxes: list[tuple[int, int, int, int]],
                    ) -> np.ndarray:
    """Mean probability of each class over each component's pixels: [n_components, n_classes].

    `comps` is the component map at full label resolution and `probs` may be smaller (network
    scale): the map is resampled by nearest neighbour; a component that vanishes at that scale is
    read at the centre of its box.
    """
    c, ph, pw = probs.shape
    H, W = comps.shape
    if (ph, pw) != (H, W):
        ys = (np.arange(ph) * H // ph).clip(0, H - 1)
        xs = (np.arange(pw) * W // pw).clip(0, W - 1)
        comps = comps[ys[:, None], xs[None, :]]
    n = len(boxes)
    flat = comps.ravel().astype(np.int64)
    counts = np.bincount(flat, minlength=n + 1)[: n + 1]
    sums = np.stack([np.bincount(flat, weights=probs[k].ravel(), minlength=n + 1)[: n + 1] for k in range(c)], 1)
    out = np.zeros((n, c))
    for i, (x0, y0, x1, y1) in enumerate(boxes, start=1):
        if counts[i]:
            out[i - 1] = sums[i] / counts[i]
        else:
            cy = min(ph - 1, ((y0 + y1) // 2) * ph // H)
            cx = min(pw - 1, ((x0 + x1) // 2) * pw // W)
            out[i - 1] = probs[:, cy, cx]
    return out


@dataclass
class SuggestReport:
    images: int = 0
    proposals: int = 0
    skipped_images: int = 0  # no photo to run the network on


def suggest_with(workdir: str | Path, score: ScoreFn, class_ids: list[int], model: str = "",
                 progress: bool = True) -> SuggestReport:
    """Store, for every proposal, the class with the highest mean probability and that probability."""
    workdir = Path(workdir).resolve()
    con = db.connect(workdir)
    report = SuggestReport()
    try:
        root = db.registered_root(con, workdir).resolve()
        images = con.execute("SELECT id, image, components FROM images WHERE id IN (SELECT image_id FROM proposals) "
                             "ORDER BY id").fetchall()
        for img in tqdm(images, desc="suggest", unit="img", disable=not progress, leave=False):
            if not img["image"] or not (root / img["image"]).exists():
                report.skipped_images += 1
                continue
            rgb = read_rgb(root / img["image"])
            props = con.execute("SELECT id, component, x0, y0, x1, y1 FROM proposals WHERE image_id=? "
                                "ORDER BY component", (img["id"],)).fetchall()
            comps = read_components(workdir / img["components"])
            probs = np.asarray(score(rgb), dtype=np.float64)
            if probs.ndim != 3 or probs.shape[0] != len(class_ids):
                raise LabeltreeError(f"the model gave scores of shape {probs.shape}, expected "
                                     f"[{len(class_ids)}, H, W]", root / img["image"])
            # component numbers are 1..n in order; index the means by component number
            n = max(p["component"] for p in props)
            boxes = [(0, 0, 0, 0)] * n
            for p in props:
                boxes[p["component"] - 1] = (p["x0"], p["y0"], p["x1"], p["y1"])
            means = component_means(probs, comps, boxes)
            now = time.time()
            rows = []
            for p in props:
                m = means[p["component"] - 1]
                k = int(np.argmax(m))
                rows.append((p["id"], str(class_ids[k]), float(m[k]), model, now))
            with db.transaction(con):
                con.executemany("INSERT INTO suggestions(proposal_id, class, confidence, model, at) VALUES(?,?,?,?,?) "
                                "ON CONFLICT(proposal_id) DO UPDATE SET class=excluded.class, "
                                "confidence=excluded.confidence, model=excluded.model, at=excluded.at", rows)
            report.images += 1
            report.proposals += len(rows)
    finally:
        con.close()
    return report


def suggest(workdir: str | Path, checkpoint: str | Path, device: str | None = None, sliding: bool = False,
            progress: bool = True) -> SuggestReport:
    """Run a `labeltree train` checkpoint on each frame with proposals and store its Level-3 guesses."""
    import torch

    from labeltree.datasets.resize import resize_photo
    from labeltree.train.predict import dataset_resize, load_predictor

    pred = load_predictor(checkpoint, device)
    if pred.flat is not None:
        raise LabeltreeError("suggest needs a hierarchical checkpoint (this one is the flat baseline)", checkpoint)
    j, class_ids = sign_classifier(pred.h)
    resize = dataset_resize(pred.cfg, "cityscapes")

    def score(rgb: np.ndarray) -> np.ndarray:
        if resize and rgb.shape[:2] != tuple(resize):
            rgb = resize_photo(rgb, resize)
        x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None]
        return pred.scores(x, sliding)[j][0].cpu().numpy()

    return suggest_with(workdir, score, class_ids, model=str(Path(checkpoint).resolve()), progress=progress)
