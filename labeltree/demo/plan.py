"""The demo's settings (configs/demo.yaml: plans, training config, report layout, the paper's numbers) as a
validated model, and the plan of one run.

configs/demo.yaml is data, not code; it is read through the one YAML loader (duplicate keys refused) into
`DemoSettings`, whose models refuse unknown keys: a misspelt key names itself, its file and its line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, field_validator

from labeltree.core.yamlio import NoBoolNumbers, load_model
from labeltree.errors import LabeltreeError
from labeltree.resources import config_dir
from labeltree.vocab import GTSDB_SIGNS

MODELS = ("hierarchical", "flat")
MAX_THRESHOLDS = 100  # report.risk_coverage: a table row each


class _Strict(NoBoolNumbers):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Plan(_Strict):
    """One plan (`quick` or `full` in configs/demo.yaml, options applied by make_plan): data sizes, steps, seed."""

    images: int
    gtsdb_images: int
    size: tuple[int, int]  # (W, H)
    steps: int
    seed: int = 0
    gtsdb_signs: tuple[int, int] = GTSDB_SIGNS  # signs per GTSDB frame (lo, hi)
    street_signs: tuple[int, int] | None = None  # sign posts per Cityscapes/Vistas frame; None = synth default


class Plans(_Strict):
    quick: Plan
    full: Plan


class Column(_Strict):
    """A column of Tables II / III: the dataset tested on and its heading."""

    dataset: str
    title: str
    cross_dataset: bool = False  # the column whose frames carry no sign classes in training


class Table4Layout(_Strict):
    l1: str  # L1 classes on this dataset's val frames
    l2: str  # L2 (sign) classes on the same frames' extended labels


class ReportLayout(_Strict):
    table1: list[str]
    columns: list[Column]
    trained_on: str
    table4: Table4Layout
    per_class_panels: list[tuple[str, str]]  # (dataset, metric)
    risk_coverage: tuple[float, ...]  # back-off thresholds T of the selective-prediction table, from 0, rising

    @field_validator("risk_coverage")
    @classmethod
    def _thresholds(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        """T = 0 first (the figures are relative to the plain cascade), rising, each a probability."""
        if not v or v[0] != 0 or any(not 0 <= t <= 1 for t in v) or any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError("expected rising thresholds between 0 and 1, the first 0")
        if len(v) > MAX_THRESHOLDS:  # each one is a pass of the back-off over every evaluated pixel
            raise ValueError(f"{len(v)} thresholds; give at most {MAX_THRESHOLDS}")
        return v


class Score(_Strict):
    mPA: float  # noqa: N815 - the paper's spelling, as in the evaluation results
    mIoU: float  # noqa: N815


class Table4Scores(_Strict):
    L1: Score  # noqa: N815
    L1_sign: Score  # noqa: N815
    L2: Score  # noqa: N815


class PaperNumbers(_Strict):
    table2_flat: dict[str, Score]
    table3_hierarchical: dict[str, Score]
    table4: dict[str, Table4Scores]  # model -> scores


class DemoSettings(_Strict):
    """configs/demo.yaml."""

    train_config: str
    overrides: list[str] = []
    notes: list[str] = []
    plans: Plans
    report: ReportLayout
    figure_datasets: list[str]
    paper: PaperNumbers


@cache
def demo_settings() -> DemoSettings:
    """configs/demo.yaml, validated; read once per process (the model is frozen)."""
    return load_model(config_dir() / "demo.yaml", DemoSettings, "demo settings")


@dataclass
class DemoResult:
    out: Path
    plan: Plan
    metrics: dict[str, dict[str, dict[str, Any]]]  # model -> dataset -> evaluate result
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall seconds
    risk_coverage: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # dataset -> selective_sweep rows
    report: Path | None = None
    # how far each number moves between seeds (metric -> column -> fraction), with --seeds N > 1; None: not measured
    spread: dict[str, dict[str, float]] | None = None
    seeds: list[int] = field(default_factory=list)  # the training seeds the spread is over


def make_plan(quick: bool, images: int | None = None, gtsdb_images: int | None = None, steps: int | None = None,
              seed: int | None = None) -> Plan:
    plans = demo_settings().plans
    p = (plans.quick if quick else plans.full).model_dump()
    for k, v in (("images", images), ("gtsdb_images", gtsdb_images), ("steps", steps), ("seed", seed)):
        if v is not None:
            p[k] = v
    if p["images"] < 4 or p["gtsdb_images"] < 6:
        raise LabeltreeError("the demo needs at least 4 frames per dataset (6 for GTSDB) to have train and val splits")
    if p["steps"] < 1:
        raise LabeltreeError("--steps must be at least 1")
    return Plan.model_validate(p)
