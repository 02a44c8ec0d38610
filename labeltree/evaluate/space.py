"""A dataset's label space as contiguous indices: every class, 'unlabeled', and 'not a class of this dataset'.

The evaluator counts ONE matrix over this space; class sets, dropped predictions and tree levels are
block sums of it (labeltree.evaluate.evaluator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labeltree.core.taxonomy import Taxonomy
from labeltree.errors import LabeltreeError

UNLABELED_NAME = "unlabeled"
FOREIGN_NAME = "not a class of this dataset"
OTHER_NAME = "other"


@dataclass
class LabelSpace:
    """Contiguous indices for a dataset's stored label values.

    Index k < K is the k-th class of the taxonomy (ids >= 0, file order); K is the dataset's
    'unlabeled' value (GTSDB 0) and K + 1 is a prediction of a tree node the dataset has no class for.
    """

    taxonomy: Taxonomy
    ids: np.ndarray  # class id per index (K)
    values: np.ndarray  # stored value per index (K)
    names: list[str]
    lut: np.ndarray  # int64 [lut_size]: stored value -> index, -1 = no class of this dataset

    @classmethod
    def of(cls, taxonomy: Taxonomy) -> LabelSpace:
        classes = [c for c in taxonomy.classes if c.id >= 0]
        ids = np.array([c.id for c in classes], dtype=np.int64)
        values = np.array([taxonomy.stored_value(c.id) for c in classes], dtype=np.int64)
        lut = np.full(taxonomy.lut_size, -1, dtype=np.int64)
        lut[values] = np.arange(len(classes))
        if taxonomy.encoding.unlabeled is not None:
            lut[taxonomy.encoding.unlabeled] = len(classes)
        return cls(taxonomy, ids, values, [c.display for c in classes], lut)

    @property
    def K(self) -> int:  # noqa: N802 - the number of classes, as in the docs
        return len(self.ids)

    @property
    def unlabeled(self) -> int:
        return self.K

    @property
    def foreign(self) -> int:
        return self.K + 1

    @property
    def n(self) -> int:
        return self.K + 2

    @property
    def labels(self) -> list[str]:
        return [*self.names, UNLABELED_NAME, FOREIGN_NAME]

    def index_of(self, cid: int) -> int:
        hit = np.flatnonzero(self.ids == cid)
        if not len(hit):
            raise LabeltreeError(f"class id {cid} is not a class of dataset '{self.taxonomy.name}' "
                                 f"(ids {int(self.ids.min())}..{int(self.ids.max())})")
        return int(hit[0])
