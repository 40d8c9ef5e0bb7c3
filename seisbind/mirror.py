"""The left-right mirror of 2-D seismic data: one implementation for training, the model and baselines.

A 2-D section mirrored left to right is another valid geology, and a record through it is the
original record with the stations in reverse order and the in-plane horizontal component (N, along
increasing distance) negated; Z and the out-of-plane E are unchanged (P-SV physics is symmetric
under x -> -x). A record whose channels are shots along the line (OpenFWI's ``shot0..shot4``)
mirrors with its shots in reverse order as well: shot i of the mirrored section is the mirror of
shot n-1-i (exact where the shots sit symmetrically along the line).

Used by the pair augmentation (:func:`seisbind.training.augment.mirror_pair`), by the model's
mirror-averaged embeddings (``SeisBindConfig.mirror_average``: a sample and its mirror image embed
alike) and by the gather-CNN baseline, so all three mirror the same way. Each function takes a NumPy
array or a torch tensor, batched or not (the stations, channels and time axes are the last three of
a record; distance is the last axis of an image).
"""

from __future__ import annotations

import numpy as np
import torch

ZNE = "ZNE"
SHOT_PREFIX = "shot"  # OpenFWI-layout records: channel i is the gather of shot i along the line


def shot_channels(channels: str) -> bool:
    """Whether ``channels`` name one shot gather a channel, in order (``shot0,shot1,...``)."""
    names = channels.split(",")
    return all(name == f"{SHOT_PREFIX}{i}" for i, name in enumerate(names))


def mirrorable(channels: str) -> bool:
    """Whether records of ``channels`` have a known mirror (ZNE, or shots along the line)."""
    return channels == ZNE or shot_channels(channels)


def channels_for(in_chans: int) -> str:
    """The channel names a tower of ``in_chans`` channels reads, as the model declares them:
    ZNE for three (``component_order``), else one shot a channel."""
    return ZNE if in_chans == 3 else ",".join(f"{SHOT_PREFIX}{i}" for i in range(in_chans))


def _flip(x, axis: int):
    return x.flip(axis) if isinstance(x, torch.Tensor) else np.flip(x, axis)


def mirror_images(images):
    """Sections (..., depth, distance) flipped along distance."""
    return _flip(images, -1)


def mirror_records(records, channels: str = ZNE):
    """Records (..., stations, channels, time) of the mirrored section: stations reversed and, by
    ``channels``, N negated (``"ZNE"``) or the shots reversed (``"shot0,...,shotN"``).

    Raises ``ValueError`` for other channels or a channel count ``channels`` does not name."""
    if records.ndim < 3:
        raise ValueError(f"a record is (..., stations, channels, time); got shape {tuple(records.shape)}")
    n = records.shape[-2]
    shots = shot_channels(channels)
    if not (shots or channels == ZNE):
        raise ValueError(f"no mirror is known for channels {channels!r}: ZNE records (2-D P-SV) or one channel a "
                         f"shot (shot0,shot1,...) mirror")
    if n != len(channels.split(",")) and not (channels == ZNE and n == 3):
        raise ValueError(f"the record has {n} channels, {channels!r} names {len(channels.split(','))}")
    out = _flip(records, -3)
    if shots:
        return _flip(out, -2)
    sign = np.array([1.0, -1.0, 1.0], dtype=np.float32)[:, None]  # (channels, 1): N negated
    if isinstance(out, torch.Tensor):
        return out * torch.as_tensor(sign, dtype=out.dtype, device=out.device)
    return out * sign.astype(out.dtype, copy=False)


def mirror_positions(station_x_m):
    """Station positions (..., stations) of the mirrored record: negated, in the reversed station
    order, so they rise again along the array (the array head reads offsets from the array's centre:
    the mirror of each station's offset)."""
    return -_flip(station_x_m, -1)


def mirror_mask(station_mask):
    """A station mask (..., stations) in the mirrored record's station order."""
    return _flip(station_mask, -1)
