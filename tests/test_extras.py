"""The install's extras: a command whose extra is missing says which one to install (one line, exit 2),
and labeltree/extras.py names the same packages as pyproject.toml."""

import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from labeltree.cli import main
from labeltree.extras import EXTRA_OF_MODULE

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _deps(specs: list[str]) -> set[str]:
    return {s.split(">")[0].split("=")[0].split("[")[0].strip() for s in specs}


def test_extras_match_pyproject():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    extras = project["optional-dependencies"]
    base = _deps(project["dependencies"])
    for module, extra in EXTRA_OF_MODULE.items():
        assert module in _deps(extras[extra]), (module, extra)
        assert module not in base, f"{module} is in the base install"
        assert module in _deps(extras["test"]), f"the test extra lacks {module}"


def _blocked(monkeypatch, *modules: str) -> None:
    """Make `import m` fail as it does when the package is not installed (sys.modules[m] = None)."""
    for m in modules:
        for loaded in [k for k in sys.modules if k == m or k.startswith(m + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, m, None)
    torch_users = ("labeltree.train", "labeltree.infer", "labeltree.export", "labeltree.demo",
                   "labeltree.annotate.server")
    for k in [k for k in sys.modules if k.startswith(torch_users)]:  # loaded by earlier tests: import them afresh
        monkeypatch.delitem(sys.modules, k)


@pytest.mark.parametrize(("args", "blocked", "extra"), [
    (["train", "cpu-tiny", "--out", "{tmp}/run"], ("torch", "torchvision"), "train"),
    (["predict", "{tmp}/m.pt", "{tmp}", "-o", "{tmp}/p"], ("torch", "torchvision"), "train"),
    (["demo", "--quick", "--out", "{tmp}/demo"], ("torch", "torchvision"), "train"),
    (["annotate-extended", "serve", "{tmp}"], ("starlette", "uvicorn"), "annotate"),
])
def test_missing_extra_is_one_line(monkeypatch, tmp_path, args, blocked, extra):
    (tmp_path / "m.pt").write_bytes(b"x")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")  # predict reaches the model
    _blocked(monkeypatch, *blocked)
    r = CliRunner().invoke(main, [a.format(tmp=tmp_path) for a in args])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"pip install 'labeltree[{extra}]'" in lines[0], \
        r.output
    assert "Traceback" not in r.output
