"""Text rendering of a tree: node, classifier, and which dataset classes land on it."""

from __future__ import annotations

from labeltree.core.hierarchy import Hierarchy


def _swatch(rgb: tuple[int, int, int]) -> str:
    r, g, b = rgb
    return f"\x1b[48;2;{r};{g};{b}m  \x1b[0m "


def render_tree(h: Hierarchy, color: bool = False, supervision: bool = False) -> str:
    """The tree, one node per line, with its classifier and the dataset classes mapped to it.

    With `supervision`, each classifier also lists the datasets that train it (docs/design.md §2.3).
    """
    def trained_by(node: int) -> str:
        if not supervision:
            return ""
        j = h.classifier_of[node]
        ds = [d for d in h.mappings if h.supervises(d, j)]
        return f"; trained by {', '.join(ds) if ds else 'no dataset'}"

    on_node: dict[int, list[str]] = {}
    for d, m in h.mappings.items():
        for cid, n in sorted(m.to_node.items()):
            if n is not None:
                on_node.setdefault(n, []).append(f"{d}:{m.taxonomy.by_id(cid).display}")
    lines = [f"{h.name}: {len(h.classifiers)} classifiers "
             f"({', '.join(f'{c.name} {len(c.children)}' for c in h.classifiers)}), {len(h.leaves)} leaves"]

    def walk(i: int, prefix: str) -> None:
        kids = h.nodes[i].children
        for k, c in enumerate(kids):
            last = k == len(kids) - 1
            n = h.nodes[c]
            tag = (f" [classifier L{n.level + 1}: {len(n.children)} classes{trained_by(c)}]"
                   if c in h.classifier_of else "")
            src = on_node.get(c, [])
            shown = ", ".join(src[:4]) + (f", +{len(src) - 4}" if len(src) > 4 else "")
            lines.append(f"{prefix}{'└── ' if last else '├── '}{_swatch(n.color) if color else ''}"
                         f"{n.name}{tag}{'  <- ' + shown if src else ''}")
            walk(c, prefix + ("    " if last else "│   "))

    lines.append(f"root [classifier L1: {len(h.nodes[0].children)} classes{trained_by(0)}]")
    walk(0, "")
    return "\n".join(lines)
