"""Cityscapes Extended: sign proposals from the Cityscapes mask, a labelling web page, and export.

`propose` splits each traffic-sign mask into components, `serve` lets people label them in a
browser, `export_labels`/`import_labels` move decisions through CSV, and `export_extended` writes
16-bit label images (2000 + GTSDB ClassID on labelled signs) for the cityscapes-extended taxonomy.
"""

from labeltree.annotate.export import export_extended, export_labels, import_labels
from labeltree.annotate.propose import propose, sign_components

__all__ = ["export_extended", "export_labels", "import_labels", "propose", "sign_components"]
