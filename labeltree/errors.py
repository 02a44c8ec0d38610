"""One exception type for bad input: the CLI turns it into one line on stderr and exit status 2."""

from __future__ import annotations

from pathlib import Path


class LabeltreeError(Exception):
    """Bad usage or bad input. The message names the file (and line or class) and what to do."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path:
            where = f"{self.path}:{line}: " if line else f"{self.path}: "
        super().__init__(where + message)
        self.message = message
