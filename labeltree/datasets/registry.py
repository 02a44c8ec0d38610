"""`open_dataset`: the reader for a root in the layout of a dataset's taxonomy (by encoding format)."""

from __future__ import annotations

from pathlib import Path

from labeltree.core.taxonomy import Taxonomy, load_taxonomy
from labeltree.datasets.base import DatasetReader, Unknown
from labeltree.datasets.cityscapes import CityscapesReader
from labeltree.datasets.gtsdb import GTSDBReader
from labeltree.datasets.vistas import VistasReader
from labeltree.errors import LabeltreeError

READERS: dict[str, type[DatasetReader]] = {
    "png-ids": CityscapesReader,
    "png-palette-index": VistasReader,
    "gtsdb-gt-txt": GTSDBReader,
}


def open_dataset(dataset: str | Path | Taxonomy, root: str | Path, unknown: Unknown = "error",
                 **options) -> DatasetReader:
    """A reader for `root` in the layout of the dataset's taxonomy (by encoding format).

    `unknown='ignore'` maps label values the taxonomy lacks to its ignore value instead of failing.
    GTSDB takes `gt=` (another gt.txt) and `mask_mode=` ('fine' | 'coarse', for `read_label`).
    """
    tax = dataset if isinstance(dataset, Taxonomy) else load_taxonomy(dataset)
    cls = READERS[tax.encoding.format]
    return cls(tax, Path(root), unknown, **options)



def reader_class(layout: str) -> type[DatasetReader]:
    """The reader of a layout name ('cityscapes', 'vistas', 'gtsdb'): its file-name conventions."""
    for cls in READERS.values():
        if cls.layout == layout:
            return cls
    raise LabeltreeError(f"unknown dataset layout '{layout}' (known: {', '.join(c.layout for c in READERS.values())})")
