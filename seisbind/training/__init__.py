"""Contrastive training of the joint model with Accelerate (``train_contrastive.py``).

One idea per module: ``config`` (the YAML config and ``key=value`` overrides), ``augment``
(physics-respecting waveform augmentations), ``data`` (seeded, resumable sampling of pairs),
``optim`` (AdamW groups and the cosine schedule), ``checkpointing`` (atomic, verified checkpoints),
``evaluate`` (validation retrieval) and ``trainer`` (the loop)::

    from seisbind.training import load_config, train
    result = train(load_config("configs/quickstart.yaml", ["max_steps=100"]))
"""

# Loaded on first use (PEP 562): the command line reads this package's config and CLI modules
# without importing torch and Accelerate (`seisbind --help` stays fast).
_LAZY = {
    "CheckpointError": "seisbind.training.checkpointing",
    "verify_checkpoint": "seisbind.training.checkpointing",
    "TrainConfig": "seisbind.training.config",
    "load_config": "seisbind.training.config",
    "TrainingDiverged": "seisbind.training.trainer",
    "TrainResult": "seisbind.training.trainer",
    "train": "seisbind.training.trainer",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seisbind.training' has no attribute {name!r}")
