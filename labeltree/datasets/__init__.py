"""The dataset layer: each layout's files (read and written), decoding, and the one label path.

Public API: `open_dataset(dataset, root)` -> a reader whose `samples(split)` lists `Sample`s, and
`read_label(sample, taxonomy, mask_mode)`, which every consumer calls to get stored label values.
"""

from labeltree.datasets.base import LabeltreeWarning, Sample, decode_label, read_label
from labeltree.datasets.boxmask import DEFAULT_MASK_MODE, MODES, Box
from labeltree.datasets.registry import open_dataset

__all__ = ["DEFAULT_MASK_MODE", "MODES", "Box", "LabeltreeWarning", "Sample", "decode_label", "open_dataset",
           "read_label"]
