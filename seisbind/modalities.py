"""The modalities seisbind binds, named once (as ImageBind's ``ModalityType``).

Every modality-keyed structure (model ``ModuleDict``s, dataset columns, exports)
uses these names, so adding a modality starts here.
"""

from __future__ import annotations


class ModalityType:
    IMAGE = "image"  # a 1-channel seismic section, SFM convention
    WAVEFORM = "waveform"  # (stations, channels, time) ground motion, SeisLM convention
    TEXT = "text"  # captions, bound to images only (ImageBind): text-waveform links are emergent

    ALL = (IMAGE, WAVEFORM, TEXT)


def pair_key(pair) -> str:
    """The name of a bound pair, as the model's temperatures and the loss's terms are keyed: ``"image_waveform"``."""
    return "_".join(pair)
