"""Import of pretrained SFM and SeisLM checkpoints from local files, without trusting their pickles.

Both projects distribute ``torch.save`` files whose pickle holds more than tensors: SFM (an MAE
training script) stores ``args`` as an ``argparse.Namespace``; SeisLM (Lightning) stores an
``ml_collections.ConfigDict`` under ``hyper_parameters`` and numpy scalars in its scheduler state.
``torch.load(weights_only=True)`` refuses those, and ``weights_only=False`` would run whatever the
pickle asks for. :func:`safe_torch_load` keeps ``weights_only=True`` and substitutes an inert
placeholder for each known, harmless-to-skip class: the placeholder records its pickled arguments
and state, imports nothing and runs no code. Any other class in the file is refused with a
``ValueError`` that names it. ml_collections need not be installed.

Key names, dropped keys and channel adaptation follow REFERENCE.md (SFM: weights under ``model``,
decoder keys dropped; SeisLM: ``state_dict`` with prefix ``model.wav2vec2.``, both weight-norm
spellings). Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

# Pickled classes that may appear beside the weights and are safe to skip: replaced by inert
# placeholders on load. Exact names; see also INERT_GLOBAL_PREFIXES.
INERT_GLOBALS = frozenset({
    # SeisLM's Lightning hyper-parameters
    "ml_collections.config_dict.config_dict.ConfigDict",
    "ml_collections.config_dict.config_dict.FrozenConfigDict",
    "ml_collections.config_dict.config_dict.FieldReference",
    "ml_collections.config_dict.config_dict._Op",
    # SFM's MAE training arguments
    "argparse.Namespace",
    # numpy scalars and arrays in optimiser, scheduler or argument state (numpy 1 and 2 paths)
    "numpy.dtype",
    "numpy.ndarray",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    # field types recorded by ml_collections FieldReference
    "builtins.int", "builtins.float", "builtins.str", "builtins.bool",
    "builtins.list", "builtins.tuple", "builtins.dict",
})
INERT_GLOBAL_PREFIXES = ("numpy.dtypes.",)  # numpy 2 dtype classes, e.g. numpy.dtypes.Float64DType

SFM_DECODER_PREFIXES = ("decoder_embed.", "decoder_blocks.", "decoder_norm.", "decoder_pred.")
SFM_DECODER_KEYS = ("mask_token", "decoder_pos_embed")
SFM_FINETUNE_PREFIXES = ("head.", "fc_norm.")  # classifier of fine-tuned SFM checkpoints
SEISLM_PREFIX = "model.wav2vec2."
SEISLM_PRETRAIN_PREFIXES = ("model.quantizer.", "model.project_hid.", "model.project_q.")

# The two spellings of the weight-normed positional convolution: torch.nn.utils.weight_norm
# (older torch) and torch.nn.utils.parametrizations.weight_norm (current torch and transformers).
_WN_OLD = ("weight_g", "weight_v")
_WN_NEW = ("parametrizations.weight.original0", "parametrizations.weight.original1")


class InertObject:
    """Placeholder for a pickled object of a class seisbind does not import.

    ``global_name`` is the class or function the pickle named, ``args`` the arguments it was to be
    called with and ``state`` what it was to be restored from. Nothing of the original runs.
    """

    global_name = "?"
    __slots__ = ("args", "state")

    def __new__(cls, *args: Any, **kwargs: Any) -> InertObject:
        inst = object.__new__(cls)
        inst.args = args
        inst.state = kwargs or None
        return inst

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # arguments were recorded by __new__

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"InertObject({self.global_name}, args={self.args!r}, state={self.state!r})"


def _inert_class(global_name: str) -> type:
    return type(f"Inert[{global_name}]", (InertObject,), {"global_name": global_name, "__slots__": ()})


def to_python(obj: Any) -> Any:
    """Turn loaded hyper-parameters into plain Python: ConfigDict and Namespace placeholders become
    dicts, containers are converted recursively, other placeholders are left as they are."""
    if isinstance(obj, InertObject):
        name = obj.global_name
        if name.endswith("ConfigDict") and isinstance(obj.state, dict) and "_fields" in obj.state:
            return {k: to_python(v) for k, v in obj.state["_fields"].items()}
        if name.endswith("FieldReference") and isinstance(obj.state, dict) and "_value" in obj.state:
            return to_python(obj.state["_value"])
        if name == "argparse.Namespace" and isinstance(obj.state, dict):
            return {k: to_python(v) for k, v in obj.state.items()}
        return obj
    if isinstance(obj, Mapping):
        return {k: to_python(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_python(v) for v in obj)
    return obj


def _is_inert(name: str, extra: Iterable[str]) -> bool:
    return name in INERT_GLOBALS or name.startswith(INERT_GLOBAL_PREFIXES) or name in set(extra)


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def safe_torch_load(path: str | os.PathLike, extra_inert_globals: Iterable[str] = ()) -> Any:
    """``torch.load`` a checkpoint with ``weights_only=True``, skipping known non-weight classes.

    Classes in :data:`INERT_GLOBALS` (and ``extra_inert_globals``, fully qualified names) come
    back as :class:`InertObject` placeholders; any other class or function in the pickle makes
    this raise ``ValueError`` naming it, before anything is unpickled.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    ser = torch.serialization
    # safe_globals entries given as (object, "qualified.name") arrived in torch 2.6
    if _torch_version() < (2, 6) or not hasattr(ser, "get_unsafe_globals_in_checkpoint"):
        raise RuntimeError(f"safe checkpoint loading needs torch >= 2.6; this is torch {torch.__version__}")
    extra = tuple(extra_inert_globals)
    try:
        foreign = ser.get_unsafe_globals_in_checkpoint(path)
    except Exception as err:  # not a zip checkpoint (legacy format) or not a torch file
        foreign = None
        scan_error = err
    if foreign is not None:
        refused = sorted(n for n in foreign if not _is_inert(n, extra))
        if refused:
            raise ValueError(
                f"checkpoint {path} holds pickled classes or functions seisbind does not load "
                f"(loading them could run arbitrary code): {refused}. Expected only tensors, plain "
                f"containers and {sorted(INERT_GLOBALS)}. Nothing was executed. If these are harmless "
                f"non-weight entries, pass their names in extra_inert_globals to skip them."
            )
        names = sorted(foreign)
    else:
        names = sorted(INERT_GLOBALS | set(extra))
    allow = [(_inert_class(n), n) for n in names]
    try:
        with ser.safe_globals(allow):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        where = "" if foreign is not None else f" (static scan failed: {scan_error})"
        raise ValueError(f"could not load checkpoint {path} with weights_only=True{where}: {err}") from err


@dataclass
class LoadReport:
    """What an import did: keys loaded, keys dropped, keys adapted and the file's hyper-parameters."""

    path: str
    loaded: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    adapted: dict[str, str] = field(default_factory=dict)
    hyper_parameters: Any = None


def adapt_input_channels(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt a first-layer conv weight [out, C, *kernel] to ``in_chans`` input channels, as timm does.

    More channels: the pretrained channels are repeated and scaled by C / in_chans; one channel:
    the channels are summed (timm's ``adapt_input_conv``). Works for Conv1d and Conv2d weights.
    """
    from timm.models._manipulate import adapt_input_conv

    if weight.ndim not in (3, 4):
        raise ValueError(f"expected a Conv1d or Conv2d weight (3 or 4 dims); got shape {tuple(weight.shape)}")
    w4 = weight[..., None] if weight.ndim == 3 else weight
    out = adapt_input_conv(in_chans, w4, base_chans=w4.shape[1])
    return out[..., 0] if weight.ndim == 3 else out


def _fmt(shape: Iterable[int]) -> str:
    return str(tuple(shape))


def _one_line(keys: list[str], limit: int = 6) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_state_keys(model_sd: Mapping[str, torch.Tensor], ckpt: Mapping[str, torch.Tensor], what: str, path: str,
                     hint: str = "") -> None:
    """One line naming the keys ``what`` expects and ``ckpt`` lacks, and those it has that ``what``
    does not (``hint``: what to check, e.g. the config sizes)."""
    missing = sorted(set(model_sd) - set(ckpt))
    unexpected = sorted(set(ckpt) - set(model_sd))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) the {what} expects: {_one_line(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_one_line(unexpected)}")
        raise ValueError(f"checkpoint {path} does not match the {what}{hint}: " + "; ".join(parts))


def check_state_shapes(model_sd: Mapping[str, torch.Tensor], ckpt: Mapping[str, torch.Tensor], what: str, path: str,
                       hint: str = "") -> None:
    wrong = [f"{k}: model expects {_fmt(model_sd[k].shape)}, checkpoint has {_fmt(v.shape)}"
             for k, v in ckpt.items() if tuple(v.shape) != tuple(model_sd[k].shape)]  # fmt: skip
    if wrong:
        raise ValueError(f"checkpoint {path} has shapes that do not match the {what}: " + "; ".join(wrong) + hint)


def _adapt_first_conv(key: str, model_sd, ckpt: dict, report: LoadReport, adapt_channels: bool,
                      own_channels: int | None = None) -> None:
    """Channel-adapt a checkpoint's first convolution to the model's. ``own_channels``: the
    model's first ``own_channels`` inputs are the record's own and the rest its neighbours'
    (``WaveformTowerConfig.neighbour_stations``): the pretrained kernel is adapted to the own
    channels and the neighbours' start at zero, so the loaded trunk reads each station exactly as
    the checkpoint did until training teaches it to use the neighbours."""
    if key not in ckpt or key not in model_sd:
        return
    have, want = ckpt[key], model_sd[key]
    if tuple(have.shape) == tuple(want.shape):
        return
    same_but_channels = have.ndim == want.ndim and have.shape[0] == want.shape[0] and have.shape[2:] == want.shape[2:]
    if adapt_channels and same_but_channels:
        own = want.shape[1] if own_channels is None else own_channels
        adapted = have if have.shape[1] == own else adapt_input_channels(have, own)
        if own < want.shape[1]:
            zeros = adapted.new_zeros(adapted.shape[0], want.shape[1] - own, *adapted.shape[2:])
            adapted = torch.cat([adapted, zeros], dim=1)
        ckpt[key] = adapted
        report.adapted[key] = f"input channels {have.shape[1]} -> {want.shape[1]}" + (
            f" (the {want.shape[1] - own} neighbour channels start at zero)" if own < want.shape[1] else "")


def load_strict(module: nn.Module, ckpt: dict[str, torch.Tensor], report: LoadReport) -> LoadReport:
    with torch.no_grad():
        module.load_state_dict(ckpt, strict=True)
    report.loaded = sorted(ckpt)
    return report


def _tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def read_sfm_checkpoint(
    path: str | os.PathLike, extra_inert_globals: Iterable[str] = ()
) -> tuple[dict[str, torch.Tensor], Any]:
    """The weights (under ``model``) and training arguments (``args``) of an SFM MAE checkpoint."""
    obj = safe_torch_load(path, extra_inert_globals)
    if isinstance(obj, Mapping) and "model" in obj:
        weights, args = obj["model"], to_python(obj.get("args"))
    elif _tensor_dict(obj):
        weights, args = obj, None
    else:
        keys = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"SFM checkpoint {path}: expected the weights under 'model'; found {keys}")
    if not isinstance(weights, Mapping):
        raise ValueError(f"SFM checkpoint {path}: 'model' should map names to tensors; got {type(weights).__name__}")
    return dict(weights), args


def import_sfm_checkpoint(
    trunk: nn.Module, path: str | os.PathLike, adapt_channels: bool = True, extra_inert_globals: Iterable[str] = ()
) -> LoadReport:
    """Load an SFM MAE checkpoint into an image trunk (a timm VisionTransformer).

    Decoder keys and ``mask_token`` are dropped (so are ``head.*``/``fc_norm.*`` of fine-tuned
    checkpoints); ``pos_embed`` is interpolated (bicubic) to the trunk's patch grid; the patch
    embedding is channel-adapted when the trunk's ``in_chans`` differs. Missing or unexpected
    encoder keys and mismatched shapes raise ``ValueError`` naming them.
    """
    from timm.layers import resample_abs_pos_embed

    path = os.fspath(path)
    weights, args = read_sfm_checkpoint(path, extra_inert_globals)
    report = LoadReport(path=path, hyper_parameters=args)
    ckpt: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        if key in SFM_DECODER_KEYS or key.startswith(SFM_DECODER_PREFIXES + SFM_FINETUNE_PREFIXES):
            report.dropped.append(key)
        else:
            ckpt[key] = value
    model_sd = trunk.state_dict()
    if not isinstance(getattr(trunk.patch_embed, "proj", None), nn.Conv2d):
        # A convolutional stem has no counterpart in SFM: it keeps its own weights, the rest loads.
        for key in [k for k in ckpt if k.startswith("patch_embed.")]:
            del ckpt[key]
            report.dropped.append(key)
        ckpt.update({k: v for k, v in model_sd.items() if k.startswith("patch_embed.")})
    check_state_keys(model_sd, ckpt, "image trunk", path)

    pos, want = ckpt["pos_embed"], model_sd["pos_embed"]
    if tuple(pos.shape) != tuple(want.shape) and pos.ndim == 3 and pos.shape[-1] == want.shape[-1]:
        prefix = getattr(trunk, "num_prefix_tokens", 1)
        old_n = pos.shape[1] - prefix
        side = int(round(old_n ** 0.5))
        if side * side != old_n:
            raise ValueError(f"checkpoint {path}: pos_embed has {old_n} patch positions, not a square grid")
        grid = list(trunk.patch_embed.grid_size)
        ckpt["pos_embed"] = resample_abs_pos_embed(pos, new_size=grid, old_size=[side, side], num_prefix_tokens=prefix)
        report.adapted["pos_embed"] = f"grid {side}x{side} -> {grid[0]}x{grid[1]} (bicubic)"
    _adapt_first_conv("patch_embed.proj.weight", model_sd, ckpt, report, adapt_channels)
    check_state_shapes(model_sd, ckpt, "image trunk", path)
    return load_strict(trunk, ckpt, report)


def read_seislm_checkpoint(
    path: str | os.PathLike, prefix: str = SEISLM_PREFIX, extra_inert_globals: Iterable[str] = ()
) -> tuple[dict[str, torch.Tensor], list[str], Any]:
    """The encoder weights of a SeisLM Lightning checkpoint, keyed as in ``transformers.Wav2Vec2Model``.

    Returns (weights without ``prefix``, dropped pretraining-only keys, hyper-parameters as plain
    Python). Keys outside ``prefix`` other than the quantizer and projections are refused.
    """
    obj = safe_torch_load(path, extra_inert_globals)
    if not (isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping)):
        keys = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"SeisLM checkpoint {path}: expected a Lightning checkpoint with 'state_dict'; found {keys}")
    weights: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    other: list[str] = []
    for key, value in obj["state_dict"].items():
        if key.startswith(prefix):
            weights[key[len(prefix):]] = value
        elif key.startswith(SEISLM_PRETRAIN_PREFIXES):
            dropped.append(key)
        else:
            other.append(key)
    if other:
        raise ValueError(f"SeisLM checkpoint {path}: {len(other)} key(s) are neither under '{prefix}' nor "
                         f"pretraining-only {list(SEISLM_PRETRAIN_PREFIXES)}: {sorted(other)}")
    if not weights:
        raise ValueError(f"SeisLM checkpoint {path}: no weights under the prefix '{prefix}'")
    return weights, dropped, to_python(obj.get("hyper_parameters"))


def _rename_weight_norm(ckpt: dict[str, torch.Tensor], model_keys: set[str]) -> None:
    """Rename weight-norm keys to the spelling the model uses (either direction)."""
    for src, dst in ((_WN_OLD, _WN_NEW), (_WN_NEW, _WN_OLD)):
        for key in [k for k in ckpt if k.endswith(src)]:
            for s, d in zip(src, dst, strict=True):
                if key.endswith(s):
                    new = key[: -len(s)] + d
                    if new in model_keys and key not in model_keys:
                        ckpt[new] = ckpt.pop(key)


def import_seislm_checkpoint(
    wav2vec2: nn.Module,
    path: str | os.PathLike,
    adapt_channels: bool = True,
    prefix: str = SEISLM_PREFIX,
    extra_inert_globals: Iterable[str] = (),
    own_channels: int | None = None,
) -> LoadReport:
    """Load a SeisLM Lightning checkpoint into a multi-channel Wav2Vec2 encoder.

    Pretraining-only keys (quantizer, ``project_hid``, ``project_q``) are dropped, and
    ``masked_spec_embed`` too when the encoder does no SpecAugment masking; weight-norm keys are
    accepted in both spellings; the first convolution is channel-adapted when the encoder's input
    channels differ (``own_channels``: see ``_adapt_first_conv``). Missing or unexpected keys and mismatched shapes raise ``ValueError``.
    """
    path = os.fspath(path)
    ckpt, dropped, hparams = read_seislm_checkpoint(path, prefix, extra_inert_globals)
    report = LoadReport(path=path, dropped=list(dropped), hyper_parameters=hparams)
    model_sd = wav2vec2.state_dict()
    if "masked_spec_embed" in ckpt and "masked_spec_embed" not in model_sd:
        del ckpt["masked_spec_embed"]
        report.dropped.append(prefix + "masked_spec_embed")
    _rename_weight_norm(ckpt, set(model_sd))
    check_state_keys(model_sd, ckpt, "waveform trunk", path)
    _adapt_first_conv("feature_extractor.conv_layers.0.conv.weight", model_sd, ckpt, report, adapt_channels,
                      own_channels)
    check_state_shapes(model_sd, ckpt, "waveform trunk", path)
    return load_strict(wav2vec2, ckpt, report)
