"""Temperature scaling per classifier (issue 28): one temperature T_j per head, logits / T_j before the softmax,
fitted on the val splits by the NLL over exactly the pixels that supervise that classifier in training (the
tree's `targets` tables, as `train.loss`), so that path confidences and back-off thresholds mean probabilities.

`calibrate(checkpoint, config)` -> the temperatures with NLL and 15-bin ECE per classifier before / after;
`save_calibrated` writes them into a copy of the checkpoint (`temperatures`), which predict / evaluate / export
apply (`train.predict.Predictor._forward`). Argmax decisions are unchanged by a positive temperature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labeltree.core.hierarchy import NO_TARGET, lookup
from labeltree.errors import LabeltreeError
from labeltree.train.data import Source, normalise
from labeltree.train.predict import Predictor

ECE_BINS = 15
MAX_PIXELS = 200_000  # per classifier: a fixed-seed sample of the supervising pixels (memory and time bound)
#: A classifier with fewer supervising val pixels keeps T = 1 (not fitted). A temperature from a handful of
#: pixels is that handful's: on a random net Rider's 9 val pixels, all wrong, drove T to the search limit
#: (e^4, a uniform softmax), and its held-out 15-bin ECE rose from 0.25 to 0.56 on 63 pixels.
MIN_FIT_PIXELS = 100
#: Below this many pixels a 15-bin ECE is not a measurement: even a perfectly calibrated classifier's ECE from
#: n independent pixels is up to sqrt(2/pi) * sqrt(ECE_BINS / (4 n)) = 1.55 / sqrt(n) from sampling alone (per
#: bin E|mean - p| = sqrt(2 p (1 - p) / (pi n_b)), summed by Cauchy-Schwarz), 0.05 at 1000 pixels, 0.2 at 63;
#: neighbouring pixels are not independent, so the true spread is wider still. Reports flag such rows.
ECE_MIN_PIXELS = 1000


@dataclass
class HeadStats:
    """One classifier's val pixels: its logits [N, C] and targets [N] (child positions)."""

    logits: list[np.ndarray] = field(default_factory=list)
    targets: list[np.ndarray] = field(default_factory=list)

    def arrays(self, limit: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.concatenate(self.logits) if self.logits else np.zeros((0, 1), np.float32)
        y = np.concatenate(self.targets) if self.targets else np.zeros(0, np.int64)
        if len(y) > limit:
            keep = np.sort(np.random.default_rng(seed).choice(len(y), limit, replace=False))
            x, y = x[keep], y[keep]
        return torch.from_numpy(x), torch.from_numpy(y)


def collect(pred: Predictor, sources: list[Source]) -> list[HeadStats]:
    """Raw logits (no temperature) and targets of every supervising pixel, per classifier, over `sources`."""
    if pred.flat is not None:
        raise LabeltreeError("calibrate: the flat model is not supported (its one classifier is trained on "
                             "remapped classes); calibrate a hierarchical model")
    stats = [HeadStats() for _ in pred.h.classifiers]
    pred.model.eval()
    for src in sources:
        for i in range(len(src)):
            img, lab = src.load(i)
            x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].to(pred.device)
            x = normalise(x, pred.cfg.model.normalise)
            with torch.no_grad():
                logits = [o.float()[0].cpu().numpy() for o in pred.model(x)]
            lab = np.asarray(lab).astype(np.int64)
            for j, lg in enumerate(logits):
                t = lookup(src.tables.targets[j], lab, NO_TARGET)
                if lg.shape[-2:] != t.shape:
                    raise LabeltreeError(f"calibrate: logits {lg.shape[-2:]} and label {t.shape} differ", src.name)
                m = t != NO_TARGET
                if m.any():
                    stats[j].logits.append(lg[:, m].T.copy())
                    stats[j].targets.append(t[m].astype(np.int64))
    return stats


def nll(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> float:
    return float(torch.nn.functional.cross_entropy(logits / temperature, targets)) if len(targets) else float("nan")


def ece(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0, bins: int = ECE_BINS) -> float:
    """Expected calibration error: sum over equal-width confidence bins of |accuracy - confidence| x share."""
    if not len(targets):
        return float("nan")
    p = (logits / temperature).softmax(1)
    conf, pick = p.max(1)
    right = (pick == targets).float()
    idx = torch.clamp((conf * bins).long(), max=bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += float(m.float().mean()) * abs(float(right[m].mean()) - float(conf[m].mean()))
    return total


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The temperature minimising the NLL: golden-section search over log T in [-4, 4] (NLL is unimodal there);
    1 (not fitted) with fewer than MIN_FIT_PIXELS pixels."""
    if len(targets) < MIN_FIT_PIXELS:
        return 1.0
    lo, hi = -4.0, 4.0
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(logits, targets, math.exp(a)), nll(logits, targets, math.exp(b))
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(logits, targets, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(logits, targets, math.exp(b))
    return round(math.exp((lo + hi) / 2), 6)


def calibrate_stats(names: list[str], stats: list[HeadStats], limit: int = MAX_PIXELS) -> list[dict[str, Any]]:
    """Per classifier: pixels, temperature (fitted on these pixels), NLL and ECE before (T = 1) and after, and
    `fitted` (False: fewer than MIN_FIT_PIXELS pixels, T = 1 kept)."""
    temps = [fit_temperature(*s.arrays(limit)) for s in stats]
    rows = evaluate_temperatures(names, stats, temps, limit)
    for r in rows:
        r["fitted"] = r["pixels"] >= MIN_FIT_PIXELS
    return rows


def evaluate_temperatures(names: list[str], stats: list[HeadStats], temps: list[float],
                          limit: int = MAX_PIXELS) -> list[dict[str, Any]]:
    """NLL / ECE of given temperatures on these pixels (the fitting split, or a held-out one), and
    `ece_reliable`: at least ECE_MIN_PIXELS pixels (else the ECE is sampling noise)."""
    rows = []
    for name, s, t in zip(names, stats, temps, strict=True):
        x, y = s.arrays(limit)
        rows.append({"classifier": name, "pixels": len(y), "temperature": t, "nll_before": nll(x, y),
                     "nll_after": nll(x, y, t), "ece_before": ece(x, y), "ece_after": ece(x, y, t),
                     "ece_reliable": len(y) >= ECE_MIN_PIXELS})
    return rows


def row_note(row: dict[str, Any]) -> str:
    """What a report row's numbers can bear, in words ('' = all of them)."""
    if not row.get("fitted", True):  # a fitting row: why its temperature is 1
        return f"{row['pixels']} < {MIN_FIT_PIXELS} px: T = 1 kept"
    if not row["pixels"]:
        return "no pixels"
    notes = [] if row["ece_reliable"] else [f"ECE from < {ECE_MIN_PIXELS} px: noise"]
    if abs(math.log(row["temperature"])) > 3.99:
        notes.append("T at the search limit")
    return "; ".join(notes)


def reliability_png(path: Path, names: list[str], stats: list[HeadStats], temps: list[float],
                    limit: int = MAX_PIXELS) -> None:
    """One reliability diagram per classifier: accuracy against confidence per bin, before and after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labeltree.fsutil import atomic_path

    n = len(names)
    fig, axes = plt.subplots(1, n, figsize=(3 * n, 3), squeeze=False)
    for ax, name, s, t in zip(axes[0], names, stats, temps, strict=True):
        x, y = s.arrays(limit)
        for temp, style in ((1.0, "o-"), (t, "s-")):
            if not len(y):
                continue
            p = (x / temp).softmax(1)
            conf, pick = p.max(1)
            idx = torch.clamp((conf * ECE_BINS).long(), max=ECE_BINS - 1)
            cs = [float(conf[idx == b].mean()) for b in range(ECE_BINS) if (idx == b).any()]
            acc = [float((pick == y)[idx == b].float().mean()) for b in range(ECE_BINS) if (idx == b).any()]
            ax.plot(cs, acc, style, ms=3, label=f"T={temp:g}")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("confidence")
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("accuracy")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def save_calibrated(state: dict[str, Any], checkpoint: str | Path, out: str | Path, temps: list[float]) -> None:
    """A copy of the checkpoint (its loaded `state`) with `temperatures` (atomic; never over the checkpoint itself)."""
    from labeltree.fsutil import same_file
    from labeltree.train.checkpoint import save_checkpoint

    if same_file(checkpoint, out):
        raise LabeltreeError("-o would overwrite the checkpoint; choose another file name", out)
    save_checkpoint(out, {**state, "temperatures": [float(t) for t in temps]})


def val_sources(cfg: Any, h: Any, split: str | None = None) -> list[Source]:
    """Each training dataset's val split (or `split`), labels as in training (box masks of the config)."""
    from labeltree.train.config import EvalDatasetCfg
    from labeltree.train.data import box_mask_mode

    out = []
    for d in cfg.datasets:
        s = split or d.val_split
        if s:
            e = EvalDatasetCfg(name=d.name, root=d.root, split=s, resize=d.resize, resize_mode=d.resize_mode,
                               max_samples=d.max_samples)
            out.append(Source(e, cfg.resolve_root(d.root), s, h, box_mask_mode(cfg, d)))
    if not out:
        raise LabeltreeError("calibrate: no dataset of the config has a val split (datasets[].val_split)")
    return out


def calibrate_checkpoint(checkpoint: str | Path, config: str | Path, out: str | Path,
                         data_root: str | Path | None = None,
                         plot: str | Path | None = None, device: str | None = "cpu") -> list[dict[str, Any]]:
    """Fit one temperature per classifier on the config's val splits; write `out` (the checkpoint with them) and
    the reliability diagram `plot`; return the per-classifier report rows."""
    from labeltree.train.config import load_config
    from labeltree.train.predict import load_predictor_state

    cfg = load_config(config, data_root=data_root)
    pred, state = load_predictor_state(checkpoint, device)
    stats = collect(pred, val_sources(cfg, pred.h))
    names = [c.name for c in pred.h.classifiers]
    rows = calibrate_stats(names, stats)
    save_calibrated(state, checkpoint, out, [r["temperature"] for r in rows])
    if plot is not None:
        reliability_png(Path(plot), names, stats, [r["temperature"] for r in rows])
    return rows
