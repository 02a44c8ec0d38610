"""`open_dataset`: the reader for a root in the layout of a dataset's taxonomy (by encoding format)."""

from __future__ import annotations

from pathlib import Path

from labeltree.core.taxonomy import Taxonomy, load_taxonomy
from labeltree.datasets.base import DatasetReader, Unknown
from labeltree.datasets.bdd100k import BDD100KReader
from labeltree.datasets.cityscapes import CityscapesReader
from labeltree.datasets.gtsdb import GTSDBReader
from labeltree.datasets.idd import IDDReader
from labeltree.datasets.vistas import VistasReader
from labeltree.errors import LabeltreeError

# the usual layout of each encoding format; a taxonomy's `encoding.layout` names another one
READERS: dict[str, type[DatasetReader]] = {
    "png-ids": CityscapesReader,
    "png-palette-index": VistasReader,
    "gtsdb-gt-txt": GTSDBReader,
}
# every layout by name (Cityscapes, Vistas, GTSDB and the layouts that share a format with them)
LAYOUTS: dict[str, type[DatasetReader]] = {cls.layout: cls for cls in (CityscapesReader, VistasReader, GTSDBReader,
                                                                      BDD100KReader, IDDReader)}


def reader_for(tax: Taxonomy) -> type[DatasetReader]:
    """The reader class of a taxonomy: its `encoding.layout`, else its format's usual layout."""
    lay = tax.encoding.layout
    if lay is None:
        return READERS[tax.encoding.format]
    if lay not in LAYOUTS:
        raise LabeltreeError(f"taxonomy '{tax.name}': encoding.layout '{lay}' is unknown (known: "
                             f"{', '.join(sorted(LAYOUTS))})")
    if (lay == GTSDBReader.layout) != (tax.annotation == "boxes"):  # boxes live in gt.txt, dense labels in images
        raise LabeltreeError(f"taxonomy '{tax.name}': encoding.layout '{lay}' is for "
                             f"{'box' if lay == GTSDBReader.layout else 'dense'} annotations, but the taxonomy has "
                             f"annotation: {tax.annotation}; fix one of the two")
    return LAYOUTS[lay]


def open_dataset(dataset: str | Path | Taxonomy, root: str | Path, unknown: Unknown = "error",
                 **options) -> DatasetReader:
    """A reader for `root` in the layout of the dataset's taxonomy (by encoding format).

    `unknown='ignore'` maps label values the taxonomy lacks to its ignore value instead of failing.
    GTSDB takes `gt=` (another gt.txt) and `mask_mode=` ('fine' | 'coarse', for `read_label`).
    """
    tax = dataset if isinstance(dataset, Taxonomy) else load_taxonomy(dataset)
    cls = reader_for(tax)
    return cls(tax, Path(root), unknown, **options)


def reader_class(layout: str) -> type[DatasetReader]:
    """The reader of a layout name ('cityscapes', 'vistas', 'gtsdb'): its file-name conventions."""
    if layout in LAYOUTS:
        return LAYOUTS[layout]
    raise LabeltreeError(f"unknown dataset layout '{layout}' (known: {', '.join(LAYOUTS)})")
