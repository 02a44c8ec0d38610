"""Training configuration: a YAML file validated by pydantic, with dotted `--set key=value` overrides.

The resolved config (defaults filled in, overrides applied, paths made absolute) is what a run
prints and saves next to its checkpoints, so that a run folder says exactly what produced it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from labeltree.core.yamlio import NoBoolNumbers, model_error, parse_yaml
from labeltree.datasets.boxmask import MaskMode
from labeltree.errors import LabeltreeError
from labeltree.fsutil import MAX_TEXT_BYTES, check_output, read_input
from labeltree.resources import config_dir, is_path_ref
from labeltree.train.last_mean import LAST_MEAN_FILE
from labeltree.train.scaling import ResizeMode


class _Strict(NoBoolNumbers):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # nan / inf / 1e400 never reach training


# bounds that keep a typo from asking for hundreds of GB (a crop or width of 10^5) or a silent no-op
MAX_SIDE = 8192  # pixels of a crop or resize side
MAX_CROP_PIXELS = 1 << 24  # 16 Mpx per crop
MAX_WIDTH = 4096  # channels of a layer
Side = Annotated[int, Field(ge=1, le=MAX_SIDE)]
Channels = Annotated[int, Field(ge=1, le=MAX_WIDTH)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]
DEVICE_PATTERN = r"^(auto|cpu|cuda|cuda:\d{1,3}|mps)$"


RUN_FILES = ("last.pt", "best.pt", "train.jsonl", "metrics.jsonl", LAST_MEAN_FILE)


def check_run_folder(out: Path, resume: bool, force: bool) -> None:
    """A run folder holding a run is continued (`resume`) or started over (`force`), never silently mixed."""
    # torchrun's ranks all write into rank 0's run folder: rank 0 alone holds its lock
    check_output(out, "--out", folder=True, lock=os.environ.get("RANK", "0") == "0")
    found = [n for n in RUN_FILES if (out / n).exists()]
    if found and not resume and not force:
        raise LabeltreeError(f"--out holds a run ({', '.join(found)}); pass --resume to continue it or --force to "
                             "start over (its checkpoints and logs are replaced), or choose another --out", out)


def check_init_options(init: str | Path | None, init_weights: str | None, resume: bool, out: Path) -> None:
    """--init starts a run, --resume continues one; --init-weights says which weights of --init; the run never
    replaces its --init checkpoint."""
    if init is not None and resume:
        raise LabeltreeError("--init starts a run from a checkpoint's weights, --resume continues the run in --out: "
                             "give one of them (a run started with --init resumes with --resume alone)")
    if init_weights is not None and init is None:
        raise LabeltreeError("--init-weights says which weights of the --init checkpoint to start from; give --init")
    if init is not None and Path(init).resolve() in {(Path(out) / n).resolve() for n in RUN_FILES}:
        raise LabeltreeError("--init: the checkpoint is a file this run writes in --out; copy it elsewhere or "
                             "choose another --out", init)


def check_device(spec: str, option: str = "--device") -> str:
    """A device name torch understands (auto, cpu, cuda, cuda:N, mps), checked before torch sees it."""
    import re

    if not re.match(DEVICE_PATTERN, spec):
        raise LabeltreeError(f"{option} {spec!r}: expected auto, cpu, cuda, cuda:N or mps")
    return spec


class Augment(_Strict):
    """Per-dataset augmentation; flips are off by default (left/right signs are different classes).

    `style: jitter` = the brightness / contrast / saturation / hue ranges below (torchvision's jitter);
    `style: authors` (or `augment: authors`) = the authors' colour orders and blur (train.authors_aug).
    """

    style: Literal["jitter", "authors"] = "jitter"
    scale: tuple[Annotated[float, Field(gt=0.0, le=8.0)], Annotated[float, Field(gt=0.0, le=8.0)]] = (1.0, 1.0)
    hflip: bool = False  # scale: random rescale range applied after `resize`
    brightness: Unit = 0.0
    contrast: Unit = 0.0
    saturation: Unit = 0.0
    hue: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0

    @model_validator(mode="before")
    @classmethod
    def _named(cls, data: Any) -> Any:
        if isinstance(data, str):  # `augment: authors`
            if data != "authors":
                raise ValueError(f"augment: {data!r} is not a named augmentation (known: authors); or give a mapping")
            return {"style": "authors"}
        return data

    @model_validator(mode="after")
    def _check(self) -> Augment:
        if self.style == "authors" and (self.brightness or self.contrast or self.saturation or self.hue):
            raise ValueError("augment: style authors has its own colour ranges; drop brightness / contrast / "
                             "saturation / hue")
        if self.scale[0] > self.scale[1]:
            raise ValueError(f"scale: the range must be (low, high), got {list(self.scale)}")
        return self


class DatasetCfg(_Strict):
    name: str  # dataset key in the tree file (cityscapes, vistas, gtsdb, ...)
    root: str  # absolute, or relative to --data-root
    split: str = "train"
    val_split: str | None = "val"
    share: int = Field(1, ge=0, le=1024)  # images of this dataset in every (per-process) batch
    resize: tuple[Side, Side] | None = None  # (H, W) training scale; None = native size
    resize_mode: ResizeMode = "fixed"  # fixed = exactly `resize`; cover / short keep the aspect (train.scaling)
    augment: Augment = Field(default_factory=Augment)
    mask_mode: MaskMode | None = None  # box datasets: None = by model kind (`box_mask_mode`)
    max_samples: int | None = Field(None, ge=1)  # use only the first N samples (debugging, tests)


class EvalDatasetCfg(_Strict):
    name: str
    root: str
    images: str | None = None  # where the photos are when `root` has labels only (Cityscapes Extended)
    split: str = "val"
    resize: tuple[Side, Side] | None = None
    resize_mode: ResizeMode = "fixed"
    max_samples: int | None = Field(None, ge=1)


class ModelCfg(_Strict):
    kind: Literal["hierarchical", "flat"] = "hierarchical"
    backbone: Literal["resnet50", "resnet18", "tiny"] = "resnet50"
    pretrained: str | None = None  # path to a torchvision state dict of the backbone
    width: Channels = 256  # shared feature width and per-head bottleneck width (paper: 256)
    bottleneck: Channels = 64  # inner width of each head's bottleneck block
    tiny_channels: tuple[Channels, Channels, Channels, Channels] = (16, 32, 48, 64)
    bn_momentum: Unit = 0.1  # PyTorch convention (= TF decay 0.9)
    # input scaling: imagenet = torchvision's mean/std (what its ImageNet weights were trained with);
    # symmetric = x / 127.5 - 1, the authors' [-1, 1] (their TF-slim weights' input; preprocess_augmentation_1.py:21-23)
    normalise: Literal["imagenet", "symmetric"] = "imagenet"
    # the heads' x2 transposed conv: bilinear = a bilinear kernel, no bias; he = the authors' (model.py:144-151):
    # He (variance-scaling, truncated normal) weights and a zero-initialised bias
    upsample_init: Literal["bilinear", "he"] = "bilinear"


class OptimCfg(_Strict):
    # paper: SGD with momentum; adamw (beta1 = momentum) trains a tiny net from scratch in fewer steps
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0.0, le=100.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(1.7e-4, ge=0.0, le=1.0)
    gamma: float = Field(0.5, gt=0.0, le=1.0)  # lr factor at each milestone (paper: halved)
    milestones: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)  # in `milestone_unit`
    milestone_unit: Literal["steps", "epochs"] = "steps"
    epoch_dataset: str | None = None  # epochs counted over this dataset (paper: vistas)
    # weight decay only on weights of convolutions (and linear layers): not on normalisation layers' scale and
    # shift, nor on biases. The authors' regulariser skips BatchNorm (feature_extractor.py:27, resnet_arg_scope)
    no_decay_norm_bias: bool = False
    # fine-tuning (`train --init`, train/finetune.py): the learning rate of what `labeltree migrate` added (new
    # classifiers, new rows of existing ones) is this many times `lr`; 1 = the same as the rest
    new_head_lr_mult: float = Field(1.0, gt=0.0, le=1e4)


class ClassWeightsCfg(_Strict):
    """Per-classifier class weights from a `labeltree stats` file (labeltree.train.class_weights)."""

    stats: str  # raw-count file (`stats --raw`) or roll-up rows (`stats --tree-out`); relative to the cwd
    kind: Literal["medfreq", "enet", "inverse"] = "medfreq"
    split: str = "train"  # the split of the stats file the weights come from


class LossCfg(_Strict):
    lambdas: dict[Annotated[int, Field(ge=1, le=64)], Annotated[float, Field(ge=0.0, le=1e3)]] = Field(
        default_factory=lambda: {1: 1.0})  # per classifier level
    lambda_default: float = Field(0.1, ge=0.0, le=1e3)  # levels not listed (paper: 0.1 below Level 1)
    gating: Literal["path", "l1", "l2"] = "path"  # docs/design.md §2.4 box gating rule
    class_weights: ClassWeightsCfg | None = None  # None = unweighted (the paper)


class TrainCfg(_Strict):
    steps: int = Field(1000, ge=0, le=10**9)
    crop: tuple[Side, Side] = (512, 706)  # (H, W)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    workers: int = Field(2, ge=0, le=256)
    pin_memory: bool = True
    amp: bool = True  # bf16 autocast (CUDA only)
    channels_last: bool = True  # CUDA only
    compile: bool = False
    device: str = Field("auto", pattern=DEVICE_PATTERN)  # auto | cpu | cuda | cuda:N | mps
    threads: int | None = Field(None, ge=1, le=1024)  # CPU intra-op threads (None = torch's default)
    log_every: int = Field(1, ge=1, le=10**9)
    checkpoint_every: int = Field(500, ge=1, le=10**9)
    eval_every: int = Field(0, ge=0, le=10**9)  # 0 = only at the end
    eval_at_end: bool = True
    check_labels: bool = True
    cache: str | None = None  # folder written by `labeltree prepare` (relative to --data-root)
    cache_format: Literal["png", "npy"] = "png"  # what `prepare` writes; npy = memory-mapped crops (train.fastload)
    # exponential moving average of the weights (train.ema): 0 = off; the paper's 0.9. Evaluation during training,
    # and predict / evaluate / export by default, use the averages; the checkpoint keeps them beside the raw weights
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)
    jitter_on_device: bool = False  # colour jitter / authors' augmentation on the batch after the transfer (fastload)
    # fine-tuning (train/finetune.py): the backbone gets no update, its BatchNorm in eval mode, in steps 1..N
    freeze_backbone_steps: int = Field(0, ge=0, le=10**9)

    @model_validator(mode="after")
    def _check(self) -> TrainCfg:
        if self.crop[0] * self.crop[1] > MAX_CROP_PIXELS:
            raise ValueError(f"crop: {self.crop[0]}x{self.crop[1]} is more than {MAX_CROP_PIXELS} pixels per crop")
        return self


class EvalCfg(_Strict):
    """The rules of the evaluation during training: the same `Rules` as `labeltree evaluate --protocol P
    --eval-size S` (labeltree.evaluate.protocols), so that metrics.jsonl equals that command on a checkpoint."""

    protocol: Literal["official", "paper"] = "official"  # as `labeltree evaluate`'s default
    # native (each label's own size; the network at the dataset's training scale), paper (the authors' 512x706) or
    # [H, W]; None: the protocol's (paper -> paper, official -> native)
    size: Literal["native", "paper"] | tuple[Side, Side] | None = None
    # the paper's class rule (GTSDB, Cityscapes Extended): gt pixels a class needs in both GTSDB splits (--min-pixels)
    min_pixels: int = Field(1000, ge=0, le=10**12)

    @property
    def size_rule(self) -> str | tuple[int, int]:
        """The size as `resolve_rules`' eval_size: a name, or (H, W)."""
        from labeltree.evaluate.protocols import DEFAULT_EVAL_SIZE

        return DEFAULT_EVAL_SIZE[self.protocol] if self.size is None else self.size


class Config(_Strict):
    hierarchy: str = "cityscapes+vistas+gtsdb"
    datasets: list[DatasetCfg] = Field(min_length=1)
    eval_datasets: list[EvalDatasetCfg] = Field(default_factory=list)
    model: ModelCfg = Field(default_factory=ModelCfg)
    optim: OptimCfg = Field(default_factory=OptimCfg)
    loss: LossCfg = Field(default_factory=LossCfg)
    train: TrainCfg = Field(default_factory=TrainCfg)
    eval: EvalCfg = Field(default_factory=EvalCfg)
    data_root: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Config:
        for d in [*self.datasets, *self.eval_datasets]:
            if d.resize_mode != "fixed" and not d.resize:
                raise ValueError(f"datasets ({d.name}): resize_mode {d.resize_mode} needs a resize [H, W] to scale to")
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"datasets: a dataset is listed twice ({names})")
        if sum(d.share for d in self.datasets) == 0:
            raise ValueError("datasets: the shares add up to 0; a batch needs at least one image")
        if self.optim.milestone_unit == "epochs" and self.optim.epoch_dataset not in names:
            raise ValueError("optim.epoch_dataset must name a training dataset when milestones are in epochs")
        return self

    @property
    def batch_size(self) -> int:
        return sum(d.share for d in self.datasets)

    def lam(self, level: int) -> float:
        return self.loss.lambdas.get(level, self.loss.lambda_default)

    def resolve_root(self, root: str) -> Path:
        p = Path(root).expanduser()
        if not p.is_absolute() and self.data_root:
            p = Path(self.data_root) / p
        return p.resolve()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _parse_value(text: str) -> Any:
    try:
        return parse_yaml(text)
    except LabeltreeError:
        return text  # not YAML: the text itself (the model says whether a text fits)


def apply_override(data: dict[str, Any], assignment: str) -> tuple[str, ...]:
    """`a.b.c=value` (list items by index: `datasets.0.root=...`); values are parsed as YAML.
    Returns the key's parts (errors in what it set are blamed on the --set, not on a file line)."""
    if "=" not in assignment:
        raise LabeltreeError(f"--set expects key=value, got '{assignment}'")
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    cur: Any = data
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(cur, list):
            if not p.isdigit() or int(p) >= len(cur):
                raise LabeltreeError(f"--set {key}: '{p}' is not an index of a list of {len(cur)}")
            if last:
                cur[int(p)] = _parse_value(value)
            else:
                cur = cur[int(p)]
        elif isinstance(cur, dict):
            if last:
                cur[p] = _parse_value(value)
            else:
                cur = cur.setdefault(p, {})
        else:
            raise LabeltreeError(f"--set {key}: '{'.'.join(parts[:i])}' is not a section")
    return tuple(parts)


def find_config(ref: str | Path) -> Path:
    """A path (a slash or a .yaml suffix), or the name of a bundled config (`paper`, `cpu-tiny`); a
    folder of that name in the working directory never shadows a bundled config."""
    p = Path(ref)
    if is_path_ref(ref) and p.exists():
        return p
    bundled = config_dir() / f"{p.stem}.yaml"
    if (not is_path_ref(ref) or p.parent == Path(".")) and bundled.exists():
        return bundled
    names = ", ".join(q.stem for q in sorted(config_dir().glob("*.yaml")))
    raise LabeltreeError(f"config not found (searched {p.resolve()} and bundled configs: {names})", p)


def load_config(ref: str | Path, overrides: list[str] | tuple[str, ...] = (), data_root: str | Path | None = None,
                ) -> Config:
    path = find_config(ref)
    if path.is_dir():
        raise LabeltreeError("a training config must be a YAML file, not a folder", path)
    try:
        text = read_input(path, "training config", MAX_TEXT_BYTES).decode("utf-8")
    except UnicodeDecodeError as e:
        raise LabeltreeError(f"not a text file (byte {e.start} is no UTF-8): give a YAML training config",
                             path) from None
    except OSError as e:
        raise LabeltreeError(f"cannot read the config ({e.strerror or e})", path) from None
    data = parse_yaml(text, path)  # duplicate keys refused, file:line
    if not isinstance(data, dict):
        raise LabeltreeError("a training config must be a YAML mapping", path)
    set_by = {apply_override(data, o): o for o in overrides}
    if data_root is not None:
        data["data_root"] = str(Path(data_root).expanduser().resolve())
    return config_from_dict(data, path, text=text, set_by=set_by)


def config_from_dict(data: dict[str, Any], path: Path | None = None, *, text: str | None = None,
                     set_by: dict[tuple[str, ...], str] | None = None) -> Config:
    """The validated config; an error names the key and its line in the file (`text`), or the --set
    (`set_by`: key parts -> assignment) that put the bad value there."""
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        err = model_error(e, Config, data, path, "training config", text=text)
        loc = tuple(str(p) for p in e.errors()[0]["loc"])
        for parts, assignment in (set_by or {}).items():
            if loc[:len(parts)] == parts or parts[:len(loc)] == loc:
                raise LabeltreeError(f"{err.message} (from --set {assignment})", path) from None
        raise err from None
