"""`labeltree predict`: a model (`.pt` or `.onnx`, through labeltree.infer.Model) over photos -> PNG files."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from labeltree.datasets.decode import read_rgb
from labeltree.datasets.images import collect_images
from labeltree.errors import LabeltreeError
from labeltree.fsutil import check_output, input_sparing_png_writer
from labeltree.infer.base import Model
from labeltree.infer.load import open_model


def predict_files(model: str | Path | Model, inputs: list[str | Path], out_dir: str | Path,
                  dataset: str | None = None, overlay: bool = False, sliding: bool = False, levels: bool = False,
                  colour: bool = True, device: str | None = None, progress: bool = True,
                  log: Callable[[str], None] | None = None, confidence: bool = False, confidence_npy: bool = False,
                  min_confidence: float | None = None, weights: str = "ema") -> list[Path]:
    """Write per image: `{stem}_tree.png` (tree colours), `{dataset}/{stem}.png` (the dataset's ids),
    `{stem}_overlay.png`, `{stem}_L{k}.png` (colour map of the cascade stopped at level k), `{stem}_conf.png`
    (path confidence, 16-bit, 0..65535 = 0..1) and `{stem}_conf.npy` (float16).

    `min_confidence`: each pixel stops at the deepest node whose path confidence is at least this (0: the leaf;
    None: the model's own, 0 for a `.pt`, the exported one for an `.onnx`).

    The dataset ids get a folder of their own, named as `labeltree evaluate` matches predictions
    (same stem as the image, nothing else in it), so `evaluate DATASET GT OUT/{dataset}` reads them.
    """
    from tqdm import tqdm

    images = _distinct_stems(collect_images(inputs))  # refused before the model is loaded
    m = model if isinstance(model, Model) else open_model(model, device, weights)
    m.check_sliding(sliding)
    m.set_confidence(min_confidence, confidence or confidence_npy)
    key = m.check_dataset(dataset)
    if not m.has_nodes:
        if overlay or levels:
            raise LabeltreeError(f"--overlay / --levels need tree nodes; this model gives {key} ids only "
                                 "(export with --output leaves, levels or scores)", m.path)
        if colour and log is not None:
            log(f"note: {m.path.name} gives {key} ids only: no {{stem}}_tree.png written")
        colour = False
    out = Path(out_dir)
    written: list[Path] = []
    _refuse_inputs_as_outputs(images, out, key, [s for s, on in (("_tree.png", colour or not key), (
        "_overlay.png", overlay), ("_conf.png", confidence), ("_conf.npy", confidence_npy)) if on], levels)
    check_output(out, "-o", folder=True)
    write_png = input_sparing_png_writer([*images, m.path])  # OUT is a prediction folder: never over an input

    for path in tqdm(images, desc="predict", unit="img", disable=not progress):
        img = read_rgb(path)
        p = m.predict_array(img, key, sliding)
        stem = path.stem
        if p.nodes is not None and (colour or not key):
            written.append(out / f"{stem}_tree.png")
            write_png(written[-1], m.colour(p.nodes))
        if key:
            written.append(out / key / f"{stem}.png")
            write_png(written[-1], m.dataset_values(p, key))
        if overlay:
            assert p.nodes is not None
            blend = (0.5 * img + 0.5 * m.colour(p.nodes)).astype(np.uint8)
            written.append(out / f"{stem}_overlay.png")
            write_png(written[-1], blend)
        if (confidence or confidence_npy) and p.confidence is not None:
            written.extend(write_confidence(out / f"{stem}_conf", p.confidence, confidence, confidence_npy, write_png))
        if levels and not m.is_flat:
            for lvl, lv in enumerate(m.level_maps(p), start=1):
                written.append(out / f"{stem}_L{lvl}.png")
                write_png(written[-1], m.colour(lv))
    return written


def _refuse_inputs_as_outputs(images: list[Path], out: Path, key: str | None, suffixes: list[str],
                              levels: bool) -> None:
    """An input image at a name this run writes (OUT is the image folder, and an earlier run's x_tree.png is
    among the inputs): refused before the first file is written, not after some of them."""
    sources = {os.path.realpath(p): p for p in images}
    stems = {p.stem for p in images}
    real_out = os.path.realpath(out)
    for p in images:
        names = [os.path.join(real_out, p.stem + s) for s in suffixes]
        names += [os.path.join(real_out, key, p.stem + ".png")] if key else []
        hit = next((sources[n] for n in names if n in sources), None)
        level = re.fullmatch(r"(.+)_L\d+", p.stem) if levels and p.suffix.lower() == ".png" else None
        if level and level.group(1) in stems and os.path.dirname(os.path.realpath(p)) == real_out:
            hit = p
        if hit is not None:
            raise LabeltreeError("this output would replace an input image; choose another -o", hit)


def _distinct_stems(images: list[Path]) -> list[Path]:
    """Each image once; two images of one stem (a/x.png, b/x.png) would write one {stem}_tree.png, the second
    silently replacing the first, and evaluate matches predictions by that name: refused before any work."""
    seen: dict[str, Path] = {}
    kept: dict[str, Path] = {}
    for p in images:
        real = os.path.realpath(p)
        if real in kept:
            continue
        if p.stem in seen:
            raise LabeltreeError(f"{seen[p.stem]} and {p} have one name, so their predictions would replace each "
                                 f"other in -o ({p.stem}_tree.png); predict them into separate -o folders", p)
        seen[p.stem], kept[real] = p, p
    return list(kept.values())


def write_confidence(base: Path, conf: np.ndarray, png: bool, npy: bool,
                     write_png: Callable[..., None]) -> list[Path]:
    """`{base}.png` (uint16, round(conf x 65535)) and/or `{base}.npy` (float16), written atomically."""
    from labeltree.core.confidence import confidence_png
    from labeltree.fsutil import atomic_path

    written = []
    if png:
        written.append(base.with_suffix(".png"))
        write_png(written[-1], confidence_png(conf), compress_level=1)  # noise-like 16-bit data: level 6 is slow
    if npy:
        written.append(base.with_suffix(".npy"))
        with atomic_path(written[-1]) as tmp, open(tmp, "wb") as f:
            np.save(f, conf.astype(np.float16))
    return written
