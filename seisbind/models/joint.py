"""The joint model: one tower per modality (image, waveform, optionally text) mapped into one
normalised embedding space.

Laid out as ImageBind: four ``nn.ModuleDict``s keyed by :class:`~seisbind.modalities.ModalityType`
(``preprocessors``, ``trunks``, ``heads``, ``postprocessors``), filled from the config's modality
sections through the tower registry (:mod:`seisbind.models.towers`), so a new modality is one
entry in each; ``forward(inputs)`` loops over what it is given, and each bound pair has its own
temperature. Saved and loaded as Hugging Face does, through huggingface_hub's ``PyTorchModelHubMixin``:
``config.json`` beside ``model.safetensors`` and a model card ``README.md``, in a local folder or a
Hub repo (``from_pretrained("owner/name")``, ``push_to_hub("owner/name")``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import PyTorchModelHubMixin, snapshot_download
from huggingface_hub import constants as hf_constants
from huggingface_hub.utils import validate_repo_id
from torch import nn

from seisbind.modalities import ModalityType, pair_key
from seisbind.models import model_card
from seisbind.models.array_head import ArrayHead
from seisbind.models.checkpoints import LoadReport
from seisbind.models.config import SeisBindConfig
from seisbind.models.heads import LogitScale, Normalize
from seisbind.models.towers import get_tower

CONFIG_NAME = "config.json"


def legacy_state_keys(state: dict[str, Any], config: SeisBindConfig) -> dict[str, Any]:
    """Weights saved before temperatures were per pair name ``logit_scale.*``: the first pair's."""
    first = f"logit_scales.{pair_key(config.pairs[0])}."
    return {(first + k[len("logit_scale."):] if k.startswith("logit_scale.") else k): v for k, v in state.items()}


def _as_tensor(x, what: str) -> torch.Tensor:
    """A tensor as is; a NumPy array (or array-like of numbers) as a tensor sharing its memory."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise ValueError(f"{what} must be a torch.Tensor or a NumPy array; got {type(x).__name__}"
                     + (" (for an ObsPy Stream use model.embed_stream(stream) or seisbind.embed_stream(model, stream))"
                        if type(x).__name__ == "Stream" else ""))
WEIGHTS_NAME = "model.safetensors"
# huggingface_hub's own reading of HF_HUB_OFFLINE happens once, at its import; this one is at each call.
_TRUE = {"1", "ON", "YES", "TRUE"}


class PretrainedNotFoundError(FileNotFoundError, ValueError):
    """No model where ``from_pretrained`` was pointed: neither a folder nor a Hub repo id, or a repo
    that could not be fetched. Both a FileNotFoundError and a ValueError (as io.UnsupportedOperation
    is both an OSError and a ValueError), so callers catching either see it."""


def is_hub_repo_id(name: str) -> bool:
    """``owner/name`` as the Hub spells repo ids (a bare ``name`` is taken for a local path)."""
    if name.count("/") != 1 or name.startswith((".", "~")):
        return False
    try:
        validate_repo_id(name)
    except ValueError:
        return False
    return True


def _resolve_pretrained(name: str, *, revision: str | None, cache_dir: str | os.PathLike | None,
                        force_download: bool, local_files_only: bool, token: str | bool | None) -> Path:
    """The local folder of ``name``: the folder itself, or a Hub repo's snapshot in the HF cache."""
    path = Path(name)
    if path.is_dir():
        return path
    if not is_hub_repo_id(name):
        what = "a file, not a folder," if path.is_file() else "neither an existing folder"
        raise PretrainedNotFoundError(
            f"{name!r} is {what} nor a Hub repo id: expected a folder written by save_pretrained or a Hub repo id "
            f"(owner/name); the folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    offline = local_files_only or hf_constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE
    try:
        folder = snapshot_download(name, revision=revision, cache_dir=cache_dir, force_download=force_download,
                                   local_files_only=offline, token=token,
                                   allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, model_card.CARD_NAME])
    except Exception as err:  # huggingface_hub's HTTP, cache and validation errors, and the transport's own
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        where = (f"it is not in the Hugging Face cache{f' {cache_dir}' if cache_dir else ''} and the Hub is "
                 "offline (HF_HUB_OFFLINE=1 or local_files_only=True)") if offline else "the Hub did not give it"
        raise PretrainedNotFoundError(
            f"{name!r} is not a local folder, and as a Hub repo id (revision {revision or 'main'}) {where}: "
            f"{type(err).__name__}: {reason}") from None
    return Path(folder)


class SeisBindModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name=model_card.LIBRARY_NAME,
    license=model_card.LICENSE,
    tags=list(model_card.TAGS),
):
    """Seismic sections and seismic waveforms in one embedding space.

    ``forward(images=..., waveforms=..., station_mask=...)`` returns a dict with the L2-normalised
    embedding of each given modality (keys ``"image"``, ``"waveform"``), ``"logit_scale"`` (the
    exponentiated temperature) and, with the SigLIP loss, ``"logit_bias"``.

    ``save_pretrained``, ``from_pretrained`` and ``push_to_hub`` come from huggingface_hub's
    ``PyTorchModelHubMixin``, through its extension points (``_save_pretrained``,
    ``_from_pretrained``, ``generate_model_card``). The mixin's own config capture (the arguments
    of ``__init__``, written as config.json) never reaches the disk: ``_save_pretrained`` writes
    the model's config first, and the mixin keeps a config.json that is there.
    """

    def __init__(self, config: SeisBindConfig | dict[str, Any]) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = SeisBindConfig.from_dict(config)
        self.config = config
        preprocessors, trunks, heads = {}, {}, {}
        for modality, tower_config in config.towers.items():
            tower = get_tower(modality)
            preprocessors[modality] = tower.preprocessor(tower_config)
            trunks[modality] = tower.trunk(tower_config)
            heads[modality] = tower.head(tower_config, trunks[modality], config.embed_dim)
        self.preprocessors = nn.ModuleDict(preprocessors)
        self.trunks = nn.ModuleDict(trunks)
        self.heads = nn.ModuleDict(heads)
        self.postprocessors = nn.ModuleDict({m: Normalize() for m in self.trunks})
        # One temperature (and SigLIP bias) per bound pair, as each pair's similarities have their own spread.
        self.logit_scales = nn.ModuleDict({
            pair_key(pair): LogitScale(config.init_logit_scale, config.max_logit_scale,
                                       config.init_logit_bias if config.loss == "siglip" else None)
            for pair in config.pairs
        })  # fmt: skip

    @property
    def logit_scale(self) -> LogitScale:
        """The first bound pair's temperature (image-waveform in the shipped models)."""
        return self.logit_scales[pair_key(self.config.pairs[0])]

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
        """Embed one modality: preprocess, trunk, head and (with ``normalize``) L2 normalisation.

        With ``config.mirror_average`` and in eval mode, a modality with a mirror (image, waveform)
        embeds as the mean of the input's and its mirror image's embeddings (each normalised first
        when ``normalize``): one embedding for a sample and its mirror, at twice the work."""
        self._check_modality(modality)
        embedding = self._embed(modality, inputs, kwargs)
        mirror = get_tower(modality).mirror
        if self.config.mirror_average and mirror is not None and not self.training:
            mirrored = self._embed(modality, *mirror(self.config.towers[modality], inputs, kwargs))
            if normalize:  # the mean of the two unit embeddings, re-normalised below
                embedding = self.postprocessors[modality](embedding) + self.postprocessors[modality](mirrored)
            else:
                embedding = (embedding + mirrored) / 2
        out = self.postprocessors[modality](embedding) if normalize else embedding
        if not bool(torch.isfinite(out).all()):
            # Finite inputs should never give this; say so rather than hand NaN to an index.
            raise ValueError(f"the {modality} tower produced non-finite embeddings for finite inputs: values beyond "
                             "float32's range after scaling, or non-finite weights")
        return out

    def _embed(self, modality: str, inputs, side: dict[str, Any]) -> torch.Tensor:
        """The head's (unnormalised) embedding of one modality's batch."""
        prepared = self.preprocessors[modality](inputs, **side)
        tokens = self.trunks[modality](**prepared["trunk"])
        return self.heads[modality](tokens, **prepared["head"])

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

    def embed_stream(self, stream, inventory=None, **options: Any):
        """``(embeddings, table)`` of every window of an ObsPy Stream: :func:`seisbind.io.api.embed_stream`."""
        from seisbind.io.api import embed_stream

        return embed_stream(self, stream, inventory, **options)

    def embed_sections(self, segy_path_or_array, **options: Any):
        """``(embeddings, table)`` of the patches of a SEG-Y file or array: :func:`seisbind.io.api.embed_sections`."""
        from seisbind.io.api import embed_sections

        return embed_sections(self, segy_path_or_array, **options)

    def forward(
        self,
        inputs: dict[str, Any] | None = None,
        *,
        images: torch.Tensor | None = None,
        waveforms: torch.Tensor | None = None,
        station_mask: torch.Tensor | None = None,
        station_x_m: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """Embed what ``inputs`` holds, ImageBind's way: ``{modality: input, side input: ...}``.

        ``inputs`` maps modality names to their inputs (``"image"``: (B, C, H, W); ``"waveform"``:
        (B, stations, C, T) with the side inputs ``"station_mask"`` and ``"station_x_m"``;
        ``"text"``: a list of strings or token ids) and the model loops over the modalities it
        has. ``images=``/``waveforms=`` keywords are the older spelling of the same call.

        Returns the L2-normalised embedding of each given modality, ``"logit_scales"`` and, with
        SigLIP, ``"logit_biases"`` (dicts by bound pair, ``"image_waveform"``; each pair has its own
        temperature), and ``"logit_scale"``/``"logit_bias"`` of the first pair.
        """
        inputs = dict(inputs or {})
        for key, value in (("image", images), ("waveform", waveforms), ("station_mask", station_mask),
                           ("station_x_m", station_x_m)):  # fmt: skip
            if value is not None:
                inputs[key] = value
        given = [m for m in self.trunks if inputs.get(m) is not None]
        if not given:
            raise ValueError(f"forward needs the input of at least one modality of {list(self.trunks)}; "
                             f"got keys {sorted(inputs)}")
        side = {k for m in self.trunks for k in get_tower(m).side_inputs}
        unknown = sorted(set(inputs) - set(self.trunks) - side)
        if unknown:
            raise ValueError(f"forward got unknown input(s) {unknown}; expected modalities {list(self.trunks)} "
                             f"and side inputs {sorted(side)}")
        out: dict[str, Any] = {}
        for modality in self.trunks:
            owned = get_tower(modality).side_inputs
            if inputs.get(modality) is None:
                stray = [k for k in owned if inputs.get(k) is not None]
                if stray:
                    raise ValueError(f"{', '.join(stray)} given without the {modality} input")
                continue
            extra = {k: inputs[k] for k in owned if inputs.get(k) is not None}
            out[modality] = self._encode_input(modality, inputs[modality], extra)
        out["logit_scales"] = {key: scale() for key, scale in self.logit_scales.items()}
        out["logit_scale"] = self.logit_scale()
        if self.logit_scale.bias is not None:
            out["logit_biases"] = {key: scale.bias for key, scale in self.logit_scales.items()}
            out["logit_bias"] = self.logit_scale.bias
        return out

    def _encode_input(self, modality: str, value, extra: dict[str, Any]) -> torch.Tensor:
        """One modality of ``forward``, through its ``encode_<modality>`` convenience where there is one
        (they accept NumPy and unbatched input, and take the side inputs by name), else :meth:`encode`."""
        convenience = getattr(self, f"encode_{modality}", None)
        if callable(convenience):
            return convenience(value, **extra)
        return self.encode(modality, value, **extra)

    def encode_text(self, texts, normalize: bool = True) -> torch.Tensor:
        """Embed captions (a string, a list of strings, or token ids (batch, context)) -> (batch, embed_dim);
        one string gives one unbatched embedding (embed_dim,)."""
        one = isinstance(texts, str)
        out = self.encode(ModalityType.TEXT, [texts] if one else texts, normalize=normalize)
        return out[0] if one else out

    def clamp_logit_scale(self) -> None:
        """Clamp every pair's temperature to [1, max_logit_scale]; call after each optimiser step, as CLIP does."""
        for scale in self.logit_scales.values():
            scale.clamp_()

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

    def save_pretrained(self, save_directory: str | os.PathLike, *, card_info: dict[str, Any] | None = None,
                        **hub_kwargs: Any) -> Path | str:
        """Write ``config.json``, ``model.safetensors`` and the model card ``README.md`` into
        ``save_directory`` (created if needed); return the folder.

        ``card_info`` says what the card cannot know from the model (see
        :mod:`seisbind.models.model_card`)::

            model.save_pretrained("out/model", card_info={
                "training_data": {"folder": "data/quake", "geologies": 1000},  # dict or text
                "training_config": config.to_dict(),                          # dict or dataclass
                "evaluation": {"test/recall@1": 0.81},                        # or a list of row dicts
                "evaluation_note": "test split of data/quake",                # one line
            })

        Absent, the card says "not recorded" / "not evaluated"; architecture, parameter counts and
        the weights' sha256 are always there. A README.md already in the folder is replaced (it
        would name other weights). ``hub_kwargs`` are the mixin's: ``push_to_hub=True, repo_id=...``
        also uploads the folder, and the commit URL is returned instead of the folder.
        ``push_to_hub(repo_id, model_card_kwargs=card_info)`` uploads the same files.
        """
        card_info = dict(card_info or {})
        unknown = sorted(set(card_info) - set(model_card.CARD_FIELDS))
        if unknown:
            raise ValueError(f"unknown card_info key(s) {unknown}; expected some of {list(model_card.CARD_FIELDS)}")
        directory = Path(save_directory)
        (directory / model_card.CARD_NAME).unlink(missing_ok=True)  # the mixin keeps a README that is there
        hub_kwargs.pop("config", None)  # config.json is always the model's own (see _save_pretrained)
        card_kwargs = {**(hub_kwargs.pop("model_card_kwargs", None) or {}), **card_info}
        url = super().save_pretrained(directory, model_card_kwargs=card_kwargs, **hub_kwargs)
        return directory if url is None else url

    def _save_pretrained(self, save_directory: Path) -> None:
        """The mixin's hook: config.json (``{"architecture": "SeisBindModel", ...config}``) and the weights."""
        from safetensors.torch import save_file

        config = {"architecture": type(self).__name__, **self.config.to_dict()}
        (save_directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(save_directory / WEIGHTS_NAME), metadata={"format": "pt"})

    def generate_model_card(self, *args: Any, **card_info: Any):
        """The mixin's hook: the card of :mod:`seisbind.models.model_card`, with the mixin's metadata."""
        if args:
            raise TypeError("generate_model_card takes keyword arguments only: " + ", ".join(model_card.CARD_FIELDS))
        return model_card.build_model_card(self, card_data=self._hub_mixin_info.model_card_data, **card_info)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        map_location: str | torch.device = "cpu",
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        force_download: bool = False,
    ) -> SeisBindModel:
        """Rebuild a model written by :meth:`save_pretrained`, from a local folder or a Hub repo id.

        A folder is read as it is. Any other string of the form ``owner/name`` is a Hub repo: its
        config.json, model.safetensors and README.md are fetched into the Hugging Face cache
        (``snapshot_download`` with ``revision``, ``cache_dir``, ``local_files_only``, ``token``;
        with ``HF_HUB_OFFLINE=1`` only the cache is read) and that folder is read the same way.
        Anything else raises :class:`PretrainedNotFoundError` (a ValueError and a FileNotFoundError).

        The mixin's own ``from_pretrained`` is not used: it parses config.json before the checks of
        :meth:`_load_folder` and passes its keys to ``__init__``.
        """
        return cls._from_pretrained(model_id=str(pretrained_model_name_or_path), revision=revision,
                                    cache_dir=cache_dir, force_download=force_download,
                                    local_files_only=local_files_only, token=token, map_location=map_location)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | os.PathLike | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         map_location: str | torch.device = "cpu", **model_kwargs: Any) -> SeisBindModel:
        """The mixin's hook: resolve ``model_id`` to a folder (a Hub id through the cache), then load it."""
        if model_kwargs:
            raise TypeError(f"from_pretrained got unexpected keyword argument(s) {sorted(model_kwargs)}: "
                            "the architecture comes from config.json")
        folder = _resolve_pretrained(model_id, revision=revision, cache_dir=cache_dir, force_download=force_download,
                                     local_files_only=local_files_only, token=token)
        return cls._load_folder(folder, map_location)

    @classmethod
    def _load_folder(cls, directory: Path, map_location: str | torch.device = "cpu") -> SeisBindModel:
        """A model from a local folder of config.json + model.safetensors, checked before anything is built."""
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
                stored = legacy_state_keys({k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}, config)
        except Exception as err:  # safetensors raises its own SafetensorError (and OSError) on a foreign file
            raise ValueError(f"{weights_path} is not a safetensors file ({type(err).__name__}: {err}); a pickled "
                             "checkpoint is never loaded here: convert it with save_pretrained") from None
        missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
        wrong = [f"{k}: expected {expected[k]}, got {shape}"
                 for k, shape in stored.items() if k in expected and shape != expected[k]]
        if missing or unexpected or wrong:
            raise ValueError(f"{weights_path} does not match its config: missing {missing}, "
                             f"unexpected {unexpected}, wrong shapes {wrong}")
        state = legacy_state_keys(load_file(str(weights_path), device=str(map_location)), config)
        model = cls(config)
        bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise ValueError(f"{weights_path} holds non-finite (NaN or infinite) weights in {len(bad)} tensor(s), "
                             f"e.g. {bad[:3]}: the file is corrupt or comes from a diverged run")
        model.load_state_dict(state, strict=True)
        return model.to(map_location)
