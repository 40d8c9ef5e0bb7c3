"""Loading a generated paired dataset as model-ready tensors.

Images are stored raw and returned in their stored units; the image tower's preprocessor scales
them (SFM's per-image standardisation for sections, fixed constants for velocity maps).
Waveforms are stored per-trace scaled (float16) and restored to m/s (float32) here; the
SeisLM-style per-channel normalisation belongs to the waveform tower's preprocessor.
"""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import numpy as np
import torch


def decode_batch(batch: dict) -> dict:
    """HF ``set_transform`` hook: images to float32 (1, H, W) in their stored units (the image
    tower's preprocessor scales them as its config says), waveforms back to float32 m/s."""
    out = dict(batch)
    if "image" in batch:
        out["image"] = [torch.as_tensor(np.asarray(im, np.float32))[None] for im in batch["image"]]
    if "waveforms" in batch:
        out["waveforms"] = [
            torch.as_tensor(np.asarray(w, np.float32) * np.asarray(s, np.float32)[..., None, None])
            for w, s in zip(batch["waveforms"], batch["waveform_scale"])
        ]
    return out


def _load_chunk(folder: Path):
    """One chunk, or a one-line error naming it: a truncated or foreign Arrow file is an
    ``OSError`` or ``ArrowInvalid`` deep inside ``datasets``."""
    import pyarrow as pa

    try:
        return datasets.load_from_disk(str(folder))
    except (OSError, pa.ArrowException, ValueError, KeyError) as err:
        raise ValueError(f"{folder} is corrupt ({type(err).__name__}: {' '.join(str(err).split())[:200]}); "
                         "delete that chunk folder and rerun the same `seisbind generate` to rewrite it") from None


def load_paired(path: str | os.PathLike, split: str | None = None, decode: bool = True):
    """The dataset written by ``seisbind generate``: a DatasetDict by split, or one split of it.

    ``path`` is the generation folder. Its chunks are memory-mapped and concatenated, not copied.
    With ``decode`` the rows come back as tensors ready for the towers.
    """
    from seisbind.data.generate import SPLITS, chunk_dirs, read_plan

    path = Path(path)
    plan = read_plan(path)
    chunks = chunk_dirs(path, plan)
    missing = [c.name for c in chunks if not (c / "dataset_dict.json").exists()]
    if missing:
        raise FileNotFoundError(
            f"{path} is unfinished: {len(missing)} of {len(chunks)} chunks missing (e.g. {missing[:3]}); "
            "rerun the same `seisbind generate` (every shard) to finish it"
        )
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    parts = [_load_chunk(c) for c in chunks]

    def joined(s: str) -> datasets.Dataset:
        present = [p[s] for p in parts if s in p]  # a chunk holds only the splits its rows fall in
        if present:
            return datasets.concatenate_datasets(present)
        features = next(iter(parts[0].values())).features
        return datasets.Dataset.from_dict({k: [] for k in features}, features=features)

    dd = datasets.DatasetDict({s: joined(s) for s in ([split] if split else SPLITS)})
    if decode:
        for ds in dd.values():
            ds.set_transform(decode_batch)
    return dd[split] if split else dd


def record_channels(dataset, default: str | None = None) -> str | None:
    """The channel names of a split's records (``"ZNE"``, ``"shot0,...,shot4"``), read from its
    ``channels`` column alone (a whole-row read decodes the records), or ``default`` without one."""
    if "channels" not in dataset.column_names or not len(dataset):
        return default
    return str(dataset.with_format(None).select_columns(["channels"])[0]["channels"])


class StoredRows:
    """Fast batched row access to a split: images, records in m/s and extra columns, as NumPy.

    Takes a ``datasets.Dataset`` as :func:`load_paired` returns it (decoded or not), or one built in
    memory with columns ``image``, ``waveforms`` (sources, stations, channels, time) and optionally
    ``waveform_scale`` (sources, stations), the per-trace scale of the stored waveforms. It reads
    through ``datasets``' NumPy format: the decoded view's transform receives every array as nested
    Python lists (``datasets``' custom formats always go through its Python extractor), which costs
    more than a training step of the tiny towers. ``extra`` names further columns to return.
    """

    def __init__(self, dataset, extra: tuple[str, ...] = ()) -> None:
        cols = [c for c in ("image", "waveforms", "waveform_scale", *extra) if c in dataset.column_names]
        if "image" not in cols or "waveforms" not in cols:
            raise ValueError(f"a paired split needs columns image and waveforms; got {dataset.column_names}")
        self.rows = dataset.select_columns(cols).with_format("numpy")
        self.scaled = "waveform_scale" in cols
        self.extra = tuple(c for c in extra if c in cols)

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, index) -> tuple[np.ndarray, np.ndarray]:
        """Images (B, H, W) and records (B, sources, stations, channels, time) float32 of rows ``index``."""
        images, waves, _ = self.get_with_extra(index)
        return images, waves

    def get_with_extra(self, index) -> tuple[np.ndarray, np.ndarray, dict]:
        """As :meth:`get`, plus the ``extra`` columns of those rows (name -> array or list)."""
        batch = self.rows[index]
        images = np.asarray(batch["image"], np.float32)
        waves = np.asarray(batch["waveforms"], np.float32)
        if self.scaled:
            waves = waves * np.asarray(batch["waveform_scale"], np.float32)[..., None, None]
        return images, waves, {c: batch[c] for c in self.extra}
