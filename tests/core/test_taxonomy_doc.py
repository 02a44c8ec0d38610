"""docs/taxonomy-format.md cannot rot: its worked example (files, commands, the output lines it shows,
the Python block) is run here, its key tables are compared with the loaders' models, and its excerpts of
the bundled files are checked against those files."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from labeltree.cli import main
from labeltree.core.taxonomy import ClassDef, Encoding, Taxonomy, load_taxonomy, taxonomy_from_dict
from labeltree.core.tree_file import EXTENSION_KEYS, load_hierarchy

DOC = Path(__file__).resolve().parents[2] / "docs" / "taxonomy-format.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.S | re.M)


def blocks(text: str) -> list[tuple[str, dict[str, str], str]]:
    """(language, attributes like file=NAME, body) of every fenced block, in order."""
    return [(lang, dict(a.split("=", 1) for a in attrs.split() if "=" in a), body)
            for lang, attrs, body in FENCE.findall(text)]


def tables(text: str, header: str) -> list[list[str]]:
    """The backticked keys in the first column of each markdown table with this header row."""
    out = []
    for m in re.finditer(re.escape(header) + r"\n\|[-| ]+\|\n((?:\|.*\n)+)", text):
        keys = []
        for row in m.group(1).splitlines():
            keys += re.findall(r"`([^`]+)`", row.split("|")[1])
        out.append(keys)
    return out


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text()


def test_worked_example_runs_as_written(doc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bl = blocks(doc)
    example = doc.index("## Worked example")
    start = next(i for i, (_, _, body) in enumerate(bl) if doc.index(body) > example)
    ran = files = pythons = 0
    for lang, attrs, body in bl[start:]:
        if "file" in attrs:
            (tmp_path / attrs["file"]).write_text(body)
            files += 1
        elif lang == "console":
            for cmd, expected in _commands(body):
                res = CliRunner().invoke(main, shlex.split(cmd)[1:])
                assert res.exit_code == 0, (cmd, res.output)
                got = [ln.rstrip() for ln in res.output.splitlines()]
                for want in expected:  # each shown output line appears, in order
                    assert want in got, f"`{cmd}` did not print {want!r}"
                    got = got[got.index(want) + 1:]
                ran += 1
        elif lang == "python":
            exec(compile(body, str(DOC), "exec"), {})  # noqa: S102 - the doc's own example
            pythons += 1
    assert (files, ran, pythons) == (2, 7, 1)
    assert (tmp_path / "bikelanes.yaml").exists() and (tmp_path / "tree4-full.yaml").exists()
    # the written full tree is the extension made explicit
    full, ext = load_hierarchy(tmp_path / "tree4-full.yaml"), load_hierarchy(tmp_path / "tree4.yaml")
    assert [(c.name, len(c.children)) for c in full.classifiers] == [(c.name, len(c.children)) for c in ext.classifiers]
    assert full.mapping("bikelanes").to_node == ext.mapping("bikelanes").to_node


def _commands(body: str) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for ln in body.splitlines():
        if ln.startswith("$ "):
            out.append((ln[2:], []))
        elif ln.strip() != "...":
            out[-1][1].append(ln.rstrip())
    return out


def test_key_tables_match_the_models(doc):
    top, classes, tree = tables(doc, "| key | required | meaning |")
    assert set(top) == set(Taxonomy.model_fields)
    assert set(classes) == set(ClassDef.model_fields)
    enc, mapping, ext = tables(doc, "| key | meaning |")
    assert set(enc) - {"anything else"} == set(Encoding.model_fields)
    assert set(mapping) == {"map", "ignore", "by_name: true", "inherit: DATASET"}
    assert set(tree) == {"name", "description", "datasets", "evaluation_datasets", "tree", "mappings", "supervision",
                         "extends", "add", "include"}
    assert set(ext) == EXTENSION_KEYS
    shapes = re.search(r"\| `shape` \| no \| (.*) \|", doc).group(1)
    literal = ClassDef.model_fields["shape"].annotation.__args__[0]
    assert re.findall(r"`([a-z-]+)`", shapes.split("(")[0]) == list(literal.__args__)


def test_excerpts_agree_with_the_bundled_files(doc):
    yamls = [yaml.safe_load(body) for lang, attrs, body in blocks(doc) if lang == "yaml" and "file" not in attrs]
    tax_excerpt, tree_excerpt = yamls
    tax = taxonomy_from_dict(tax_excerpt, DOC)
    bundled = load_taxonomy(tax.name)
    assert all(c == bundled.by_id(c.id) for c in tax.classes)
    assert tax.encoding.format == bundled.encoding.format and tax.ignore_ids == bundled.ignore_ids
    h = load_hierarchy(tree_excerpt["name"])

    def walk(entries, parent):
        for e in entries:
            name, kids = (e, None) if isinstance(e, str) else next(iter(e.items()))
            assert h.nodes[h.nodes[h.index[name]].parent].name == parent, name
            if kids:
                walk(kids, name)

    walk(tree_excerpt["tree"], "root")
    for d, spec in tree_excerpt["mappings"].items():
        m = h.mapping(d)
        for ref, node in (spec.get("map") or {}).items():
            assert h.nodes[m.to_node[m.taxonomy.find(ref).id]].name == node, (d, ref)
        for ref in spec.get("ignore") or []:
            assert m.to_node[m.taxonomy.find(ref).id] is None
    assert {(o["dataset"], o["classifier"]): o["supervise"]
            for o in tree_excerpt["supervision"]["overrides"]} == h.overrides
    assert tree_excerpt["datasets"] == h.datasets
