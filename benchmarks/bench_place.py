"""`labeltree place` and `labeltree audit` on synthetic data: placement accuracy against the bundled
add-ons and seconds per ~50-frame dataset (goal: under a minute on 2 cores).

Run by hand (not a test):
  labeltree synth D --tree cityscapes+vistas+gtsdb+bdd100k+idd --images 200
  labeltree synth D2 --tree cityscapes+vistas-v2.0+gtsdb --images 50
  labeltree train cpu-tiny --data-root D --out runs/tiny --steps 500      # Cityscapes + Vistas + GTSDB only
  python benchmarks/bench_place.py D --v2 D2 [--checkpoint runs/tiny/last.pt] [--frames 50]

For BDD100K and IDD, `place` against the paper's tree (cityscapes+vistas+gtsdb) is scored against the
bundled add-on (cityscapes+vistas+gtsdb+bdd100k / +idd): exact = the same kind of placement on the
same node (a new node: under the same parent), top 3 = among the first three candidates. Vistas v2.0
is placed against the paper's tree and scored against cityscapes+vistas-v2.0+gtsdb (its split
classes = new children of the v1.2 leaf). Then `audit` on the IDD add-on with 5 wrong mappings and
on the bundled one (with a model: first with an empty cache, as a cold run on its own). Each run prints its wall
seconds and its CPU seconds (user + sys, children included; model load included); the model's pass over a
dataset is cached under $LABELTREE_CACHE/place (in the model's node ids: place, then audit of the extension,
read each dataset once), so set LABELTREE_CACHE to an empty folder for a cold run. The machine's load
average is printed first: on a shared machine wall time is only meaningful beside it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml

from labeltree.core.tree_file import bundled_hierarchies, load_hierarchy
from labeltree.place.audit import audit
from labeltree.place.propose import expected_of, place

BASE = "cityscapes+vistas+gtsdb"
WRONG = {"car": "Bus", "building": "Wall", "vegetation": "Terrain", "sidewalk": "Road", "pole": "Traffic Light"}


def score(r, full: str, dataset: str, show: bool) -> str:
    exp = expected_of(load_hierarchy(full), load_hierarchy(BASE), dataset)
    same = {"inner": "node"}

    def hit(c, e) -> bool:
        return same.get(c.kind, c.kind) == same.get(e[0], e[0]) and c.node == e[1]

    rows = [p for p in r.placements if exp[p.cls.display][0] != "ignore"]
    exact = [p for p in rows if hit(p.chosen, exp[p.cls.display])]
    top3 = [p for p in rows if any(hit(c, exp[p.cls.display]) for c in p.candidates[:3])]
    if show:
        for p in rows:
            if p not in exact:
                print(f"    miss {p.cls.display!r} ({p.pixels} px): {p.chosen.label()}; want {exp[p.cls.display]}; "
                      f"top 3: {[c.label() for c in p.candidates[:3]]}")
    return (f"exact {len(exact)}/{len(rows)} ({len(exact) / len(rows):.0%}), top 3 {len(top3)}/{len(rows)} "
            f"({len(top3) / len(rows):.0%})")


def _clock() -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + sys of this process and its finished children)."""
    t = os.times()
    return time.perf_counter(), t.user + t.system + t.children_user + t.children_system


def _since(start: tuple[float, float]) -> str:
    wall, cpu = _clock()
    return f"{wall - start[0]:6.1f} s wall, {cpu - start[1]:5.1f} s CPU"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("--v2", type=Path, default=None, help="synth output with vistas-v2.0/")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    runs = [("bdd100k", a.data / "bdd100k", f"{BASE}+bdd100k"), ("idd", a.data / "idd", f"{BASE}+idd")]
    if a.v2 is not None:
        runs.append(("vistas-v2.0", a.v2 / "vistas-v2.0", "cityscapes+vistas-v2.0+gtsdb"))
    print(f"evidence: {'model ' + str(a.checkpoint) + ', ' if a.checkpoint else ''}statistics, names; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for ds, root, full in runs:
        start = _clock()
        r = place(ds, root, BASE, a.checkpoint, a.data, a.frames, a.frames)
        print(f"place {ds:12s} {r.info['frames']} frames  {_since(start)}  {score(r, full, ds, not a.quiet)}")
    with tempfile.TemporaryDirectory() as tmp:
        data = yaml.safe_load(bundled_hierarchies()[f"{BASE}+idd"].read_text())
        data["mappings"]["idd"]["map"].update(WRONG)
        bad = Path(tmp) / "idd-wrong.yaml"
        bad.write_text(yaml.safe_dump(data, sort_keys=False))
        runs = [("5 wrong, cold", str(bad)), ("5 wrong", str(bad)), ("bundled", f"{BASE}+idd")]
        for name, tree in runs if a.checkpoint else runs[1:]:
            cold = name.endswith("cold")  # the model's passes not cached: the audit of a dataset on its own
            before = os.environ.get("LABELTREE_CACHE")
            if cold:
                os.environ["LABELTREE_CACHE"] = str(Path(tmp) / "cache")
            start = _clock()
            r = audit("idd", a.data / "idd", tree, a.checkpoint, a.data, a.frames, a.frames)
            if cold:
                os.environ.pop("LABELTREE_CACHE") if before is None else os.environ.update(LABELTREE_CACHE=before)
            flagged = [f.cls for f in r.findings if f.flagged]
            first = {f.cls for f in r.findings[:5]}
            print(f"audit idd ({name}) {_since(start)}  flagged {len(flagged)}: {flagged}"
                  + (f"; first 5 = the wrong ones: {first == set(WRONG)}" if name.startswith("5 wrong") else ""))


if __name__ == "__main__":
    main()
