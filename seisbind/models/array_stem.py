"""The array stem: a small 2-D CNN over (stations along the array, time) beside the SeisLM trunk.

The SeisLM trunk reads each station alone, and its convolutional feature encoder normalises every
frame over its channels (wav2vec2's ``feat_extract_norm="layer"``): how loud a frame is, against
the frames before it and against the same arrival at the next station, is gone from its tokens
before the array head sees them. A gather CNN keeps both: it reads the whole record as one image
(components x stations x time), scaled by one number per record and log-compressed
(:func:`seisbind.models.preprocess.compress_records`), with GroupNorm over the whole feature map,
and its first kernels span neighbouring stations, so an arrival's moveout and its amplitude
across the array are what its filters see. On the quake quickstart data the gather CNN's
waveform side beat the trunk and array head by 2x at R@1 with the same image tower
(benchmarks/RESULTS.md, "tower swap").

This stem is that CNN's blocks: its output is averaged in time onto the trunk's frames and
projected to the trunk's width, and is added to the trunk's tokens, so the array head reads both.
The trunk is untouched, so SeisLM checkpoints load into it as before. Stations are ordered by
position along the array before the convolution (absent stations last, so a gap is skipped) and
put back after it. Without the trunk (``seislm_trunk: false``) the stem may also stride along the
array, as the gather CNN does from its second block (``array_stem_station_strides``): a block of
stride 2 keeps rows 0, 2, 4, ... of its input, each having read its neighbours, so after strides
of product s the output has one row per s stations, centred on the stations of rank 0, s, 2 s, ...
along the array (``preprocess.strided_stations``), and the head attends over s times fewer rows.

Written here because it is a few torch layers fitted to the trunk's token layout; no library
has it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seisbind.models.preprocess import array_order


def masked_group_norm(x: torch.Tensor, present: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """``norm`` (a GroupNorm) over the present rows of (batch, channels, stations, time) only;
    ``present`` is (batch, stations). What ``nn.GroupNorm`` computes when every station is present;
    written out so that padding stations (zeros) do not move a record's statistics."""
    batch, channels, stations, samples = x.shape
    weight = present.to(x.dtype)[:, None, None, :, None]  # (batch, 1, 1, stations, 1)
    grouped = x.reshape(batch, norm.num_groups, channels // norm.num_groups, stations, samples)
    count = weight.sum(dim=(2, 3, 4), keepdim=True).clamp(min=1.0) * grouped.shape[2] * samples
    mean = (grouped * weight).sum(dim=(2, 3, 4), keepdim=True) / count
    var = (((grouped - mean) ** 2) * weight).sum(dim=(2, 3, 4), keepdim=True) / count
    y = ((grouped - mean) * torch.rsqrt(var + norm.eps)).reshape(x.shape)
    return y * norm.weight[None, :, None, None] + norm.bias[None, :, None, None]


class ArrayStem(nn.Module):
    """(batch, stations, channels, time) compressed records -> (batch, stations, frames, width).

    ``dims`` and ``time_strides`` give each block's output channels and time stride, and
    ``station_strides`` (None: all 1) its stride along the array; each block is Conv2d (kernel 3
    stations x s + 1 samples (3 for s = 1), stride station stride x s), GroupNorm over the present stations,
    GELU; absent stations are zeros between blocks, as the convolution's padding is, so padding a
    record with masked stations changes nothing.

    With station strides of product s > 1 the output rows stand for the stations of rank 0, s, 2 s,
    ... along the array: ``encoded_index`` and ``encoded_valid`` (batch, k), the packed stations of
    ``preprocess.compact_stations(strided_stations(mask, positions, s))``, say which row goes where,
    and the output is (batch, k, frames, width), zeros where not valid.
    """

    def __init__(self, channels: int, dims: list[int], time_strides: list[int], width: int,
                 station_strides: list[int] | None = None) -> None:
        super().__init__()
        station_strides = list(station_strides or [1] * len(dims))
        if len(dims) != len(time_strides) or len(dims) != len(station_strides) or not dims:
            raise ValueError(f"array stem: dims, time strides and station strides must have the same non-zero "
                             f"length; got {dims}, {time_strides}, {station_strides}")
        self.station_strides = station_strides
        self.station_stride = math.prod(station_strides)
        convs, norms, c = [], [], channels
        for out, stride, across in zip(dims, time_strides, station_strides, strict=True):
            # s + 1 samples a step of s: each window overlaps the next by one sample, as the gather
            # CNN's (9 for 8, 5 for 4); 2 s + 1 cost twice the arithmetic for no clear gain
            # (benchmarks/RESULTS.md, "the array stem"). A block of time stride 1 takes 3 samples,
            # centred, as the gather CNN's last block does.
            kernel = stride + 1 if stride > 1 else 3
            convs.append(nn.Conv2d(c, out, (3, kernel), (across, stride), (1, kernel // 2), bias=False))
            norms.append(nn.GroupNorm(math.gcd(8, out), out))
            c = out
        self.convs, self.norms = nn.ModuleList(convs), nn.ModuleList(norms)
        self.proj = nn.Linear(c, width)

    def forward(self, records: torch.Tensor, station_mask: torch.Tensor, station_x_m: torch.Tensor | None,
                frames: int, encoded_index: torch.Tensor | None = None,
                encoded_valid: torch.Tensor | None = None) -> torch.Tensor:
        if (encoded_index is None) != (self.station_stride == 1) or (encoded_index is None) != (encoded_valid is None):
            raise ValueError(f"this array stem merges {self.station_stride} stations a row: pass encoded_index and "
                             "encoded_valid exactly when that is > 1 (WaveformPreprocessor gives them)")
        order, rank = array_order(station_mask, station_x_m)
        x = records.gather(1, order[:, :, None, None].expand_as(records))  # stations in order along the array
        present = station_mask.gather(1, order)  # present stations first
        y = x.transpose(1, 2).to(self.proj.weight.dtype)  # (batch, channels, stations, time)
        for conv, norm, across in zip(self.convs, self.norms, self.station_strides, strict=True):
            # Row i of a block of stride a is centred on input row a i: present stations being
            # first, the present rows stay first.
            present = present[:, ::across]
            # With every station present the masked norm is GroupNorm itself, whose fused kernel is
            # 10x faster (a tenth of the tower's step on the quickstart's records).
            padded = not bool(present.all())
            y = nn.functional.gelu(masked_group_norm(conv(y), present, norm) if padded else norm(conv(y)))
            if padded:
                y = y.masked_fill(~present[:, None, :, None], 0.0)
        y = nn.functional.adaptive_avg_pool2d(y, (y.shape[2], frames))  # onto the trunk's frames
        y = self.proj(y.permute(0, 2, 3, 1))  # (batch, rows in order along the array, frames, width)
        if encoded_index is None:
            y = y.gather(1, rank[:, :, None, None].expand_as(y))  # back to the given station order
            return y.masked_fill(~station_mask[:, :, None, None], 0.0)
        rows = rank.gather(1, encoded_index) // self.station_stride  # each packed station's row
        y = y.gather(1, rows[:, :, None, None].expand(-1, -1, *y.shape[2:]))
        return y.masked_fill(~encoded_valid[:, :, None, None], 0.0)
