"""`labeltree synth`: synthetic street scenes of one world, written as every dataset of a tree file in its own layout.

The default tree writes Cityscapes, Cityscapes Extended, Vistas v1.2 and GTSDB; `--tree` names
another (Vistas v2.0, BDD100K, IDD: `WRITERS` has one frame writer per layout).

The real datasets cannot be downloaded here, yet tests, the demo, the trainer and the benchmarks
need data in the exact native layouts (docs/design.md §3) with the real taxonomies. One procedural street
generator paints every frame in the NODES OF THE SEMANTIC TREE (the finest vocabulary there is:
lane markings, manholes, bicyclists, sign fronts of each GTSDB class, ...); each dataset's label
is then one lookup `node -> stored value` compiled from the tree file (`Hierarchy.tables(ds)
.node_to_value`: the dataset class at the depth it annotates, e.g. a lane marking is Cityscapes
"road", a sign front of class k is Cityscapes "traffic sign" and Cityscapes-Extended 2000 + k).
No id is written here; world objects are named by tree node and looked up.

The camera and colour balance differ per dataset (Cityscapes: low car camera with the ego hood,
dull greenish tint; Vistas: varied heights, focal lengths and colour casts, JPEG; GTSDB: more
signs, bluish noisy frames), so that a mixed-dataset model meets a domain shift like the real one.

Every frame is a pure function of (seed, dataset, index, size): frames are made in a process
pool and written atomically; the same arguments give the same bytes.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labeltree.datasets import gtsdb, vistas
from labeltree.errors import LabeltreeError
from labeltree.fsutil import write_json, write_text
from labeltree.parallel import pmap
from labeltree.synth.paint import MAX_SIGNS
from labeltree.synth.world import FOLDER_NAME, HIERARCHY, MARKER, get_world
from labeltree.synth.writers import (
    GTSDB_TEST,
    GTSDB_TEST_START,
    GTSDB_TRAIN,
    FrameJob,
    check_writable,
    gtsdb_layout,
    make_frame,
    vistas_config,
)
from labeltree.vocab import GTSDB_SIGNS

# -- the whole job ------------------------------------------------------------------------------------

@dataclass
class SynthResult:
    out: Path
    roots: dict[str, Path]
    frames: dict[str, dict[str, int]]  # dataset -> split -> frames
    pixels: dict[str, dict[str, float]]  # dataset -> class name -> share of pixels
    signs: dict[str, dict[int, int]]  # dataset -> GTSDB ClassID -> sign count
    gtsdb_boxes: int
    seconds: float
    layouts: dict[str, str] = field(default_factory=dict)  # dataset -> layout
    shared: dict[str, str] = field(default_factory=dict)  # evaluation dataset -> dataset whose frames it labels

    @property
    def images(self) -> int:
        """Frames rendered (Cityscapes Extended shares the Cityscapes frames)."""
        return sum(sum(self.frames.get(ds, {}).values()) for ds in self.rendered)

    @property
    def rendered(self) -> list[str]:
        return [ds for ds in self.roots if ds not in self.shared]


def parse_size(text: str) -> tuple[int, int]:
    """'256x128' -> (256, 128)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise LabeltreeError(f"size must look like 256x128 (width x height), got '{text}'") from None
    return _check_size((w, h))


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of 32..8192 each: the library's own check (lt.synthesize), not only the CLI's."""
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise LabeltreeError(f"size must be (width, height), got {size!r}") from None
    if not (32 <= w <= 8192 and 32 <= h <= 8192):
        raise LabeltreeError(f"size {w}x{h} is out of range: width and height must be 32..8192")
    return w, h


def _prepare_out(out: Path, force: bool, folders: list[str]) -> None:
    """Refuse a non-empty folder that is not an earlier synth output (unless forced); clear an earlier
    one's dataset folders (those it recorded and those about to be written, nothing else)."""
    if out.exists() and not out.is_dir():
        raise LabeltreeError("OUT exists and is a file; give a folder", out)
    for sub in folders:  # writing through a link would write outside OUT
        if (out / sub).is_symlink() or ((out / sub).exists() and not (out / sub).is_dir()):
            raise LabeltreeError(f"OUT/{sub} is a {'link' if (out / sub).is_symlink() else 'file'}; synth writes "
                                 "only inside OUT: remove it or choose another OUT", out / sub)
    if not out.exists() or not any(out.iterdir()):
        return
    marker = out / MARKER
    meta = None
    if marker.is_file() and not marker.is_symlink():
        try:
            meta = json.loads(marker.read_text())
        except (OSError, ValueError):
            meta = None
    if isinstance(meta, dict) and meta.get("generator") == "labeltree synth":  # an earlier synth output
        try:
            recorded = [str(v["root"]) for v in meta.get("datasets", {}).values()]
        except (AttributeError, KeyError, TypeError):
            recorded = []
        for sub in dict.fromkeys([*recorded, *folders]):
            target = out / sub
            if FOLDER_NAME.fullmatch(sub) and sub != MARKER and target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
        return
    if not force:
        raise LabeltreeError(f"folder is not empty and is no earlier `labeltree synth` output (no valid {MARKER}); "
                             "choose an empty or new folder, or pass --force to write into it (files with the "
                             "same names are replaced, nothing else is touched)", out)


def synthesize(out: str | Path, images: int = 50, seed: int = 0, size: tuple[int, int] = (256, 128),
               workers: int | None = None, force: bool = False, gtsdb_images: int | None = None,
               progress: bool = True, hierarchy: str = HIERARCHY, gtsdb_signs: tuple[int, int] = GTSDB_SIGNS,
               street_signs: tuple[int, int] | None = None) -> SynthResult:
    """Write `images` frames of each dataset of the tree `hierarchy` under `out/<dataset>/` (see module
    doc); returns counts for a summary.

    The box dataset (GTSDB) gets `gtsdb_images` frames (default: `images`, at most 900 because of
    its numbering) with `gtsdb_signs` (lo, hi) signs each; `street_signs` sets the sign posts per
    dense frame (default: the style's 0-3). Denser signs give a sign classifier more examples per frame.
    An earlier synth output in `out` is replaced; any other non-empty folder needs `force`.
    """
    if images < 1:
        raise LabeltreeError(f"--images must be at least 1, got {images}")
    for opt, r in (("--gtsdb-signs", gtsdb_signs), ("--street-signs", street_signs)):
        if r is not None and not 0 <= r[0] <= r[1] <= MAX_SIGNS:
            raise LabeltreeError(f"{opt} must be LO-HI with 0 <= LO <= HI <= {MAX_SIGNS}, got {r[0]}-{r[1]}")
    width, height = _check_size(size)
    out = Path(out)
    n_gtsdb = min(images, GTSDB_TRAIN + GTSDB_TEST) if gtsdb_images is None else gtsdb_images
    frames_gtsdb = gtsdb_layout(n_gtsdb)
    world = get_world(hierarchy)
    check_writable(world)
    _prepare_out(out, force, list(world.folder.values()))
    t0 = time.perf_counter()
    params = {"generator": "labeltree synth", "seed": seed, "images": images, "gtsdb_images": n_gtsdb,
              "size": [width, height], "hierarchy": hierarchy, "gtsdb_signs": list(gtsdb_signs),
              "street_signs": list(street_signs) if street_signs is not None else None}
    write_json(out / MARKER, {**params, "complete": False})
    jobs = []
    for ds in world.rendered:
        if world.layout[ds] == "gtsdb":
            jobs += [FrameJob(ds, i, seed, width, height, str(out), hierarchy, gtsdb_signs=gtsdb_signs)
                     for i in frames_gtsdb]
        else:
            jobs += [FrameJob(ds, i, seed, width, height, str(out), hierarchy, street_signs=street_signs)
                     for i in range(images)]
    frames: dict[str, dict[str, int]] = {ds: {} for ds in world.rendered}
    counts = {ds: np.zeros(world.tax[ds].lut_size, dtype=np.int64) for ds in world.rendered
              if world.layout[ds] != "gtsdb"}
    signs: dict[str, dict[int, int]] = {ds: {} for ds in world.rendered}
    gt_lines: dict[str, list[str]] = {ds: [] for ds in world.rendered if world.layout[ds] == "gtsdb"}
    for r in pmap(make_frame, jobs, workers=workers, desc="synth", progress=progress, chunksize=4):
        ds = r["dataset"]
        if ds in gt_lines:
            split = "train" if int(r["name"][:5]) < GTSDB_TEST_START else "test"
            for x0, y0, x1, y1, k in r["boxes"]:
                gt_lines[ds].append(gtsdb.gt_line(r["name"], x0, y0, x1, y1, k))
                signs[ds][k] = signs[ds].get(k, 0) + 1
        else:
            split = r["split"]
            counts[ds] += r["counts"]
            for k in r["signs"]:
                signs[ds][k] = signs[ds].get(k, 0) + 1
        frames[ds][split] = frames[ds].get(split, 0) + 1
    for ds, lines in gt_lines.items():
        write_text(out / world.folder[ds] / gtsdb.GT_FILE, "".join(line + "\n" for line in lines))
    for ds in world.rendered:
        if world.layout[ds] == "vistas":
            tax = world.tax[ds]
            write_json(out / world.folder[ds] / vistas.config_name(tax.version), vistas_config(tax))
    pixels = {}
    for ds, c in counts.items():
        tax = world.tax[ds]
        total = max(1, int(c.sum()))
        names = {tax.stored_value(k.id): k.display for k in tax.classes}
        pixels[ds] = {names.get(int(v), str(v)): float(c[v]) / total for v in np.flatnonzero(c)}
    for ev, src in world.shares.items():
        frames[ev] = dict(frames[src])
        signs[ev] = signs.pop(src)
    seconds = time.perf_counter() - t0
    roots = {ds: out / world.folder[ds] for ds in world.datasets}
    n_boxes = sum(len(v) for v in gt_lines.values())
    res = SynthResult(out, roots, frames, pixels, signs, n_boxes, seconds, dict(world.layout), dict(world.shares))
    write_json(out / MARKER, {**params, "complete": True, "frames": frames,
                              "signs": {d: {str(k): v for k, v in sorted(s.items())} for d, s in signs.items()},
                              "gtsdb_boxes": n_boxes,
                              "datasets": {ds: {"root": world.folder[ds], "taxonomy": world.tax[ds].name,
                                                "layout": world.layout[ds]} for ds in world.datasets}})
    return res


# what each layout's synthetic files are, for the summary
WHAT = {"cityscapes": "leftImg8bit/*.png, gtFine/*_labelIds.png, *_instanceIds.png (16-bit)",
        "vistas": "{training,validation}/images/*.jpg, labels/*.png (palette), instances/*.png, config",
        "bdd100k": "images/10k/{train,val}/*.jpg, labels/sem_seg/masks/*.png (train ids), colormaps/",
        "idd": "leftImg8bit/{train,val}/{seq}/*_leftImg8bit.png, gtFine/.../*_gtFine_labellevel3Ids.png",
        "gtsdb": "NNNNN.ppm (P6), gt.txt"}


def summary(res: SynthResult) -> str:
    """Human-readable lines: where each dataset went, frames per split, pixel shares, signs."""
    lines = [f"wrote {res.out} in {res.seconds:.1f} s ({res.images} frames, "
             f"{60 * res.images / max(res.seconds, 1e-9):.0f} frames/min)"]
    for ds, root in res.roots.items():
        split = ", ".join(f"{s} {n}" for s, n in sorted(res.frames.get(ds, {}).items()))
        extra = ""
        if ds in res.signs and res.signs[ds]:
            s = res.signs[ds]
            extra = f"; {sum(s.values())} signs of {len(s)} classes"
        layout = res.layouts.get(ds, "")
        if layout == "gtsdb":
            extra += f"; gt.txt {res.gtsdb_boxes} boxes"
        what = WHAT.get(layout, "")
        if ds in res.shared:
            what = f"gtFine/*_labelIds.png (its own labels of the {res.shared[ds]} frames), leftImg8bit (links)"
        lines.append(f"  {ds:<20} {root}  [{split}{extra}]")
        lines.append(f"  {'':<20} {what}")
    for ds, shares in res.pixels.items():
        top = sorted(shares.items(), key=lambda kv: -kv[1])[:6]
        lines.append(f"  pixels {ds}: " + ", ".join(f"{n} {100 * v:.1f}%" for n, v in top))
    return "\n".join(lines)


def as_json(res: SynthResult) -> str:
    return json.dumps({"out": str(res.out), "roots": {k: str(v) for k, v in res.roots.items()},
                       "frames": res.frames, "gtsdb_boxes": res.gtsdb_boxes, "seconds": res.seconds})
