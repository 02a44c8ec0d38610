"""The label choices of the annotation tool, all read from the taxonomies (never a list in code).

A decision is stored as text: a GTSDB ClassID ("0".."42"), "other" (a sign outside the 43 GTSDB
classes) or "not-a-sign" (the Cityscapes mask was wrong). Only ClassIDs change exported pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from labeltree.core.taxonomy import ClassDef, load_taxonomy
from labeltree.errors import LabeltreeError

OTHER = "other"
NOT_A_SIGN = "not-a-sign"
EXTRA_CHOICES = {OTHER: "other sign", NOT_A_SIGN: "not a sign"}
_ALIASES = {"other": OTHER, "other sign": OTHER, "other-sign": OTHER,
            "not-a-sign": NOT_A_SIGN, "not a sign": NOT_A_SIGN, "notasign": NOT_A_SIGN, "not_a_sign": NOT_A_SIGN}


@dataclass(frozen=True)
class SignDecisions:
    """The decisions a person takes on a Cityscapes sign (a GTSDB class, other, not a sign), where the sign
    pixels come from and what value each decision exports to (not evaluate's LabelSpace: a label set)."""

    sign_id: int  # Cityscapes 'traffic sign' id (stored value in labelIds)
    sign_classes: tuple[ClassDef, ...]  # the GTSDB classes, ClassID order
    stored: dict[int, int]  # GTSDB ClassID -> stored value in Cityscapes Extended (2000 + k)

    def export_value(self, decision: str | None) -> int:
        """Pixel value in the extended label image for one component's decision."""
        if decision is None or decision in EXTRA_CHOICES:
            return self.sign_id
        return self.stored[int(decision)]

    def parse(self, value: object) -> str:
        """Normalise a user-given class ('14', 14, 'other', 'not a sign') or raise ValueError."""
        if isinstance(value, bool):
            raise ValueError(f"class must be a GTSDB ClassID or {' / '.join(EXTRA_CHOICES)}, got {value!r}")
        if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
            k = int(value)
            if k not in self.stored:
                raise ValueError(f"GTSDB ClassID {k} does not exist (valid: {min(self.stored)}..{max(self.stored)})")
            return str(k)
        if isinstance(value, str) and value.strip().lower() in _ALIASES:
            return _ALIASES[value.strip().lower()]
        raise ValueError(f"class must be a GTSDB ClassID {min(self.stored)}..{max(self.stored)} or "
                         f"{' / '.join(EXTRA_CHOICES)}, got {value!r}")

    def name(self, decision: str | None) -> str:
        if decision is None:
            return ""
        if decision in EXTRA_CHOICES:
            return EXTRA_CHOICES[decision]
        return next(c.name for c in self.sign_classes if c.id == int(decision))


@cache
def sign_decisions() -> SignDecisions:
    """Build the sign decisions from the cityscapes, gtsdb and cityscapes-extended taxonomies."""
    cs = load_taxonomy("cityscapes")
    sign = cs.find("traffic sign")
    if sign is None:
        raise LabeltreeError("the cityscapes taxonomy has no 'traffic sign' class")
    gtsdb = load_taxonomy("gtsdb")
    ext = load_taxonomy("cityscapes-extended")
    ext_ids = {c.id: c for c in ext.classes}
    stored: dict[int, int] = {}
    for c in gtsdb.classes:
        v = gtsdb.stored_value(c.id)
        if v not in ext_ids:
            raise LabeltreeError(f"GTSDB class {c.id} '{c.name}' is stored as {v}, which the cityscapes-extended "
                                 "taxonomy does not define; the two taxonomy files disagree")
        stored[c.id] = v
    if ext.find(sign.id) is None:
        raise LabeltreeError(f"cityscapes-extended has no class {sign.id} (Cityscapes 'traffic sign')")
    return SignDecisions(sign.id, tuple(gtsdb.classes), stored)
