"""The report's outputs: row files (JSON / CSV / Parquet), the terminal tables and the plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labeltree.errors import LabeltreeError
from labeltree.fsutil import atomic_path, write_json
from labeltree.stats.report import IMBALANCE_FLAG, Report


def write_rows(path: str | Path, rows: list[dict]) -> None:
    """Rows as JSON (a list of objects, docs/design.md §5), CSV or Parquet by the file suffix, atomically."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        write_json(p, rows)
        return
    import pandas as pd

    df = pd.DataFrame(rows)
    with atomic_path(p) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        elif suffix in (".parquet", ".pq"):
            df.to_parquet(tmp, index=False)
        else:
            raise LabeltreeError("output must end in .json, .csv or .parquet", p)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if v == 0:
            return "0"
        if abs(v) >= 1e5 or abs(v) < 1e-3:
            return f"{v:.3g}"
        return f"{v:.4g}"
    if isinstance(v, int) and abs(v) >= 10**7:
        return f"{v:.3e}"
    return str(v)


def format_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """Fixed-width text table: columns = [(key, header)]."""
    cells = [[h for _, h in columns]] + [[_fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_report(rep: Report, all_classes: bool = False) -> str:
    """The terminal view: Table I, the classes of each split, and the classifiers of the tree."""
    out = ["Datasets (Table I)",
           format_table(rep.summary, [("dataset", "dataset"), ("split", "split"), ("images", "images"),
                                      ("mp_min", "MP min"), ("mp_median", "MP med"), ("mp_max", "MP max"),
                                      ("annotation", "annotation"), ("annotated_pixels", "annotated px"),
                                      ("annotated_share", "share"), ("classes_present", "present"),
                                      ("classes_evaluated", "evaluated"), ("classes", "classes"),
                                      ("bad_files", "bad")])]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rep.classes:
        groups.setdefault((r["dataset"], r["split"]), []).append(r)
    for (ds, sp), rows in groups.items():
        shown = [r for r in rows if all_classes or r["pixels"] > 0]
        cols = [("name", "class"), ("class_id", "id"), ("pixels", "pixels"), ("share", "share"),
                ("images", "images"), ("w_inverse", "w inv"), ("w_median_freq", "w medfreq"), ("w_enet", "w enet")]
        if any("instances" in r for r in rows):
            cols += [("instances", "inst"), ("mean_instance_size", "mean inst px")]
        if any("signs" in r for r in rows):
            cols += [("signs", "signs"), ("mean_sign_size", "mean sign px")]
        if any("boxes" in r for r in rows):
            cols += [("boxes", "boxes"), ("mean_box_w", "box w"), ("mean_box_h", "box h"),
                     ("min_box_area", "min area"), ("max_box_area", "max area")]
        if any("node" in r for r in rows):
            cols += [("node", "tree node")]
        hidden = len(rows) - len(shown)
        out += ["", f"{ds} / {sp}: classes" + (f" ({hidden} without pixels not shown)" if hidden else ""),
                format_table(shown, cols)]
    if rep.classifiers:
        out += ["", f"Classifiers of tree '{rep.hierarchy.name}' (imbalance = max/min pixels over classes with "
                    f"pixels; ! = more than {IMBALANCE_FLAG:g}x)" if rep.hierarchy else "",
                format_table([dict(r, flag="!" if r["flag"] else "") for r in rep.classifiers],
                             [("split", "split"), ("classifier", "classifier"), ("level", "L"),
                              ("classes", "classes"), ("classes_with_pixels", "with px"), ("pixels", "pixels"),
                              ("min_class", "smallest"), ("min_pixels", "px"), ("max_class", "largest"),
                              ("max_pixels", "px"), ("imbalance", "imbalance"), ("flag", "!"),
                              ("basis", "basis"), ("datasets", "datasets")])]
    return "\n".join(out)


def plot_report(rep: Report, path: str | Path) -> None:
    """Log-scale pixel share per class: with a tree, grouped by classifier and coloured by tree level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # panel (split) -> bars (group, label, share, colour index); legend: colour index -> text
    bars: dict[str, list[tuple[str, str, float, int]]] = {}
    legend: dict[int, str] = {}
    if rep.contributions:
        for s in rep.classifiers:
            per: dict[str, int] = {}
            for r in rep.contributions:
                if r["split"] == s["split"] and r["classifier"] == s["classifier"] and \
                        (r["trains"] or s["basis"] == "all"):
                    per[r["class"]] = per.get(r["class"], 0) + r["pixels"]
            tot = sum(per.values())
            for name, px in per.items():
                if px > 0:
                    bars.setdefault(s["split"], []).append((s["classifier"], name, px / tot, s["level"]))
            legend[s["level"]] = f"level {s['level']}"
        title, ylabel = "classifier level", "pixel share within classifier"
    else:
        datasets = list(dict.fromkeys(r["dataset"] for r in rep.classes))
        for r in rep.classes:
            if r["share"]:
                k = datasets.index(r["dataset"])
                bars.setdefault(r["split"], []).append((r["dataset"], r["name"], r["share"], k))
                legend[k] = r["dataset"]
        title, ylabel = "dataset", "pixel share"
    if not bars:
        raise LabeltreeError("nothing to plot: no annotated pixels", path)
    n = max(len(b) + 2 * len({g for g, *_ in b}) for b in bars.values())
    fig, axes = plt.subplots(len(bars), 1, figsize=(max(8.0, 0.14 * n + 2), 4.5 * len(bars)), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (split, items) in zip(axes[:, 0], bars.items(), strict=True):
        xs, labels, pos = [], [], 0
        for g in dict.fromkeys(g for g, *_ in items):
            start = pos
            for gg, label, share, k in items:
                if gg == g:
                    ax.bar(pos, share, color=cmap(k % 10), width=0.8)
                    xs.append(pos)
                    labels.append(label)
                    pos += 1
            ax.text((start + pos - 1) / 2, 1.3, g, ha="center", va="bottom", fontsize=7, rotation=0)
            ax.axvline(pos, color="0.85", lw=0.6)
            pos += 2
        ax.set_yscale("log")
        ax.set_ylim(top=4)
        ax.set_xlim(-1, pos - 1)
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=90, fontsize=6)
        ax.set_ylabel(ylabel)
        ax.set_title(f"split {split}")
        keys = sorted({k for *_, k in items})
        ax.legend([plt.Rectangle((0, 0), 1, 1, color=cmap(k % 10)) for k in keys], [legend[k] for k in keys],
                  title=title, fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
