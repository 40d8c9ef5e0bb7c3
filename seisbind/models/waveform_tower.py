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

    Holds the HF conv layers under the same attribute name (``conv_layers``), so keys stay HF's.
    Inside :meth:`reading_neighbours` the first convolution's input is each row's own channels
    followed by those of the rows named in ``neighbour_rows`` (``neighbour_stations``): as the
    convolution is linear, it is computed as one convolution of the rows with each kernel block
    and a sum of the neighbours' outputs, which are 8-64x shorter than the traces, instead of
    on a stacked copy of the input (on OpenFWI's records that copy cost 0.17 s a batch of 32).
    """

    def __init__(self, conv_layers: nn.ModuleList) -> None:
        super().__init__()
        self.conv_layers = conv_layers
        self._neighbour_rows: torch.Tensor | None = None

    def _freeze_parameters(self) -> None:  # called by Wav2Vec2Model.freeze_feature_encoder
        for param in self.parameters():
            param.requires_grad = False

    @contextmanager
    def reading_neighbours(self, neighbour_rows: torch.Tensor | None):
        """Within the block, row i's neighbours are the rows ``neighbour_rows[i]`` (rows, 2 k)."""
        self._neighbour_rows = neighbour_rows
        try:
            yield
        finally:
            self._neighbour_rows = None

    def _first_layer_with_neighbours(self, layer: nn.Module, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        conv = layer.conv
        blocks = conv.weight.shape[1] // x.shape[1]
        if blocks != 1 + rows.shape[1]:
            raise ValueError(f"the first convolution reads {blocks} blocks of {x.shape[1]} channels; "
                             f"got {rows.shape[1]} neighbours a row")
        weight = torch.cat(conv.weight.split(x.shape[1], dim=1), dim=0)  # (blocks * out, channels, kernel)
        y = nn.functional.conv1d(x, weight, None, conv.stride).unflatten(1, (blocks, conv.out_channels))
        hidden = y[:, 0]
        for j in range(rows.shape[1]):
            hidden = hidden + y[rows[:, j], j + 1]
        if conv.bias is not None:
            hidden = hidden + conv.bias[:, None]
        # The rest of transformers' Wav2Vec2LayerNormConvLayer.forward: norm over channels, activation.
        hidden = layer.layer_norm(hidden.transpose(-2, -1)).transpose(-2, -1)
        return layer.activation(hidden)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        hidden = input_values
        for i, layer in enumerate(self.conv_layers):
            if i == 0 and self._neighbour_rows is not None:
                hidden = self._first_layer_with_neighbours(layer, hidden, self._neighbour_rows)
            else:
                hidden = layer(hidden)
        return hidden


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
        self.wav2vec2 = MultiChannelWav2Vec2Model(hf_config(config))

    @property
    def width(self) -> int:
        """Token width (the Wav2Vec2 hidden size)."""
        return self.tower_config.hidden_size

    def forward(self, waveforms: torch.Tensor, station_mask: torch.Tensor,
                neighbours: torch.Tensor | None = None) -> torch.Tensor:
        """``neighbours`` (batch, stations, 2 k): the station indices whose channels the first
        convolution reads beside each station's own (``preprocess.neighbour_index``); always
        present stations."""
        batch, stations, channels, samples = waveforms.shape
        flat = waveforms.reshape(batch * stations, channels, samples)
        flat = flat.to(self.wav2vec2.feature_projection.projection.weight.dtype)
        present = station_mask.reshape(-1)
        rows = None
        if neighbours is not None:  # station indices -> rows of the flattened batch
            offset = torch.arange(batch, device=neighbours.device)[:, None, None] * stations
            rows = (neighbours + offset).reshape(batch * stations, -1)
        if bool(present.all()):
            with self.wav2vec2.feature_extractor.reading_neighbours(rows):
                frames = self.wav2vec2(input_values=flat).last_hidden_state
            return frames.reshape(batch, stations, *frames.shape[1:])
        index = present.nonzero().flatten()
        if rows is not None:  # rows of the present stations only, renumbered among them
            rows = (present.long().cumsum(0) - 1)[rows.index_select(0, index)]
        with self.wav2vec2.feature_extractor.reading_neighbours(rows):
            frames = self.wav2vec2(input_values=flat.index_select(0, index)).last_hidden_state
        out = frames.new_zeros(batch * stations, *frames.shape[1:]).index_copy(0, index, frames)
        return out.reshape(batch, stations, *frames.shape[1:])

    def trainable_tail(self, blocks: int) -> list[nn.Module]:
        """The last ``blocks`` transformer layers and the final encoder norm."""
        layers = self.wav2vec2.encoder.layers
        if not 0 <= blocks <= len(layers):
            raise ValueError(f"unlocked_blocks for the waveform trunk must be in [0, {len(layers)}]; got {blocks}")
        return [*layers[len(layers) - blocks:], self.wav2vec2.encoder.layer_norm] if blocks else []

    def load_seislm_checkpoint(
        self, path: str | os.PathLike, adapt_channels: bool = True, extra_inert_globals: Iterable[str] = ()
    ) -> LoadReport:
        """Load a SeisLM Lightning checkpoint (``.ckpt``) from a local file."""
        return import_seislm_checkpoint(self.wav2vec2, path, adapt_channels, extra_inert_globals=extra_inert_globals,
                                        own_channels=self.tower_config.in_chans)
