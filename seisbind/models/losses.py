"""Contrastive losses: open_clip's ``ClipLoss`` and ``SigLipLoss``, built and fed from model outputs.

The losses themselves are open_clip's, not reimplemented. For several processes pass ``rank`` and
``world_size``; with CLIP, ``local_loss=True, gather_with_grad=True`` is the usual multi-GPU choice
(each process scores its own rows against all gathered columns).
"""

from __future__ import annotations

import torch
from torch import nn

from seisbind.modalities import ModalityType
from seisbind.models.config import LOSS_TYPES


def build_loss(
    loss: str = "clip",
    *,
    local_loss: bool = False,
    gather_with_grad: bool = False,
    cache_labels: bool = False,
    rank: int = 0,
    world_size: int = 1,
    dist_impl: str | None = None,
) -> nn.Module:
    """An ``open_clip.loss.ClipLoss`` (``loss="clip"``) or ``SigLipLoss`` (``loss="siglip"``).

    ``local_loss`` and ``gather_with_grad`` apply to CLIP only; ``dist_impl`` to SigLIP only
    (open_clip's "bidir", "shift", "reduce" or "gather" exchange of features between ranks).
    """
    from open_clip.loss import ClipLoss, SigLipLoss

    if loss not in LOSS_TYPES:
        raise ValueError(f"loss must be one of {LOSS_TYPES}; got {loss!r}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need world_size >= 1 and 0 <= rank < world_size; got rank {rank}, world_size {world_size}")
    if loss == "clip":
        if dist_impl is not None:
            raise ValueError("dist_impl applies to the siglip loss only")
        return ClipLoss(local_loss=local_loss, gather_with_grad=gather_with_grad, cache_labels=cache_labels,
                        rank=rank, world_size=world_size)
    if local_loss or gather_with_grad:
        raise ValueError("local_loss and gather_with_grad apply to the clip loss only; siglip uses dist_impl")
    return SigLipLoss(cache_labels=cache_labels, rank=rank, world_size=world_size, dist_impl=dist_impl)


class ContrastiveLoss(nn.Module):
    """Applies an open_clip loss to the output dict of ``SeisBindModel.forward``.

    ``pair`` names the two modalities to align (image first, as ImageBind pairs everything
    with images). Extra keyword arguments go to :func:`build_loss`.
    """

    def __init__(self, loss: str = "clip", pair: tuple[str, str] = (ModalityType.IMAGE, ModalityType.WAVEFORM),
                 **options) -> None:
        super().__init__()
        self.kind = loss
        self.pair = tuple(pair)
        self.loss = build_loss(loss, **options)

    def forward(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        a, b = self.pair
        missing = [k for k in (a, b, "logit_scale") if k not in outputs]
        if self.kind == "siglip" and outputs.get("logit_bias") is None:
            missing.append("logit_bias")
        if missing:
            raise ValueError(f"the {self.kind} loss needs outputs {missing}; got keys {sorted(outputs)}")
        if outputs[a].shape != outputs[b].shape:
            raise ValueError(f"{a} and {b} embeddings must have the same shape; got "
                             f"{tuple(outputs[a].shape)} and {tuple(outputs[b].shape)}")
        if self.kind == "siglip":
            return self.loss(outputs[a], outputs[b], outputs["logit_scale"], outputs["logit_bias"])
        return self.loss(outputs[a], outputs[b], outputs["logit_scale"])
