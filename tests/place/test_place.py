"""labeltree place / audit on a tiny synthetic world (names + statistics; the model's fingerprints on
hand-made histograms). Every number is exact for these seeds and sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from labeltree.cli import main
from labeltree.core.tree_file import bundled_hierarchies, load_hierarchy
from labeltree.datasets.registry import open_dataset
from labeltree.errors import LabeltreeError
from labeltree.place import audit as audit_mod
from labeltree.place import propose
from labeltree.place.audit import audit
from labeltree.place.base import NodeEvidence
from labeltree.place.crops import CELL, LABEL_W, write_crops
from labeltree.place.model import NodeModel
from labeltree.place.placement import model_scores
from labeltree.place.propose import expected_of, place
from labeltree.place.report import write_extension
from labeltree.synth.runner import synthesize

BASE = "cityscapes+vistas+gtsdb"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("place") / "synth"
    synthesize(out, images=6, seed=1, size=(128, 64), workers=1, progress=False, hierarchy=f"{BASE}+idd")
    return out


def _score(r, full: str, dataset: str = "idd") -> tuple[int, int, int]:
    """(exact, within the top 3, classes) against the bundled tree `full`; classes it ignores left out."""
    exp = expected_of(load_hierarchy(full), load_hierarchy(BASE), dataset)
    same = {"inner": "node"}

    def hit(c, e) -> bool:
        return same.get(c.kind, c.kind) == same.get(e[0], e[0]) and c.node == e[1]

    rows = [p for p in r.placements if dataset == "idd" or exp[p.cls.display][0] != "ignore"]
    exact = sum(hit(p.chosen, exp[p.cls.display]) for p in rows)
    top3 = sum(any(hit(c, exp[p.cls.display]) for c in p.candidates[:3]) for p in rows)
    return exact, top3, len(rows)


def test_place_idd_from_names_and_statistics(world: Path, tmp_path: Path) -> None:
    r = place("idd", world / "idd", BASE, base_root=world, frames=6, base_frames=6)
    assert r.info["evidence"] == ["stats", "names"]
    got = {p.cls.display: p.chosen.label() for p in r.placements}
    assert got["drivable fallback"] == "Driveable (inner node)"
    assert got["road"] == "Road"  # Driveable is taken by 'drivable fallback'
    assert got["autorickshaw"] == "new node under root"
    assert got["unlabeled"] == "ignore"
    assert _score(r, f"{BASE}+idd") == (26, 27, 27)  # only 'non-drivable fallback' (-> Terrain) needs a model
    ext = tmp_path / "idd-ext.yaml"
    write_extension(r, ext)
    h = load_hierarchy(ext)
    assert [c.name for c in h.classifiers] == ["root", "Driveable", "Rider", "Traffic Sign", "Traffic Sign (Front)"]
    assert h.nodes[h.mapping("idd").to_node[8]].name == "Autorickshaw"
    assert "# Road: confidence" in ext.read_text()
    write_crops(r, tmp_path / "crops.png")
    assert np.asarray(Image.open(tmp_path / "crops.png")).shape == (27 * (CELL + 4), LABEL_W + 6 * CELL + 12, 3)


def test_audit_ranks_the_wrong_mappings_first(world: Path, tmp_path: Path) -> None:
    src = bundled_hierarchies()[f"{BASE}+idd"]
    data = yaml.safe_load(src.read_text())
    wrong = {"car": "Bus", "building": "Wall", "vegetation": "Terrain", "sidewalk": "Road", "pole": "Traffic Light"}
    data["mappings"]["idd"]["map"].update(wrong)
    bad = tmp_path / "idd-wrong.yaml"
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    r = audit("idd", world / "idd", str(bad), base_root=world, frames=6, base_frames=6)
    assert {f.cls for f in r.findings[:5]} == set(wrong)
    assert [f.flagged for f in r.findings[:6]] == [True] * 5 + [False]
    ok = audit("idd", world / "idd", f"{BASE}+idd", base_root=world, frames=6, base_frames=6)
    assert [f.cls for f in ok.findings if f.flagged] == []


def test_model_evidence_deepest_covering_node() -> None:
    """Fingerprints by hand: a class on Road alone -> Road; spread over Driveable's children -> Driveable;
    mass on what no atom explains -> a new node."""
    h = load_hierarchy(BASE)
    n = len(h.nodes)
    kids = [h.index[k] for k in ("Road", "Bike Lane", "Lane Marking - General", "Parking")]
    fp = np.zeros((n, n))
    pixels = np.zeros(n)
    rng = np.random.default_rng(0)
    for i in [*kids, h.index["Sidewalk"], h.index["Car"]]:
        fp[i] = rng.random(n) * 0.02
        fp[i, i] = 1.0
        fp[i] /= fp[i].sum()
        pixels[i] = 1000
    for anc in (h.index["Driveable"],):
        fp[anc] = fp[kids].mean(0)
        pixels[anc] = 4000
    base = NodeEvidence(h, pixels, np.zeros((n, 8)), np.ones(n), fp, np.zeros((n, n)))
    s, resid, deepest = model_scores(fp[h.index["Road"]] * 500, base, set())
    assert h.nodes[deepest].name == "Road" and resid < 0.01
    spread = fp[kids[1:]].sum(0) * 300
    _, _, deepest = model_scores(spread, base, set())
    assert h.nodes[deepest].name == "Driveable"
    other = np.zeros(n)
    other[h.index["Bird"]] = 100.0
    _, resid, deepest = model_scores(other, base, set())
    assert round(resid, 2) == 0.55 and deepest == 0  # the atoms explain a little of it with their noise


def test_bad_input_one_line_exit_2(world: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    run = CliRunner().invoke
    r = run(main, ["place", "idd", str(empty), "-o", str(tmp_path / "x.yaml")])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "no IDD splits" in r.output
    r = run(main, ["place", "bdd100k", str(world / "idd"), "-o", str(tmp_path / "x.yaml")])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    r = run(main, ["place", "idd", str(world / "idd"), "--tree", f"{BASE}+idd", "-o", str(tmp_path / "x.yaml")])
    assert r.exit_code == 2 and "already maps idd" in r.output
    (tmp_path / "m.onnx").mkdir()  # a folder was 'model file not found'
    r = run(main, ["place", "idd", str(world / "idd"), "--checkpoint", str(tmp_path / "m.onnx"), "-o",
                   str(tmp_path / "x.yaml")])
    assert r.exit_code == 2 and "a folder, not a model file" in r.output and "Traceback" not in r.output
    other = NodeModel(tmp_path / "m.pt", ["root", "A", "B"], lambda img: np.zeros(img.shape[:2], int))
    with pytest.raises(LabeltreeError, match="trained on another tree"):
        other.check_tree(load_hierarchy(BASE))
    base = load_hierarchy(BASE)  # a model of the base tree reads an extension of it by node name
    model = NodeModel(tmp_path / "m.pt", [n.name for n in base.nodes], lambda img: np.full(img.shape[:2], 3))
    ext = load_hierarchy(f"{BASE}+idd")
    model.check_tree(ext)
    assert ext.nodes[int(model.nodes(np.zeros((2, 2, 3), np.uint8))[0, 0])].name == base.nodes[3].name


def _oracle(world: Path, datasets: list[str]) -> NodeModel:
    """A 'model' of the paper's tree that predicts every pixel's true node (looked up by the image's
    bytes; a pixel labelled with an inner node gets one of its leaves, in turn, as a cascade always ends on
    a leaf): the model path end to end (scan, fingerprints, decomposition, settle) without training."""
    base = load_hierarchy(BASE)
    full = load_hierarchy(f"{BASE}+idd")
    to_base = np.array([base.index.get(n.name, -1) for n in full.nodes] + [-1, -1, -1])
    leaves = {i: [d for d in base.descendants(i) if not base.nodes[d].children] for i in range(len(base.nodes))}

    def leaf(nodes: np.ndarray) -> np.ndarray:
        turn = np.arange(nodes.size).reshape(nodes.shape)
        out = nodes.copy()
        for i in np.unique(nodes[nodes > 0]):
            if base.nodes[i].children:
                m = nodes == i
                out[m] = np.asarray(leaves[int(i)])[turn[m] % len(leaves[int(i)])]
        return out

    table: dict[bytes, np.ndarray] = {}
    for ds in datasets:
        reader = open_dataset(full.mapping(ds).taxonomy, world / ds)
        v2n = full.tables(ds).value_to_node
        for s in reader.all_samples():
            nodes = v2n[np.minimum(reader.read_label(s), len(v2n) - 1)]
            table[reader.read_image(s).tobytes()] = leaf(to_base[nodes])
    return NodeModel(world / "oracle.pt", [n.name for n in base.nodes], lambda img: table[img.tobytes()],
                     {"data_root": str(world), "datasets": [{"name": d, "root": d} for d in datasets if d != "idd"]})


def test_place_idd_with_model_fingerprints(world: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model = _oracle(world, ["cityscapes", "vistas", "gtsdb", "idd"])
    monkeypatch.setattr(propose, "open_node_model", lambda _path: model)
    monkeypatch.setenv("LABELTREE_CACHE", str(tmp_path))
    r = place("idd", world / "idd", BASE, checkpoint=world / "oracle.pt", frames=6, base_frames=6)
    assert r.info["evidence"] == ["model", "stats", "names"]
    assert set(r.info["base"]) == {"cityscapes", "vistas", "gtsdb"}
    got = {p.cls.display: p.chosen for p in r.placements}
    assert got["non-drivable fallback"].node == "Terrain"  # the model finds it on Terrain; its name says nothing
    assert got["traffic sign"].node == "Traffic Sign (Front)" and got["rider"].node == "Rider"
    assert _score(r, f"{BASE}+idd") == (27, 27, 27)
    assert len(list((tmp_path / "place").glob("*.npz"))) == 4  # the model's pass over each dataset, kept
    calls: list[int] = []
    seen = model.predict
    model.predict = lambda img: (calls.append(1), seen(img))[1]
    again = place("idd", world / "idd", BASE, checkpoint=world / "oracle.pt", frames=6, base_frames=6)
    assert calls == []  # every pass came from the cache
    assert [p.to_json() for p in again.placements] == [p.to_json() for p in r.placements]
    monkeypatch.setattr(audit_mod, "open_node_model", lambda _path: model)
    checked = audit("idd", world / "idd", f"{BASE}+idd", checkpoint=world / "oracle.pt", frames=6, base_frames=6)
    assert calls == [] and [f.cls for f in checked.findings if f.flagged] == []  # the passes serve the add-on's tree


def test_audit_frames_where_the_mapping_fails_most(world: Path, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    """The frames audit lists for a class are those where the model puts most of its pixels off the mapped
    node, not those where the class is largest: a model that calls the cars of the frame with the fewest car
    pixels 'Bus' (and is right everywhere else) points at that frame alone."""
    model = _oracle(world, ["cityscapes", "vistas", "gtsdb", "idd"])
    tax = load_hierarchy(f"{BASE}+idd").mapping("idd").taxonomy
    reader = open_dataset(tax, world / "idd")
    car = tax.stored_value(next(c.id for c in tax.classes if c.name == "car"))
    samples = {s.key: s for s in reader.all_samples()}
    counts = {k: int((reader.read_label(s) == car).sum()) for k, s in samples.items()}
    ranked = sorted((k for k in counts if counts[k]), key=lambda k: -counts[k])
    assert len(ranked) >= 2 and counts[ranked[0]] > counts[ranked[-1]]
    wrong = reader.read_image(samples[ranked[-1]]).tobytes()
    base = load_hierarchy(BASE)
    right = model.predict
    model.predict = lambda img: np.where((right(img) == base.index["Car"]) & (img.tobytes() == wrong),
                                         base.index["Bus"], right(img))
    monkeypatch.setattr(audit_mod, "open_node_model", lambda _path: model)
    monkeypatch.setenv("LABELTREE_CACHE", str(tmp_path))
    r = audit("idd", world / "idd", f"{BASE}+idd", checkpoint=world / "oracle.pt", frames=50, base_frames=6)
    f = next(f for f in r.findings if f.cls == "car")
    assert (f.frames, f.frame_pixels) == ([ranked[-1]], [counts[ranked[-1]]])
    assert next(f for f in r.findings if f.cls == "road").frames == []  # never predicted off its node
    plain = audit("idd", world / "idd", f"{BASE}+idd", base_root=world, frames=50, base_frames=6)
    assert next(f for f in plain.findings if f.cls == "car").frames[0] == ranked[0]  # no model: where it is largest


def test_place_vistas_v2_as_splits_of_v12(tmp_path: Path) -> None:
    """Vistas v2.0 against the tree of v1.2, from names and its taxonomy's machine names alone (the synthetic
    frames hold few of its classes): kinds of a v1.2 class or of its category's catch-all become new children
    of that node, a group whose category is new beside the one v1.2 class v2.0 lost splits that class, 'of this
    group' kinds and kinds across siblings stay on the node, new classes go beside their category."""
    out = tmp_path / "v2"
    synthesize(out, images=2, seed=1, size=(128, 64), workers=1, progress=False,
               hierarchy="cityscapes+vistas-v2.0+gtsdb")
    r = place("vistas-v2.0", out / "vistas-v2.0", BASE, frames=2)
    got = {p.cls.display: p.chosen.label() for p in r.placements}
    assert {got[k] for k in ("Concrete Block", "Road Median", "Lane Separator", "Barrier")} == {"new child of Barrier"}
    assert {got[f"Signage - {k}"] for k in ("Advertisement", "Back", "Store")} == {"new child of Billboard"}
    assert (got["Ambiguous Barrier"], got["Signage - Ambiguous"], got["Person Group"]) == ("Barrier", "Billboard",
                                                                                        "Person")
    assert got["Traffic Sign - Direction (Back)"] == got["Traffic Sign (Back)"] == "Traffic Sign (Back)"
    assert got["Lane Marking (only) - Crosswalk"] == "new child of Lane Marking - Crosswalk"
    assert (got["Driveway"], got["Parking Meter"]) == ("new node under Driveable", "new node under root")
    assert _score(r, "cityscapes+vistas-v2.0+gtsdb", "vistas-v2.0") == (117, 118, 118)  # Traffic Sign - Parking:
    ext = tmp_path / "v2-ext.yaml"  # Front needs pixels; names say Traffic Sign
    write_extension(r, ext)
    h = load_hierarchy(ext)
    assert len(h.nodes[h.index["Billboard"]].children) == 5 and len(h.nodes[h.index["Barrier"]].children) == 6
