"""Input checks and normalisation for each modality, as the pretrained towers expect them.

Images follow SFM: (batch, channels, height, width), each image normalised as
``(x - mean) / (std + 1e-6)``. Waveforms follow SeisLM: (batch, stations, channels, time) at the
tower's sample rate; each channel is demeaned and divided by its standard deviation, and a dead
(constant) channel is filled by copying a live channel of the same station.

Every bad input raises a ``ValueError`` that says what was expected and what came.
The preprocessor modules return ImageBind's ``{"trunk": kwargs, "head": kwargs}`` split.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seisbind.models.array_head import line_positions
from seisbind.models.config import ImageTowerConfig, WaveformTowerConfig

IMAGE_EPS = 1e-6  # SFM's per-image normalisation constant
# A channel whose std is below this fraction of its peak amplitude is constant up to float32
# rounding (a flat or clipped trace): treat it as dead rather than amplify rounding noise.
DEAD_CHANNEL_RTOL = 1e-6
# RMS range in which float32 squares and their sums neither underflow (ground motion in m/s is
# ~1e-9, squares ~1e-18) nor overflow; outside it the exact, peak-scaled path runs.
SAFE_RMS = (1e-15, 1e15)


def _shape(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def _as_float(x: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor; got {type(x).__name__}")
    if x.is_complex():
        raise ValueError(f"{what} must be real-valued; got dtype {x.dtype}")
    return x if x.is_floating_point() else x.float()


def _check_finite(x: torch.Tensor, what: str) -> None:
    bad = ~torch.isfinite(x)
    if bad.any():
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(bad.sum()) - n_nan
        raise ValueError(f"{what} must be finite; got {n_nan} NaN and {n_inf} infinite value(s)")


def validate_images(images: torch.Tensor, config: ImageTowerConfig) -> torch.Tensor:
    """Check an image batch against the tower config; return it as a floating tensor."""
    images = _as_float(images, "images")
    if images.ndim != 4:
        raise ValueError(
            f"images must have 4 dimensions (batch, channels, height, width); got shape {_shape(images)}"
            + (" (add a channel axis: images[:, None])" if images.ndim == 3 else "")
        )
    if images.shape[0] == 0:
        raise ValueError("images: the batch is empty")
    if images.shape[1] != config.in_chans:
        raise ValueError(f"images must have {config.in_chans} channel(s); got {images.shape[1]} "
                         f"(shape {_shape(images)})")
    height, width = images.shape[-2:]
    if config.dynamic_img_size:
        p = config.patch_size
        if height < p or width < p:
            raise ValueError(f"images must be at least {p}x{p} (one patch); got {height}x{width}")
        if height % p or width % p:  # timm asserts this deep inside; say it here, with what to do
            raise ValueError(f"images must be a whole number of {p}x{p} patches; got {height}x{width}: crop or "
                             f"pad them to {height // p * p or p}x{width // p * p or p}")
    elif (height, width) != config.img_hw:
        h, w = config.img_hw
        raise ValueError(
            f"images must be {h}x{w} (height x width); got {height}x{width}. Resize them, or build the "
            f"model with image.dynamic_img_size=True to interpolate the position embeddings"
        )
    _check_finite(images, "images")
    return images


def _divide_by_peak(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    peak = x.abs().amax(dim=dims, keepdim=True)
    return x / torch.where(peak > 0, peak, torch.ones_like(peak))


def normalize_images(images: torch.Tensor, config: ImageTowerConfig | None = None) -> torch.Tensor:
    """Scale pixels for the trunk as ``config.normalize`` says (default: SFM's per-image one).

    "per_image": ``(x - mean) / (std + 1e-6)`` over each image's pixels. Computed on the image
    divided by its peak ``|x|`` (in its own dtype), then centred and divided by the peak of the
    centred image: the result does not depend on those scales, and values near the float32 limit
    (or float64 beyond it) neither overflow the variance nor lose the image to rounding.
    "fixed": ``(x - image_mean) / image_std``.
    """
    if config is not None and config.normalize == "fixed":
        return (images.double() - config.image_mean).div(config.image_std).float()
    dims = tuple(range(1, images.ndim))
    x = _divide_by_peak(images, dims).float()
    x = _divide_by_peak(x - x.mean(dim=dims, keepdim=True), dims)
    return x / (x.std(dim=dims, keepdim=True, unbiased=False) + IMAGE_EPS)


def validate_waveforms(
    waveforms: torch.Tensor, station_mask: torch.Tensor | None, config: WaveformTowerConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a waveform batch and its station mask; return (floating waveforms, boolean mask).

    Values of stations the mask marks absent are not inspected: they are padding.
    """
    waveforms = _as_float(waveforms, "waveforms")
    if waveforms.ndim != 4:
        hint = " (for one station per item use waveforms[:, None])" if waveforms.ndim == 3 else ""
        raise ValueError(f"waveforms must have 4 dimensions (batch, stations, channels, time); "
                         f"got shape {_shape(waveforms)}{hint}")
    batch, stations, channels, samples = waveforms.shape
    if batch == 0 or stations == 0:
        raise ValueError(f"waveforms: the batch has no items or no stations (shape {_shape(waveforms)})")
    if channels != config.in_chans:
        raise ValueError(f"waveforms must have {config.in_chans} channel(s) per station; got {channels} "
                         f"(shape {_shape(waveforms)})")
    need = config.receptive_field
    if samples < need:
        raise ValueError(
            f"waveforms must have at least {need} samples (the feature encoder's receptive field, "
            f"{need / config.sampling_rate:.3g} s at {config.sampling_rate:g} Hz); got {samples}"
        )
    if station_mask is None:
        mask = torch.ones(batch, stations, dtype=torch.bool, device=waveforms.device)
    else:
        if not isinstance(station_mask, torch.Tensor):
            raise ValueError(f"station_mask must be a torch.Tensor; got {type(station_mask).__name__}")
        if _shape(station_mask) != (batch, stations):
            raise ValueError(f"station_mask must have shape (batch, stations) = {(batch, stations)}; "
                             f"got {_shape(station_mask)}")
        if station_mask.dtype != torch.bool:
            if station_mask.is_floating_point() or station_mask.is_complex():
                raise ValueError(f"station_mask must be boolean (or 0/1 integers); got dtype {station_mask.dtype}")
            if ((station_mask != 0) & (station_mask != 1)).any():
                raise ValueError("station_mask integers must be 0 or 1")
        mask = station_mask.to(device=waveforms.device, dtype=torch.bool)
        empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"every item needs at least one present station; items {empty} have none")
    # One sum is finite when every value is (a NaN or inf propagates); only a batch whose sum is
    # not (or whose huge values overflow it) pays for the element-wise check, which is ~20x slower.
    if not bool(torch.isfinite(waveforms.sum())):
        _check_finite(waveforms[mask], "waveforms (present stations)")
    return waveforms, mask


def _normalise_channels(waveforms: torch.Tensor, station_mask: torch.Tensor | None):
    """Per-channel normalisation and what it removes; see :func:`normalize_waveforms`.

    Returns (normalised waveforms, each channel's log10 RMS, which channels are live). Written as
    in-place passes over one float32 copy (mean, centre, 2-norm, scale): reductions such as
    ``std`` and ``amax`` run several times slower than these on one CPU thread, and on OpenFWI's
    70 x 5 x 1000 records the first version of this function cost half as much as the trunk.
    Squares of values far from 1 over- or underflow float32; such a batch takes the exact
    path, :func:`_normalise_channels_scaled`.
    """
    x = waveforms.to(torch.float32, copy=True)
    if station_mask is not None and not bool(station_mask.all()):
        x.masked_fill_(~station_mask[..., None, None], 0.0)
    mean = x.mean(dim=-1, keepdim=True)
    x.sub_(mean)
    std = torch.linalg.vector_norm(x, dim=-1).div_(math.sqrt(x.shape[-1]))
    nonzero = std[std > 0]
    # A zero 2-norm of a trace whose 1-norm is not zero is underflow (values below ~1e-19), not a
    # flat trace.
    underflow = bool(((std == 0) & (torch.linalg.vector_norm(x, 1, dim=-1) > 0)).any())
    if underflow or not bool(torch.isfinite(std).all() & torch.isfinite(mean).all()) or (
            nonzero.numel() and (float(nonzero.min()) < SAFE_RMS[0] or float(nonzero.max()) > SAFE_RMS[1])):
        return _normalise_channels_scaled(waveforms, station_mask)
    # Dead: the spread is rounding of the level (float32 keeps ~7 digits of mean + std).
    live = std > DEAD_CHANNEL_RTOL * (mean[..., 0].abs() + std)
    x.mul_(torch.where(live, std, torch.ones_like(std)).reciprocal_()[..., None])
    x = _fill_dead_channels(x, live)
    tiny = torch.finfo(torch.float32).tiny
    return x, torch.log10(std.clamp(min=tiny)), live


def _fill_dead_channels(x: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """A dead channel takes its station's first live channel; a station with none becomes zeros.
    Only the stations concerned are touched (in place), as they are few."""
    items, stations = (~live).any(dim=-1).nonzero(as_tuple=True)
    if items.numel():
        sub, alive = x[items, stations], live[items, stations]  # (k, channels, time), (k, channels)
        donor = sub[torch.arange(len(sub), device=x.device), alive.float().argmax(dim=-1)]
        sub = torch.where(alive[..., None], sub, donor[:, None])
        x[items, stations] = torch.where(alive.any(dim=-1)[:, None, None], sub, torch.zeros((), device=x.device))
    return x


def _normalise_channels_scaled(waveforms: torch.Tensor, station_mask: torch.Tensor | None):
    """:func:`_normalise_channels` for any finite magnitude: each trace is first divided by its
    peak, so no square can overflow or underflow, and the RMS is put back together in log space."""
    x = waveforms if waveforms.is_floating_point() else waveforms.float()
    if station_mask is not None:
        x = torch.where(station_mask[..., None, None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    # Divided by its peak in the input's own dtype, so float64 values beyond float32's range survive.
    peak = x.abs().amax(dim=-1, keepdim=True)
    x = (x / torch.where(peak > 0, peak, torch.ones_like(peak))).float()
    peak = peak.double()
    x = x - x.mean(dim=-1, keepdim=True)
    std = x.std(dim=-1, unbiased=False)  # of the unit-peak trace
    live = std > DEAD_CHANNEL_RTOL
    x = x / torch.where(live, std, torch.ones_like(std))[..., None]
    x = _fill_dead_channels(x, live)
    tiny = torch.finfo(torch.float32).tiny
    log_rms = torch.log10(std.clamp(min=tiny)) + torch.log10(peak[..., 0].clamp(min=tiny)).float()
    return x, log_rms, live


# eps of the record-wide log compression, as a fraction of the record's peak.
COMPRESSION_EPS = 1e-2
PEAK_FLOOR = 1e-30  # an all-zero record stays zero instead of dividing by zero


@torch.no_grad()
def compress_records(records: torch.Tensor, eps: float = COMPRESSION_EPS, channels_first: bool = False) -> torch.Tensor:
    """(batch, stations, channels, time) records in any unit -> the same, or (batch, channels,
    stations, time) with ``channels_first`` (the gather CNN's image layout), scaled by ONE number
    per record, its peak ``max |x|``, then compressed: ``sign(x) log1p(|x| / eps) / log1p(1 / eps)``.

    Scaling the whole record changes nothing; scaling one station relative to the others does. A
    station 100x weaker than the strongest still spans ~15 % of [-1, 1] instead of 1 %. Written as
    a few in-place passes over one copy (the caller's tensor is never modified): on 70 x 5 x 1000
    records the plain expression cost as much as the gather CNN's forward pass. Absent stations
    must be zeros (the caller masks them)."""
    x = records.transpose(1, 2) if channels_first else records
    x = x.to(torch.float32).clone(memory_format=torch.contiguous_format)
    lo, hi = torch.aminmax(x.flatten(1), dim=1)
    peak = torch.maximum(-lo, hi).clamp_min(PEAK_FLOOR)
    x.mul_((1.0 / (peak * eps)).view(-1, 1, 1, 1))  # peak -> 1 / eps
    y = x.abs().log1p_()
    return y.copysign_(x).mul_(1.0 / math.log1p(1.0 / eps))


def normalize_waveforms(waveforms: torch.Tensor, station_mask: torch.Tensor | None = None) -> torch.Tensor:
    """SeisLM's per-channel normalisation of (batch, stations, channels, time) waveforms.

    Each channel is demeaned and divided by its standard deviation. A dead channel (constant up
    to rounding) takes the normalised trace of the first live channel of its station; a station
    with no live channel becomes zeros. Absent stations (``station_mask`` False) become zeros.
    """
    return _normalise_channels(waveforms, station_mask)[0]


def _relative(log_rms: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    count = live.sum(dim=(1, 2), keepdim=True).clamp(min=1)
    centre = torch.where(live, log_rms, torch.zeros_like(log_rms)).sum(dim=(1, 2), keepdim=True) / count
    return torch.where(live, (log_rms - centre).clamp(-8.0, 8.0), torch.zeros_like(log_rms))


def relative_log_amplitude(waveforms: torch.Tensor, station_mask: torch.Tensor) -> torch.Tensor:
    """Each channel's log10 RMS minus the mean over the record's live channels: (batch, stations, channels).

    This is what per-channel normalisation removes and the array head gives back: how loud each
    station and component is relative to the rest of the array. One gain for the whole record
    (a stronger event, another instrument gain) leaves it unchanged. Dead channels and absent
    stations are 0; values are clipped to +-8 decades.
    """
    _, log_rms, live = _normalise_channels(waveforms, station_mask)
    return _relative(log_rms, live & station_mask[..., None])


def array_order(station_mask: torch.Tensor, station_x_m: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(order, rank), each (batch, stations): the station index at each rank along the array, and
    each station's rank. Ranked by position (without positions, the given order); absent
    stations rank last."""
    batch, stations = station_mask.shape
    if station_x_m is None:
        key = torch.arange(stations, device=station_mask.device, dtype=torch.float32).expand(batch, stations)
    else:
        key = station_x_m.float()
    key = key.masked_fill(~station_mask, float("inf"))
    order = key.argsort(dim=1, stable=True)
    return order, order.argsort(dim=1)


def strided_stations(station_mask: torch.Tensor, station_x_m: torch.Tensor | None, stride: int) -> torch.Tensor:
    """(batch, stations) bool: the present stations of rank 0, s, 2 s, ... along the array, the
    ones the trunk encodes past its first convolution with ``station_stride: s``.

    Why: on OpenFWI's 70 receivers 10 m apart, neighbouring traces are nearly alike, and the
    trunk's later layers and the array head's attention (quadratic in stations) cost in
    proportion to the stations encoded. As a gather CNN strides over stations after its first
    kernel has read them all, each encoded station reads its ``neighbour_stations`` >= s - 1
    neighbours on each side at the first convolution, so every trace reaches the embedding.
    Ranked among present stations by position, so permuting stations with their positions
    changes nothing and an absent station shifts which are encoded, as it should."""
    _, rank = array_order(station_mask, station_x_m)
    return station_mask & (rank % stride == 0)


def compact_stations(selected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, stations) bool -> (index, valid), each (batch, k) with k the most selected in an
    item: the selected stations' indices in their given order, packed to the front, and which
    entries are real (the rest index station 0 and are padding)."""
    counts = selected.sum(dim=1)
    order = (~selected).to(torch.uint8).argsort(dim=1, stable=True)  # selected first, in order
    k = max(int(counts.max()), 1)
    valid = torch.arange(k, device=selected.device)[None] < counts[:, None]
    return order[:, :k].masked_fill(~valid, 0), valid


def neighbour_index(station_mask: torch.Tensor, station_x_m: torch.Tensor | None, neighbours: int) -> torch.Tensor:
    """(batch, stations, 2 k) station indices: each station's k nearest present stations on
    either side along the array, nearer first, the lower side first. With
    ``neighbour_stations: k`` the trunk's first convolution reads a station's channels followed
    by those of these stations (``waveform_tower.MultiChannelFeatureEncoder``).

    Why: an arrival's moveout between neighbouring stations (OpenFWI: 10 m, a few samples) is
    the local slowness, the observable that ties a record to velocity. The trunk downsamples each
    trace 30-64x before stations meet in the head, so a moveout smaller than one frame is left to
    what the frame features happen to keep. Read side by side at the full sample rate, the first
    convolution sees it directly, as a gather CNN's first (stations x time) kernel does.

    Neighbours are taken among present stations in order of position (without positions, the
    given order), so permuting stations with their positions changes nothing and an absent
    station is nobody's neighbour. At the ends of the array the nearest present station on the
    short side repeats (replicate padding)."""
    order, rank = array_order(station_mask, station_x_m)
    last = station_mask.sum(dim=1, keepdim=True) - 1
    columns = []
    for distance in range(1, neighbours + 1):
        for side in (-1, 1):
            columns.append(order.gather(1, torch.minimum((rank + side * distance).clamp(min=0), last)))
    return torch.stack(columns, dim=-1)


def validate_station_positions(station_x_m, mask: torch.Tensor) -> torch.Tensor | None:
    """Check positions (batch, stations) in metres along the array against the station mask."""
    if station_x_m is None:
        return None
    x = torch.as_tensor(station_x_m)
    if x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"station_x_m must be real numbers (metres); got dtype {x.dtype}")
    if _shape(x) != _shape(mask):
        raise ValueError(f"station_x_m must have shape (batch, stations) = {_shape(mask)}; got {_shape(x)}")
    x = x.to(device=mask.device, dtype=torch.float64)
    present = x[mask]
    if not bool(torch.isfinite(present).all()):
        raise ValueError("station_x_m must be finite for every present station")
    if bool((present.abs() > 1e8).any()):
        raise ValueError("station_x_m must be positions along the array in metres (|x| <= 1e8)")
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device)).float()


class ImagePreprocessor(nn.Module):
    """Validates and normalises images for the image trunk (SFM convention)."""

    def __init__(self, config: ImageTowerConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, images: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        images = validate_images(images, self.config)
        return {"trunk": {"images": normalize_images(images, self.config)}, "head": {}}


class WaveformPreprocessor(nn.Module):
    """Validates and normalises multi-station waveforms for the waveform trunk (SeisLM convention)."""

    def __init__(self, config: WaveformTowerConfig) -> None:
        super().__init__()
        self.config = config

    def forward(
        self, waveforms: torch.Tensor, station_mask: torch.Tensor | None = None, station_x_m=None
    ) -> dict[str, dict[str, torch.Tensor]]:
        waveforms, mask = validate_waveforms(waveforms, station_mask, self.config)
        positions = validate_station_positions(station_x_m, mask)
        x, log_rms, live = _normalise_channels(waveforms, mask)
        record = None
        if self.config.input_norm == "record_log" or self.config.array_stem:
            record = compress_records(torch.where(mask[..., None, None], waveforms, torch.zeros((), dtype=waveforms.dtype)))
        if self.config.input_norm == "record_log":
            x = record
        trunk = {"waveforms": x, "station_mask": mask}
        if self.config.array_stem:
            trunk["array_record"], trunk["station_x_m"] = record, positions
        neighbours = None
        if self.config.neighbour_stations:
            neighbours = trunk["neighbours"] = neighbour_index(mask, positions, self.config.neighbour_stations)
        head: dict[str, torch.Tensor] = {"station_mask": mask}
        if self.config.head == "array":
            head["station_x_m"] = positions
            head["station_log_amplitude"] = _relative(log_rms, live & mask[..., None])
        stride = self.config.packed_station_stride
        if stride > 1:
            # The trunk's tokens come out for the encoded stations only, packed (compact_stations),
            # so the head's inputs are packed the same way; with the trunk's station_stride each
            # encoded station also carries its neighbours' amplitudes, as the stations left out are
            # heard through it (the stem's strided rows have read their neighbours' amplitudes).
            index, valid = compact_stations(strided_stations(mask, positions, stride))
            trunk["encoded_index"], trunk["encoded_valid"] = index, valid

            def packed(values: torch.Tensor) -> torch.Tensor:  # (batch, stations, ...) -> (batch, k, ...)
                tail = (1,) * (values.ndim - 2)
                picked = values.gather(1, index.reshape(*index.shape, *tail).expand(-1, -1, *values.shape[2:]))
                return picked.masked_fill(~valid.reshape(*valid.shape, *tail), 0.0)

            amplitude = head["station_log_amplitude"]
            around = [] if neighbours is None else [
                amplitude.gather(1, neighbours[..., j, None].expand_as(amplitude)) for j in range(neighbours.shape[-1])]
            # Without coordinates, the line the record is taken as is laid out before packing.
            where = positions if positions is not None else line_positions(mask, self.config.station_spacing_m)
            head = {"station_mask": valid, "station_x_m": packed(where),
                    "station_log_amplitude": packed(torch.cat([amplitude, *around], dim=-1))}
        return {"trunk": trunk, "head": head}
