"""The flat model's traffic-sign rule (docs/design.md §2.6): decisions from score maps, done right."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the tree is passed in, never built here
    from labeltree.core.hierarchy import Hierarchy


def second_choice(scores: np.ndarray, generic: int, subclasses: Sequence[int], axis: int = -3) -> np.ndarray:
    """Flat decisions with the paper's traffic-sign second-choice rule (docs/design.md §2.6), done right.

    argmax over `axis`; where the top choice is the generic sign class `generic` and the second
    choice (the best class other than `generic`) is one of `subclasses`, the decision becomes that
    subclass. The pixel is then recorded as that subclass everywhere: correct where it equals the gt,
    a confusion (and a false positive of that subclass) where it does not. A generic top choice whose
    second choice is no subclass stays generic (an error on a sign pixel of any subclass). The
    authors' metric mis-records exactly that case: "generic top-1 + a non-subclass top-2" is
    recorded as class 7 (a sign subclass) instead of the generic class.
    """
    scores = np.asarray(scores)
    top = np.argmax(scores, axis=axis)
    masked = np.moveaxis(scores, axis, 0).astype(np.float64, copy=True)
    masked[generic] = -np.inf
    second = np.argmax(masked, axis=0)
    is_sub = np.zeros(max(scores.shape[axis], 1), dtype=bool)
    is_sub[np.asarray(list(subclasses), dtype=np.int64)] = True
    return np.where((top == generic) & is_sub[second], second, top)


def sign_rule_nodes(hierarchy: Hierarchy) -> tuple[int, list[int]] | None:
    """(generic node, subclass nodes) for the sign rule: the node the tree's box dataset hangs under."""
    for d, m in hierarchy.mappings.items():
        if m.is_boxes:
            j = hierarchy.tables(d).box_classifier
            if j is not None:
                c = hierarchy.classifiers[j]
                return c.node, list(c.children)
    return None
