"""`labeltree merge` when some datasets are ones a bundled tree covers: keep that tree (its nodes,
classifiers and mappings) and place only the other datasets' classes in it, by name.

Before this, a dataset no bundled tree knew made merge throw the known tree away and propose a flat
union by name (one 117-class classifier for Cityscapes + Vistas + GTSDB + a BDD100K copy, GTSDB's
'snow' sign joined with Vistas' terrain 'Snow'). Here the base tree stays as it is; a new class goes
to the node its name (or a base class of the same name) says, to the node its `includes` cover, or
becomes a new root node; name matching never crosses kinds (a dense class never lands on a node only
box datasets label, a box class only inside the box datasets' subtrees). `labeltree place` does the
same with evidence from data. The output with -o is an extension tree file (`extends:` the base).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labeltree.core.bundled_trees import bundled_for
from labeltree.core.class_names import (
    EXACT,
    affinity,
    box_only,
    includes_nodes,
    is_void,
    lowest_common,
    name_scores,
    node_texts,
    outside_boxes,
)
from labeltree.core.hierarchy import DatasetMapping, Hierarchy, Node
from labeltree.core.taxonomy import Taxonomy
from labeltree.core.tree_file import assign_colors, hierarchy_from_dict
from labeltree.core.yamlio import load_yaml
from labeltree.errors import LabeltreeError

MATCH = 0.9 * EXACT  # a node's own name or a base class's name, exactly


@dataclass
class Extension:
    """What merge added to a bundled base tree (for the extension tree file)."""

    base: str  # bundled tree name
    base_path: Path
    datasets: list[str]  # the new datasets as given (names or taxonomy files)
    add: dict[str, list[str]]  # parent ('root') -> new node names
    maps: dict[str, dict[str, str | None]]  # dataset -> class name -> node name (None = ignore)


def known_and_new(refs: list[str], paths: list[Path]) -> tuple[list[int], list[int]]:
    """Indices of the datasets some bundled tree maps, and of the others."""
    known = [i for i, p in enumerate(paths) if bundled_for([p]) is not None]
    return known, [i for i in range(len(refs)) if i not in known]


def extend_bundled(refs: list[str], paths: list[Path], taxes: list[Taxonomy],
                   ) -> tuple[Hierarchy, list[dict[str, Any]], dict[str, list[int]], Extension] | None:
    """The smallest bundled tree over the known datasets with the new ones placed by name; None when
    no dataset is known or all are (then merge's other sources apply)."""
    known, new = known_and_new(refs, paths)
    if not known or not new:
        return None
    found = bundled_for([paths[i] for i in known])
    if found is None:
        return None
    name, tree_path, keys = found
    h = hierarchy_from_dict(load_yaml(tree_path, "tree"), tree_path, restrict=keys)
    nodes = list(h.nodes)
    mappings = dict(h.mappings)
    matches: dict[int, list[str]] = {}
    added: dict[str, list[int]] = {}
    ext = Extension(name, tree_path, [refs[i] for i in new], {}, {})
    for i in new:
        tax = taxes[i]
        if any(m.taxonomy.name == tax.name for m in mappings.values()):
            raise LabeltreeError(f"dataset '{refs[i]}' has the taxonomy name '{tax.name}' of a dataset of the bundled "
                                 f"tree {name}: give it its own name")
        to_node = _place_by_name(h, nodes, tax, refs[i], matches, added, ext)
        mappings[refs[i]] = DatasetMapping(refs[i], tax, to_node)
    out = Hierarchy(f"{name}+{'+'.join(taxes[i].name for i in new)}", nodes, mappings, h.overrides,
                    h.exclude_single_child, tree_path)
    assign_colors(out)
    return out, [{"node": nodes[n].name, "classes": cl} for n, cl in matches.items()], added, ext


def _place_by_name(h: Hierarchy, nodes: list[Node], tax: Taxonomy, ref: str, matches: dict[int, list[str]],
                   added: dict[str, list[int]], ext: Extension) -> dict[int, int | None]:
    dense = tax.annotation != "boxes"
    skip = box_only(h) if dense else outside_boxes(h)
    texts = node_texts(h, dense, affinity(h, tax.classes))
    to_node: dict[int, int | None] = {}
    names = ext.maps.setdefault(ref, {})
    for c in tax.classes:
        if c.id in tax.ignore_ids or is_void(c):
            to_node[c.id], names[c.name] = None, None
            continue
        nm, _ = name_scores(c, h, texts, skip)
        target = int(np.argmax(nm)) if nm.max() >= MATCH else None
        if target is None:
            inc = includes_nodes(c, h, texts, skip)
            common = lowest_common(h, inc) if len(inc) >= 2 else 0
            target = common or None
        if target is not None:
            to_node[c.id] = target
            matches.setdefault(target, []).append(f"{ref}:{c.display}")
        else:  # a new root leaf, reported as unmapped
            label = c.display.title() if c.display.islower() else c.display
            have = {n.name for n in nodes}
            while label in have:
                label += " (new)"
            nodes.append(Node(label, 0, 1))
            nodes[0].children.append(len(nodes) - 1)
            to_node[c.id] = len(nodes) - 1
            ext.add.setdefault("root", []).append(label)
            added.setdefault(ref, []).append(c.id)
        names[c.name] = nodes[to_node[c.id]].name  # type: ignore[index]
    return to_node


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _ref(ref: str, out: Path) -> str:
    p = Path(ref)
    if p.suffix not in (".yaml", ".yml"):
        return ref
    return os.path.relpath(p.resolve(), out.resolve().parent)


def extension_text(ext: Extension, out: Path, head: str = "") -> str:
    """The extension tree file: `extends:` the bundled base, the new datasets, `add:` and their mappings."""
    lines = [f"# {line}" for line in head.splitlines()]
    lines += [f"extends: {_q(ext.base)}", f"datasets: [{', '.join(_q(_ref(d, out)) for d in ext.datasets)}]"]
    if ext.add:
        lines.append("add:")
        lines += [f"  {_q(p)}: [{', '.join(_q(k) for k in kids)}]" for p, kids in ext.add.items()]
    lines.append("mappings:")
    for d, names in ext.maps.items():
        lines += [f"  {_q(_ref(d, out))}:", "    map:"]
        lines += [f"      {_q(c)}: {_q(n)}" for c, n in names.items() if n is not None]
        ignore = [c for c, n in names.items() if n is None]
        if ignore:
            lines.append(f"    ignore: [{', '.join(_q(c) for c in ignore)}]")
    return "\n".join(lines) + "\n"
