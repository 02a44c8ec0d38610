"""demo.plan: plan overrides and bad values; configs/demo.yaml validated, an unknown key refused with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from labeltree.cli import main
from labeltree.core.yamlio import load_model
from labeltree.demo.plan import DemoSettings, demo_settings, make_plan
from labeltree.errors import LabeltreeError
from labeltree.resources import config_dir


def test_plan_overrides_and_bad_values():
    p = make_plan(True, images=10, steps=7)
    assert (p.images, p.steps) == (10, 7)
    res = CliRunner().invoke(main, ["demo", "--steps", "0"])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_bundled_settings_load_and_a_misspelt_key_is_refused(tmp_path: Path):
    s = demo_settings()
    assert s.plans.quick.steps == 300 and s.plans.quick.gtsdb_signs == (6, 8)
    assert [c.dataset for c in s.report.columns if c.cross_dataset] == ["cityscapes-extended"]
    text = (config_dir() / "demo.yaml").read_text()
    bad = tmp_path / "demo.yaml"
    bad.write_text(text.replace("  quick: {images: 100,", "  quick: {imagez: 100,"))
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("  quick:"))
    with pytest.raises(LabeltreeError) as e:
        load_model(bad, DemoSettings, "demo settings")
    assert "imagez" in str(e.value) and f"{bad}:{line}" in str(e.value)


@pytest.mark.parametrize("value", ["[0, true]", "[0, .nan]", "[0, 1.5]", "[0.5, 0.6]", "[0, 0.7, 0.6]", "0.5", "[]",
                                   str([i / 1000 for i in range(1000)])])
def test_malformed_risk_coverage_is_one_error_naming_its_line(tmp_path: Path, value: str):
    """report.risk_coverage of a user's demo settings: [0, true] was read as [0, 1.0] before, and 1000
    thresholds (1000 back-off passes over every pixel, 1000 table rows) were taken."""
    text = (config_dir() / "demo.yaml").read_text()
    bad = tmp_path / "demo.yaml"
    bad.write_text(text.replace("  risk_coverage: [0, 0.5, 0.6, 0.7, 0.8, 0.9]", f"  risk_coverage: {value}"))
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("  risk_coverage:"))
    with pytest.raises(LabeltreeError) as e:
        load_model(bad, DemoSettings, "demo settings")
    assert "risk_coverage" in str(e.value) and f"{bad}:{line}" in str(e.value)
