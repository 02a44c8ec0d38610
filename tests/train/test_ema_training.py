"""train.ema_decay in a run: the averages in the checkpoint, exact on resume, used by evaluation and predict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from test_trainer_run import quiet, read_jsonl, toy_cfg, train_killed_at
from test_trainer_toydata import make_toy

from labeltree.train.checkpoint import load_checkpoint
from labeltree.train.config import config_from_dict
from labeltree.train.ema import WeightEMA
from labeltree.train.loop import train


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy(tmp_path_factory.mktemp("toy"), n=4, n_val=2)


def test_ema_in_the_checkpoint_exact_on_resume_and_used_for_evaluation(toy: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    steps = 6
    cfg = config_from_dict(toy_cfg(toy, steps=steps, ema_decay=0.9, checkpoint_every=2, eval_at_end=True))
    seen: list[Any] = []
    real_update = WeightEMA.update

    def spy(self: WeightEMA, model: torch.nn.Module) -> None:
        real_update(self, model)
        seen.append((self.updates, self.rate(self.updates)))

    monkeypatch.setattr(WeightEMA, "update", spy)
    full = train(cfg, tmp_path / "full", progress=False, log=quiet)
    assert seen == [(k, min(0.9, (1 + k) / (10 + k))) for k in range(1, steps + 1)]  # once per optimiser step
    st = load_checkpoint(full.last)
    assert st["ema"]["updates"] == steps and st["ema"]["decay"] == 0.9
    assert set(st["ema"]["state"]) == set(st["model"])
    assert any(not torch.equal(st["ema"]["state"][k], st["model"][k]) for k in st["model"])
    assert read_jsonl(tmp_path / "full" / "metrics.jsonl")[-1]["weights"] == "ema"

    # killed during step 4 (last.pt at step 2), resumed: the averages equal the uninterrupted run's, bit for bit
    train_killed_at(4, cfg, tmp_path / "cut", monkeypatch)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["ema"]["updates"] == 2
    train(cfg, tmp_path / "cut", resume=True, progress=False, log=quiet)
    sb = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert sb["ema"]["updates"] == steps
    for k, v in st["ema"]["state"].items():
        assert torch.equal(v, sb["ema"]["state"][k]), k

    # predict / evaluate / export load the averages by default, the raw weights on request
    from labeltree.train.predict import load_predictor

    ema, raw = load_predictor(full.last, "cpu"), load_predictor(full.last, "cpu", weights="raw")
    k = next(k for k in st["model"] if not torch.equal(st["ema"]["state"][k], st["model"][k]))
    assert torch.equal(ema.model.state_dict()[k], st["ema"]["state"][k])
    assert torch.equal(raw.model.state_dict()[k], st["model"][k])
    plain = train(config_from_dict(toy_cfg(toy, steps=1)), tmp_path / "plain", progress=False, log=quiet)
    assert "ema" not in load_checkpoint(plain.last)  # off by default
    p = load_predictor(plain.last, "cpu")  # ema asked, none there: the raw weights
    assert all(torch.equal(v, load_checkpoint(plain.last)["model"][n]) for n, v in p.model.state_dict().items())
