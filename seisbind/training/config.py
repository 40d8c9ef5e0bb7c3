"""The training configuration: one dataclass read from YAML, with ``key=value`` overrides.

Every key of a config file and every command-line override names a :class:`TrainConfig` field;
an unknown key, or a value of the wrong type, is a ``ValueError`` that says which key and what
was expected. Values on the command line are read as YAML (``lr=3e-4``, ``amplitude_scale=[0.5,2]``,
``resume=null``). A dotted key reaches into a mapping field: ``model_overrides.image.img_size=32``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seisbind.configs import load_yaml

MIXED_PRECISION = ("no", "fp16", "bf16")


@dataclass
class TrainConfig:
    """Everything a contrastive training run needs; the YAML files in ``configs/`` set these keys."""

    # Model: an architecture name (configs/models/<name>.json) or a JSON path, and overrides of its
    # entries (tower sections merge key by key, e.g. {image: {img_size: 32}}).
    model: str = "tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    image_checkpoint: str | None = None  # SFM MAE .pth to start the image trunk from
    waveform_checkpoint: str | None = None  # SeisLM Lightning .ckpt to start the waveform trunk from
    # Tower locking (LiT), per modality: {image: 2} locks the image trunk but its last 2 blocks (0: all
    # of it); the head, the other towers and the temperatures keep training. The flat lock_<modality>
    # keys are the older spelling of the same.
    lock: dict[str, int] = field(default_factory=dict)
    lock_image: bool = False
    lock_image_unlocked_blocks: int = 0
    lock_waveform: bool = False
    lock_waveform_unlocked_blocks: int = 0

    # Data: a folder written by `seisbind generate`.
    data: str = ""
    train_split: str = "train"
    val_split: str = "validation"
    batch_size: int = 32  # pairs per process per micro-batch; the global batch is this x processes
    num_workers: int = 2
    # Training sees whole arrays; with probability station_drop_prob a pair keeps only a random
    # subset of min..max stations (an augmentation: real arrays lose stations).
    station_drop_prob: float = 0.25
    min_stations: int = 4
    max_stations: int = 8
    amplitude_scale: list[float] = field(default_factory=lambda: [0.5, 2.0])  # log-uniform gain per pair
    noise_level: list[float] = field(default_factory=lambda: [0.0, 0.1])  # noise RMS / record RMS
    max_time_shift_s: float = 0.1  # origin-time jitter, the same for every station of a pair
    mirror_prob: float = 0.5  # mirror the section and its record left-right (exact in 2-D P-SV)
    # The ground's velocities scaled by a factor drawn log-uniformly from [low, high] per pair, the
    # records compressed in time to match (seisbind.training.augment.stretch_record: exact for the
    # wave equation with the source's wavelet scaled in frequency alike; a reflectivity section is
    # unchanged). Needs records whose window starts at the source's onset, as generated ones do.
    velocity_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    # Records of one geology from this many different sources in each pair (quake data store
    # several per geology): each is bound to the image and the records to each other, so the
    # waveform tower learns what they share, the ground, and to ignore the source. 1 = one source.
    sources_per_pair: int = 1
    # Text (models with a text tower): each pair's caption is one of this many made from its
    # geology's labels (seisbind.data.captions); 1 = one fixed caption per geology.
    captions_per_geology: int = 16

    # Loss: open_clip's ClipLoss (or SigLipLoss, by the model config) over the global batch.
    local_loss: bool = True  # each process scores its rows against all gathered columns

    # Optimisation.
    max_steps: int = 1000
    # Train for about this many seconds instead: the run times its warm-up and then fixes its step
    # count (at most max_steps) to what fits, with the schedule of that many steps
    # (seisbind.training.budget); the count is logged (budget/total_steps) and kept on resume.
    time_budget_s: float | None = None
    lr: float = 1e-3
    weight_decay: float = 0.1  # not applied to norms, biases, the logit scale or other 0-/1-D tensors
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    warmup_steps: int = 100
    grad_clip_norm: float = 1.0  # 0 disables clipping
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"  # no, fp16, bf16
    # torch.compile the towers' trunks and heads for training (seisbind.training.compiling); the run
    # stays eager, and says so, where the machine cannot compile.
    compile: bool = False
    cpu: bool = False  # force the CPU even where a GPU is visible
    threads: int = 0  # torch threads per training process; 0 keeps torch's default (OMP_NUM_THREADS or all cores)
    seed: int = 0

    # Run: outputs, logging, validation, checkpoints.
    output_dir: str = "runs/train"
    log_every: int = 10
    eval_every: int = 200  # 0: validate only at the end
    val_batch_size: int = 64
    save_every: int = 200  # 0: checkpoint only at the end
    keep_last: int = 2
    resume: str | None = None  # "latest" or a checkpoint folder
    tracker: str = "tensorboard"  # an Accelerate tracker name (tensorboard, wandb, ...), or "none"
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def locks(self) -> dict[str, int]:
        """Modality -> trailing trunk blocks left trainable, of every locked tower (``lock`` and the
        older flat ``lock_image``/``lock_waveform`` keys together)."""
        out = dict(self.lock or {})
        if self.lock_image:
            out.setdefault("image", self.lock_image_unlocked_blocks)
        if self.lock_waveform:
            out.setdefault("waveform", self.lock_waveform_unlocked_blocks)
        return out

    def validate(self) -> None:
        """Raise a ``ValueError`` naming the first key whose value cannot work."""
        positive = ("batch_size", "max_steps", "gradient_accumulation_steps", "log_every", "val_batch_size",
                    "keep_last", "min_stations", "lr")
        for key in positive:
            if not getattr(self, key) > 0:
                raise ValueError(f"train config: {key} must be positive; got {getattr(self, key)!r}")
        for key in ("num_workers", "threads", "warmup_steps", "eval_every", "save_every", "weight_decay",
                    "grad_clip_norm", "max_time_shift_s", "eps", "lock_image_unlocked_blocks",
                    "lock_waveform_unlocked_blocks"):
            if getattr(self, key) < 0:
                raise ValueError(f"train config: {key} must be >= 0; got {getattr(self, key)!r}")
        for modality, blocks in self.locks().items():
            if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0:
                raise ValueError(f"train config: lock.{modality} must be the number of trailing blocks left "
                                 f"trainable (0 or more); got {blocks!r}")
        if self.captions_per_geology < 0:
            raise ValueError(f"train config: captions_per_geology must be >= 0; got {self.captions_per_geology!r}")
        if isinstance(self.sources_per_pair, bool) or not isinstance(self.sources_per_pair, int) or self.sources_per_pair < 1:
            raise ValueError(f"train config: sources_per_pair must be an integer >= 1; got {self.sources_per_pair!r}")
        if not 0.0 <= self.station_drop_prob <= 1.0:
            raise ValueError(f"train config: station_drop_prob must be in [0, 1]; got {self.station_drop_prob!r}")
        if not 0.0 <= self.mirror_prob <= 1.0:
            raise ValueError(f"train config: mirror_prob must be in [0, 1]; got {self.mirror_prob!r}")
        if self.max_stations < self.min_stations:
            raise ValueError(f"train config: max_stations ({self.max_stations}) is below "
                             f"min_stations ({self.min_stations})")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"train config: mixed_precision must be one of {MIXED_PRECISION}; "
                             f"got {self.mixed_precision!r}")
        for key, low in (("amplitude_scale", 0.0), ("noise_level", 0.0), ("velocity_scale", 0.0), ("betas", 0.0)):
            pair = getattr(self, key)
            if len(pair) != 2:
                raise ValueError(f"train config: {key} must be a pair [low, high]; got {pair!r}")
            if key == "betas":
                if not all(0.0 <= b < 1.0 for b in pair):
                    raise ValueError(f"train config: betas must lie in [0, 1); got {pair!r}")
            elif not (low <= pair[0] <= pair[1]) or (key in ("amplitude_scale", "velocity_scale") and pair[0] <= 0):
                bound = "0 <" if key in ("amplitude_scale", "velocity_scale") else "0 <="
                raise ValueError(f"train config: {key} must be [low, high] with {bound} low <= high; got {pair!r}")
        if self.time_budget_s is not None and not (math.isfinite(self.time_budget_s) and self.time_budget_s > 0):
            raise ValueError(f"train config: time_budget_s must be a positive number of seconds or null; "
                             f"got {self.time_budget_s!r}")
        if self.time_budget_s is not None and self.warmup_steps < 4:
            raise ValueError(f"train config: time_budget_s needs warmup_steps >= 4 (the run times its warm-up to "
                             f"choose its step count); got {self.warmup_steps}. Set time_budget_s=null to train "
                             f"exactly max_steps")
        if self.warmup_steps >= self.max_steps and self.warmup_steps > 0:
            raise ValueError(f"train config: warmup_steps ({self.warmup_steps}) must be below "
                             f"max_steps ({self.max_steps})")

    @property
    def keys(self) -> list[str]:
        """The config keys, in declaration order."""
        return [f.name for f in dataclasses.fields(self)]

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-serialisable values."""
        return dataclasses.asdict(self)


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """``value`` checked against the annotation ``tp`` (ints are accepted for floats); else ValueError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0] if errors else f"train config: {key} has an unsupported type")
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"train config: {key} must be a list of {_type_name(item)}; got {value!r}")
        return [_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"train config: {key} must be a mapping; got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"train config: {key} must be true or false; got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"train config: {key} must be an integer; got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads 3e-4 (no dot) as a string; accept any spelling Python reads as a number.
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"train config: {key} must be a number; got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"train config: {key} must be a string; got {value!r}")
        return value
    raise ValueError(f"train config: {key} has an unsupported type {tp!r}")


def _unknown_key(key: str) -> ValueError:
    known = [f.name for f in dataclasses.fields(TrainConfig)]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"unknown train config key {key!r}{hint}; known keys: {', '.join(known)}")


def _set_nested(mapping: dict, path: list[str], value: Any) -> dict:
    out = dict(mapping)
    head, *rest = path
    if rest:
        inner = out.get(head, {})
        if not isinstance(inner, dict):
            raise ValueError(f"train config: cannot set {'.'.join(path)}: {head!r} holds {inner!r}, not a mapping")
        out[head] = _set_nested(inner, rest, value)
    else:
        out[head] = value
    return out


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``values`` updated by ``key=value`` strings (values read as YAML; dotted keys reach into mappings)."""
    types_ = _field_types()
    out = dict(values)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"overrides must look like key=value; got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        try:
            value = load_yaml(text) if text.strip() else ""
        except yaml.YAMLError as err:
            raise ValueError(f"override {item!r}: the value is not valid YAML ({err})") from None
        top, *rest = key.split(".")
        if top not in types_:
            raise _unknown_key(top)
        if rest:
            if typing.get_origin(types_[top]) is not dict:
                raise ValueError(f"train config: {top} is not a mapping, so {key!r} cannot be set")
            out[top] = _set_nested(out.get(top) or {}, rest, value)
        else:
            out[top] = value
    return out


def make_config(values: dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from a mapping, type-checking every value and refusing unknown keys."""
    types_ = _field_types()
    checked = {}
    for key, value in values.items():
        if key not in types_:
            raise _unknown_key(key)
        checked[key] = _coerce(key, value, types_[key])
    return TrainConfig(**checked)


def _resolve_config(path: Path) -> Path:
    from seisbind.configs import config_path

    if path.is_file():
        return path
    if str(path.parent) in (".", "configs"):  # a bare name, or configs/<name> run from elsewhere
        shipped = config_path(path.name if path.suffix in (".yaml", ".yml") else path.name + ".yaml")
        if shipped.is_file():
            return shipped
    available = sorted(p.stem for p in config_path().glob("*.yaml"))
    raise FileNotFoundError(f"train config {path} not found (neither a file nor a shipped config: {available})")


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML config file (or start from the defaults), apply ``key=value`` overrides, validate.

    ``path`` is a file, or the name of a shipped config (``quickstart``, ``configs/openfwi.yaml``):
    a plain install has no ``configs/`` folder in the working directory."""
    values: dict[str, Any] = {}
    if path is not None:
        path = _resolve_config(Path(path))
        try:
            loaded = load_yaml(path.read_text())
        except yaml.YAMLError as err:
            raise ValueError(f"{path} is not valid YAML: {err}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} must hold a mapping of train config keys; got {type(loaded).__name__}")
        values = loaded
    return make_config(apply_overrides(values, list(overrides)))
