"""Towers and the joint model: SFM image tower, SeisLM waveform tower, open_clip text tower, one
shared embedding space.

Build a model by name (``configs/models/<name>.json``)::

    from seisbind.models import create_model, list_models
    model = create_model("tiny-text")
    out = model({"image": images, "waveform": waveforms, "text": captions})  # embeddings + logit_scales
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
