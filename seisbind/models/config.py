"""The configuration schema of a seisbind model: one dataclass per tower and one for the whole.

A model architecture is a JSON file (``configs/models/<name>.json``) that these dataclasses read;
``save_pretrained`` writes the same schema back, so a saved model rebuilds without its JSON file.
Unknown keys are refused rather than ignored, so a typo in a config or an override is reported.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from seisbind.modalities import ModalityType

LOSS_TYPES = ("clip", "siglip")
IMAGE_STEMS = ("patch", "conv")
IMAGE_NORMALIZATIONS = ("per_image", "fixed")
IMAGE_POOLS = ("token", "avg", "depth")
WAVEFORM_HEADS = ("array", "station_pool")
ARRAY_POOLS = ("attention", "time", "mean")  # the array head's final pool (see array_head.py)
WAVEFORM_INPUT_NORMS = ("channel", "record_log")  # how records are scaled for the trunk (preprocess.py)


def _from_dict(cls, data: dict[str, Any], section: str):
    """Build dataclass ``cls`` from ``data``, naming unknown keys in a ``ValueError``."""
    if not isinstance(data, dict):
        raise ValueError(f"{section} config must be a JSON object (dict); got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown key(s) in {section} config: {unknown}; expected some of {sorted(known)}")
    return cls(**data)


def _legacy_waveform_keys(data):
    """Saved configs from before the rename say ``sample_rate``; read it as ``sampling_rate``."""
    if isinstance(data, dict) and "sample_rate" in data:
        data = dict(data)
        old = data.pop("sample_rate")
        if "sampling_rate" in data and data["sampling_rate"] != old:
            raise ValueError(f"waveform tower config: sample_rate {old} (the old name) and sampling_rate "
                             f"{data['sampling_rate']} disagree; keep only sampling_rate")
        data.setdefault("sampling_rate", old)
    return data


def _check_positive(section: str, **values: float) -> None:
    """Every value (or every entry of a list value) a finite positive number."""
    for name, value in values.items():
        for i, v in enumerate(value if isinstance(value, (list, tuple)) else [value]):
            where = f"{name}[{i}]" if isinstance(value, (list, tuple)) else name
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{section} config: {where} must be a finite positive number; got {v!r}")


@dataclass
class ImageTowerConfig:
    """SFM image tower: a ViT with ``in_chans`` input channels and square patches.

    ``width``/``depth``/``num_heads``/``mlp_ratio`` set the ViT size (SFM-Base: 768/12/12/4,
    SFM-Large: 1024/24/16/4). ``img_size`` is an int or ``[height, width]``; with
    ``dynamic_img_size`` the position embeddings are interpolated for any input size.
    """

    arch: str = "sfm-base"
    img_size: int | list[int] = 224
    patch_size: int = 16
    in_chans: int = 1
    width: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    dynamic_img_size: bool = False
    drop_path_rate: float = 0.0
    # "patch": SFM's one-convolution patch embedding (an SFM checkpoint loads all of it). "conv": a
    # stack of stride-2 3x3 convolutions of the same total stride (Xiao et al. 2021, "Early
    # convolutions help transformers see better"): trained from a few thousand sections it learns
    # far faster than a 16x16 linear patch; an SFM checkpoint then loads every weight but the stem.
    stem: str = "patch"
    # How pixel values are scaled before the trunk. "per_image": SFM's (x - mean) / std over each
    # image, right for reflection sections, whose amplitude has no absolute scale. "fixed":
    # (x - image_mean) / image_std with constants, as timm's mean/std: right for velocity maps,
    # whose absolute velocity sets every travel time (per-image standardisation would make a map
    # and the same map 20 % faster one input).
    normalize: str = "per_image"
    image_mean: float = 0.0
    image_std: float = 1.0
    # What the head pools: "token", SFM's class token; "avg", the mean of the patch tokens (timm's
    # global_pool="avg"), which a small ViT trained from scratch learns from faster; "depth", the
    # patch tokens averaged along distance only, one row of the grid per depth, the rows kept in
    # order and concatenated: a section's layering is its depth profile, and a record's arrival
    # times are set by where in depth its interfaces lie, which a mean over all tokens leaves to
    # the position embeddings to carry.
    pool: str = "token"

    def __post_init__(self) -> None:
        if self.normalize not in IMAGE_NORMALIZATIONS:
            raise ValueError(f"image tower config: normalize must be one of {IMAGE_NORMALIZATIONS}; "
                             f"got {self.normalize!r}")
        if not (math.isfinite(self.image_mean) and math.isfinite(self.image_std) and self.image_std > 0):
            raise ValueError(f"image tower config: image_mean must be finite and image_std positive; "
                             f"got {self.image_mean}, {self.image_std}")
        if self.pool not in IMAGE_POOLS:
            raise ValueError(f"image tower config: pool must be one of {IMAGE_POOLS}; got {self.pool!r}")
        if self.pool == "depth" and self.dynamic_img_size:
            raise ValueError("image tower config: pool 'depth' keeps one feature row per depth of the patch grid, "
                             "so it needs a fixed img_size; set dynamic_img_size false or pool 'avg'")
        if self.stem not in IMAGE_STEMS:
            raise ValueError(f"image tower config: stem must be one of {IMAGE_STEMS}; got {self.stem!r}")
        if isinstance(self.img_size, (list, tuple)):
            if len(self.img_size) != 2:
                raise ValueError(f"image config: img_size must be an int or [height, width]; got {self.img_size!r}")
            self.img_size = [int(v) for v in self.img_size]
        sec = "image tower"
        _check_positive(sec, patch_size=self.patch_size, in_chans=self.in_chans, width=self.width,
                        depth=self.depth, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio)
        _check_positive(sec, **{f"img_size[{i}]": v for i, v in enumerate(self.img_hw)})
        if self.width % self.num_heads:
            raise ValueError(f"{sec} config: width {self.width} is not divisible by num_heads {self.num_heads}")
        if any(v % self.patch_size for v in self.img_hw):
            raise ValueError(f"{sec} config: img_size {self.img_hw} is not a multiple of patch_size {self.patch_size}")

    @property
    def img_hw(self) -> tuple[int, int]:
        """The image size as (height, width)."""
        if isinstance(self.img_size, (list, tuple)):
            return int(self.img_size[0]), int(self.img_size[1])
        return int(self.img_size), int(self.img_size)

    @property
    def grid_size(self) -> tuple[int, int]:
        """The patch grid as (rows, columns)."""
        h, w = self.img_hw
        return h // self.patch_size, w // self.patch_size


@dataclass
class WaveformTowerConfig:
    """SeisLM waveform tower: a Wav2Vec2 encoder whose first convolution takes ``in_chans`` channels.

    Field names follow ``transformers.Wav2Vec2Config``. Defaults are SeisLM-base (hidden 240,
    6 layers, 12 heads, intermediate 3072, convolutions [256, 256] with kernel 3 and stride 2,
    positional convolution 128 wide in 16 groups). ``sampling_rate`` is the rate the tower expects
    (SeisLM: 100 Hz; ObsPy's and SeisBench's name, while older saved configs say ``sample_rate``). ``mask_time_prob`` is 0 by default: SpecAugment masking belongs to SeisLM's
    pretraining, not to contrastive alignment.
    """

    arch: str = "seislm-base"
    in_chans: int = 3
    sampling_rate: float = 100.0
    hidden_size: int = 240
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    conv_dim: list[int] = field(default_factory=lambda: [256, 256])
    conv_kernel: list[int] = field(default_factory=lambda: [3, 3])
    conv_stride: list[int] = field(default_factory=lambda: [2, 2])
    conv_bias: bool = True
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    layer_norm_eps: float = 1e-5
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    feat_proj_dropout: float = 0.0
    layerdrop: float = 0.0
    mask_time_prob: float = 0.0
    # How the per-station frame tokens become one embedding (see heads.py). "array": stations meet
    # in factorised space-time attention over time tokens, with each station's position and
    # relative amplitude as features. "station_pool": the first tower's per-station time average
    # and attention pool over an unordered set (kept so tables can show the difference).
    # A saved config without this key is a station_pool model.
    head: str = "station_pool"
    array_width: int = 0  # token width of the array blocks; 0: hidden_size
    array_depth: int = 2  # (station attention, time attention) block pairs; 0: none (tokens straight to the pool)
    array_heads: int = 4
    array_time_pool: int = 2  # trunk frames averaged into one time token
    # Learned queries of the final attention pool, their outputs concatenated before the
    # projection: 1 query gives an embedding of rank array_width at most.
    array_queries: int = 1
    # "attention": the learned-query pool over all (station, time) tokens. "time": the stations'
    # mean at each time token, the array_time_tokens means concatenated in order (fixes the record
    # length; see array_head.py). "mean": the mean of all present tokens, a gather CNN's global
    # average pool.
    array_pool: str = "attention"
    array_time_tokens: int = 0
    # Where stations sit when a record carries no coordinates: a line in the given order, this far
    # apart (m). OpenFWI's receivers are 10 m apart; the quake scenario's 16 stations ~120 m.
    station_spacing_m: float = 100.0
    # Neighbours on each side along the array whose traces join a station's own channels at the
    # trunk's input (0: each station alone). See ``preprocess.neighbour_index``.
    neighbour_stations: int = 0
    # Encode every s-th present station along the array past the first convolution (1: all).
    # Each encoded station reads its neighbours' traces at the first convolution, so with
    # neighbour_stations >= s - 1 every trace still reaches the embedding, and the trunk's later
    # layers and the array head run on 1/s of the stations. See ``preprocess.strided_stations``.
    station_stride: int = 1
    # How a record is scaled before the trunk. "channel": SeisLM's own, each channel demeaned and
    # divided by its standard deviation (what SeisLM checkpoints were trained on). "record_log":
    # the whole record divided by one number, its peak, then ``sign(x) log1p(|x| / eps)``
    # compressed (eps 1 % of the peak): stations keep their amplitudes relative to each other
    # inside the waveform, and weak late arrivals are lifted (preprocess.compress_records).
    input_norm: str = "channel"
    # The array stem (array_stem.py): a 2-D CNN over (stations, time) of the whole record beside
    # the trunk, its blocks' output channels and time strides; its output is added to the trunk's
    # tokens. Empty: none (the trunk alone, as SeisLM).
    array_stem: list[int] = field(default_factory=list)
    array_stem_strides: list[int] = field(default_factory=list)
    # Each stem block's stride along the array (empty: 1 for every block), as a gather CNN strides
    # over stations after its first block has read them all: the head then reads one token row per
    # prod(strides) stations (ranks 0, s, 2 s, ... along the array). Needs seislm_trunk: false (the
    # trunk's tokens are per station).
    array_stem_station_strides: list[int] = field(default_factory=list)
    # False: no SeisLM trunk; the array stem's tokens alone, on the grid of frames the trunk's
    # convolutions would give, feed the head (no SeisLM checkpoint to load). On the quake
    # quickstart's CPU budget the trunk cost more steps than it gave (benchmarks/RESULTS.md).
    seislm_trunk: bool = True

    def __post_init__(self) -> None:
        sec = "waveform tower"
        if self.input_norm not in WAVEFORM_INPUT_NORMS:
            raise ValueError(f"{sec} config: input_norm must be one of {WAVEFORM_INPUT_NORMS}; got {self.input_norm!r}")
        if not isinstance(self.neighbour_stations, int) or self.neighbour_stations < 0:
            raise ValueError(f"{sec} config: neighbour_stations must be an integer >= 0; got {self.neighbour_stations!r}")
        if not isinstance(self.station_stride, int) or self.station_stride < 1:
            raise ValueError(f"{sec} config: station_stride must be an integer >= 1; got {self.station_stride!r}")
        if self.station_stride > 1 and (self.neighbour_stations < self.station_stride - 1 or self.head != "array"):
            raise ValueError(f"{sec} config: station_stride {self.station_stride} needs head: array and "
                             f"neighbour_stations >= {self.station_stride - 1} (so that every station is read); got "
                             f"head {self.head!r}, neighbour_stations {self.neighbour_stations}")
        self.array_stem = [int(v) for v in self.array_stem]
        self.array_stem_strides = [int(v) for v in self.array_stem_strides]
        if len(self.array_stem) != len(self.array_stem_strides) or any(v < 1 for v in self.array_stem + self.array_stem_strides):
            raise ValueError(f"{sec} config: array_stem and array_stem_strides must be lists of positive integers of "
                             f"the same length; got {self.array_stem}, {self.array_stem_strides}")
        self.array_stem_station_strides = [int(v) for v in self.array_stem_station_strides]
        if self.array_stem_station_strides and (len(self.array_stem_station_strides) != len(self.array_stem)
                                                or any(v < 1 for v in self.array_stem_station_strides)):
            raise ValueError(f"{sec} config: array_stem_station_strides must be empty or positive integers, one a stem "
                             f"block; got {self.array_stem_station_strides} for array_stem {self.array_stem}")
        if not isinstance(self.seislm_trunk, bool):
            raise ValueError(f"{sec} config: seislm_trunk must be true or false; got {self.seislm_trunk!r}")
        if not self.seislm_trunk and (not self.array_stem or self.neighbour_stations):
            raise ValueError(f"{sec} config: without the SeisLM trunk (seislm_trunk: false) the array stem is the "
                             f"tower: set array_stem, and neighbour_stations 0; got array_stem {self.array_stem}, "
                             f"neighbour_stations {self.neighbour_stations}")
        if self.stem_station_stride > 1 and (self.seislm_trunk or self.head != "array"):
            raise ValueError(f"{sec} config: array_stem_station_strides {self.array_stem_station_strides} merge stations, "
                             f"so they need seislm_trunk: false and head: array (the trunk's tokens are per station); "
                             f"got seislm_trunk {self.seislm_trunk}, head {self.head!r}")
        if self.array_stem and self.station_stride > 1:
            raise ValueError(f"{sec} config: the array stem reads every station, so it needs station_stride 1; got "
                             f"{self.station_stride}")
        if self.head not in WAVEFORM_HEADS:
            raise ValueError(f"{sec} config: head must be one of {WAVEFORM_HEADS}; got {self.head!r}")
        if self.head == "array":
            if not isinstance(self.array_depth, int) or self.array_depth < 0:
                raise ValueError(f"{sec} config: array_depth must be an integer >= 0; got {self.array_depth!r}")
            _check_positive(sec, array_heads=self.array_heads,
                            array_time_pool=self.array_time_pool, array_queries=self.array_queries,
                            station_spacing_m=self.station_spacing_m)
            if self.array_pool not in ARRAY_POOLS or (self.array_pool == "time") != (self.array_time_tokens > 0):
                raise ValueError(f"{sec} config: array_pool must be one of {ARRAY_POOLS}, with array_time_tokens > 0 "
                                 f"exactly for 'time' (the time tokens of a training record); got array_pool "
                                 f"{self.array_pool!r}, array_time_tokens {self.array_time_tokens}")
            if self.array_width < 0 or (self.array_width or self.hidden_size) % self.array_heads:
                raise ValueError(f"{sec} config: array_width {self.array_width or self.hidden_size} must be "
                                 f"positive and divisible by array_heads {self.array_heads}")
        self.conv_dim = [int(v) for v in self.conv_dim]
        self.conv_kernel = [int(v) for v in self.conv_kernel]
        self.conv_stride = [int(v) for v in self.conv_stride]
        if not (len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride) >= 1):
            raise ValueError(
                f"{sec} config: conv_dim, conv_kernel and conv_stride must have the same non-zero length; "
                f"got {len(self.conv_dim)}, {len(self.conv_kernel)}, {len(self.conv_stride)}"
            )
        _check_positive(sec, in_chans=self.in_chans, sampling_rate=self.sampling_rate, hidden_size=self.hidden_size,
                        num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
                        intermediate_size=self.intermediate_size, conv_dim=self.conv_dim,
                        conv_kernel=self.conv_kernel, conv_stride=self.conv_stride,
                        num_conv_pos_embeddings=self.num_conv_pos_embeddings,
                        num_conv_pos_embedding_groups=self.num_conv_pos_embedding_groups)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"{sec} config: hidden_size {self.hidden_size} is not divisible by "
                             f"num_attention_heads {self.num_attention_heads}")
        if self.hidden_size % self.num_conv_pos_embedding_groups:
            raise ValueError(f"{sec} config: hidden_size {self.hidden_size} is not divisible by "
                             f"num_conv_pos_embedding_groups {self.num_conv_pos_embedding_groups}")

    @property
    def receptive_field(self) -> int:
        """Samples one output frame of the convolutional feature encoder sees: the shortest valid input."""
        field_, jump = 1, 1
        for kernel, stride in zip(self.conv_kernel, self.conv_stride, strict=True):
            field_ += (kernel - 1) * jump
            jump *= stride
        return field_

    @property
    def stem_station_stride(self) -> int:
        """Stations a token row of the array stem's output stands for (the product of its station strides)."""
        return math.prod(self.array_stem_station_strides or [1])

    @property
    def packed_station_stride(self) -> int:
        """One token row the head reads per this many stations along the array: the trunk's
        ``station_stride`` or the stem's station strides (the two never combine)."""
        return max(self.station_stride, self.stem_station_stride)

    @property
    def trunk_channels(self) -> int:
        """Channels of the trunk's first convolution: a station's own and its neighbours'."""
        return self.in_chans * (1 + 2 * self.neighbour_stations)

    @property
    def total_stride(self) -> int:
        """Input samples per output frame."""
        return math.prod(self.conv_stride)


OPEN_CLIP_VOCAB_SIZE = 49408  # SimpleTokenizer: 49,152 BPE tokens + 256 bytes' worth, with SOT and EOT last
OPEN_CLIP_SOT_ID = 49406
OPEN_CLIP_EOT_ID = 49407
TEXT_ARCHS = ("open_clip",)
TEXT_POOL_TYPES = ("argmax", "eos")
_TEXT_SECTION = "text tower"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class TextTowerConfig:
    """open_clip text transformer: ``width``/``layers``/``heads``/``mlp_ratio`` set its size
    (CLIP ViT-B/32's text tower: 512/12/8/4, context 77).

    ``output_dim``: None (default) returns the pooled ``width`` features and lets the seisbind head
    project; an int adds open_clip's ``text_projection`` (width, output_dim), e.g. to keep a CLIP
    checkpoint's projection. ``tokenizer``: ``"open_clip"`` (the BPE vocabulary inside the open_clip
    wheel; needs ``vocab_size >= 49408``) or the path of a local Hugging Face tokenizer folder.
    ``pool_type``/``eos_id``: where the trunk pools (see the module docstring). ``quick_gelu``:
    OpenAI's CLIP weights were trained with QuickGELU (open_clip's ``-quickgelu`` models); set it
    to load them. The number of heads is not in a checkpoint's weights: it must match the
    checkpoint's model.
    """

    arch: str = "open_clip"
    context_length: int = 32
    vocab_size: int = OPEN_CLIP_VOCAB_SIZE
    width: int = 128
    layers: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    output_dim: int | None = None
    tokenizer: str = "open_clip"
    pool_type: str = "argmax"
    eos_id: int | None = None
    quick_gelu: bool = False

    def __post_init__(self) -> None:
        sec = _TEXT_SECTION
        if self.arch not in TEXT_ARCHS:
            raise ValueError(f"{sec} config: arch must be one of {TEXT_ARCHS} (a Hugging Face text model as trunk "
                             f"is not implemented); got {self.arch!r}")
        for name in ("context_length", "vocab_size", "width", "layers", "heads"):
            v = getattr(self, name)
            if not _is_int(v) or v <= 0:
                raise ValueError(f"{sec} config: {name} must be a positive integer; got {v!r}")
        if self.context_length < 2:
            raise ValueError(f"{sec} config: context_length must be at least 2 (start and end tokens); "
                             f"got {self.context_length}")
        v = self.mlp_ratio
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
            raise ValueError(f"{sec} config: mlp_ratio must be a finite positive number; got {v!r}")
        self.mlp_ratio = float(v)
        if self.output_dim is not None and (not _is_int(self.output_dim) or self.output_dim <= 0):
            raise ValueError(f"{sec} config: output_dim must be null or a positive integer; got {self.output_dim!r}")
        if not isinstance(self.tokenizer, str) or not self.tokenizer:
            raise ValueError(f"{sec} config: tokenizer must be 'open_clip' or the path of a local Hugging Face "
                             f"tokenizer folder; got {self.tokenizer!r}")
        if self.pool_type not in TEXT_POOL_TYPES:
            raise ValueError(f"{sec} config: pool_type must be one of {TEXT_POOL_TYPES}; got {self.pool_type!r}")
        if self.eos_id is not None and (not _is_int(self.eos_id) or not 0 <= self.eos_id < self.vocab_size):
            raise ValueError(f"{sec} config: eos_id must be null or a token id in [0, {self.vocab_size}); "
                             f"got {self.eos_id!r}")
        if self.pool_type == "eos" and self.eos_id is None:
            raise ValueError(f"{sec} config: pool_type 'eos' needs eos_id, the tokenizer's end-of-text token id")
        if not isinstance(self.quick_gelu, bool):
            raise ValueError(f"{sec} config: quick_gelu must be true or false; got {self.quick_gelu!r}")
        if self.width % self.heads:
            raise ValueError(f"{sec} config: width {self.width} is not divisible by heads {self.heads}")
        if self.tokenizer == "open_clip" and self.vocab_size < OPEN_CLIP_VOCAB_SIZE:
            raise ValueError(f"{sec} config: the open_clip tokenizer has {OPEN_CLIP_VOCAB_SIZE} tokens; "
                             f"vocab_size {self.vocab_size} is too small")

    @property
    def pooled_width(self) -> int:
        """Width of the features the trunk returns: ``output_dim`` when set, else ``width``."""
        return self.output_dim or self.width

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextTowerConfig:
        """Read a config dict (the JSON schema), refusing unknown keys."""
        return _from_dict(cls, dict(data) if isinstance(data, Mapping) else data, _TEXT_SECTION)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable form that ``from_dict`` reads back."""
        return dataclasses.asdict(self)


# Each modality's tower config class, by modality name: a modality's section in a model config is
# read with its class. A new modality is one entry here (register_tower_config) and one in each of
# the model's module dicts (seisbind.models.towers).
TOWER_CONFIGS: dict[str, type] = {ModalityType.IMAGE: ImageTowerConfig, ModalityType.WAVEFORM: WaveformTowerConfig,
                                   ModalityType.TEXT: TextTowerConfig}
# The config-dict fixes each modality's section gets before it is read (renamed keys of saved models).
_LEGACY_KEYS = {ModalityType.WAVEFORM: _legacy_waveform_keys}


def register_tower_config(modality: str, config_class: type) -> None:
    """Make ``modality`` a section a model config may have, read as ``config_class``."""
    TOWER_CONFIGS[modality] = config_class


def _read_tower(modality: str, value):
    if dataclasses.is_dataclass(value):
        return value
    fix = _LEGACY_KEYS.get(modality, lambda d: d)
    return _from_dict(TOWER_CONFIGS[modality], fix(value), f"{modality} tower")


@dataclass
class SeisBindConfig:
    """A whole joint model: one tower per modality, the shared dimension, the pairs it binds and the
    contrastive loss it trains them with.

    The towers are the sections named by a modality (``image``, ``waveform``, optionally ``text``;
    any modality registered with :func:`register_tower_config`), at the top level of the JSON.
    ``bind`` lists the pairs trained contrastively, each with its own temperature (default: every
    other modality with ``image``, as ImageBind binds everything through images; no other pair is
    trained, so e.g. waveform-text similarity is emergent). ``init_logit_scale`` is the initial
    temperature inverse (CLIP: 1/0.07; SigLIP: 10), stored as its log and clamped at
    ``max_logit_scale``; ``init_logit_bias`` is used only with the SigLIP loss (default -10).
    ``mirror_average``: in eval mode, each image and record embeds as the mean of its own and its
    left-right mirror image's embeddings (:mod:`seisbind.mirror`; 2-D P-SV physics is symmetric
    under the mirror, so a sample and its mirror are equally likely and now embed alike). Twice
    the encoding work; training (train mode) is unchanged: its mirror is the pair augmentation.
    """

    name: str = "custom"
    description: str = ""
    embed_dim: int = 512
    loss: str = "clip"
    init_logit_scale: float | None = None
    max_logit_scale: float = 100.0
    init_logit_bias: float | None = None
    towers: dict[str, Any] = field(default_factory=lambda: {ModalityType.IMAGE: ImageTowerConfig(),
                                                           ModalityType.WAVEFORM: WaveformTowerConfig()})
    bind: list[list[str]] | None = None
    mirror_average: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.mirror_average, bool):
            raise ValueError(f"model config: mirror_average must be true or false; got {self.mirror_average!r}")
        unknown = sorted(set(self.towers) - set(TOWER_CONFIGS))
        if unknown:
            raise ValueError(f"model config: unknown modality section(s) {unknown}; known: {sorted(TOWER_CONFIGS)}")
        self.towers = {m: _read_tower(m, self.towers[m]) for m in TOWER_CONFIGS if m in self.towers}
        if ModalityType.IMAGE not in self.towers or len(self.towers) < 2:
            raise ValueError(f"model config: needs an image tower and at least one other; has {sorted(self.towers)}")
        if self.bind is None:
            self.bind = [[ModalityType.IMAGE, m] for m in self.towers if m != ModalityType.IMAGE]
        self.bind = [list(pair) for pair in self.bind]
        for pair in self.bind:
            if len(pair) != 2 or pair[0] == pair[1] or any(m not in self.towers for m in pair):
                raise ValueError(f"model config: bind pairs must name two of the model's towers {sorted(self.towers)}; "
                                 f"got {pair}")
        if self.loss not in LOSS_TYPES:
            raise ValueError(f"model config: loss must be one of {LOSS_TYPES}; got {self.loss!r}")
        _check_positive("model", embed_dim=self.embed_dim, max_logit_scale=self.max_logit_scale)
        if self.init_logit_scale is None:
            self.init_logit_scale = 1 / 0.07 if self.loss == "clip" else 10.0
        if self.loss == "siglip" and self.init_logit_bias is None:
            self.init_logit_bias = -10.0
        if not 0 < self.init_logit_scale <= self.max_logit_scale:
            raise ValueError(f"model config: init_logit_scale must be in (0, {self.max_logit_scale}]; "
                             f"got {self.init_logit_scale}")

    @property
    def image(self) -> ImageTowerConfig:
        return self.towers[ModalityType.IMAGE]

    @property
    def waveform(self) -> WaveformTowerConfig:
        return self.towers[ModalityType.WAVEFORM]

    @property
    def text(self):
        """The text tower's config, or None for a model without one."""
        return self.towers.get(ModalityType.TEXT)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """The bound pairs as tuples."""
        return [tuple(pair) for pair in self.bind]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeisBindConfig:
        """Read a config dict (the JSON schema: tower sections at the top level), refusing unknown keys."""
        if not isinstance(data, dict):
            raise ValueError(f"model config must be a JSON object (dict); got {type(data).__name__}")
        data = dict(data)
        towers = {m: data.pop(m) for m in list(data) if m in TOWER_CONFIGS and data[m] is not None}
        for m in [m for m in list(data) if m in TOWER_CONFIGS]:
            data.pop(m)  # a section set to null: no such tower
        if "towers" in data:
            raise ValueError("model config: tower sections go at the top level (image, waveform, ...), not under 'towers'")
        return _from_dict(cls, {**data, "towers": towers}, "model")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable form that ``from_dict`` reads back."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "towers"}
        out["bind"] = [list(pair) for pair in self.bind]
        for modality, tower in self.towers.items():
            out[modality] = dataclasses.asdict(tower)
        return out


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``overrides``, merging nested dicts (tower sections) key by key."""
    out = dict(base)
    for key, value in overrides.items():
        if key == ModalityType.WAVEFORM and isinstance(value, dict) and isinstance(out.get(key), dict):
            # An override in the old name replaces the base's rate, whichever name the base uses.
            value, out[key] = _legacy_waveform_keys(value), _legacy_waveform_keys(out[key])
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = value
    return out
