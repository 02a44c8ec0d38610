"""The layers of docs/architecture.md hold: no module imports a higher layer (lazy imports included), no
import cycle, no package outside `labeltree`, and labels are read only through the dataset layer."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "labeltree"
# lowest first; a module may import its own layer's modules and any lower layer
LAYERS = [
    ["labeltree.errors", "labeltree.extras", "labeltree.fsutil", "labeltree.parallel", "labeltree.resources",
     "labeltree.vocab"],
    ["labeltree.core"],
    ["labeltree.datasets"],
    ["labeltree.evaluate", "labeltree.stats", "labeltree.synth", "labeltree.convert", "labeltree.convert_out"],
    ["labeltree.train"],
    ["labeltree.infer"],
    ["labeltree.export", "labeltree.place"],
    ["labeltree.demo", "labeltree.annotate"],
    ["labeltree.commands", "labeltree.cli", "labeltree.__main__", "labeltree.api"],
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level?) for every import in the file."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import submodule` imports the submodule, not the package's other contents
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES]
            rest = [node.module] if len(subs) < len(node.names) else []
            out += [(m, node.lineno, id(node) in top) for m in subs + rest]
    return out


def layer(mod: str) -> int | None:
    for i, names in enumerate(LAYERS):
        if any(mod == n or mod.startswith(n + ".") for n in names):
            return i
    return None


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def test_every_module_has_a_layer():
    assert [m for m in MODULES if m != "labeltree" and layer(m) is None] == []


def test_no_module_imports_a_higher_layer():
    bad = []
    for mod, path in MODULES.items():
        if mod == "labeltree":
            continue
        for target, line, _ in imports(path):
            if target == "labeltree" or not target.startswith("labeltree"):
                continue
            if layer(target) is not None and layer(target) > layer(mod):  # type: ignore[operator]
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert bad == []


def test_no_import_cycle_between_modules():
    """Imports inside functions count: a lazy import that closes a cycle is still a cycle."""
    graph = {m: {t for t, _, _top in imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t] if t in stack else [m, t])
            elif t not in state:
                visit(t, [*stack, t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_no_package_outside_labeltree():
    cfg = (ROOT / "pyproject.toml").read_text()
    listed = cfg.split("packages = [", 1)[1].split("]", 1)[0]
    assert all(p.strip().strip('"').startswith("labeltree") for p in listed.split(",") if p.strip())
    assert not (ROOT / "trainer").exists()


def test_labels_are_decoded_only_in_the_dataset_layer():
    """decode_label / render_mask / read_png-style decoding of label files stay in labeltree.datasets."""
    bad = []
    for mod, path in MODULES.items():
        if mod.startswith("labeltree.datasets"):
            continue
        text = path.read_text()
        for name in ("decode_label(", "render_mask(", "paint_items(", "check_label_values("):
            if name in text:
                bad.append(f"{path.relative_to(ROOT)} calls {name[:-1]}")
    assert bad == []
