"""Label-only commands never import torch (start-up: torch + torchvision cost 3-7 s per command)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from labeltree.resources import taxonomy_dir

TAX = taxonomy_dir()  # the bundled files, wherever the install put them

# Runs several label-only commands in ONE child process and reports which heavy modules they loaded.
_RUN = """
import sys
from labeltree.cli import main
for args in [a.split("|") for a in sys.argv[1:]]:
    try:
        main(args, standalone_mode=False)
    except SystemExit as e:
        assert not e.code, (args, e.code)
print("LOADED", sorted(m for m in ("torch", "torchvision") if m in sys.modules))
"""


def _cityscapes(root: Path) -> None:
    rng = np.random.default_rng(0)
    for key in ("aachen_000000_000019", "aachen_000001_000019"):
        lab = np.full((32, 64), 7, np.uint8)
        lab[rng.integers(0, 20):, :20] = 26
        lab[:4] = 0
        d = root / "gt/gtFine/val/aachen"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(lab).save(d / f"{key}_gtFine_labelIds.png")
        p = root / "pred"
        p.mkdir(exist_ok=True)
        Image.fromarray(np.where(lab == 26, 24, lab).astype(np.uint8)).save(p / f"{key}.png")


def test_label_only_commands_do_not_import_torch(tmp_path, real_gtsdb_root):
    _cityscapes(tmp_path)
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    tree = TAX / "hierarchies/cityscapes+vistas+gtsdb.yaml"
    cmds = ["tree", "merge|cityscapes|vistas|gtsdb|--format|json", f"validate|{TAX / 'cityscapes.yaml'}|{tree}",
            f"stats|cityscapes|{gt}|-o|{tmp_path / 's.json'}",
            f"evaluate|cityscapes|{gt}|{pred}|--workers|1|-o|{tmp_path / 'e.json'}",
            f"evaluate|cityscapes|{gt}|{pred}|--workers|1|--protocol|paper|--quiet",
            f"gtsdb-masks|{real_gtsdb_root}|{tmp_path / 'masks'}",
            f"annotate-extended|propose|{gt}|{tmp_path / 'work'}|--workers|1"]
    r = subprocess.run([sys.executable, "-c", _RUN, *cmds], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "LOADED []" in r.stdout, r.stdout[-2000:]
    assert (tmp_path / "e.json").is_file() and any((tmp_path / "masks").rglob("*.png"))


# -- start-up: a command imports only what it uses (issue 24 step 7) ------------------------------

_IMPORTED = """
import sys
from labeltree.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
print("LOADED", sorted(m for m in ("numpy", "pydantic", "yaml", "PIL", "torch", "pandas", "matplotlib")
                       if m in sys.modules))
"""


def _loaded(*args: str) -> str:
    r = subprocess.run([sys.executable, "-c", _IMPORTED, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1]


def test_help_loads_no_library():
    assert _loaded("--help") == "LOADED []"


def test_tree_loads_no_numpy():
    assert _loaded("tree", "--no-color") == "LOADED ['pydantic', 'yaml']"


def test_every_command_module_is_listed():
    import click

    from labeltree.cli import COMMAND_MODULES, load_commands, main

    for module, names in COMMAND_MODULES.items():
        assert tuple(c.name for c in load_commands(module)) == names
    listed = main.list_commands(click.Context(main))
    assert listed == sorted(n for names in COMMAND_MODULES.values() for n in names)


def test_vocab_layouts_are_the_readers():
    from labeltree.datasets.registry import LAYOUTS
    from labeltree.vocab import LAYOUT_NAMES

    assert sorted(LAYOUTS) == list(LAYOUT_NAMES)


def test_bundled_files_read_by_libyaml_give_the_strict_loaders_data():
    from labeltree.core import yamlio

    files = sorted(TAX.rglob("*.yaml"))
    assert len(files) > 10
    for p in files:
        assert yamlio.load_any(p, "x") == yamlio.load_yaml(p, "x"), p


def test_bundled_json_copies(tmp_path, monkeypatch):
    """The JSON copy of a bundled file is written once, read after, and a broken copy is parsed again."""
    from labeltree.core import yamlio

    monkeypatch.setenv("LABELTREE_CACHE", str(tmp_path / "cache"))
    p = TAX / "vistas-v1.2.yaml"
    want = yamlio.load_yaml(p, "x")
    assert yamlio.load_any(p, "x") == want
    copies = list((tmp_path / "cache/bundled").glob("*.json"))
    assert len(copies) == 1
    assert yamlio.load_any(p, "x") == want
    copies[0].write_text("{broken")
    assert yamlio.load_any(p, "x") == want
    monkeypatch.setenv("LABELTREE_CACHE", "/dev/null/nowhere")  # unwritable: still the data
    assert yamlio.load_any(p, "x") == want
