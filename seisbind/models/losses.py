"""Contrastive losses: open_clip's ``ClipLoss`` and ``SigLipLoss``, built and fed from model outputs.

The losses themselves are open_clip's, not reimplemented. For several processes pass ``rank`` and
``world_size``; with CLIP, ``local_loss=True, gather_with_grad=True`` is the usual multi-GPU choice
(each process scores its own rows against all gathered columns).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seisbind.modalities import ModalityType, pair_key
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
    """Applies an open_clip loss to the output dict of ``SeisBindModel.forward``, summed over pairs.

    ``pairs`` names the modality pairs to align (image first, as ImageBind binds everything to
    images; default: image-waveform). Each pair uses its own temperature from the outputs'
    ``logit_scales`` (``"image_text"``), or the single ``logit_scale`` of older outputs. A pair
    whose two embeddings are not both in the outputs is left out, so a batch without captions
    trains image-waveform only; no pair outside ``pairs`` is ever trained. ``last_terms`` holds
    each pair's loss of the latest call. Extra keyword arguments go to :func:`build_loss`.

    **Views.** A modality may come with V times as many rows as the image, view-major: V records
    of each item (``rows[v * B + i]`` is view ``v`` of item ``i``; for waveforms, one geology seen
    from V different sources). Each view is then bound to the image (the pair's term is the mean
    over views) and the views of an item to each other: the term ``"waveform_views"`` is the pair's
    loss between every two views (mean over view pairs) at the pair's temperature, weighted by
    ``view_weight``. It teaches the tower what the views share, the ground, and to ignore what
    they do not, the source (as SimCLR's two views of one image, but the views are physics).
    """

    def __init__(self, loss: str = "clip", pairs=((ModalityType.IMAGE, ModalityType.WAVEFORM),), *,
                 pair: tuple[str, str] | None = None, view_weight: float = 1.0, **options) -> None:
        super().__init__()
        self.kind = loss
        if not (math.isfinite(view_weight) and view_weight >= 0):
            raise ValueError(f"view_weight must be a finite number >= 0; got {view_weight!r}")
        self.view_weight = float(view_weight)
        self.pairs = [tuple(pair)] if pair is not None else [tuple(p) for p in pairs]
        if not self.pairs or any(len(p) != 2 or p[0] == p[1] for p in self.pairs):
            raise ValueError(f"pairs must be pairs of two different modalities; got {self.pairs}")
        self.loss = build_loss(loss, **options)
        self.last_terms: dict[str, torch.Tensor] = {}

    @property
    def pair(self) -> tuple[str, str]:
        return self.pairs[0]

    def forward(self, outputs: dict) -> torch.Tensor:
        terms = {}
        for a, b in self.pairs:
            if a not in outputs or b not in outputs:
                continue
            key = pair_key((a, b))
            scale = outputs.get("logit_scales", {}).get(key, outputs.get("logit_scale"))
            bias = outputs.get("logit_biases", {}).get(key, outputs.get("logit_bias"))
            missing = ["logit_scale"] if scale is None else []
            if self.kind == "siglip" and bias is None:
                missing.append("logit_bias")
            if missing:
                raise ValueError(f"the {self.kind} loss needs outputs {missing} for {key}; got keys {sorted(outputs)}")
            views = _views(outputs[a], outputs[b], a, b)
            terms[key] = sum(self._pair(outputs[a], v, scale, bias) for v in views) / len(views)
            if len(views) > 1 and self.view_weight > 0 and f"{b}_views" not in terms:
                between = [self._pair(u, v, scale, bias) for k, u in enumerate(views) for v in views[k + 1 :]]
                terms[f"{b}_views"] = self.view_weight * sum(between) / len(between)
        if not terms:
            raise ValueError(f"the {self.kind} loss needs the embeddings of one of the pairs {self.pairs}; "
                             f"got keys {sorted(outputs)}")
        self.last_terms = {k: v.detach() for k, v in terms.items()}
        return sum(terms.values())

    def _pair(self, x: torch.Tensor, y: torch.Tensor, scale, bias) -> torch.Tensor:
        return self.loss(x, y, scale, bias) if self.kind == "siglip" else self.loss(x, y, scale)


def _views(anchor: torch.Tensor, other: torch.Tensor, a: str, b: str) -> list[torch.Tensor]:
    """``other``'s rows as views of ``anchor``'s: one view when the two have the same rows, V views
    (view-major) when ``other`` has V times as many."""
    if anchor.ndim != 2 or other.ndim != 2 or anchor.shape[1] != other.shape[1]:
        raise ValueError(f"{a} and {b} embeddings must be (rows, dim) of one dim; got "
                         f"{tuple(anchor.shape)} and {tuple(other.shape)}")
    n, m = anchor.shape[0], other.shape[0]
    if n == 0 or m % n:
        raise ValueError(f"{b} must have as many rows as {a} or a whole multiple (views, view-major); got "
                         f"{m} {b} rows for {n} {a} rows")
    return list(other.split(n)) if m != n else [other]
