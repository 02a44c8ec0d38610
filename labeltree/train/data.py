"""Mixed batches with fixed per-dataset shares, per-dataset augmentation, and the prepared cache.

Determinism is by construction: which sample fills which batch slot, and the random augmentation
applied to it, are pure functions of (seed, step, rank, slot). Resuming at step k therefore sees
exactly the batches an uninterrupted run sees, whatever the number of loader workers.
"""

from __future__ import annotations

import atexit
import json
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from labeltree.core.hierarchy import UNKNOWN, Hierarchy
from labeltree.datasets.base import Sample, read_label
from labeltree.datasets.boxmask import MODES
from labeltree.datasets.decode import decode_array, read_rgb
from labeltree.datasets.registry import open_dataset
from labeltree.errors import LabeltreeError
from labeltree.fsutil import atomic_path, write_json
from labeltree.parallel import pmap
from labeltree.train.config import Config, DatasetCfg, EvalDatasetCfg
from labeltree.train.fastload import apply_jitter, crop_from, draw_params, has_augment, param_width
from labeltree.train.scaling import scale_pair

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CACHE_VERSION = 1


# -- one dataset ----------------------------------------------------------------------------------

@dataclass
class Item:
    """A sample as the loader sees it: files to read (raw or from the cache)."""

    key: str
    image: str
    label: str | None  # dense label file (raw or cached); None = render from boxes
    boxes: tuple = ()
    source: str = ""  # the original label (or gt.txt) path, for error messages
    dataset: str = ""

    def sample(self, size: tuple[int, int]) -> Sample:
        """The raw item as a dataset-layer Sample (for `read_label`), its frame of `size` (H, W)."""
        return Sample(self.dataset, "", self.key, Path(self.image), Path(self.label) if self.label else None,
                      boxes=self.boxes, size=(int(size[0]), int(size[1])))


class Source:
    """One dataset split: its items and how to turn one into (image, stored-value label)."""

    def __init__(self, cfg: DatasetCfg | EvalDatasetCfg, root: Path, split: str, h: Hierarchy, mask_mode: str,
                 cache: Path | None = None):
        self.cfg = cfg
        self.name = h.mapping(cfg.name).dataset
        self.split = split
        self.tables = h.tables(self.name)
        self.taxonomy = h.mapping(cfg.name).taxonomy
        self.is_boxes = h.mapping(cfg.name).is_boxes
        self.mask_mode = mask_mode
        self.resize = tuple(cfg.resize) if cfg.resize else None
        self.resize_mode = cfg.resize_mode
        self.pad_value = self.tables.targets.shape[1]
        self.cached = False
        self.values: list[list[int]] | None = None
        index = cache / self.name / split / "index.json" if cache is not None else None
        if index is not None and index.exists():
            meta = json.loads(index.read_text())
            mode = meta.get("resize_mode", "fixed")
            if meta.get("version") != CACHE_VERSION or (self.resize and (
                    tuple(meta["resize"] or ()) != self.resize or mode != self.resize_mode)):
                raise LabeltreeError(f"cache was prepared with resize {meta.get('resize')} "
                                     f"({meta.get('resize_mode', 'fixed')}), config asks for {self.resize} "
                                     f"({self.resize_mode}); rerun `labeltree prepare`", index)
            base = index.parent
            lab_key = f"label_{mask_mode}" if self.is_boxes else "label"
            self.items = [Item(r["key"], str(base / r["image"]), str(base / r[lab_key]), (), r["source"], self.name)
                          for r in meta["items"]]
            self.values = [r["values_" + mask_mode] if self.is_boxes else r["values"] for r in meta["items"]]
            self.cached = True
            self.resize = None  # cached files are already at training scale
        else:
            images_root = getattr(cfg, "images", None)
            with warnings.catch_warnings():
                if images_root:  # labels-only root: its missing photos are expected
                    warnings.simplefilter("ignore")
                samples = open_dataset(self.taxonomy, root).samples(split)
            if images_root:
                photos = {s.key: s.image for s in open_dataset(self.taxonomy, images_root).samples(split)}
                samples = [replace(s, image=s.image or photos.get(s.key)) for s in samples]
            self.items = []
            for s in samples:
                if s.image is None:
                    raise LabeltreeError(f"sample '{s.key}' has a label but no image (for a labels-only dataset "
                                         "set `images:` to the root that holds its photos)", s.label or root)
                src = str(s.label) if s.label else str(root / "gt.txt")
                self.items.append(Item(s.key, str(s.image), str(s.label) if s.label else None, s.boxes, src, self.name))
        if cfg.max_samples is not None:
            self.items = self.items[:cfg.max_samples]
            if self.values is not None:
                self.values = self.values[:cfg.max_samples]
        if not self.items:
            raise LabeltreeError(f"dataset '{cfg.name}' split '{split}' has no samples", root)

    def __len__(self) -> int:
        return len(self.items)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(HxWx3 uint8 image, HxW stored values) at training scale."""
        it = self.items[i]
        if it.image.endswith(".npy"):  # the npy cache: memory-mapped, read lazily (a crop reads its window)
            return np.load(it.image, mmap_mode="r"), read_cached_label(Path(it.label))  # type: ignore[arg-type]
        img = read_rgb(it.image)
        if self.cached:
            lab = read_cached_label(Path(it.label))  # type: ignore[arg-type]
        else:
            lab = read_label(it.sample(img.shape[:2]), self.taxonomy, self.mask_mode)
        if lab.shape != img.shape[:2]:
            raise LabeltreeError(f"label is {lab.shape[1]}x{lab.shape[0]} but its image is "
                                 f"{img.shape[1]}x{img.shape[0]}", it.source)
        if self.resize:
            img, lab = scale_pair(img, lab, self.resize, self.resize_mode)
        return img, lab


def read_cached_label(path: Path) -> np.ndarray:
    """A label of the prepared cache (stored values, already checked when the cache was written)."""
    if path.suffix == ".npy":
        return np.load(path, mmap_mode="r")
    return decode_array(path)


def label_values(lab: np.ndarray) -> list[int]:
    return np.flatnonzero(np.bincount(lab.ravel().astype(np.int64))).tolist()


# -- label range check ----------------------------------------------------------------------------

def _values_of(args: tuple[str, Any, bool]) -> list[int]:
    label, taxonomy, cached = args
    lab = read_cached_label(Path(label)) if cached else read_label(Sample.of_label(label, taxonomy), taxonomy)
    return label_values(lab)


def _box_values(src: Source, it: Item) -> list[int]:
    unl = src.taxonomy.encoding.unlabeled
    return sorted({src.taxonomy.stored_value(b.class_id) for b in it.boxes} | ({unl} if unl is not None else set()))


def check_labels(sources: list[Source], workers: int = 1, progress: bool = True) -> None:
    """Refuse stored values that are no class of the dataset, naming the file (docs/design.md §4.6)."""
    for src in sources:
        lut = src.tables.value_to_node
        if src.values is not None:
            per_file = src.values
        else:
            if src.is_boxes:
                per_file = [_box_values(src, it) for it in src.items]
            else:
                per_file = list(pmap(_values_of, [(it.label, src.taxonomy, src.cached) for it in src.items],
                                     workers, desc=f"check labels {src.name}", progress=progress, chunksize=16))
        for i, vals in enumerate(per_file):
            bad = [v for v in vals if v >= len(lut) or lut[v] == UNKNOWN]
            if bad:
                raise LabeltreeError(f"label value(s) {bad[:10]} are no class of {src.taxonomy.name} "
                                     f"(valid: the ids in its taxonomy file); fix the file or the taxonomy",
                                     src.items[i].source)


# -- augmentation and batches ---------------------------------------------------------------------

def make_transform(cfg: DatasetCfg, crop: tuple[int, int], pad_value: int, jitter: bool = True) -> v2.Transform:
    a = cfg.augment
    ts: list[v2.Transform] = []
    if a.scale != (1.0, 1.0):
        ts.append(_RandomRescale(a.scale))
    ts.append(v2.RandomCrop(crop, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: pad_value}))
    if a.hflip:
        ts.append(v2.RandomHorizontalFlip())
    if jitter and (a.brightness or a.contrast or a.saturation or a.hue):
        ts.append(v2.ColorJitter(a.brightness, a.contrast, a.saturation, a.hue))
    return v2.Compose(ts)


class _RandomRescale(v2.Transform):
    """Rescale by a factor drawn uniformly from `scale` (masks nearest, images bilinear)."""

    def __init__(self, scale: tuple[float, float]):
        super().__init__()
        self.scale = scale

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        f = float(torch.empty(1).uniform_(*self.scale))
        return {"size": [max(1, round(h * f)), max(1, round(w * f))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return TF.resize(inpt, params["size"])


class MixedDataset(Dataset):
    """Keys are (dataset position, sample index, augmentation seed) tuples from MixedBatchSampler."""

    def __init__(self, sources: list[Source], crop: tuple[int, int], jitter_on_device: bool = False):
        self.sources = sources
        self.crop = crop
        self.jitter_on_device = jitter_on_device
        self.width = param_width([s.cfg.augment for s in sources])  # type: ignore[union-attr]
        self.transforms = [make_transform(s.cfg, crop, s.pad_value, not jitter_on_device)  # type: ignore[arg-type]
                           for s in sources]

    def _fast(self, d: int, i: int) -> bool:
        """The npy cache and no random rescale: crop straight from the memory map (train.fastload)."""
        src = self.sources[d]
        return src.cached and src.items[i].image.endswith(".npy") and tuple(src.cfg.augment.scale) == (1.0, 1.0)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[Any, ...]:
        d, i, seed = key
        src = self.sources[d]
        img, lab = src.load(i)
        a = src.cfg.augment
        if self._fast(d, i):
            g = torch.Generator().manual_seed(seed)
            im, lb = crop_from(img, lab, self.crop, src.pad_value, a.hflip, g)
            im_t, lb_t = torch.from_numpy(im).permute(2, 0, 1), torch.from_numpy(lb)
        else:
            torch.manual_seed(seed)
            im_t = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1))
            lb_t = tv_tensors.Mask(torch.from_numpy(np.asarray(lab).astype(np.int32)))
            im_t, lb_t = self.transforms[d](im_t, lb_t)
            im_t, lb_t = im_t.as_subclass(torch.Tensor), lb_t.as_subclass(torch.Tensor)
            if not self.jitter_on_device and a.style != "authors":
                return im_t, lb_t, d  # torchvision's ColorJitter (in the transform) did the colour
            g = torch.Generator().manual_seed(seed)
        params = draw_params(a, g, self.width)
        if self.jitter_on_device:
            return im_t, lb_t, d, params
        if has_augment(a):
            im_t = apply_jitter(im_t[None], params[None])[0].round().to(torch.uint8)
        return im_t, lb_t, d

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)


def collate(batch: list[tuple[Any, ...]]) -> dict[str, torch.Tensor]:
    out = {"image": torch.stack([b[0] for b in batch]), "label": torch.stack([b[1] for b in batch]),
           "ds": torch.as_tensor([b[2] for b in batch], dtype=torch.long)}
    if len(batch[0]) > 3:  # jitter factors, applied on the device (train.fastload.apply_jitter)
        out["jitter"] = torch.stack([b[3] for b in batch])
    return out


class MixedBatchSampler:
    """Per step, `share[d]` samples of every dataset d, drawn from a per-epoch permutation.

    Process `rank` of `world` takes stream positions (step * world + rank) * share + i: disjoint
    shards, no sample repeated within an epoch of a dataset, and a pure function of the step.
    """

    def __init__(self, sizes: list[int], shares: list[int], seed: int, start_step: int, steps: int,
                 rank: int = 0, world: int = 1):
        self.sizes, self.shares, self.seed = sizes, shares, seed
        self.start_step, self.steps, self.rank, self.world = start_step, steps, rank, world
        self._perm: dict[tuple[int, int], np.ndarray] = {}

    def _index(self, d: int, pos: int) -> int:
        n = self.sizes[d]
        epoch = pos // n
        if (d, epoch) not in self._perm:
            self._perm = {k: v for k, v in self._perm.items() if k[0] != d}
            self._perm[(d, epoch)] = np.random.default_rng([self.seed, d, epoch]).permutation(n)
        return int(self._perm[(d, epoch)][pos % n])

    def batch(self, step: int) -> list[tuple[int, int, int]]:
        out = []
        for d, share in enumerate(self.shares):
            for i in range(share):
                pos = (step * self.world + self.rank) * share + i
                seed = int(np.random.SeedSequence([self.seed, step, self.rank, d, i]).generate_state(1)[0])
                out.append((d, self._index(d, pos), seed))
        return out

    def __iter__(self):
        for step in range(self.start_step, self.steps):
            yield self.batch(step)

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "world": self.world}


def box_mask_mode(cfg: Config, d: DatasetCfg) -> str:
    """Masks a box dataset trains on: the config's choice, else shapes for the flat baseline (which has no
    online box gating) and filled boxes for the hierarchical model (its gating picks the sign pixels)."""
    return d.mask_mode or ("fine" if cfg.model.kind == "flat" else "coarse")


def build_sources(cfg: Config, h: Hierarchy, split_attr: str = "split") -> list[Source]:
    cache = cfg.resolve_root(cfg.train.cache) if cfg.train.cache else None
    out = []
    for d in cfg.datasets:
        split = getattr(d, split_attr)
        mode = box_mask_mode(cfg, d)
        out.append(Source(d, cfg.resolve_root(d.root), split, h, mode, cache))
    return out


def build_loader(cfg: Config, sources: list[Source], start_step: int, rank: int = 0, world: int = 1,
                 pin: bool = False) -> DataLoader:
    sampler = MixedBatchSampler([len(s) for s in sources], [d.share for d in cfg.datasets], cfg.train.seed,
                                start_step, cfg.train.steps, rank, world)
    ds = MixedDataset(sources, tuple(cfg.train.crop), cfg.train.jitter_on_device)
    w = cfg.train.workers
    if w > 0:
        atexit.unregister(release_worker_handles)  # once, however many loaders a process builds
        atexit.register(release_worker_handles)
    return DataLoader(ds, batch_sampler=sampler, num_workers=w, collate_fn=collate, pin_memory=pin,
                      persistent_workers=False, prefetch_factor=4 if w > 0 else None)


def release_worker_handles() -> None:
    """Drop torch's handles on the shared-memory tensors loader workers sent whose tensors are gone.

    torch keeps one weak handle per received storage (torch.multiprocessing.reductions.shared_cache) and
    prunes dead ones only when more than 128 pile up. Handles still there when the interpreter shuts down
    are freed after torch's own modules are torn down, and each prints "Exception ignored in
    StorageWeakRef.__del__ ... 'NoneType' object has no attribute '_free_weak_ref'" (36 of them after the
    test suite). build_loader registers this to run at exit, while torch is still whole.
    """
    from torch.multiprocessing import reductions

    cache = getattr(reductions, "shared_cache", None)
    if cache is not None:
        with cache.lock:
            cache.free_dead_references()


WORKER_PREFIX = "labeltree.errors.LabeltreeError: "


def batches(loader: DataLoader):
    """Iterate `loader`; a LabeltreeError raised in a worker process comes back as its own one line.

    torch re-raises a worker's exception with the worker's whole traceback as the message; the
    user needs only its last line (the file and what is wrong with it).
    """
    try:
        yield from loader
    except LabeltreeError as e:
        text = str(e)
        if "Original Traceback" not in text:
            raise
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        raise LabeltreeError(last.removeprefix(WORKER_PREFIX)) from None


def mean_std(kind: str = "imagenet") -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) on [0, 1] of `model.normalise`: ImageNet's, or 0.5 / 0.5 (= [-1, 1], the authors')."""
    if kind == "symmetric":
        return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    if kind != "imagenet":
        raise ValueError(f"model.normalise must be imagenet or symmetric, got {kind!r}")
    return MEAN, STD


def normalise(images: torch.Tensor, kind: str = "imagenet") -> torch.Tensor:
    """uint8 [B,3,H,W] (0..255) -> float by `model.normalise` (on whatever device the images are)."""
    m, s = mean_std(kind)
    mean = torch.tensor(m, device=images.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(s, device=images.device).view(1, 3, 1, 1) * 255
    return (images.float() - mean) / std


# -- prepared cache ---------------------------------------------------------------------------------

def _prepare_one(args: tuple[Item, Any, tuple[int, int] | None, Path, str, str]) -> dict[str, Any]:
    it, taxonomy, resize, out, resize_mode, fmt = args
    img = read_rgb(it.image)
    rec: dict[str, Any] = {"key": it.key, "source": it.source, "image": f"{it.key}.{fmt}"}
    write = _write_npy if fmt == "npy" else _write_png
    labels: dict[str, np.ndarray] = {}
    s = it.sample(img.shape[:2])
    if it.label is not None:
        labels["label"] = read_label(s, taxonomy)
    else:
        for mode in MODES:
            labels[f"label_{mode}"] = read_label(s, taxonomy, mode)
    small = img
    for name, lab in labels.items():
        if lab.shape != img.shape[:2]:
            raise LabeltreeError(f"label is {lab.shape[1]}x{lab.shape[0]} but its image is "
                                 f"{img.shape[1]}x{img.shape[0]}", it.source)
        small, lab_s = scale_pair(img, lab, resize, resize_mode) if resize else (img, lab)
        file = f"{it.key}_{name}.{fmt}"
        write(out / file, lab_s)
        rec[name] = file
        rec["values" + name[len("label"):]] = label_values(lab_s)
    write(out / rec["image"], small)
    return rec


def _write_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(arr))


def _write_png(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG", compress_level=1)


def prepare_cache(cfg: Config, h: Hierarchy, out: Path, workers: int | None = None, progress: bool = True,
                  ) -> list[Path]:
    """Resize every training and validation image/label to training scale once (`labeltree prepare`)."""
    written = []
    for d in cfg.datasets:
        for split in dict.fromkeys(s for s in (d.split, d.val_split) if s):
            mode = box_mask_mode(cfg, d)
            src = Source(d, cfg.resolve_root(d.root), split, h, mode, None)
            folder = out / src.name / split
            folder.mkdir(parents=True, exist_ok=True)
            jobs = [(it, src.taxonomy, src.resize, folder, src.resize_mode, cfg.train.cache_format) for it in src.items]
            recs = list(pmap(_prepare_one, jobs, workers, desc=f"prepare {src.name}/{split}", progress=progress))
            index = folder / "index.json"
            write_json(index, {"version": CACHE_VERSION, "dataset": src.name, "split": split,
                               "resize": list(src.resize) if src.resize else None,
                               **({"resize_mode": src.resize_mode} if src.resize_mode != "fixed" else {}),
                               "items": recs})
            written.append(index)
    return written
