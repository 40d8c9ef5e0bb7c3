"""Contrastive training of the joint model with Accelerate (``train_contrastive.py``).

One idea per module: ``config`` (the YAML config and ``key=value`` overrides), ``augment``
(physics-respecting waveform augmentations), ``data`` (seeded, resumable sampling of pairs),
``optim`` (AdamW groups and the cosine schedule), ``checkpointing`` (atomic, verified checkpoints),
``evaluate`` (validation retrieval) and ``trainer`` (the loop)::

    from seisbind.training import load_config, train
    result = train(load_config("configs/quickstart.yaml", ["max_steps=100"]))
"""

from seisbind.training.checkpointing import CheckpointError, verify_checkpoint
from seisbind.training.config import TrainConfig, load_config
from seisbind.training.trainer import TrainingDiverged, TrainResult, train

__all__ = ["CheckpointError", "TrainConfig", "TrainResult", "TrainingDiverged", "load_config", "train",
           "verify_checkpoint"]
