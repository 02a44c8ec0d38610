"""Merge several datasets' label spaces into one tree and report what a person must still decide.

Three sources of rules, in this order: a `--rules` tree file (may be partial: classes it does not
mention are matched to nodes by normalised name / synonym, the rest become new root leaves and are
reported), a bundled tree file that covers all the datasets (restricted to them), or none: then a
flat union with name matches is proposed together with a rules skeleton to start from.

The analysis (coverage per dataset, conflicts) is the same for all three: it reads the tree and the
mappings only, so a tree file written with `-o` gives the same report when read back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labeltree.core.bundled_trees import bundled_for, resolve_ref
from labeltree.core.hierarchy import ROOT, DatasetMapping, Hierarchy, Node
from labeltree.core.merge_conflicts import Conflict, analyse, class_keys, name_hints
from labeltree.core.merge_extend import Extension, extend_bundled
from labeltree.core.taxonomy import ClassDef, Taxonomy, load_taxonomy, normalise_name, resolve_taxonomy_path
from labeltree.core.tree_file import assign_colors, full_tree_spec, hierarchy_from_dict, parse_mapping, parse_tree
from labeltree.core.tree_schema import MappingSpec
from labeltree.core.treeview import render_tree
from labeltree.core.yamlio import line_of, load_yaml
from labeltree.errors import LabeltreeError


@dataclass
class Coverage:
    """Where one dataset's classes land: ids on leaves, on inner nodes, ignored, unmapped."""

    leaves: list[int] = field(default_factory=list)
    inner: list[int] = field(default_factory=list)
    ignored: list[int] = field(default_factory=list)
    unmapped: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"leaves": [str(i) for i in self.leaves], "inner": [str(i) for i in self.inner],
                "ignored": [str(i) for i in self.ignored], "unmapped": [str(i) for i in self.unmapped],
                "counts": {"leaves": len(self.leaves), "inner": len(self.inner), "ignored": len(self.ignored),
                           "unmapped": len(self.unmapped)}}


@dataclass
class MergeResult:
    datasets: list[str]  # dataset keys, in the order given
    hierarchy: Hierarchy  # the merged tree: every class mapped to a node or ignored
    source: str  # "bundled" | "extends" (a bundled tree plus new datasets) | "rules" | "proposal"
    source_path: Path | None
    coverage: dict[str, Coverage]
    conflicts: list[Conflict]
    matches: list[dict[str, Any]]  # name matches made by the merge itself: {node, classes}
    snippet: str | None = None  # proposal only: a tree-file skeleton to start from
    extension: Extension | None = None  # extends only: what was added to the bundled base tree

    @property
    def needs_rules(self) -> bool:
        return self.source == "proposal" or any(c.kind in ("unmapped", "unmatched") for c in self.conflicts)

    def to_json(self) -> dict[str, Any]:
        """docs/design.md §5 keys (nodes, classifiers, leaves, datasets) plus coverage and conflicts."""
        out = self.hierarchy.to_json()
        out["source"] = {"kind": self.source, "file": str(self.source_path) if self.source_path else None}
        out["coverage"] = {d: c.to_json() for d, c in self.coverage.items()}
        out["conflicts"] = [c.to_json() for c in self.conflicts]
        out["unresolved"] = sum(c.unresolved for c in self.conflicts)
        out["name_matches"] = self.matches
        if self.snippet is not None:
            out["rules_snippet"] = self.snippet
        return out

    def render(self, color: bool = False) -> str:
        return render_merge(self, color)


# -- entry point ---------------------------------------------------------------------------------

def merge(datasets: Sequence[str | Path], rules: str | Path | None = None) -> MergeResult:
    """Merge `datasets` (names or taxonomy files) with `rules` (a possibly partial tree file), the
    bundled tree that covers them, or (neither) a proposed flat union by name."""
    refs = [str(d) for d in datasets]
    if not refs:
        raise LabeltreeError("name at least one dataset, e.g. `labeltree merge cityscapes vistas gtsdb`")
    paths = [resolve_taxonomy_path(r) for r in refs]
    taxes = [load_taxonomy(r) for r in refs]
    seen: dict[Path, str] = {}
    for r, p in zip(refs, paths, strict=True):
        key = p.resolve()
        if key in seen:
            raise LabeltreeError(f"dataset '{r}' is given twice (also as '{seen[key]}')")
        seen[key] = r
    if rules is not None:
        h, matches, added = _from_rules(refs, paths, taxes, Path(rules))
        source, src_path = "rules", Path(rules)
    else:
        found = bundled_for(list(paths))
        extended = None if found is not None else extend_bundled(refs, paths, taxes)
        if extended is not None:
            h, matches, added, extension = extended
            source, src_path = "extends", extension.base_path
        elif found is not None:
            _name, tree_path, keys = found
            data = load_yaml(tree_path, "tree")
            h = hierarchy_from_dict(data, tree_path, restrict=keys)
            matches, added = [], {}
            source, src_path = "bundled", tree_path
        else:
            h, matches = _propose(refs, taxes)
            added = {}
            source, src_path = "proposal", None
    coverage = {d: _coverage(h, m) for d, m in h.mappings.items()}
    conflicts = analyse(h, added)
    if source == "proposal":
        conflicts += name_hints(h)
    else:  # the tree file's own inner-node mappings are its decisions; the merge's name matches are not
        made = {c for mt in matches for c in mt["classes"]}
        for c in conflicts:
            c.settled = c.kind == "level-of-detail" and bool(c.classes) and c.classes[0] not in made
    result = MergeResult(list(h.mappings), h, source, src_path, coverage, conflicts, matches)
    if source == "extends":
        result.extension = extension
    if source == "proposal":
        result.snippet = rules_snippet(result)
    return result


# -- rules file (possibly partial) ---------------------------------------------------------------

def _by_name_target(c: ClassDef, by_norm: dict[str, int]) -> int | None:
    """The node a tree file's `by_name: true` gives this class (same order as hierarchy.py)."""
    return next((by_norm[normalise_name(n)] for n in (c.display, c.name, *c.synonyms)
                 if normalise_name(n) in by_norm), None)


def _from_rules(refs: list[str], paths: list[Path], taxes: list[Taxonomy], rules: Path,
                ) -> tuple[Hierarchy, list[dict[str, Any]], dict[str, list[int]]]:
    data = load_yaml(rules, "rules")
    if not isinstance(data, dict) or not ("tree" in data or "extends" in data):
        raise LabeltreeError("a rules file is a tree file (at least a 'tree' section; see "
                             "docs/taxonomy-format.md)", rules)
    spec = full_tree_spec(data, rules, rules=True)
    nodes = parse_tree(spec.tree, rules)
    index = {n.name: i for i, n in enumerate(nodes)}
    by_path: dict[Path, str] = {}
    for k in spec.mappings:
        try:
            by_path[resolve_taxonomy_path(resolve_ref(k, rules)).resolve()] = k
        except LabeltreeError:
            raise LabeltreeError(f"mappings.{k}: unknown dataset (not a bundled name nor a taxonomy file)",
                                 rules, line_of(rules, "mappings", k)) from None
    mappings: dict[str, DatasetMapping] = {}
    matches: dict[int, list[str]] = {}
    added: dict[str, list[int]] = {}
    for ref, p, tax in zip(refs, paths, taxes, strict=True):
        key = by_path.get(p.resolve(), ref)
        m = parse_mapping(key, spec.mappings.get(key) or MappingSpec(), nodes, index, tax, rules, None, False,
                          allow_missing=True)
        for cid in tax.ignore_ids:
            m.to_node.setdefault(cid, None)
        by_norm = {normalise_name(n.name): i for i, n in enumerate(nodes) if i > 0}
        for c in tax.classes:
            if c.id in m.to_node:
                continue
            hit = next((by_norm[k] for k in class_keys(c) if k in by_norm), None)
            if hit is not None:
                m.to_node[c.id] = hit
                matches.setdefault(hit, []).append(f"{key}:{c.display}")
        for c in tax.classes:  # still unmapped: a new root leaf, reported
            if c.id not in m.to_node:
                name = _unique(nodes, c.display)
                nodes.append(Node(name, 0, 1))
                nodes[0].children.append(len(nodes) - 1)
                index[name] = len(nodes) - 1
                m.to_node[c.id] = len(nodes) - 1
                added.setdefault(key, []).append(c.id)
        mappings[key] = m
    overrides = {(o.dataset, o.classifier): o.supervise for o in spec.supervision.overrides
                 if o.dataset in mappings and o.classifier in index}
    h = Hierarchy(spec.name or "+".join(mappings), nodes, mappings, overrides,
                  spec.supervision.exclude_single_child is not False, rules)
    assign_colors(h)
    return h, [{"node": nodes[n].name, "classes": cl} for n, cl in matches.items()], added


def _unique(nodes: list[Node], name: str) -> str:
    have = {n.name for n in nodes}
    if name not in have and name != ROOT:
        return name
    k = 2
    while f"{name} ({k})" in have:
        k += 1
    return f"{name} ({k})"


# -- proposal: flat union by name ----------------------------------------------------------------

def _propose(refs: list[str], taxes: list[Taxonomy]) -> tuple[Hierarchy, list[dict[str, Any]]]:
    """Every non-ignored class becomes a root leaf; classes of different datasets whose normalised
    names (or declared synonyms) agree share one leaf, if they are of one kind (a box dataset's sign
    type 'snow' is not a dense dataset's terrain 'Snow')."""
    nodes = [Node(ROOT, -1, 0)]
    keys_of: dict[str, int] = {}  # normalised name -> node
    owners: dict[int, set[str]] = {}
    kind: dict[int, str] = {}  # node -> annotation of the classes on it (dense | boxes)
    members: dict[int, list[str]] = {}
    mappings: dict[str, DatasetMapping] = {}
    for ref, tax in zip(refs, taxes, strict=True):
        to_node: dict[int, int | None] = {}
        for c in tax.classes:
            if c.id in tax.ignore_ids:
                to_node[c.id] = None
                continue
            hit = next((keys_of[k] for k in class_keys(c) if k in keys_of and ref not in owners[keys_of[k]]
                        and kind[keys_of[k]] == tax.annotation), None)
            if hit is None:
                nodes.append(Node(_unique(nodes, c.display), 0, 1))
                hit = len(nodes) - 1
                nodes[0].children.append(hit)
                owners[hit] = set()
                kind[hit] = tax.annotation
                for k in class_keys(c):
                    keys_of.setdefault(k, hit)
            elif nodes[hit].name.islower() and not c.display.islower() and c.display not in {n.name for n in nodes}:
                nodes[hit].name = c.display  # prefer the readable spelling ('Road' over 'road')
            owners[hit].add(ref)
            members.setdefault(hit, []).append(f"{ref}:{c.display}")
            to_node[c.id] = hit
        mappings[ref] = DatasetMapping(ref, tax, to_node)
    if len(nodes[0].children) < 2:
        raise LabeltreeError("the datasets have fewer than two classes between them: nothing to merge")
    h = Hierarchy("+".join(refs), nodes, mappings, {}, True, None)
    assign_colors(h)
    matches = [{"node": nodes[n].name, "classes": cl} for n, cl in members.items() if len(owners[n]) > 1]
    return h, matches


# -- analysis ------------------------------------------------------------------------------------

def _coverage(h: Hierarchy, m: DatasetMapping) -> Coverage:
    cov = Coverage()
    for c in m.taxonomy.classes:
        if c.id not in m.to_node:
            cov.unmapped.append(c.id)
        elif m.to_node[c.id] is None:
            cov.ignored.append(c.id)
        elif h.nodes[m.to_node[c.id]].children:
            cov.inner.append(c.id)
        else:
            cov.leaves.append(c.id)
    return cov


# -- output --------------------------------------------------------------------------------------

def rules_snippet(result: MergeResult) -> str:
    """A tree file that reproduces the proposal (by_name matching + ignores) with the open questions
    as comments: the place to start writing rules."""
    h = result.hierarchy
    lines = [f"# labeltree rules for {' + '.join(result.datasets)}: a flat union by name, proposed by",
             "# `labeltree merge`. Edit the tree (nest the nodes a coarse class covers under a parent), map",
             "# the classes below, then run: labeltree merge " + " ".join(result.datasets) + " --rules THIS.yaml",
             "# Needs a rule:"]
    for c in result.conflicts:
        if c.kind in ("contains", "includes", "name-clash", "unmapped", "level-of-detail"):
            lines.append(f"#   - [{c.kind}] {c.message}")
    n_unmatched = sum(len(c.classes) for c in result.conflicts if c.kind == "unmatched")
    if n_unmatched:
        lines.append(f"#   - {n_unmatched} classes exist in one dataset only (see `labeltree merge` output):"
                     " map them onto another dataset's node, ignore them, or keep them as leaves")
    maps: dict[str, Any] = {}
    for d, m in h.mappings.items():
        ref = d if Path(d).suffix not in (".yaml", ".yml") else str(Path(d).resolve())
        spec: dict[str, Any] = {"by_name": True}
        explicit = {}
        by_norm = {normalise_name(n.name): i for i, n in enumerate(h.nodes) if i > 0}
        for c in m.taxonomy.classes:
            n = m.to_node.get(c.id)
            if n is None:
                continue
            if _by_name_target(c, by_norm) != n:
                explicit[c.name] = h.nodes[n].name
        if explicit:
            spec["map"] = explicit
        ign = [c.name for c in m.taxonomy.classes if c.id in m.to_node and m.to_node[c.id] is None]
        if ign:
            spec["ignore"] = ign
        maps[ref] = spec
    keys = list(maps)
    body = {"name": "+".join(result.datasets), "datasets": keys,
            "tree": [h.nodes[i].name for i in h.nodes[0].children], "mappings": maps,
            "supervision": {"exclude_single_child": True, "overrides": []}}
    text = yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=120, default_flow_style=False)
    return "\n".join(lines) + "\n" + re.sub(r"^mappings:", "# dataset class -> node; by_name maps the rest by "
                                             "normalised name / synonym\nmappings:", text, flags=re.M)


def render_merge(r: MergeResult, color: bool = False) -> str:
    h = r.hierarchy
    src = {"bundled": f"bundled tree {r.source_path.name if r.source_path else ''}",
           "extends": f"bundled tree {r.source_path.name if r.source_path else ''} kept, new datasets placed by name "
                      "(`labeltree place` places them from data)",
           "rules": f"rules {r.source_path}", "proposal": "no rules cover this set: proposed flat union by name"}
    out = [f"merge {' + '.join(r.datasets)}  ({src[r.source]})", ""]
    out.append(render_tree(h, color=color, supervision=True))
    out += ["", "coverage (classes on leaves / on inner nodes / ignored / unmapped):"]
    for d, c in r.coverage.items():
        m = h.mappings[d]
        inner = ", ".join(f"{m.taxonomy.by_id(i).display} -> {h.nodes[m.to_node[i]].name}" for i in c.inner)
        out.append(f"  {d}: {len(m.taxonomy.classes)} classes: {len(c.leaves)} on leaves, {len(c.inner)} on inner "
                   f"nodes{' (' + inner + ')' if inner else ''}, {len(c.ignored)} ignored, {len(c.unmapped)} unmapped"
                   + ("  [evaluation only]" if m.evaluation_only else ""))
    if r.matches:
        out += ["", f"name matches made by merge ({len(r.matches)}):"]
        for mt in r.matches[:40]:
            out.append(f"  {mt['node']}: {', '.join(mt['classes'])}")
        if len(r.matches) > 40:
            out.append(f"  ... and {len(r.matches) - 40} more (--format json lists all)")
    settled = sum(c.settled for c in r.conflicts)
    unresolved = sum(c.unresolved for c in r.conflicts)
    head = f"conflicts ({len(r.conflicts)}; {unresolved} unresolved"
    head += f", {settled} level-of-detail settled by the tree file):" if settled else "):"
    out += ["", head if r.conflicts else "conflicts: none"]
    order = ["level-of-detail", "includes", "contains", "name-clash", "unmapped", "unmatched", "partial",
             "unlabelled", "excluded"]
    for c in sorted(r.conflicts, key=lambda c: order.index(c.kind) if c.kind in order else 99):
        out.append(f"  [{c.kind}{', settled' if c.settled else ''}] {c.message}")
    if r.snippet:
        out += ["", "rules to start from (save as rules.yaml, edit, re-run with --rules rules.yaml):", "",
                r.snippet]
    return "\n".join(out)
