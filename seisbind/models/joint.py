"""The joint model: image and waveform towers mapped into one normalised embedding space.

Laid out as ImageBind: four ``nn.ModuleDict``s keyed by :class:`~seisbind.modalities.ModalityType`
(``preprocessors``, ``trunks``, ``heads``, ``postprocessors``), so a new modality is one entry in
each. Saved and loaded as Hugging Face does: ``config.json`` beside ``model.safetensors``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seisbind.modalities import ModalityType
from seisbind.models.array_head import ArrayHead
from seisbind.models.checkpoints import LoadReport
from seisbind.models.config import SeisBindConfig
from seisbind.models.heads import (LogitScale, MeanTokens, Normalize, ProjectionHead, SelectToken,
                                   StationAttentionPool)
from seisbind.models.image_tower import ImageTrunk
from seisbind.models.preprocess import ImagePreprocessor, WaveformPreprocessor
from seisbind.models.waveform_tower import WaveformTrunk

CONFIG_NAME = "config.json"


def _as_tensor(x, what: str) -> torch.Tensor:
    """A tensor as is; a NumPy array (or array-like of numbers) as a tensor sharing its memory."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise ValueError(f"{what} must be a torch.Tensor or a NumPy array; got {type(x).__name__}"
                     + (" (for an ObsPy Stream use seisbind.io.obspy_streams.prepare_stream and iter_windows)"
                        if type(x).__name__ == "Stream" else ""))
WEIGHTS_NAME = "model.safetensors"


class SeisBindModel(nn.Module):
    """Seismic sections and seismic waveforms in one embedding space.

    ``forward(images=..., waveforms=..., station_mask=...)`` returns a dict with the L2-normalised
    embedding of each given modality (keys ``"image"``, ``"waveform"``), ``"logit_scale"`` (the
    exponentiated temperature) and, with the SigLIP loss, ``"logit_bias"``.
    """

    def __init__(self, config: SeisBindConfig | dict[str, Any]) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = SeisBindConfig.from_dict(config)
        self.config = config
        image_trunk = ImageTrunk(config.image)
        waveform_trunk = WaveformTrunk(config.waveform)
        self.preprocessors = nn.ModuleDict({
            ModalityType.IMAGE: ImagePreprocessor(config.image),
            ModalityType.WAVEFORM: WaveformPreprocessor(config.waveform),
        })
        self.trunks = nn.ModuleDict({ModalityType.IMAGE: image_trunk, ModalityType.WAVEFORM: waveform_trunk})
        wave = config.waveform
        if wave.head == "array":
            waveform_head = ArrayHead(waveform_trunk.width, config.embed_dim, wave.in_chans, wave.array_width,
                                      wave.array_depth, wave.array_heads, wave.array_time_pool,
                                      wave.station_spacing_m)
        else:
            waveform_head = ProjectionHead(waveform_trunk.width, config.embed_dim,
                                           StationAttentionPool(waveform_trunk.width))
        self.heads = nn.ModuleDict({
            ModalityType.IMAGE: ProjectionHead(image_trunk.width, config.embed_dim,
                                               SelectToken(0) if config.image.pool == "token" else MeanTokens(1)),
            ModalityType.WAVEFORM: waveform_head,
        })
        self.postprocessors = nn.ModuleDict({m: Normalize() for m in self.trunks})
        self.logit_scale = LogitScale(
            config.init_logit_scale,
            config.max_logit_scale,
            config.init_logit_bias if config.loss == "siglip" else None,
        )

    @property
    def sampling_rate(self) -> float:
        """The waveform rate the model expects, in Hz (SeisBench's attribute name)."""
        return float(self.config.waveform.sampling_rate)

    @property
    def component_order(self) -> str | None:
        """The order of the channels of a station, as SeisBench declares it: "ZNE" for a
        3-component tower (readers rotate and order records so), None for other channel sets
        (OpenFWI's five shots are not components)."""
        return "ZNE" if self.config.waveform.in_chans == 3 else None

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this model encodes."""
        return tuple(self.trunks.keys())

    def _check_modality(self, modality: str) -> None:
        if modality not in self.trunks:
            raise ValueError(f"unknown modality {modality!r}; this model has {list(self.trunks)}")

    def encode(self, modality: str, inputs: torch.Tensor, normalize: bool = True, **kwargs: Any) -> torch.Tensor:
        """Embed one modality: preprocess, trunk, head and (with ``normalize``) L2 normalisation."""
        self._check_modality(modality)
        prepared = self.preprocessors[modality](inputs, **kwargs)
        tokens = self.trunks[modality](**prepared["trunk"])
        embedding = self.heads[modality](tokens, **prepared["head"])
        out = self.postprocessors[modality](embedding) if normalize else embedding
        if not bool(torch.isfinite(out).all()):
            # Finite inputs should never give this; say so rather than hand NaN to an index.
            raise ValueError(f"the {modality} tower produced non-finite embeddings for finite inputs: values beyond "
                             "float32's range after scaling, or non-finite weights")
        return out

    def encode_image(self, images: torch.Tensor | np.ndarray, normalize: bool = True) -> torch.Tensor:
        """Embed seismic sections (batch, in_chans, H, W) -> (batch, embed_dim).

        A tensor or NumPy array; one unbatched section, (H, W) or (in_chans, H, W), gives one
        unbatched embedding (embed_dim,), as torch modules treat unbatched input."""
        images = _as_tensor(images, "images")
        one = images.ndim == 2 or (images.ndim == 3 and images.shape[0] == self.config.image.in_chans)
        if one:
            images = images.reshape(1, self.config.image.in_chans, *images.shape[-2:])
        out = self.encode(ModalityType.IMAGE, images, normalize=normalize)
        return out[0] if one else out

    def encode_waveform(
        self,
        waveforms: torch.Tensor | np.ndarray,
        station_mask: torch.Tensor | np.ndarray | None = None,
        normalize: bool = True,
        station_x_m: torch.Tensor | np.ndarray | None = None,
    ) -> torch.Tensor:
        """Embed waveforms (batch, stations, channels, time) at the tower's sample rate -> (batch, embed_dim).

        A tensor or NumPy array. One unbatched record, (stations, channels, time) or one station's
        (channels, time), with ``station_mask``/``station_x_m`` of shape (stations,), gives one
        unbatched embedding (embed_dim,).

        ``station_mask`` (batch, stations), True where a station is present, lets items with
        different station counts share a padded batch; absent stations do not affect the result.
        ``station_x_m`` (batch, stations) are the stations' positions along the array in metres
        (any origin: the array head uses offsets from the array's centre). Without them the array
        head assumes a line in the given order, ``waveform.station_spacing_m`` apart.
        """
        waveforms = _as_tensor(waveforms, "waveforms")
        station_mask = None if station_mask is None else _as_tensor(station_mask, "station_mask")
        station_x_m = None if station_x_m is None else _as_tensor(station_x_m, "station_x_m")
        one = waveforms.ndim in (2, 3)
        if one:
            waveforms = waveforms.reshape(1, -1, *waveforms.shape[-2:])
            station_mask = None if station_mask is None else station_mask.reshape(1, -1)
            station_x_m = None if station_x_m is None else station_x_m.reshape(1, -1)
        out = self.encode(ModalityType.WAVEFORM, waveforms, normalize=normalize, station_mask=station_mask,
                          station_x_m=station_x_m)
        return out[0] if one else out

    def forward(
        self,
        images: torch.Tensor | None = None,
        waveforms: torch.Tensor | None = None,
        station_mask: torch.Tensor | None = None,
        station_x_m: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if images is None and waveforms is None:
            raise ValueError("forward needs images, waveforms or both; got neither")
        if waveforms is None and station_mask is not None:
            raise ValueError("station_mask was given without waveforms")
        out: dict[str, torch.Tensor] = {}
        if images is not None:
            out[ModalityType.IMAGE] = self.encode_image(images)
        if waveforms is not None:
            out[ModalityType.WAVEFORM] = self.encode_waveform(waveforms, station_mask, station_x_m=station_x_m)
        out["logit_scale"] = self.logit_scale()
        if self.logit_scale.bias is not None:
            out["logit_bias"] = self.logit_scale.bias
        return out

    def clamp_logit_scale(self) -> None:
        """Clamp the temperature to [1, max_logit_scale]; call after each optimiser step, as CLIP does."""
        self.logit_scale.clamp_()

    def lock_tower(self, modality: str, unlocked_blocks: int = 0) -> None:
        """Freeze a trunk (LiT), leaving its last ``unlocked_blocks`` blocks and final norm trainable.

        Only the trunk is frozen: the head, the other tower and the temperature keep training.
        """
        self._check_modality(modality)
        trunk = self.trunks[modality]
        tail = trunk.trainable_tail(int(unlocked_blocks))
        for param in trunk.parameters():
            param.requires_grad = False
        for module in tail:
            for param in module.parameters():
                param.requires_grad = True

    def load_tower_checkpoint(
        self,
        modality: str,
        path: str | os.PathLike,
        adapt_channels: bool = True,
        extra_inert_globals: Iterable[str] = (),
    ) -> LoadReport:
        """Load pretrained trunk weights: an SFM ``.pth`` for the image, a SeisLM ``.ckpt`` for the waveform.

        The file is read without running its pickle (see ``checkpoints.safe_torch_load``);
        ``extra_inert_globals`` names further pickled classes to skip rather than refuse.
        """
        self._check_modality(modality)
        if modality == ModalityType.IMAGE:
            return self.trunks[modality].load_sfm_checkpoint(path, adapt_channels, extra_inert_globals)
        return self.trunks[modality].load_seislm_checkpoint(path, adapt_channels, extra_inert_globals)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created if needed)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"architecture": type(self).__name__, **self.config.to_dict()}
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> SeisBindModel:
        """Rebuild a model written by :meth:`save_pretrained` from a local directory."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for p in (config_path, weights_path):
            if not p.is_file():
                raise FileNotFoundError(f"{p} not found: from_pretrained expects {CONFIG_NAME} and {WEIGHTS_NAME}")
        try:
            config = json.loads(config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{config_path} is not valid JSON ({err})") from None
        if not isinstance(config, dict):
            raise ValueError(f"{config_path} must hold a JSON object (the model config); got {type(config).__name__}")
        arch = config.pop("architecture", cls.__name__)
        if arch != cls.__name__:
            raise ValueError(f"{config_path} describes a {arch}, not a {cls.__name__}")
        config = SeisBindConfig.from_dict(config)
        # The file's tensor names and shapes are checked against the config on the meta device
        # (no memory) before anything is allocated: a config.json of a huge width fails here, not
        # after building gigabytes of weights it does not match.
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in cls(config).state_dict().items()}
        try:
            with safe_open(str(weights_path), framework="pt") as fh:
                stored = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
        except Exception as err:  # safetensors raises its own SafetensorError (and OSError) on a foreign file
            raise ValueError(f"{weights_path} is not a safetensors file ({type(err).__name__}: {err}); a pickled "
                             "checkpoint is never loaded here: convert it with save_pretrained") from None
        missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
        wrong = [f"{k}: expected {expected[k]}, got {shape}"
                 for k, shape in stored.items() if k in expected and shape != expected[k]]
        if missing or unexpected or wrong:
            raise ValueError(f"{weights_path} does not match its config: missing {missing}, "
                             f"unexpected {unexpected}, wrong shapes {wrong}")
        state = load_file(str(weights_path), device=str(map_location))
        model = cls(config)
        bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise ValueError(f"{weights_path} holds non-finite (NaN or infinite) weights in {len(bad)} tensor(s), "
                             f"e.g. {bad[:3]}: the file is corrupt or comes from a diverged run")
        model.load_state_dict(state, strict=True)
        return model.to(map_location)
