"""The synthetic world's vocabulary: the tree nodes the street generator paints and, per dataset of the
tree file, the one lookup `node -> stored value` that turns a painted frame into that dataset's label.

One procedural street generator (`synth.paint`) paints every frame in the NODES OF THE SEMANTIC TREE
(the finest vocabulary there is: lane markings, manholes, bicyclists, sign fronts of each GTSDB class,
...); each dataset's label is then `Hierarchy.tables(ds).node_to_value` compiled from the tree file (the
dataset class at the depth it annotates, e.g. a lane marking is Cityscapes "road", a sign front of class
k is Cityscapes "traffic sign" and Cityscapes-Extended 2000 + k). No id is written here; world objects
are named by tree node and looked up.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import numpy as np

from labeltree.core.hierarchy import Hierarchy
from labeltree.core.taxonomy import ClassDef, Taxonomy
from labeltree.core.tree_file import load_hierarchy
from labeltree.datasets.registry import reader_for
from labeltree.errors import LabeltreeError
from labeltree.vocab import DEFAULT_TREE

HIERARCHY = DEFAULT_TREE
MARKER = "synth.json"
# Dataset class for world objects the dataset has no class for (Cityscapes labels a street lamp or
# the back of a sign as "static"), by layout; a layout without one (BDD100K, IDD) gets its ignore value.
FALLBACK_CLASS = {"cityscapes": "static", "vistas": "Unlabeled"}
# Tree nodes the street generator paints (looked up by name in the tree file).
WORLD_NODES = ("Sky", "Building", "Vegetation", "Terrain", "Road", "Sidewalk", "Lane Marking - General",
               "Lane Marking - Crosswalk", "Crosswalk - Plain", "Bike Lane", "Manhole", "Catch Basin", "Pole",
               "Street Light", "Traffic Light", "Traffic Sign (Back)", "Car", "Truck", "Bus", "Person",
               "Bicyclist", "Motorcyclist", "Bicycle", "Motorcycle", "Ego Vehicle")
# Tree nodes painted in IDD frames only, where the tree has them (IDD's add-on root nodes): a tree without
# one simply gets no such object, so the paper's tree and its frames are unchanged.
IDD_NODES = ("Autorickshaw", "Vehicle Fallback", "Obs-Str-Bar Fallback")


# -- the world's vocabulary -----------------------------------------------------------------------

class World:
    """Tree nodes of the generator's objects and the per-dataset `node -> stored value` tables.

    The datasets are the tree file's (trained and evaluation-only), each written in its taxonomy's
    layout; an evaluation-only dataset in the layout of a trained one (Cityscapes Extended) gets that
    dataset's frames with its own labels. The sign classes are those of the tree's box dataset.
    """

    def __init__(self, hierarchy: str = HIERARCHY):
        h = load_hierarchy(hierarchy)
        self.hierarchy = h
        missing = [n for n in WORLD_NODES if n not in h.index]
        if missing:
            raise LabeltreeError(f"the synthetic street needs tree nodes {', '.join(missing)}, which tree "
                                 f"'{h.name}' does not have", h.path)
        self.node = {n: h.index[n] for n in WORLD_NODES}
        self.idd_node = {n: h.index[n] for n in IDD_NODES if n in h.index}  # optional: painted where present
        self.datasets: list[str] = list(h.mappings)
        self.tax: dict[str, Taxonomy] = {}
        self.layout: dict[str, str] = {}
        self.lut: dict[str, np.ndarray] = {}
        self.folder: dict[str, str] = {}  # dataset -> its folder under OUT (one plain name, never a path)
        for ds in self.datasets:
            m = h.mapping(ds)
            self.tax[ds] = m.taxonomy
            self.layout[ds] = reader_for(m.taxonomy).layout
            self.folder[ds] = _folder_name(ds, m.taxonomy, h)
            self.lut[ds] = self._node_values(ds)
        twice = [f for f in set(self.folder.values()) if list(self.folder.values()).count(f) > 1]
        if twice:
            raise LabeltreeError(f"tree '{h.name}' has several datasets that would be written to OUT/{twice[0]}/: "
                                 "give their taxonomies distinct names", h.path)
        boxes = [ds for ds in self.datasets if self.layout[ds] == "gtsdb"]
        if not boxes:
            raise LabeltreeError(f"the synthetic street draws GTSDB's signs: tree '{h.name}' has no dataset in "
                                 "the GTSDB layout", h.path)
        self.sign_dataset = boxes[0]
        gt = self.tax[self.sign_dataset]
        v2n = h.tables(self.sign_dataset).value_to_node
        self.signs: list[ClassDef] = sorted(gt.classes, key=lambda c: c.id)
        self.sign_node = {c.id: int(v2n[gt.stored_value(c.id)]) for c in self.signs}
        bad = [c.name for c in self.signs if c.shape is None or self.sign_node[c.id] < 0]
        if bad:
            raise LabeltreeError(f"GTSDB classes {', '.join(bad)} have no shape or no tree node", h.path)
        # stored value -> does the class have instances (encoded per the taxonomy's encoding.instances)
        self.has_instances: dict[str, np.ndarray] = {}
        for ds, tax in self.tax.items():
            if tax.annotation == "dense" and tax.encoding.instances is not None:
                flags = np.zeros(tax.lut_size, dtype=bool)
                for c in tax.classes:
                    if c.id >= 0:
                        flags[tax.stored_value(c.id)] = c.has_instances
                self.has_instances[ds] = flags
        trained = [ds for ds in self.datasets if not h.mapping(ds).evaluation_only]
        # evaluation-only dataset -> the trained dataset of its layout whose frames it labels
        self.shares = {ds: next(t for t in trained if self.layout[t] == self.layout[ds]) for ds in self.datasets
                       if h.mapping(ds).evaluation_only and any(self.layout[t] == self.layout[ds] for t in trained)}
        self.rendered = [ds for ds in self.datasets if ds not in self.shares]

    def _node_values(self, ds: str) -> np.ndarray:
        """node -> stored value: the dataset's class at the depth it annotates; a node finer than the
        dataset gets its ancestor's class (Hierarchy.tables), a node coarser than every class of the
        dataset (a painted inner node) its first mapped descendant's, anything else the fallback."""
        h, tax = self.hierarchy, self.tax[ds]
        n2v = h.tables(ds).node_to_value.copy()
        for n in np.flatnonzero(n2v < 0):
            below = [d for d in sorted(h.descendants(int(n))) if d != n and n2v[d] >= 0]
            if below:
                n2v[n] = n2v[below[0]]
        if tax.annotation == "dense":
            name = FALLBACK_CLASS.get(self.layout[ds])
            fb = tax.find(name) if name is not None else None
            if fb is not None:
                n2v[n2v < 0] = tax.stored_value(fb.id)
            elif tax.ignore_ids:
                n2v[n2v < 0] = tax.stored_value(tax.ignore_ids[0])
            else:
                raise LabeltreeError(f"taxonomy '{tax.name}' has no class for objects it does not label "
                                     f"({name or 'an ignore id'})", h.path)
        return n2v

    def instances(self, ds: str, values: np.ndarray, inst: np.ndarray) -> np.ndarray:
        """The dataset's 16-bit instance map, encoded as its taxonomy's `encoding.instances` says."""
        enc = self.tax[ds].encoding.instances
        if enc is None or ds not in self.has_instances:
            raise LabeltreeError(f"taxonomy '{ds}' has no encoding.instances: it defines no instance files")
        return _instances(values, inst, self.has_instances[ds], enc.factor, enc.stuff_factor, np.uint16)

    def labels(self, ds: str, nodes: np.ndarray) -> np.ndarray:
        """Node map -> stored label values of dataset `ds` (uint8 or uint16 as the taxonomy says)."""
        dtype = np.uint16 if self.tax[ds].encoding.dtype == "uint16" else np.uint8
        return self.lut[ds].astype(dtype)[nodes]


FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def _folder_name(ds: str, tax: Taxonomy, h: Hierarchy) -> str:
    """OUT/<this>/ for a dataset: its name, or for a taxonomy file its taxonomy's name; a name that is
    no single plain folder name ('../x', '/etc') is refused, so nothing is ever written outside OUT."""
    for name in (ds, tax.name) if Path(ds).suffix not in (".yaml", ".yml") else (tax.name,):
        if FOLDER_NAME.fullmatch(name) and name not in (MARKER,):
            return name
    raise LabeltreeError(f"dataset '{ds}' of tree '{h.name}' (taxonomy name '{tax.name}') is no plain folder "
                         "name (letters, digits, . _ + -); synth writes each dataset to OUT/<name>/: rename the "
                         "taxonomy", h.path)


@cache
def get_world(hierarchy: str = HIERARCHY) -> World:
    return World(hierarchy)


def _instances(values: np.ndarray, inst: np.ndarray, has_inst: np.ndarray, base: int, stuff_scale: int,
               dtype: type) -> np.ndarray:
    """value*base + k on pixels of instance classes (k = 0, 1, ... per class in object order) and
    value*stuff_scale elsewhere (Cityscapes: id*1000+k / id; Vistas: class*256+k / class*256)."""
    out = values.astype(np.int64) * stuff_scale
    thing = has_inst[values] & (inst > 0)
    if thing.any():
        key = values[thing].astype(np.int64) << 32 | inst[thing].astype(np.int64)
        uniq, inv = np.unique(key, return_inverse=True)
        first = np.searchsorted(uniq, (uniq >> 32) << 32)
        k = np.arange(len(uniq)) - first
        out[thing] = values[thing].astype(np.int64) * base + k[inv]
    return out.astype(dtype)
