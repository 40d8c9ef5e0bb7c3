"""Reading a stranger's ``.npy`` file: numbers only, never a pickle, one-line errors.

``np.load`` with ``allow_pickle=False`` refuses object arrays; this adds what a model input needs
and NumPy does not check: a numeric (real) dtype, not a structured one, and at least one element.
"""

from __future__ import annotations

import os

import numpy as np

from seisbind.io.batch import InputError, describe


def read_npy(path: str | os.PathLike, mmap: bool = True) -> np.ndarray:
    """The array in ``path`` (memory-mapped unless ``mmap`` is False), or :class:`InputError`."""
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)  # a foreign .npy must not run code
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{path}: not a readable .npy array ({describe(err)})") from None
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{path}: holds {type(arr).__name__}, not one array (an .npz archive?)")
    if arr.dtype.names is not None or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) \
            or np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"{path}: holds {arr.dtype} values; a real-valued numeric array is needed")
    if arr.size == 0:
        raise InputError(f"{path}: the array is empty (shape {arr.shape})")
    return arr
