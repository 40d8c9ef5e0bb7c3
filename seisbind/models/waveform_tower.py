"""The SeisLM waveform trunk: a multi-channel Wav2Vec2 encoder applied to every station.

SeisLM is wav2vec2 with HF key names whose first convolution takes the 3 ground-motion
components (weight [256, 3, 3]) instead of one audio channel. :class:`MultiChannelWav2Vec2Model`
is ``transformers.Wav2Vec2Model`` with that first convolution and a feature encoder that reads
(batch, channels, time); its state-dict keys are the HF ones, so SeisLM weights load unchanged.
:class:`WaveformTrunk` runs it on each present station of a (batch, stations, channels, time)
batch; pooling across stations is the head's job (see ``heads.StationAttentionPool``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import contextmanager

import torch
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2Model

from seisbind.models.checkpoints import LoadReport, import_seislm_checkpoint
from seisbind.models.config import WaveformTowerConfig


def hf_config(config: WaveformTowerConfig) -> Wav2Vec2Config:
    """The ``Wav2Vec2Config`` of a waveform tower, with SeisLM's fixed choices.

    ``input_dim`` (SeisLM's name) carries the number of input channels.
    """
    return Wav2Vec2Config(
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        conv_dim=list(config.conv_dim),
        conv_kernel=list(config.conv_kernel),
        conv_stride=list(config.conv_stride),
        num_feat_extract_layers=len(config.conv_dim),
        conv_bias=config.conv_bias,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=config.num_conv_pos_embeddings,
        num_conv_pos_embedding_groups=config.num_conv_pos_embedding_groups,
        layer_norm_eps=config.layer_norm_eps,
        hidden_dropout=config.hidden_dropout,
        attention_dropout=config.attention_dropout,
        activation_dropout=config.activation_dropout,
        feat_proj_dropout=config.feat_proj_dropout,
        layerdrop=config.layerdrop,
        mask_time_prob=config.mask_time_prob,
        mask_feature_prob=0.0,
        input_dim=config.trunk_channels,
    )


class MultiChannelFeatureEncoder(nn.Module):
    """Wav2Vec2's convolutional feature encoder reading (batch, channels, time).

    Holds the HF conv layers under the same attribute name (``conv_layers``), so keys stay HF's
    and SeisLM weights load unchanged. It computes what HF's ``Wav2Vec2LayerNormConvLayer`` stack
    computes (convolution, LayerNorm over channels, GELU) in a channels-last layout: each
    convolution is one matrix product of the (frames, channels x kernel) windows with the
    flattened kernel, so the LayerNorm over channels runs on the last axis and no transpose is
    copied between layers. Why: on one CPU thread HF's layout spent most of the encoder's time in
    strided-convolution backward passes and transposes around each LayerNorm, not in arithmetic
    (OpenFWI's 70 x 5 x 1000 records, a batch of 32: see benchmarks/RESULTS.md). Layers this
    path does not cover (padding, dilation, groups, another norm) run HF's own forward.

    Inside :meth:`reading_neighbours` the first convolution's input is each row's own channels
    followed by those of the rows named in ``neighbour_rows`` (``neighbour_stations``): each
    output row's windows are gathered beside its neighbours' into one product with the whole
    kernel, for the rows in ``output_rows`` only (``station_stride``). The trunk's input needs no
    gradient, so the backward pass of that product is the kernel's gradient alone; multiplying
    every row with each kernel block and summing the neighbours' outputs instead cost three
    full-size zero-filled gradients and scatters (0.62 against 0.53 s a strided openfwi step).
    """

    def __init__(self, conv_layers: nn.ModuleList) -> None:
        super().__init__()
        self.conv_layers = conv_layers
        self._neighbour_rows: torch.Tensor | None = None
        self._output_rows: torch.Tensor | None = None

    def _freeze_parameters(self) -> None:  # called by Wav2Vec2Model.freeze_feature_encoder
        for param in self.parameters():
            param.requires_grad = False

    @contextmanager
    def reading_neighbours(self, neighbour_rows: torch.Tensor | None, output_rows: torch.Tensor | None = None):
        """Within the block, row i's neighbours are the rows ``neighbour_rows[i]`` (rows, 2 k), and
        only the rows ``output_rows`` (None: all) go on past the first convolution, in that order
        (``station_stride``)."""
        if output_rows is not None and neighbour_rows is None:
            raise ValueError("output rows need neighbour rows: a station left out must be read by a neighbour")
        self._neighbour_rows, self._output_rows = neighbour_rows, output_rows
        try:
            yield
        finally:
            self._neighbour_rows = self._output_rows = None

    @staticmethod
    def _channels_last_ok(layer: nn.Module) -> bool:
        conv = layer.conv
        return (isinstance(getattr(layer, "layer_norm", None), nn.LayerNorm) and conv.padding == (0,)
                and conv.dilation == (1,) and conv.groups == 1)

    @staticmethod
    def _windows(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
        """(rows, channels, time) -> a view (rows, frames, channels, kernel): flattened, each window
        is channel-major as a Conv1d weight (out, channels, kernel) is."""
        frames = (x.shape[-1] - kernel) // stride + 1
        if kernel == stride:  # non-overlapping windows
            return x[..., : frames * stride].unflatten(-1, (frames, stride)).transpose(1, 2)
        return x.unfold(-1, kernel, stride).transpose(1, 2)

    def _layer(self, layer: nn.Module, x: torch.Tensor, channels_first: bool, rows: torch.Tensor | None,
               output_rows: torch.Tensor | None = None):
        """One conv layer: ``x`` (rows, channels, time) if ``channels_first`` else (rows, time, channels)
        -> (rows, frames, out) after convolution, LayerNorm and activation; with ``output_rows``,
        only those rows come out."""
        conv = layer.conv
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        if not channels_first:  # (rows, time, channels) -> windows over time of all channels
            x = x.transpose(1, 2)
        windows = self._windows(x, kernel, stride)
        if rows is None:
            hidden = nn.functional.linear(windows.flatten(2), conv.weight.flatten(1), conv.bias)
            return layer.activation(layer.layer_norm(hidden))
        blocks = conv.weight.shape[1] // x.shape[1]
        if blocks != 1 + rows.shape[1]:
            raise ValueError(f"the first convolution reads {blocks} blocks of {x.shape[1]} channels; "
                             f"got {rows.shape[1]} neighbours a row")
        # Each output row's windows beside its neighbours', gathered straight from the view (the
        # trunk's input needs no gradient, so the backward pass is the weight's gradient alone).
        own = torch.arange(x.shape[0], device=x.device) if output_rows is None else output_rows
        if output_rows is not None:
            rows = rows.index_select(0, output_rows)
        stacked = torch.cat([windows.index_select(0, own).flatten(2)] + [
            windows.index_select(0, rows[:, j]).flatten(2) for j in range(rows.shape[1])], dim=-1)
        weight = torch.cat([w.flatten(1) for w in conv.weight.split(x.shape[1], dim=1)], dim=1)
        hidden = nn.functional.linear(stacked, weight, conv.bias)
        return layer.activation(layer.layer_norm(hidden))

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        hidden, channels_last = input_values, False
        for i, layer in enumerate(self.conv_layers):
            rows = self._neighbour_rows if i == 0 else None
            if self._channels_last_ok(layer):
                output_rows = self._output_rows if i == 0 else None
                hidden, channels_last = self._layer(layer, hidden, not channels_last, rows, output_rows), True
                continue
            if rows is not None:
                raise ValueError("neighbour stations need a first convolution without padding, dilation or groups")
            hidden = layer(hidden.transpose(1, 2) if channels_last else hidden)
            channels_last = False
        return hidden.transpose(1, 2) if channels_last else hidden  # HF's (rows, channels, frames)


class MultiChannelWav2Vec2Model(Wav2Vec2Model):
    """``transformers.Wav2Vec2Model`` whose first convolution takes ``config.input_dim`` channels.

    Input: ``input_values`` of shape (batch, channels, time). Parameter count: a stock
    ``Wav2Vec2Model`` of the same config plus (channels - 1) x conv_dim[0] x conv_kernel[0].
    """

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__(config)
        channels = int(getattr(config, "input_dim", 1))
        first = self.feature_extractor.conv_layers[0]
        conv = nn.Conv1d(
            channels,
            first.out_conv_dim,
            kernel_size=config.conv_kernel[0],
            stride=config.conv_stride[0],
            bias=config.conv_bias,
        )
        self._init_weights(conv)  # same initialisation HF gives its own convolutions
        first.conv = conv
        first.in_conv_dim = channels
        self.feature_extractor = MultiChannelFeatureEncoder(self.feature_extractor.conv_layers)


class WaveformTrunk(nn.Module):
    """Encodes each present station with one shared Wav2Vec2 encoder.

    Input: normalised waveforms (batch, stations, channels, time) and a boolean station mask
    (batch, stations). Output: frame tokens (batch, stations, frames, hidden); absent stations
    are never encoded and their tokens are zeros.
    """

    def __init__(self, config: WaveformTowerConfig) -> None:
        super().__init__()
        self.tower_config = config
        if config.seislm_trunk:
            self.wav2vec2 = MultiChannelWav2Vec2Model(hf_config(config))
        if config.array_stem:
            from seisbind.models.array_stem import ArrayStem

            self.array_stem = ArrayStem(config.in_chans, config.array_stem, config.array_stem_strides, config.hidden_size,
                                        config.array_stem_station_strides)

    @property
    def width(self) -> int:
        """Token width (the Wav2Vec2 hidden size)."""
        return self.tower_config.hidden_size

    def forward(self, waveforms: torch.Tensor, station_mask: torch.Tensor,
                neighbours: torch.Tensor | None = None, encoded_index: torch.Tensor | None = None,
                encoded_valid: torch.Tensor | None = None, array_record: torch.Tensor | None = None,
                station_x_m: torch.Tensor | None = None) -> torch.Tensor:
        """``neighbours`` (batch, stations, 2 k): the station indices whose channels the first
        convolution reads beside each station's own (``preprocess.neighbour_index``); always
        present stations. ``encoded_index``, ``encoded_valid`` (batch, k): with
        ``station_stride``, the present stations whose frames come out, packed
        (``preprocess.compact_stations``): the output is then (batch, k, frames, hidden), zeros
        where not valid, and the other stations are read only as neighbours. ``array_record``
        (batch, stations, channels, time), the record compressed as a whole, and ``station_x_m``:
        the array stem's input, exactly when the config has a stem; its output is added to the frames.
        Without the trunk, a stem with station strides takes ``encoded_index`` and ``encoded_valid``
        (its packed rows, as the trunk's ``station_stride``)."""
        if (array_record is None) != (not self.tower_config.array_stem):
            raise ValueError("this trunk has an array stem exactly when array_stem is configured: pass array_record "
                             "then (WaveformPreprocessor gives it)")
        if not self.tower_config.seislm_trunk:  # the stem alone, on the trunk's grid of frames
            frames = waveforms.shape[-1]
            for kernel, stride in zip(self.tower_config.conv_kernel, self.tower_config.conv_stride, strict=True):
                frames = (frames - kernel) // stride + 1
            return self.array_stem(array_record, station_mask, station_x_m, frames, encoded_index, encoded_valid)
        frames = self._trunk_frames(waveforms, station_mask, neighbours, encoded_index, encoded_valid)
        if array_record is None:
            return frames
        return frames + self.array_stem(array_record, station_mask, station_x_m, frames.shape[2]).to(frames.dtype)

    def _trunk_frames(self, waveforms, station_mask, neighbours, encoded_index, encoded_valid) -> torch.Tensor:
        if (neighbours is None) != (self.tower_config.neighbour_stations == 0):
            raise ValueError(f"this trunk reads {self.tower_config.neighbour_stations} neighbour stations a side: pass "
                             "neighbours exactly when that is > 0 (WaveformPreprocessor gives them)")
        if (encoded_index is None) != (self.tower_config.station_stride == 1):
            raise ValueError(f"this trunk encodes every {self.tower_config.station_stride}th station: pass encoded_index "
                             "exactly when that is > 1 (WaveformPreprocessor gives it)")
        batch, stations, channels, samples = waveforms.shape
        flat = waveforms.reshape(batch * stations, channels, samples)
        flat = flat.to(self.wav2vec2.feature_projection.projection.weight.dtype)
        present = station_mask.reshape(-1)
        rows = None
        if neighbours is not None:  # station indices -> rows of the flattened batch
            offset = torch.arange(batch, device=neighbours.device)[:, None, None] * stations
            rows = (neighbours + offset).reshape(batch * stations, -1)
        if bool(present.all()) and encoded_index is None:
            with self.wav2vec2.feature_extractor.reading_neighbours(rows):
                frames = self.wav2vec2(input_values=flat).last_hidden_state
            return frames.reshape(batch, stations, *frames.shape[1:])
        index = present.nonzero().flatten()
        renumber = present.long().cumsum(0) - 1  # row of the flattened batch -> row among the present
        if rows is not None:  # rows of the present stations only, renumbered among them
            rows = renumber[rows.index_select(0, index)]
        if encoded_index is None:
            output_rows, out_index, out_stations = None, index, stations
        else:  # the encoded stations' rows among the present, and where they go in the packed output
            offset = torch.arange(batch, device=encoded_index.device)[:, None] * stations
            output_rows = renumber[(encoded_index + offset)[encoded_valid]]
            out_index, out_stations = encoded_valid.reshape(-1).nonzero().flatten(), encoded_index.shape[1]
        with self.wav2vec2.feature_extractor.reading_neighbours(rows, output_rows):
            frames = self.wav2vec2(input_values=flat.index_select(0, index)).last_hidden_state
        out = frames.new_zeros(batch * out_stations, *frames.shape[1:]).index_copy(0, out_index, frames)
        return out.reshape(batch, out_stations, *frames.shape[1:])

    def trainable_tail(self, blocks: int) -> list[nn.Module]:
        """The last ``blocks`` transformer layers and the final encoder norm."""
        if not self.tower_config.seislm_trunk:
            if blocks:
                raise ValueError("this waveform tower has no SeisLM trunk (seislm_trunk: false): lock it with 0 "
                                 f"unlocked blocks; got {blocks}")
            return [self.array_stem]
        layers = self.wav2vec2.encoder.layers
        if not 0 <= blocks <= len(layers):
            raise ValueError(f"unlocked_blocks for the waveform trunk must be in [0, {len(layers)}]; got {blocks}")
        # The array stem is not SeisLM's: nothing pretrained to keep, so it always trains.
        stem = [self.array_stem] if self.tower_config.array_stem else []
        return stem + ([*layers[len(layers) - blocks:], self.wav2vec2.encoder.layer_norm] if blocks else [])

    def load_seislm_checkpoint(
        self, path: str | os.PathLike, adapt_channels: bool = True, extra_inert_globals: Iterable[str] = ()
    ) -> LoadReport:
        """Load a SeisLM Lightning checkpoint (``.ckpt``) from a local file."""
        if not self.tower_config.seislm_trunk:
            raise ValueError(f"{os.fspath(path)}: this waveform tower has no SeisLM trunk (seislm_trunk: false), so a "
                             "SeisLM checkpoint has nowhere to go; build the tower with seislm_trunk: true")
        return import_seislm_checkpoint(self.wav2vec2, path, adapt_channels, extra_inert_globals=extra_inert_globals,
                                        own_channels=self.tower_config.in_chans)
