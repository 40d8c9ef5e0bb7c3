"""Towers and the joint model: SFM image tower, SeisLM waveform tower, one shared embedding space.

Build a model by name (``configs/models/<name>.json``)::

    from seisbind.models import create_model, list_models
    model = create_model("tiny")
    out = model(images=images, waveforms=waveforms)  # normalised embeddings + logit_scale
"""

from seisbind.models.config import ImageTowerConfig, SeisBindConfig, WaveformTowerConfig
from seisbind.models.factory import create_model, get_model_config, list_models
from seisbind.models.joint import SeisBindModel
from seisbind.models.losses import ContrastiveLoss, build_loss

__all__ = [
    "ContrastiveLoss",
    "ImageTowerConfig",
    "SeisBindConfig",
    "SeisBindModel",
    "WaveformTowerConfig",
    "build_loss",
    "create_model",
    "get_model_config",
    "list_models",
]
