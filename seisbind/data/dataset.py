"""Loading a generated paired dataset as model-ready tensors.

Images are stored raw and normalised per image here, as SFM does: ``(x - mean) / (std + 1e-6)``.
Waveforms are stored per-trace scaled (float16) and restored to m/s (float32) here; the
SeisLM-style per-channel normalisation belongs to the waveform tower's preprocessor.
"""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import numpy as np
import torch

SFM_EPS = 1e-6


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """Per-image standardisation over the last two axes, SFM's input convention."""
    image = image.float()
    mean = image.mean(dim=(-2, -1), keepdim=True)
    std = image.std(dim=(-2, -1), keepdim=True)
    return (image - mean) / (std + SFM_EPS)


def decode_batch(batch: dict) -> dict:
    """HF ``set_transform`` hook: images to normalised (1, H, W), waveforms back to float32 m/s."""
    out = dict(batch)
    if "image" in batch:
        out["image"] = [normalize_image(torch.as_tensor(np.asarray(im, np.float32)))[None] for im in batch["image"]]
    if "waveforms" in batch:
        out["waveforms"] = [
            torch.as_tensor(np.asarray(w, np.float32) * np.asarray(s, np.float32)[..., None, None])
            for w, s in zip(batch["waveforms"], batch["waveform_scale"])
        ]
    return out


def load_paired(path: str | os.PathLike, split: str | None = None, decode: bool = True):
    """The dataset written by ``seisbind generate`` (a DatasetDict), or one split of it.

    ``path`` is the generation folder (holding ``dataset/``) or the dataset folder itself.
    With ``decode`` the rows come back as tensors ready for the towers.
    """
    path = Path(path)
    if (path / "dataset").is_dir():
        path = path / "dataset"
    if not (path / "dataset_dict.json").exists():
        hint = " (generation still running or unfinished: rerun the same `seisbind generate`)" if (path / "chunks").exists() or (path.parent / "chunks").exists() else ""
        raise FileNotFoundError(f"no paired dataset at {path}{hint}")
    dd = datasets.load_from_disk(str(path))
    if split is not None:
        if split not in dd:
            raise ValueError(f"split {split!r} not in {path}; available: {list(dd)}")
        dd = dd[split]
    if decode:
        dd.set_transform(decode_batch)
    return dd
