"""Each modality's tower parts, by modality: what the joint model puts in its module dicts.

A tower is a preprocessor (raw input -> the trunk's and head's arguments), a trunk (tokens) and a
head (tokens -> one vector in the shared space); the model adds the L2-normalising postprocessor.
A new modality is one :class:`Tower` here (and its config class in ``seisbind.models.config``):
the model, its ``forward`` and the loss loop over what is registered and configured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import nn

from seisbind.modalities import ModalityType


@dataclasses.dataclass(frozen=True)
class Tower:
    """How to build one modality's parts from its tower config.

    ``side_inputs`` are the extra ``forward`` inputs the preprocessor takes besides the modality's
    own (the waveform tower's ``station_mask`` and ``station_x_m``). ``mirror`` maps an input and
    its side inputs to those of the left-right mirrored sample, ``(tower config, input, side
    inputs) -> (input, side inputs)`` (:mod:`seisbind.mirror`), for the model's mirror-averaged
    embeddings; None where a modality has no mirror to take (text describes both alike)."""

    preprocessor: Callable[[object], nn.Module]
    trunk: Callable[[object], nn.Module]
    head: Callable[[object, nn.Module, int], nn.Module]  # (tower config, trunk, embed_dim)
    side_inputs: tuple[str, ...] = ()
    mirror: Callable[..., tuple] | None = None


def _image_tower() -> Tower:
    from seisbind.models.heads import DepthProfilePool, MeanTokens, ProjectionHead, SelectToken
    from seisbind.models.image_tower import ImageTrunk
    from seisbind.models.preprocess import ImagePreprocessor

    def head(cfg, trunk, embed_dim):
        if cfg.pool == "depth":
            rows = cfg.img_hw[0] // cfg.patch_size
            return ProjectionHead(trunk.width, embed_dim, DepthProfilePool(rows), rows * trunk.width)
        return ProjectionHead(trunk.width, embed_dim, SelectToken(0) if cfg.pool == "token" else MeanTokens(1))

    def mirror(cfg, images, side):
        from seisbind.mirror import mirror_images

        return mirror_images(images), side

    return Tower(ImagePreprocessor, ImageTrunk, head, mirror=mirror)


def _waveform_tower() -> Tower:
    from seisbind.models.array_head import ArrayHead
    from seisbind.models.heads import ProjectionHead, StationAttentionPool
    from seisbind.models.preprocess import WaveformPreprocessor
    from seisbind.models.waveform_tower import WaveformTrunk

    def head(cfg, trunk, embed_dim):
        if cfg.head == "array":
            # With a station stride each encoded station also carries its neighbours' amplitudes.
            channels = cfg.trunk_channels if cfg.station_stride > 1 else cfg.in_chans
            return ArrayHead(trunk.width, embed_dim, channels, cfg.array_width, cfg.array_depth, cfg.array_heads,
                             cfg.array_time_pool, cfg.station_spacing_m, cfg.array_queries,
                             cfg.array_pool, cfg.array_time_tokens)  # fmt: skip
        return ProjectionHead(trunk.width, embed_dim, StationAttentionPool(trunk.width))

    def mirror(cfg, waveforms, side):
        from seisbind.mirror import channels_for, mirror_mask, mirror_positions, mirror_records

        out = dict(side)
        if out.get("station_mask") is not None:
            out["station_mask"] = mirror_mask(out["station_mask"])
        if out.get("station_x_m") is not None:  # without positions, the reversed order is the mirrored line
            out["station_x_m"] = mirror_positions(out["station_x_m"])
        return mirror_records(waveforms, channels_for(cfg.in_chans)), out

    return Tower(WaveformPreprocessor, WaveformTrunk, head, side_inputs=("station_mask", "station_x_m"), mirror=mirror)


def _text_tower() -> Tower:
    from seisbind.models.heads import ProjectionHead
    from seisbind.models.text_tower import TextPreprocessor, TextTrunk

    def head(cfg, trunk, embed_dim):
        return ProjectionHead(trunk.width, embed_dim, nn.Identity())  # the trunk pools at the EOT token

    return Tower(TextPreprocessor, TextTrunk, head)


# Built on first use, so importing this module imports no tower code.
_BUILDERS: dict[str, Callable[[], Tower]] = {
    ModalityType.IMAGE: _image_tower,
    ModalityType.WAVEFORM: _waveform_tower,
    ModalityType.TEXT: _text_tower,
}
_TOWERS: dict[str, Tower] = {}


def register_tower(modality: str, tower: Tower | Callable[[], Tower]) -> None:
    """Register (or replace) a modality's tower parts."""
    _TOWERS.pop(modality, None)
    _BUILDERS[modality] = tower if callable(tower) and not isinstance(tower, Tower) else (lambda: tower)


def get_tower(modality: str) -> Tower:
    if modality not in _BUILDERS:
        raise ValueError(f"no tower is registered for modality {modality!r}; registered: {sorted(_BUILDERS)}")
    if modality not in _TOWERS:
        _TOWERS[modality] = _BUILDERS[modality]()
    return _TOWERS[modality]
