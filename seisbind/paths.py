"""Checks of the folders the commands read, so a wrong path says what was expected."""

from __future__ import annotations

import os
from pathlib import Path


def require_folder(path: str | os.PathLike, expected: str) -> Path:
    """``path`` as a Path when it is a folder; otherwise a one-line error saying a folder of
    ``expected`` (e.g. "a folder written by save_pretrained") was wanted."""
    p = Path(path).expanduser()
    if p.is_dir():
        return p
    if p.exists():
        raise ValueError(f"{p} is a file, but {expected} was expected")
    raise FileNotFoundError(f"{p}: no such folder; expected {expected}")
