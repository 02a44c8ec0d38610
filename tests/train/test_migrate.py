"""`labeltree migrate` (issue 27): a tiny random-weight model of the paper's tree mapped onto grown trees keeps
every old dataset's predictions pixel for pixel (through `labeltree predict`), its confidences where no new
classifier is asked, and names what it added; lost, renamed and conflicting nodes, foreign checkpoints and
outputs over inputs are one line, exit 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from builders import one_torch_thread, run_cli
from PIL import Image

import labeltree as lt
from labeltree.core.tree_file import load_hierarchy
from labeltree.infer import open_model
from labeltree.train.checkpoint import check_tree, load_checkpoint, save_checkpoint, tree_entry
from labeltree.train.config import config_from_dict
from labeltree.train.model import build_model

PAPER = "cityscapes+vistas+gtsdb"
REPO = Path(__file__).resolve().parents[2]
PAPER_FILE = REPO / "taxonomies" / "hierarchies" / f"{PAPER}.yaml"


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def tiny_checkpoint(path: Path, ema: bool = False, temperatures: bool = False) -> Path:
    """A tiny net on the paper's tree whose every weight (the upsamplers' class mixing too) is random, with
    Traffic Light, Rider, Car and Driveable likely at the root, so that the classifiers below them are asked."""
    h = load_hierarchy(PAPER)
    cfg = config_from_dict({
        "hierarchy": PAPER, "datasets": [{"name": n, "root": n} for n in ("cityscapes", "vistas", "gtsdb")],
        "model": {"backbone": "tiny", "width": 16, "bottleneck": 8, "tiny_channels": [8, 8, 8, 8]},
        "train": {"amp": False}})
    sizes = [len(c.children) for c in h.classifiers]
    torch.manual_seed(0)
    model = build_model(cfg.model, sizes).eval()
    g = torch.Generator().manual_seed(1)

    def noisy(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for k, v in sd.items():
            if "running_var" in k:
                v = 0.5 + torch.rand(v.shape, generator=g)
            elif v.is_floating_point():
                v = v + 0.3 * torch.randn(v.shape, generator=g)
            out[k] = v
        root = [h.nodes[c].name for c in h.classifiers[0].children]
        for name in ("Traffic Light", "Rider", "Car", "Driveable"):
            out["heads.0.logits.bias"][root.index(name)] += 3.0
        return out

    state: dict[str, Any] = {"config": cfg.model_dump(mode="json"), "model": noisy(model.state_dict()),
                             "head_sizes": sizes, "head_names": [c.name for c in h.classifiers], "tree": tree_entry(h),
                             "step": 7, "optimizer": {"state": {}, "param_groups": []}}
    if ema:
        state["ema"] = {"decay": 0.9, "updates": 7, "state": noisy(state["model"])}
    if temperatures:
        state["temperatures"] = [1.5 + 0.5 * j for j in range(len(sizes))]
    save_checkpoint(path, state)
    return path


cli = run_cli


def refused(*args: Any) -> str:
    """One 'error:' line, exit 2."""
    out = cli(*args, code=2)
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    return lines[0]


def tree_file(folder: Path, name: str, *edits: tuple[str, str]) -> Path:
    """The paper's tree file with text replaced (each edit must apply)."""
    text = PAPER_FILE.read_text()
    for a, b in edits:
        assert a in text, a
        text = text.replace(a, b)
    (folder / name).write_text(text)
    return folder / name


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("migrate")
    (d / "img").mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(d / "img" / f"photo{k}.png")
    grown = tree_file(d, "grown.yaml", ("      - Bicyclist\n      - Motorcyclist\n",  # a new rider, order changed
                                        "      - Motorcyclist\n      - Scooter Rider\n      - Bicyclist\n"),
                      ("  - Bird\n  - Ground Animal\n", "  - Ground Animal\n  - Bird\n"))  # root rows reordered
    renamed = tree_file(d, "renamed.yaml", ("  - Rider:\n", "  - Riders:\n"), ("rider: Rider ", "rider: Riders "))
    no_bird = tree_file(d, "no-bird.yaml", ("  - Bird\n", ""), ("ignore: [Unlabeled]", "ignore: [Unlabeled, Bird]"))
    (d / "split.yaml").write_text(f"name: split\nextends: {PAPER}\nadd:\n  Car: [Sedan, Van]\n  Rider: [Scooter]\n")
    return {"dir": d, "img": d / "img", "old": tiny_checkpoint(d / "old.pt"), "grown": grown, "renamed": renamed,
            "no_bird": no_bird, "split": d / "split.yaml",
            "calibrated": tiny_checkpoint(d / "calibrated.pt", ema=True, temperatures=True)}


def predictions(ck: Path, images: Path, out: Path, dataset: str, *extra: str) -> tuple[np.ndarray, np.ndarray]:
    """`labeltree predict --dataset D --confidence`: the dataset's ids and the 16-bit confidences of every image."""
    cli("predict", ck, images, "-o", out, "--dataset", dataset, "--confidence", "--device", "cpu", *extra)
    stems = sorted(p.stem for p in images.glob("*.png"))
    ids = np.stack([np.asarray(Image.open(out / dataset / f"{s}.png")) for s in stems])
    conf = np.stack([np.asarray(Image.open(out / f"{s}_conf.png")).astype(np.int64) for s in stems])
    return ids, conf


def same_predictions(env: dict[str, Path], new: Path, tmp: Path, datasets: tuple[str, ...], *extra: str,
                     old: Path | None = None) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Old and migrated model on each dataset: ids identical; returns (ids, old conf, new conf) per dataset."""
    out = {}
    for ds in datasets:
        a_ids, a_conf = predictions(old or env["old"], env["img"], tmp / f"old-{ds}", ds, *extra)
        b_ids, b_conf = predictions(new, env["img"], tmp / f"new-{ds}", ds, *extra)
        np.testing.assert_array_equal(a_ids, b_ids)
        out[ds] = (a_ids, a_conf, b_conf)
    return out


def value_of(tree: str | Path, dataset: str, node: str) -> int:
    h = load_hierarchy(tree)
    return int(h.tables(dataset).node_to_value[h.index[node]])


# -- the three growths of the issue -------------------------------------------------------------------------

def test_idd_root_nodes_are_new_rows_and_old_predictions_stay(env: dict[str, Path], tmp_path: Path) -> None:
    out = cli("migrate", env["old"], "--tree", f"{PAPER}+idd", "-o", tmp_path / "idd.pt", "--report",
              tmp_path / "r.json")
    assert "root" in out and "Autorickshaw, Vehicle Fallback, Obs-Str-Bar Fallback" in out
    assert "dataset 'idd' is new" in out
    state = load_checkpoint(tmp_path / "idd.pt")
    assert state["migration"] == {
        "from_tree_hash": load_checkpoint(env["old"])["tree"]["sha256"], "new_heads": [],
        "new_rows": {"root": ["Autorickshaw", "Vehicle Fallback", "Obs-Str-Bar Fallback"]}, "renamed": {},
        "dropped": []}
    assert not {"optimizer", "step", "scheduler", "rng", "sampler"} & set(state)
    assert state["head_sizes"] == [56, 10, 3, 2, 43]
    check_tree(state, load_hierarchy(f"{PAPER}+idd"), tmp_path / "idd.pt")  # what --resume / predict check
    got = same_predictions(env, tmp_path / "idd.pt", tmp_path, ("cityscapes", "vistas", "gtsdb"))
    for _ids, a, b in got.values():
        assert np.abs(a - b).max() <= 1  # the same probabilities up to float rounding of the wider sums
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["migration"] == state["migration"]
    assert report["classifiers"][0]["added"] == ["Autorickshaw", "Vehicle Fallback", "Obs-Str-Bar Fallback"]
    assert report["tree_diff"]["added_datasets"] == ["idd"]


def test_new_children_of_an_existing_classifier_and_reordered_rows(env: dict[str, Path], tmp_path: Path) -> None:
    out = cli("migrate", env["old"], "--tree", env["grown"], "-o", tmp_path / "grown.pt", "--report",
              tmp_path / "r.json")
    rows = {r["classifier"]: r["status"] for r in json.loads((tmp_path / "r.json").read_text())["classifiers"]}
    assert rows == {"root": "reordered", "Driveable": "kept", "Rider": "changed", "Traffic Sign": "kept",
                    "Traffic Sign (Front)": "kept"}
    assert "+ Scooter Rider" in out
    state = load_checkpoint(tmp_path / "grown.pt")
    assert state["migration"]["new_rows"] == {"Rider": ["Scooter Rider"]}
    assert state["head_sizes"] == [53, 10, 4, 2, 43]
    got = same_predictions(env, tmp_path / "grown.pt", tmp_path, ("cityscapes", "vistas", "gtsdb"))
    ids, a, b = got["vistas"]
    assert np.isin(ids, [value_of(PAPER, "vistas", n) for n in ("Bicyclist", "Motorcyclist", "Other Rider")]).any()
    assert np.abs(a - b).max() <= 1


def test_vistas_v2_splits_traffic_light_into_a_new_head(env: dict[str, Path], tmp_path: Path) -> None:
    v2 = "cityscapes+vistas-v2.0+gtsdb"
    out = cli("migrate", env["old"], "--tree", v2, "-o", tmp_path / "v2.pt")
    assert "Traffic Light" in out and "fresh head" in out and "dataset 'vistas' is not in the new tree" in out
    assert "split into kinds below their node (still comparable): 'traffic light'" in out
    m = load_checkpoint(tmp_path / "v2.pt")["migration"]
    assert m["new_heads"] == ["Barrier", "Lane Marking - Crosswalk", "Lane Marking - General", "Billboard",
                              "Traffic Light"]
    assert m["new_rows"] == {"root": ["Traffic Island", "Garage", "Parking Meter", "Traffic Cone", "Water Valve"],
                             "Driveable": ["Driveway", "Parking Aisle", "Road Shoulder"]}
    got = same_predictions(env, tmp_path / "v2.pt", tmp_path, ("cityscapes", "gtsdb"))
    ids, a, b = got["cityscapes"]
    assert (ids == value_of(PAPER, "cityscapes", "Traffic Light")).any()
    model, h = open_model(env["old"], "cpu"), load_hierarchy(PAPER)
    split = np.stack([np.isin(model.predict_array(np.asarray(Image.open(p)), "cityscapes").nodes,
                              [h.index[n] for n in m["new_heads"]]) for p in sorted(env["img"].glob("*.png"))])
    assert split.any()  # pixels a new head decides on: labels stay, its probability joins the path confidence
    assert np.abs(a - b)[~split].max() <= 1 and (b[split] <= a[split] + 1).all()


def test_ema_weights_and_temperatures_migrate(env: dict[str, Path], tmp_path: Path) -> None:
    cli("migrate", env["calibrated"], "--tree", env["split"], "-o", tmp_path / "split.pt")
    state = load_checkpoint(tmp_path / "split.pt")
    old = load_checkpoint(env["calibrated"])
    assert state["migration"]["new_heads"] == ["Car"] and state["migration"]["new_rows"] == {"Rider": ["Scooter"]}
    assert state["temperatures"] == old["temperatures"] + [1.0]  # Car's head is the last classifier
    assert set(state["ema"]["state"]) == set(state["model"]) and state["ema"]["decay"] == 0.9
    for w in ("ema", "raw"):
        same_predictions(env, tmp_path / "split.pt", tmp_path / w, ("cityscapes", "gtsdb"), "--weights", w,
                         old=env["calibrated"])


def test_rename_drop_and_the_python_api(env: dict[str, Path], tmp_path: Path) -> None:
    line = refused("migrate", env["old"], "--tree", env["renamed"], "-o", tmp_path / "r.pt")
    assert "'Rider'" in line and "--rename OLD=NEW" in line and "--drop NODE" in line
    out = cli("migrate", env["old"], "--tree", env["renamed"], "-o", tmp_path / "r.pt", "--rename", "Rider=Riders")
    assert "moved" not in out.split("means comparable")[1]  # a renamed node is the same node: numbers comparable
    assert load_checkpoint(tmp_path / "r.pt")["migration"]["renamed"] == {"Rider": "Riders"}
    same_predictions(env, tmp_path / "r.pt", tmp_path, ("cityscapes",))
    assert "'Bird'" in refused("migrate", env["old"], "--tree", env["no_bird"], "-o", tmp_path / "d.pt")
    m = lt.migrate(env["old"], env["no_bird"], tmp_path / "d.pt", drop=["Bird"])
    assert m.record["dropped"] == ["Bird"] and m.rows()[0]["dropped"] == ["Bird"]
    assert load_checkpoint(tmp_path / "d.pt")["head_sizes"][0] == 52


# -- refusals ------------------------------------------------------------------------------------------------

def test_conflicting_renames_are_one_line(env: dict[str, Path], tmp_path: Path) -> None:
    base = ("migrate", env["old"], "--tree", env["renamed"], "-o", tmp_path / "x.pt")
    assert "renamed twice" in refused(*base, "--rename", "Rider=Riders", "--rename", "Rider=Bird")
    assert "both renamed to 'Riders'" in refused(*base, "--rename", "Rider=Riders", "--rename", "Bird=Riders")
    assert "no node 'Nope'" in refused(*base, "--rename", "Rider=Nope")
    assert "two old nodes would become 'Bird'" in refused(*base, "--rename", "Rider=Bird")
    assert "expected OLD=NEW" in refused(*base, "--rename", "Rider")
    assert not (tmp_path / "x.pt").exists()


def test_foreign_checkpoints_and_outputs_over_inputs(env: dict[str, Path], tmp_path: Path) -> None:
    state = load_checkpoint(env["old"])
    state["tree"] = tree_entry(load_hierarchy("cityscapes+vistas-v2.0+gtsdb"))  # weights of another tree
    save_checkpoint(tmp_path / "foreign.pt", state)
    assert "not those of its own tree" in refused("migrate", tmp_path / "foreign.pt", "--tree", PAPER, "-o",
                                                  tmp_path / "x.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    refused("migrate", tmp_path / "text.pt", "--tree", PAPER, "-o", tmp_path / "x.pt")
    cli("migrate", env["old"], "--tree", "cityscapes+vistas-v2.0+gtsdb", "-o", tmp_path / "v2.pt")
    assert "--rename OLD=NEW" in refused("migrate", tmp_path / "v2.pt", "--tree", PAPER, "-o", tmp_path / "x.pt")
    assert "names an input" in refused("migrate", env["old"], "--tree", PAPER, "-o", env["old"])
    assert "names an input" in refused("migrate", env["old"], "--tree", env["split"], "-o", tmp_path / "z.pt",
                                       "--report", PAPER_FILE.parent / "cityscapes+vistas+gtsdb.yaml")  # its base
    assert "exists" in refused("migrate", env["old"], "--tree", PAPER, "-o", tmp_path / "v2.pt")
    cli("migrate", env["old"], "--tree", PAPER, "-o", tmp_path / "v2.pt", "--force")  # the same tree: a copy
    assert load_checkpoint(tmp_path / "v2.pt")["migration"]["new_rows"] == {}
    assert "--tree" in refused("migrate", env["old"], "-o", tmp_path / "y.pt")


def test_migrated_checkpoint_opens_and_exports(env: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from labeltree.export.graph import export_onnx

    cli("migrate", env["old"], "--tree", f"{PAPER}+idd", "-o", tmp_path / "idd.pt")
    export_onnx(tmp_path / "idd.pt", tmp_path / "idd.onnx")
    img = np.asarray(Image.open(env["img"] / "photo0.png"))
    old = open_model(env["old"], "cpu")
    for m in (open_model(tmp_path / "idd.pt", "cpu"), open_model(tmp_path / "idd.onnx")):
        assert m.tree == f"{PAPER}+idd"
        for ds in ("cityscapes", "gtsdb"):
            np.testing.assert_array_equal(m.dataset_values(m.predict_array(img, ds), ds),
                                          old.dataset_values(old.predict_array(img, ds), ds))


def test_checkpoint_without_a_saved_tree_and_flat_models(env: dict[str, Path], tmp_path: Path) -> None:
    state = load_checkpoint(env["old"])
    del state["tree"]  # written before trees were saved: its tree file says what the logits mean
    save_checkpoint(tmp_path / "legacy.pt", state)
    m = lt.migrate(tmp_path / "legacy.pt", f"{PAPER}+idd", tmp_path / "idd.pt")
    assert m.record["from_tree_hash"] == load_checkpoint(env["old"])["tree"]["sha256"]
    state["model"] = {k: v for k, v in state["model"].items() if not k.startswith("heads.4.")}
    save_checkpoint(tmp_path / "short.pt", state)
    assert "do not fit" in refused("migrate", tmp_path / "short.pt", "--tree", PAPER, "-o", tmp_path / "x.pt")
    state["config"]["model"]["kind"] = "flat"
    save_checkpoint(tmp_path / "flat.pt", state)
    assert "flat model" in refused("migrate", tmp_path / "flat.pt", "--tree", PAPER, "-o", tmp_path / "x.pt")


def test_a_migrated_checkpoint_fine_tunes_with_train_init(tmp_path: Path) -> None:
    """migrate -> `train --init` (train/finetune.py) reads the migration record: the new rows get the multiplier."""
    from test_trainer_run import quiet, toy_cfg
    from test_trainer_toydata import make_toy

    from labeltree.train.loop import train

    toy = make_toy(tmp_path / "toy", n=2, n_val=1)
    base = train(config_from_dict(toy_cfg(toy, steps=1, check_labels=False)), tmp_path / "base", progress=False,
                 log=quiet).last
    m = lt.migrate(base, f"{PAPER}+idd", tmp_path / "idd.pt")
    assert m.record["new_rows"] == {"root": ["Autorickshaw", "Vehicle Fallback", "Obs-Str-Bar Fallback"]}
    cfg = toy_cfg(toy, optim={"new_head_lr_mult": 10.0}, steps=2, check_labels=False)
    lines: list[str] = []
    run = train(config_from_dict({**cfg, "hierarchy": f"{PAPER}+idd"}), tmp_path / "ft", progress=False,
                log=lines.append, init=tmp_path / "idd.pt")
    assert "optim.new_head_lr_mult 10 applies to: root: 3 new row(s) (Autorickshaw, Vehicle Fallback, " \
           "Obs-Str-Bar Fallback)" in lines
    assert [x["step"] for x in run.losses] == [1, 2] and all(np.isfinite(x["loss"]) for x in run.losses)


HAND_MADE = {  # a torch file that loads but is no checkpoint `labeltree train` wrote: what of it is damaged
    "config model": lambda s: s["config"].__setitem__("model", "x"),
    "config datasets": lambda s: s["config"].__setitem__("datasets", ["cityscapes"]),
    "config optim": lambda s: s["config"].__setitem__("optim", "sgd"),
    "head names": lambda s: s.__setitem__("head_names", 5),
    "bias": lambda s: s["model"].__setitem__("heads.0.logits.bias", "x"),
    "upsampler": lambda s: s["model"].__setitem__("heads.0.up.weight", torch.zeros(2, 2, 4, 4)),
    "ema": lambda s: s["ema"]["state"].__setitem__("heads.0.logits.bias", 3),
    "tree maps": lambda s: s["tree"].__setitem__("datasets", {"cityscapes": [[1]]}),
}


@pytest.mark.parametrize("case", list(HAND_MADE))
def test_hand_made_checkpoints_are_one_line(env: dict[str, Path], tmp_path: Path, case: str) -> None:
    """Before: TypeError / AttributeError / IndexError / KeyError tracebacks (exit 1) for these."""
    state = load_checkpoint(env["calibrated"])
    HAND_MADE[case](state)
    save_checkpoint(tmp_path / "bad.pt", state)
    assert "bad.pt" in refused("migrate", tmp_path / "bad.pt", "--tree", f"{PAPER}+idd", "-o", tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_api_arguments_are_checked(env: dict[str, Path], tmp_path: Path) -> None:
    """lt.migrate: a seed past int64 was a ValueError, a non-text rename an AttributeError, a text rename was
    split into letters, and an output not ending in .pt was written."""
    for kw, match in (({"seed": 2**70}, "seed"), ({"seed": True}, "seed"), ({"rename": [3]}, "rename"),
                      ({"rename": "Rider=Riders"}, "'Riders'")):
        with pytest.raises(lt.LabeltreeError, match=match):
            lt.migrate(env["old"], PAPER, tmp_path / "x.pt", **kw)
    with pytest.raises(lt.LabeltreeError, match=r"end in \.pt"):
        lt.migrate(env["old"], PAPER, tmp_path / "x.yaml")
    assert not [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")]
    m = lt.migrate(env["old"], f"{PAPER}+idd", tmp_path / "d.pt", drop="Bird")  # one name as a text
    assert m.record["dropped"] == ["Bird"]
