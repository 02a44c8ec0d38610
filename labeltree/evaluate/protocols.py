"""Evaluation protocols (docs/design.md §2.6): one name selects a whole, documented set of rules.

`official` reproduces the dataset's official tool exactly:
- Cityscapes: cityscapesScripts 2.3.0 `evalPixelLevelSemanticLabeling` (`getIouScoreForLabel`,
  `getScoreAverage`): the 19 classes with ignoreInEval false; gt pixels of other ids are not
  counted; a prediction of an ignored id on an evaluated pixel is a false negative of that pixel's
  class and nobody's false positive; the mean runs over every class whose IoU is defined, so a class
  predicted but absent from the gt scores 0.
- Mapillary Vistas: `mapillary_vistas/evaluation/confusion_matrix.py` and `helpers/print.py` of
  github.com/mapillary/mapillary_vistas at commit a64822981e4ed951394fb4943adde7b1dee8931d (no
  package on PyPI; rules re-derived from that source): the matrix over all labels is cut to the rows
  AND columns of labels with `evaluate` true, so a prediction of a non-evaluated label (Unlabeled) or
  of a value outside the label list is neither a false negative nor a false positive; IoU is NaN
  where TP + FP + FN = 0 and the average runs over the non-NaN IoUs. The rules are the same for
  v1.2 and v2.0: they depend on the release's config only through its `evaluate` flags.
- BDD100K: `bdd100k/eval/seg.py` of github.com/bdd100k/bdd100k at commit 9ac17c6c7c51d2fc83065fccd707cd5b1882a293
  (`fast_hist`, `per_class_iou`, `evaluate_segmentation`): the 19 train classes; gt pixels of 255 are not
  counted; a prediction of 255 on an evaluated pixel falls into the tool's extra 'ignored' column, so it
  is a false negative of that pixel's class and nobody's false positive; the mean runs over the classes
  present in the gt (`gt_id_set`); a class absent from both gt and prediction is reported as 0.0 (its
  `per_class_iou` of an all-zero row), not in the mean. Its per-class "Acc" is TP / predicted pixels (a
  precision; `per_class_acc` sums the columns), where labeltree's PA is TP / gt pixels: mPA is not its mAcc
  (IoU, mIoU and pixel accuracy are; tests/evaluate/test_conformance_bdd100k.py runs the tool itself).
  Predicted values 19..254 are 'ignored' too, and a ground-truth image without a prediction file is scored as
  all 'ignored' (a warning names how many).
- IDD (level 3): `evaluation/evaluate_mIoU.py` of github.com/AutoNUE/public-code at commit
  5d9a93beb176b03dd32c79ce050d0fbddc9acd00: gt 255 is no pixel of any class, a prediction of 255
  (or above 25) on a class pixel is that class's false negative and nobody's false positive, IoU
  per level-3 class. Two differences, both said in the result: the tool first resizes gt and
  prediction to 1280x720 (nearest), labeltree compares them at the labels' own size; the tool's
  mean runs over all 26 classes (NaN when one is absent), labeltree's over those with a defined IoU.
- Predicted values that are no class of the dataset: Vistas, BDD100K and IDD's tools count them (Vistas:
  as Unlabeled, dropped; BDD100K: as ignored; IDD: as a miss), which is, for each, counting them as the
  dataset's ignore label (`outside: ignore`, one warning line with the pixels and files); cityscapesScripts
  refuses them, and so does labeltree (`outside: refuse`, also the paper protocol's rule).
- Datasets without an official pixel-level tool (GTSDB, Cityscapes Extended) use `paper`; the
  result says so.

`paper` is the authors' code: the paper's class sets (Cityscapes 27, Vistas 65, GTSDB 28 of 43 by
the >= 1000-pixel rule at 512x850, Cityscapes Extended: sign classes with >= 1000 pixels in GTSDB
train, GTSDB test and the evaluated Cityscapes Extended split), means over classes present in the
gt, predictions of classes the dataset lacks dropped (a tree node without a class of the dataset;
in dataset ids the dataset's "no class" value, which `labeltree predict` writes for such nodes), and
the flat model's second-choice traffic-sign rule, and the authors' decision path (`path: direct`,
`Hierarchy.direct_skips`): on GTSDB and Cityscapes Extended, Level 1 "traffic sign" goes straight to the
sign classifier and the Back / Front classifier is never asked (their define_estimator.py:515-566).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from labeltree.errors import LabeltreeError
from labeltree.vocab import DEFAULT_MIN_PIXELS

PROTOCOLS = ("official", "paper")
MEANS = ("gt", "defined")
#: decision paths of a hierarchical model: the full cascade, or the authors' (classifiers skipped, `direct_skips`)
PATHS = ("cascade", "direct")
#: predicted values that are no class of the dataset: refused, or counted as its ignore label (the official tools)
OUTSIDE = ("refuse", "ignore")
OUTSIDE_AS_IGNORE = ("vistas", "vistas-v2.0", "bdd100k", "idd")
#: official tools that report IoU 0.0 (not undefined) for a class absent from gt and prediction
ZERO_FOR_ABSENT = ("bdd100k",)
#: official tools that score a ground-truth image without a prediction file as all ignored (a warning here)
MISSING_AS_IGNORED = ("bdd100k",)
#: the frame size (H, W) at which the paper's >= min_pixels rule counts GTSDB pixels: the authors' training scale
PAPER_PIXEL_SIZE = (512, 850)
#: the size (H, W) the authors evaluate every dataset at: their network size (utils.py:67-68), photos bilinear and
#: labels nearest-resized to it, aspect not kept (input_pipeline.py:324-326, 405-407, 483-485, 561-564)
PAPER_EVAL_SIZE = (512, 706)
#: named evaluation sizes: native = each label's own size
EVAL_SIZES = {"native": None, "paper": PAPER_EVAL_SIZE}
#: each protocol's evaluation size when none is named (`--eval-size`, a training config's `eval.size`): the paper
#: protocol scores at the authors' network size, the official tools at the labels' own size
DEFAULT_EVAL_SIZE = {"official": "native", "paper": "paper"}


def eval_size_name(size: Sequence[int] | None) -> str:
    """How an output names the size it was scored at: 'native' or WIDTHxHEIGHT (+ ' (paper)' for the authors')."""
    if size is None:
        return "native"
    h, w = (int(v) for v in size)
    return f"{w}x{h}" + (" (paper)" if (h, w) == PAPER_EVAL_SIZE else "")
#: fields of Rules that say how the paper's pixel rule is counted, not what the numbers are: not in as_dict()
_RULE_INPUTS = ("dataset", "min_pixels", "pixel_size", "given")
#: drop rules: which predictions are neither errors nor in any union
DROPS = ("none", "foreign", "unevaluated")

VISTAS_COMMIT = "a64822981e4ed951394fb4943adde7b1dee8931d"
BDD100K_COMMIT = "9ac17c6c7c51d2fc83065fccd707cd5b1882a293"

#: taxonomy name -> (official tool, mean rule, drop rule)
OFFICIAL_TOOLS: dict[str, tuple[str, str, str]] = {
    "cityscapes": ("cityscapesScripts 2.3.0 evalPixelLevelSemanticLabeling", "defined", "none"),
    "vistas": (f"mapillary_vistas evaluation (github.com/mapillary/mapillary_vistas @ {VISTAS_COMMIT[:7]})",
               "defined", "unevaluated"),
    # the same script evaluates v2.0 (its rules read each label's `evaluate` flag from the release's config)
    "vistas-v2.0": (f"mapillary_vistas evaluation (github.com/mapillary/mapillary_vistas @ {VISTAS_COMMIT[:7]}, "
                    "config_v2.0.json)", "defined", "unevaluated"),
    "bdd100k": (f"bdd100k eval/seg.py (github.com/bdd100k/bdd100k @ {BDD100K_COMMIT[:7]})", "gt", "none"),
    "idd": ("AutoNUE public-code evaluation/evaluate_mIoU.py @ 5d9a93b (at the labels' own size, not resized to "
            "1280x720; mean over classes with a defined IoU)", "defined", "none"),
}


@dataclass(frozen=True)
class Rules:
    """Every rule of one evaluation, resolved once (`resolve_rules`); `as_dict()` goes into the JSON as "rules".

    Example::

        rules = resolve_rules("paper", "gtsdb", min_pixels=1000)   # GTSDB's 28 classes at 512x850
        rules.classes, rules.drop, rules.sign_rule                 # ('paper', 'foreign', True)
    """

    protocol: str  # official | paper: what the numbers are
    tool: str  # the tool or paper whose semantics these are
    classes: str | tuple[int, ...]  # class set (official | paper | all | ids)
    mean_over: str  # gt | defined
    drop: str  # none | foreign | unevaluated
    sign_rule: bool  # the flat model's second-choice rule on score maps
    requested: str  # the protocol asked for
    path: str = "cascade"  # a hierarchical model's decision path: cascade | direct (the authors')
    outside: str = "refuse"  # predicted values that are no class: refuse | ignore (counted as the ignore label)
    absent_zero: bool = False  # a class absent from gt and prediction reports IoU 0.0 (BDD100K's tool), not null
    missing_ignored: bool = False  # a missing prediction file scores as all ignored (BDD100K's tool), not refused
    eval_size: tuple[int, int] | None = None  # (H, W) gt and predictions are nearest-resized to; None = native
    overrides: tuple[str, ...] = ()  # options that changed a rule of the protocol
    note: str = ""
    dataset: str = ""  # the taxonomy these rules were resolved for ("" = any)
    min_pixels: int = DEFAULT_MIN_PIXELS  # the paper's class rule: gt pixels a class needs in both splits
    pixel_size: tuple[int, int] | None = PAPER_PIXEL_SIZE  # (H, W) those pixels are counted at; None = native
    given: tuple[str, ...] = field(default=(), compare=False)  # rules named explicitly (even when unchanged)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in _RULE_INPUTS:
            d.pop(k)
        d["classes"] = self.classes if isinstance(self.classes, str) else list(self.classes)
        d["overrides"] = list(self.overrides)
        d["eval_size"] = list(self.eval_size) if self.eval_size else None  # as the JSON holds it
        return d

    def describe(self) -> str:
        drop = {"none": "none dropped", "foreign": "of classes the dataset lacks dropped",
                "unevaluated": "of non-evaluated labels dropped"}[self.drop]
        classes = self.classes if isinstance(self.classes, str) else "ids " + ",".join(map(str, self.classes))
        s = (f"protocol {self.protocol} ({self.tool}): classes {classes}, "
             f"mean over classes {'present in the gt' if self.mean_over == 'gt' else 'with a defined IoU'}, "
             f"predictions {drop}" + (", flat second-choice sign rule" if self.sign_rule else "")
             + (", the authors' decision path" if self.path == "direct" else ""))
        if self.eval_size:
            s += f"; scored at {self.eval_size[1]}x{self.eval_size[0]} (W x H, labels and predictions nearest-resized)"
        if self.overrides:
            s += f"; overridden: {', '.join(self.overrides)}"
        if self.note:
            s += f"; {self.note}"
        return s


def resolve_rules(protocol: str, dataset: str, classes: str | Sequence[int] | None = None,
                  mean_over: str | None = None, drop: str | None = None, sign_rule: bool | None = None, *,
                  paper_protocol: bool | None = None, min_pixels: int | None = None,
                  pixel_size: tuple[int, int] | None | str = "paper", path: str | None = None,
                  eval_size: tuple[int, int] | None | str = "native") -> Rules:
    """The rules of `protocol` for a dataset (taxonomy name), with any explicit overrides applied.

    `paper_protocol` is the legacy switch: True = drop foreign predictions + sign rule, False = neither
    (explicit `drop` / `sign_rule` win). `pixel_size` "paper" = the authors' 512 x 850. `eval_size`: "native"
    (each label's own size), "paper" (the authors' network size, 512 x 706) or (H, W).
    """
    if protocol not in PROTOCOLS:
        raise LabeltreeError(f"--protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    if paper_protocol is not None:
        drop = drop if drop is not None else ("foreign" if paper_protocol else "none")
        sign_rule = sign_rule if sign_rule is not None else paper_protocol
    if drop is not None and drop not in DROPS:
        raise LabeltreeError(f"drop rule must be one of {', '.join(DROPS)}, not {drop!r}")
    if path is not None and path not in PATHS:
        raise LabeltreeError(f"decision path must be one of {', '.join(PATHS)}, not {path!r}")
    if mean_over is not None and mean_over not in MEANS:
        raise LabeltreeError(f"mean over must be 'gt' or 'defined', not {mean_over!r}")
    if min_pixels is not None and (isinstance(min_pixels, bool) or not isinstance(min_pixels, int) or min_pixels < 0):
        raise LabeltreeError(f"--min-pixels must be an integer >= 0, not {min_pixels!r}")
    note = ""
    if protocol == "official" and dataset in OFFICIAL_TOOLS:
        tool, mean, dr = OFFICIAL_TOOLS[dataset]
        base = Rules("official", tool, "official", mean, dr, False, protocol, "cascade",
                     "ignore" if dataset in OUTSIDE_AS_IGNORE else "refuse", dataset in ZERO_FOR_ABSENT,
                     dataset in MISSING_AS_IGNORED)
    else:
        if protocol == "official":
            note = f"'{dataset}' has no official pixel-level evaluation tool: the paper protocol is used"
        base = Rules("paper", "Meletis & Dubbelman 2018, authors' code", "paper", "gt", "foreign", True, protocol,
                     "direct", note=note)
    over = []
    kw: dict[str, Any] = {}
    for name, value, current in (("classes", classes, base.classes), ("mean_over", mean_over, base.mean_over),
                                 ("drop", drop, base.drop), ("sign_rule", sign_rule, base.sign_rule),
                                 ("path", path, base.path)):
        if value is None:
            continue
        value = value if isinstance(value, (str, bool)) else tuple(int(v) for v in value)
        if value != current:
            over.append(f"{name}={value if not isinstance(value, tuple) else ','.join(map(str, value))}")
        kw[name] = value
    return Rules(**{**asdict(base), **kw, "overrides": tuple(over), "dataset": dataset,
                    "min_pixels": DEFAULT_MIN_PIXELS if min_pixels is None else min_pixels,
                    "pixel_size": PAPER_PIXEL_SIZE if pixel_size == "paper" else _size(pixel_size),
                    "eval_size": EVAL_SIZES[eval_size] if isinstance(eval_size, str) and eval_size in EVAL_SIZES
                    else _size(eval_size),
                    "given": tuple(kw)})


def rules_for(rules: Rules | str, dataset: str, **overrides: Any) -> Rules:
    """`rules` as given (a Rules object, checked against the dataset) or resolved from a protocol name.

    The one entry every evaluation path goes through: `labeltree evaluate` resolves once and passes the
    object down; the array API passes a protocol name and single overrides (`resolve_rules`' keywords).
    """
    if isinstance(rules, str):
        return resolve_rules(rules, dataset, **overrides)
    if not isinstance(rules, Rules):
        raise LabeltreeError(f"rules must be a protocol name ({', '.join(PROTOCOLS)}) or a Rules object, "
                             f"not {type(rules).__name__}")
    given = sorted(k for k, v in overrides.items() if v is not None and not (k == "pixel_size" and v == "paper")
                   and not (k == "eval_size" and v == "native"))
    if given:
        raise LabeltreeError(f"give the rules either as a Rules object or as options, not both ({', '.join(given)}): "
                             "pass the options to resolve_rules")
    if rules.dataset and rules.dataset != dataset:
        raise LabeltreeError(f"these rules were resolved for '{rules.dataset}', not '{dataset}'")
    return rules


MAX_SIDE = 8192  # as a model's largest side (labeltree.infer.onnx_meta.MAX_SIDE)


def _size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise LabeltreeError(f"pixel size must be (H, W) or None (native), not {size!r}") from None
    if h <= 0 or w <= 0:
        raise LabeltreeError(f"pixel size must be positive, not {size!r}")
    if max(h, w) > MAX_SIDE:  # labels resized to it: (100000, 100000) is 18.6 GiB per array
        raise LabeltreeError(f"pixel size must be at most {MAX_SIDE} per side, not {size!r}")
    return h, w
