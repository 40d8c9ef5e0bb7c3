"""Heads and postprocessors that take trunk tokens into the shared embedding space.

A head is ImageBind's: LayerNorm, one pooled token, a linear projection without bias. The
image head pools the class token (or the patch tokens' mean, or their depth profile); the waveform head averages each station's frames and pools
the stations with learned attention that ignores absent stations. Postprocessors L2-normalise;
:class:`LogitScale` holds CLIP's learnable temperature (and SigLIP's bias).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SelectToken(nn.Module):
    """Pools (batch, tokens, width) by taking one token (the class token at index 0)."""

    def __init__(self, index: int = 0) -> None:
        super().__init__()
        self.index = index

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, self.index]


class MeanTokens(nn.Module):
    """Pools (batch, tokens, width) by averaging the tokens after the first ``skip`` (the class
    token), as timm's ``global_pool="avg"``."""

    def __init__(self, skip: int = 1) -> None:
        super().__init__()
        self.skip = skip

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, self.skip:].mean(dim=1)


class DepthProfilePool(nn.Module):
    """Pools (batch, 1 + rows * cols, width) patch tokens (after the class token, row-major as
    timm's patch grid) into (batch, rows * width): each row of the grid (one depth) averaged along
    distance, the rows concatenated top to bottom."""

    def __init__(self, rows: int, skip: int = 1) -> None:
        super().__init__()
        self.rows, self.skip = rows, skip

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, self.skip:]
        batch, n, width = patches.shape
        if n % self.rows:
            raise ValueError(f"DepthProfilePool: {n} patch tokens do not form {self.rows} rows; "
                             "the depth pool needs the image size the tower was built for")
        return patches.reshape(batch, self.rows, n // self.rows, width).mean(dim=2).flatten(1)


class StationAttentionPool(nn.Module):
    """Pools (batch, stations, frames, width) into (batch, width).

    Each station's frames are averaged; the station vectors are then weighted by a softmax of
    learned scores ``key(v) . query / sqrt(width)`` taken over present stations only, so absent
    (padding) stations have no effect and one station passes through unchanged. The query
    starts at zero: training begins from a plain mean over present stations.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(width))
        self.key = nn.Linear(width, width)
        self.scale = 1.0 / math.sqrt(width)

    def forward(self, tokens: torch.Tensor, station_mask: torch.Tensor) -> torch.Tensor:
        stations = tokens.mean(dim=2)
        scores = (self.key(stations) @ self.query.to(stations.dtype)) * self.scale
        scores = scores.masked_fill(~station_mask, float("-inf"))
        weights = torch.softmax(scores.float(), dim=1).to(stations.dtype)
        stations = stations.masked_fill(~station_mask[..., None], 0.0)  # so 0 x garbage cannot make NaN
        return torch.einsum("bs,bsd->bd", weights, stations)


class ProjectionHead(nn.Module):
    """LayerNorm over token width, a pooling module, and a bias-free linear map to ``embed_dim``."""

    def __init__(self, width: int, embed_dim: int, pool: nn.Module, pooled_width: int | None = None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.pool = pool
        pooled_width = pooled_width or width  # wider where the pool concatenates (DepthProfilePool)
        self.proj = nn.Linear(pooled_width, embed_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=pooled_width**-0.5)  # CLIP's projection initialisation

    def forward(self, tokens: torch.Tensor, **pool_kwargs: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(self.norm(tokens), **pool_kwargs))


class Normalize(nn.Module):
    """L2 normalisation along the last dimension."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)


class LogitScale(nn.Module):
    """CLIP's learnable temperature: ``scale = exp(log_scale)``, capped at ``max_scale``.

    ``log_scale`` starts at ``log(init_scale)``; :meth:`clamp_` keeps it in [0, log(max_scale)]
    and is meant to run after every optimiser step, as CLIP does. With ``init_bias`` set (SigLIP)
    a learnable logit bias is added.
    """

    def __init__(self, init_scale: float, max_scale: float = 100.0, init_bias: float | None = None) -> None:
        super().__init__()
        self.max_scale = float(max_scale)
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.bias = nn.Parameter(torch.tensor(float(init_bias))) if init_bias is not None else None

    @torch.no_grad()
    def clamp_(self) -> None:
        self.log_scale.clamp_(0.0, math.log(self.max_scale))

    def forward(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=self.max_scale)
