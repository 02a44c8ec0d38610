"""What `labeltree place` writes: the extension tree file (valid as it is, every mapping line
commented with its confidence and evidence) and the report (terminal table, JSON, Markdown)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from labeltree.core.taxonomy import bundled_taxonomies
from labeltree.core.tree_file import bundled_hierarchies, load_hierarchy
from labeltree.errors import LabeltreeError
from labeltree.fsutil import write_text
from labeltree.place.placement import Candidate, Placement
from labeltree.place.propose import PlaceResult


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a YAML scalar


def _ref(ref: str, out: Path, bundled: dict[str, Path]) -> str:
    """A tree or taxonomy reference as the extension file must spell it (relative to its folder)."""
    if ref in bundled:
        return ref
    p = Path(ref)
    if not p.exists():
        return ref
    return os.path.relpath(p.resolve(), out.resolve().parent)


def _evidence(c: Candidate) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in c.evidence.items())


def _comment(p: Placement) -> str:
    alts = "; ".join(f"{a.label()} {a.score:.2f}" for a in p.candidates[1:3])
    return f"confidence {p.confidence:.2f} ({_evidence(p.chosen)}); next: {alts or 'none'}"


def extension_text(r: PlaceResult, out: Path, command: str = "") -> str:
    """The EXT.yaml text: `extends:` the base, the dataset, new nodes under `add:`, one mapping per class."""
    key = r.taxonomy.name
    tree = _ref(r.tree_ref, out, bundled_hierarchies())
    dataset = _ref(r.dataset, out, bundled_taxonomies())
    lines = [f"# {r.taxonomy.name} placed in {r.h.name} by `labeltree place`{' (' + command + ')' if command else ''}.",
             f"# Evidence: {', '.join(r.info.get('evidence', []))}. Review every line below the confidence you trust,",
             "# then check it with `labeltree audit` and train. Scores and alternatives: the place report.",
             f"name: {_q(r.h.name + '+' + key)}", f"extends: {_q(tree)}", f"datasets: [{_q(dataset)}]"]
    add: dict[str, list[str]] = {}
    for p in r.placements:
        if p.chosen.kind in ("new", "children") and p.new_name:
            parent = p.chosen.node if p.chosen.node and p.chosen.node != r.h.nodes[0].name else "root"
            add.setdefault(parent, []).append(p.new_name)
    if add:
        lines.append("add:")
        lines += [f"  {_q(parent)}: [{', '.join(_q(n) for n in kids)}]" for parent, kids in add.items()]
    lines += ["mappings:", f"  {_q(dataset)}:", "    map:"]
    ignore = []
    for p in r.placements:
        c = p.chosen
        if c.kind == "ignore":
            ignore.append(p)
            continue
        node = p.new_name if c.kind in ("new", "children") else c.node
        lines.append(f"      {_q(p.cls.name)}: {_q(str(node))}  # {c.label()}: {_comment(p)}")
    if ignore:
        lines.append("    ignore:")
        lines += [f"      - {_q(p.cls.name)}  # {_comment(p)}" for p in ignore]
    return "\n".join(lines) + "\n"


def write_extension(r: PlaceResult, out: Path, command: str = "") -> None:
    """Write EXT.yaml atomically and read it back as a tree (a placement that makes no valid tree is a bug)."""
    text = extension_text(r, out, command)
    write_text(out, text)
    try:
        load_hierarchy(out)
    except LabeltreeError as e:
        raise LabeltreeError(f"the proposed tree does not load ({e.message}); please report this", out) from None


def rows(r: PlaceResult) -> list[dict[str, Any]]:
    out = []
    for p in r.placements:
        alts = p.candidates[1:3]
        out.append({"class": p.cls.display, "pixels": p.pixels, "placement": p.chosen.label()
                    + (f" as '{p.new_name}'" if p.new_name else ""), "confidence": round(p.confidence, 2),
                    "evidence": _evidence(p.chosen), "second": alts[0].label() if alts else "",
                    "third": alts[1].label() if len(alts) > 1 else ""})
    return out


COLUMNS = (("class", "class"), ("pixels", "pixels"), ("placement", "placement"), ("confidence", "conf"),
           ("evidence", "evidence"), ("second", "2nd"), ("third", "3rd"))


def render_table(r: PlaceResult) -> str:
    data = rows(r)
    width = {k: max(len(h), *(len(str(d[k])) for d in data)) for k, h in COLUMNS}
    head = "  ".join(h.ljust(width[k]) for k, h in COLUMNS)
    body = ["  ".join(str(d[k]).ljust(width[k]) for k, _ in COLUMNS) for d in data]
    info = r.info
    top = (f"place {r.taxonomy.name} in {r.h.name}: {info.get('frames')} frames, evidence "
           f"{', '.join(info.get('evidence', []))}, {info.get('seconds')} s")
    return "\n".join([top, "", head, "-" * len(head), *body])


def render_markdown(r: PlaceResult) -> str:
    data = rows(r)
    out = [f"# Placement of {r.taxonomy.name} in {r.h.name}", "",
           f"Evidence: {', '.join(r.info.get('evidence', []))}; {r.info.get('frames')} frames.", "",
           "| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(str(d[k]).replace("|", "/") for k, _ in COLUMNS) + " |" for d in data]
    out += ["", "## Why", ""]
    for p in r.placements:
        out.append(f"- **{p.cls.display}** -> {p.chosen.label()}: {'; '.join(w for w in p.chosen.why if w) or '-'}"
                   + (f" (frames: {', '.join(p.examples)})" if p.examples else ""))
    return "\n".join(out) + "\n"


def render_json(r: PlaceResult) -> str:
    return json.dumps(r.to_json(), indent=1)
