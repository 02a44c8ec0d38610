"""The synthetic set the synth tests share: its size, and a digest of every file of an output."""

from __future__ import annotations

import hashlib
from pathlib import Path

N_IMAGES = 15
SIZE = (256, 128)

def tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "synth.json"}
