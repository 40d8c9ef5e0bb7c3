"""An exponential moving average of the weights, for validation and the saved models.

A small-batch contrastive run (16 geologies a step in the quickstart) moves its weights with a lot
of gradient noise; the average of the recent weights is a smoother model than the last step's
(Polyak averaging). The average is timm's ``ModelEmaV3`` (parameters and float buffers, foreach
updates), with its decay warm-up ``1 - (1 + step) ** -0.75`` capped at ``decay``: timm's setting
for runs of thousands of steps, so the random initial weights fade within the first hundred steps
instead of weighing on every early validation (0.981 at step 200, 0.995 from about step 1,200).
What is ours is the checkpoint file: safetensors, so a resumed run continues the same average.
"""

from __future__ import annotations

from pathlib import Path

import torch

EMA_FILE = "ema.safetensors"
WARMUP_POWER = 0.75  # timm's advice for runs shorter than ~10k steps


def ema_model(model: torch.nn.Module, decay: float):
    """timm's ``ModelEmaV3`` of ``model``: call ``update(model, step=step)`` after each optimiser
    step (``step`` from 1) and use ``.module`` as the averaged model."""
    from timm.utils import ModelEmaV3

    if not 0.0 < decay < 1.0:
        raise ValueError(f"ema decay must be in (0, 1); got {decay!r}")
    ema = ModelEmaV3(model, decay=decay, use_warmup=True, warmup_power=WARMUP_POWER)
    ema.module.requires_grad_(False)
    return ema


def save_ema(ema: torch.nn.Module, folder: Path) -> None:
    from safetensors.torch import save_model

    save_model(ema, str(Path(folder) / EMA_FILE))


def load_ema(ema: torch.nn.Module, folder: Path) -> bool:
    """Load the average a checkpoint holds; False when it holds none (a run saved without EMA)."""
    from safetensors.torch import load_model

    path = Path(folder) / EMA_FILE
    if not path.exists():
        return False
    load_model(ema, str(path), strict=True)
    return True
