"""The array head: per-station frame tokens of a whole seismic array into one embedding.

The SeisLM trunk reads each station alone. What ties a record to the ground it crossed lies
between stations: the moveout of each arrival across the array, and how amplitudes change from
station to station (spreading, site response, radiation pattern). The first tower averaged each
station over time and pooled the stations as an unordered set, which keeps neither. This head:

1. averages ``array_time_pool`` trunk frames into one time token, keeping time order;
2. adds to every token of a station an encoding of where the station is, relative to the array
   (Fourier features of its offset from the centre of the present stations, in km), and of its
   amplitude relative to the array (each channel's log RMS minus the array's mean), which the
   per-channel normalisation of the trunk's input removed;
3. runs factorised space-time attention (TimeSformer's divided attention): each block lets the
   stations meet at each time token, then each station's time tokens meet, so moveout (the same
   arrival at different times across stations) is visible. Station attention is biased by
   distance, as ALiBi biases by token distance: head h adds ``-slope_h * |x_i - x_j|`` (km) to its
   logits, head 0 with slope 0 (the whole array) and the others with learned slopes starting at
   2, 8, 32, ... per km (neighbours first: nearby stations see nearly the same wavefield, which
   is what a convolution along a regular line exploits, here for any geometry);
4. pools all (station, time) tokens with ``queries`` learned queries (CLIP's attention pooling;
   with several, their outputs are concatenated before the projection, so the embedding is not
   held to rank ``array_width``); or, with ``pool="time"``, averages the present stations' tokens
   at each time token and concatenates the ``time_tokens`` averages in time order (the waveform
   side's counterpart of the image tower's depth pool: when a reflection arrives is what ties a
   record to the depth of an interface, and an attention pool leaves that order to the time
   encoding). The time pool fixes the record length: other lengths get a clear error. Or, with
   ``pool="mean"``, the mean of all present tokens, as a gather CNN pools its last feature map.

Absent stations are masked out of every station attention and of the pool, so they have no
effect; a record of one station works; stations are a set (no index encoding), so permuting
stations with their positions leaves the embedding unchanged. Without coordinates the stations
are taken as a line in the given order, ``station_spacing_m`` apart.

Written here because no library has a masked space-time array encoder; its parts are torch's.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seisbind.models.config import ARRAY_POOLS

# Wavelengths of the position encoding (km): 20 m (OpenFWI's receiver spacing is 10 m) to 20 km.
POSITION_WAVELENGTHS_KM = (0.02, 20.0)
POSITION_FREQUENCIES = 12


def sinusoidal_encoding(positions: torch.Tensor, width: int) -> torch.Tensor:
    """The transformer's sinusoidal encoding of (any shape) positions -> (..., width)."""
    half = width // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    arg = positions.float()[..., None] * freq
    out = torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)
    return nn.functional.pad(out, (0, width - 2 * half))


def fourier_position_features(offset_km: torch.Tensor) -> torch.Tensor:
    """(..., ) offsets in km -> (..., 2 * POSITION_FREQUENCIES + 1): the offset and its sin/cos."""
    low, high = POSITION_WAVELENGTHS_KM
    wavelengths = torch.logspace(math.log10(low), math.log10(high), POSITION_FREQUENCIES, device=offset_km.device)
    arg = 2 * math.pi * offset_km.float()[..., None] / wavelengths
    return torch.cat([offset_km.float()[..., None], torch.sin(arg), torch.cos(arg)], dim=-1)


def relative_offsets_km(station_x_m: torch.Tensor, station_mask: torch.Tensor) -> torch.Tensor:
    """Station positions (batch, stations) in m -> offsets from the present stations' mean, in km."""
    weights = station_mask.float()
    x = torch.where(station_mask, station_x_m.float(), torch.zeros((), device=station_x_m.device))
    centre = (x * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp(min=1.0)
    return torch.where(station_mask, (x - centre) / 1000.0, torch.zeros((), device=x.device))


def time_mean_pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """(batch, stations, frames, width) -> (batch, stations, ceil(frames / size), width): the mean of
    each run of ``size`` frames, the last run as long as the frames left (``avg_pool1d`` with
    ``ceil_mode=True``). Written out: Inductor's backward of that ``avg_pool1d`` divides the last,
    shorter run's gradient by ``size`` instead of its length (torch 2.14, CPU), so a compiled
    training step would not be the eager one."""
    frames = x.shape[2]
    steps = -(-frames // size)
    padded = nn.functional.pad(x, (0, 0, 0, steps * size - frames))
    sums = padded.reshape(*x.shape[:2], steps, size, x.shape[3]).sum(dim=3)
    counts = torch.full((steps,), float(size), dtype=x.dtype, device=x.device)
    counts[-1] = frames - (steps - 1) * size
    return sums / counts[:, None]


def line_positions(station_mask: torch.Tensor, spacing_m: float) -> torch.Tensor:
    """Positions for records without coordinates: present stations on a line, in order, ``spacing_m`` apart."""
    order = (station_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    return torch.where(station_mask, order.float() * float(spacing_m), torch.zeros((), device=order.device))


class Block(nn.Module):
    """A pre-norm transformer block (attention, then a 2x GELU MLP) taking an additive attention
    mask of shape (batch, heads, queries, keys).

    Written out because ``nn.TransformerEncoderLayer``'s inference fast path mishandles a
    per-item, per-head float mask: with the (batch * heads, L, S) mask its docs allow it returned
    NaN in eval mode where its training path and this block agree exactly (torch 2.14, CPU).
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        n, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        att = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.out(att.transpose(1, 2).reshape(n, length, width))
        return x + self.mlp(self.norm2(x))


class ArrayHead(nn.Module):
    """(batch, stations, frames, width) trunk tokens -> (batch, embed_dim); see the module doc.

    ``station_x_m`` (batch, stations) gives positions along the array in metres (None: a line at
    ``station_spacing_m``); ``station_log_amplitude`` (batch, stations, channels) each channel's
    log RMS relative to the array (see ``preprocess.relative_log_amplitude``; None: zeros).
    """

    def __init__(self, width: int, embed_dim: int, channels: int, array_width: int = 0, depth: int = 2,
                 heads: int = 4, time_pool: int = 2, station_spacing_m: float = 100.0, queries: int = 1,
                 pool: str = "attention", time_tokens: int = 0) -> None:
        super().__init__()
        if pool not in ARRAY_POOLS or (pool == "time") != (time_tokens > 0):
            raise ValueError(f"array head: pool must be one of {ARRAY_POOLS}, with time_tokens > 0 exactly for "
                             f"'time'; got pool {pool!r}, time_tokens {time_tokens}")
        self.pool_kind, self.time_tokens = pool, int(time_tokens)
        inner = array_width or width
        self.time_pool, self.station_spacing_m, self.inner = int(time_pool), float(station_spacing_m), inner
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.embed = nn.Linear(width, inner)
        self.position = nn.Linear(2 * POSITION_FREQUENCIES + 1, inner)
        self.amplitude = nn.Linear(channels, inner)
        self.time = nn.Linear(inner, inner)
        self.heads = int(heads)
        self.station_layers = nn.ModuleList(Block(inner, heads) for _ in range(depth))
        # Learned per-head distance slopes (1/km), softplus-parametrised to stay >= 0; head 0 is global.
        init = torch.tensor([2.0 * 4.0 ** (h - 1) for h in range(1, heads)])
        # Without blocks (depth 0) nothing attends, and a parameter without gradient would stall DDP.
        self.distance_slope = nn.Parameter(torch.log(torch.expm1(init))) if depth else None
        self.time_layers = nn.ModuleList(Block(inner, heads) for _ in range(depth))
        self.out_norm = nn.LayerNorm(inner, eps=1e-6)
        if pool == "attention":
            # Several queries must differ from the start, or they pool alike and stay alike.
            self.query = nn.Parameter(torch.zeros(1, 1, inner) if queries == 1 else torch.randn(1, queries, inner) * inner**-0.5)
            self.pool = nn.MultiheadAttention(inner, heads, batch_first=True)
            pooled_width = queries * inner
        else:
            pooled_width = self.time_tokens * inner if pool == "time" else inner
        self.proj = nn.Linear(pooled_width, embed_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=pooled_width**-0.5)  # CLIP's projection initialisation

    def _station_bias(self, offsets: torch.Tensor, absent: torch.Tensor, steps: int, dtype) -> torch.Tensor:
        """One additive mask (batch * steps, heads, stations, stations) carrying both the distance
        bias and the absent stations (-inf)."""
        batch, stations = offsets.shape
        distance = (offsets[:, :, None] - offsets[:, None, :]).abs()  # (batch, stations, stations)
        slopes = torch.cat([torch.zeros(1, device=offsets.device), nn.functional.softplus(self.distance_slope)])
        bias = -slopes[None, :, None, None] * distance[:, None]  # (batch, heads, stations, stations)
        bias = bias.masked_fill(absent[:, None, None, :], float("-inf")).to(dtype)
        bias = bias[:, None].expand(batch, steps, self.heads, stations, stations)
        return bias.reshape(batch * steps, self.heads, stations, stations)

    def forward(self, tokens: torch.Tensor, station_mask: torch.Tensor, station_x_m: torch.Tensor | None = None,
                station_log_amplitude: torch.Tensor | None = None) -> torch.Tensor:
        batch, stations, frames, _ = tokens.shape
        x = self.embed(self.norm(tokens))
        if self.time_pool > 1:
            x = time_mean_pool(x, self.time_pool)
        steps = x.shape[2]
        if self.pool_kind == "time" and steps != self.time_tokens:
            raise ValueError(f"array head: this model's time pool reads records of {self.time_tokens} time tokens "
                             f"(its training length); this record gives {steps} ({frames} trunk frames): trim or pad "
                             f"records to the length the model was trained on")
        if station_x_m is None:
            station_x_m = line_positions(station_mask, self.station_spacing_m)
        offsets = relative_offsets_km(station_x_m, station_mask)
        where = self.position(fourier_position_features(offsets))
        if station_log_amplitude is not None:
            where = where + self.amplitude(station_log_amplitude.to(where.dtype))
        when = self.time(sinusoidal_encoding(torch.arange(steps, device=x.device), self.inner).to(x.dtype))
        x = x + where.to(x.dtype)[:, :, None] + when[None, None]
        absent = ~station_mask
        x = x.masked_fill(absent[:, :, None, None], 0.0)
        if self.station_layers:
            bias = self._station_bias(offsets, absent, steps, x.dtype)
        for station_layer, time_layer in zip(self.station_layers, self.time_layers, strict=True):
            y = x.transpose(1, 2).reshape(batch * steps, stations, self.inner)
            y = station_layer(y, bias)
            x = y.reshape(batch, steps, stations, self.inner).transpose(1, 2)
            x = time_layer(x.reshape(batch * stations, steps, self.inner)).reshape(batch, stations, steps, self.inner)
            x = x.masked_fill(absent[:, :, None, None], 0.0)  # so padding never carries NaN or size
        # Pre-norm blocks leave the residual stream unnormalised: normalise before pooling, as a ViT
        # does before its head, or the pool's attention logits grow with training and diverge.
        keys = self.out_norm(x.reshape(batch, stations * steps, self.inner))
        if self.pool_kind in ("time", "mean"):
            # The present stations' mean at each time token; "mean" then averages those over time
            # (every present station has every time token, so that is the mean of all of them).
            present = station_mask.to(keys.dtype)[:, :, None, None]
            profile = (keys.reshape(batch, stations, steps, self.inner) * present).sum(1)
            profile = profile / present.sum(1).clamp(min=1.0)
            return self.proj(profile.flatten(1) if self.pool_kind == "time" else profile.mean(1))
        ignore = absent[:, :, None].expand(batch, stations, steps).reshape(batch, stations * steps)
        pooled, _ = self.pool(self.query.expand(batch, -1, -1).to(keys.dtype), keys, keys, key_padding_mask=ignore,
                              need_weights=False)
        return self.proj(pooled.flatten(1))
