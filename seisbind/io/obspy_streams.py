"""ObsPy streams (or waveform files ObsPy reads) as (stations, 3, T) windows at the model's sample rate.

Files are read by :func:`read_stream` only, in the formats of :data:`WAVEFORM_FORMATS` (miniSEED,
SAC, GSE2, SEISAN, SEG-Y, ...), detected by those formats' own checks: never by ObsPy's format
guessing, whose PICKLE check unpickles a crafted file and so runs code from it.

The path from a ``Stream`` to what the waveform tower takes:

1. **Group** traces by ``network.station.location`` and instrument (the channel code without its
   component letter, e.g. ``HH``), so a broadband and a strong-motion sensor at one site stay apart.
2. **Components**: Z, N, E slots filled by the rule in :mod:`seisbind.io.components` (Z12 and
   ZRT included; a missing component is filled as SeisLM does, or refused).
3. **Checks**: the channels of one instrument must share a sampling rate, else the file is refused
   naming both rates. Gaps and overlaps (``Stream.get_gaps``) are refused by default
   (``gaps="refuse"``); ``"fill"`` interpolates across them (``merge(fill_value="interpolate")``),
   ``"split"`` windows each contiguous stretch on its own so no window spans a gap.
4. **Resample** every channel onto one time grid at the model rate, starting at the stream's
   earliest sample: when downsampling, a zero-phase Butterworth low-pass at 80 % of the new
   Nyquist frequency first (anti-alias), then Lanczos interpolation (a = 20). Channels already at
   the model rate and on the grid are copied sample for sample, without interpolation.
5. **Window**: ``window_seconds`` gives ``round(window_seconds * rate) + 1`` samples (30 s -> 3001,
   SeisLM's length); windows start every ``stride_seconds``, plus one aligned to the end of the
   record when the stride leaves a tail. A record shorter than the window but at least half of it
   is embedded whole as one shorter window; a shorter one is skipped (and noted).
   ``window_seconds=0`` embeds each record whole.

``group="station"`` gives one item per station window, (1, 3, T); ``group="stream"`` one item per
time window over every station of the stream that covers it, (stations, 3, T), as an event
gather. Amplitudes stay in the file's units (counts unless the response was removed): the model
normalises each channel by its standard deviation, so units do not change an embedding.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from seisbind.io.batch import InputError, describe
from seisbind.io.components import ComponentChoice, choose_components
from seisbind.io.station_positions import positions_along_array_m, station_coordinates

GAP_MODES = ("refuse", "fill", "split")
COORDINATE_KEYS = ("latitude", "longitude", "elevation_m")
GROUP_MODES = ("station", "stream")
ANTIALIAS_FRACTION = 0.8  # low-pass corner as a fraction of the new Nyquist frequency
LANCZOS_A = 20
MIN_WINDOW_FRACTION = 0.5  # records shorter than this fraction of a window are skipped
# A record may be upsampled to the model's rate by at most this factor (see check_sampling_rate).
MAX_UPSAMPLING = 2.0
_ON_GRID = 1e-3  # samples: closer than this to the grid counts as on it (no interpolation)
_KNOWN_CODES = set("ZNE12RT")


@dataclasses.dataclass
class StationRecord:
    """One instrument's three components on the common grid, Z, N, E rows (a missing one is zeros)."""

    network: str
    station: str
    location: str
    instrument: str  # channel code without its component letter, e.g. "HH"
    choice: ComponentChoice
    rotated: bool  # rotated to true Z, N, E from known orientations
    start: Any  # obspy.UTCDateTime of sample 0
    offset: int  # index of sample 0 on the stream's common grid
    sampling_rate: float
    source_sampling_rate: float
    data: np.ndarray  # (3, n) float32
    source: str
    coordinates: dict | None = None  # latitude, longitude, elevation_m from the inventory, if it has them

    @property
    def seed_id(self) -> str:
        return f"{self.network}.{self.station}.{self.location}.{self.instrument}"

    @property
    def frame(self) -> str:
        """The frame the N/E slots are in: ZNE, or Z12 / ZRT when they could not be rotated."""
        return "ZNE" if self.rotated else self.choice.frame

    @property
    def npts(self) -> int:
        return int(self.data.shape[1])


@dataclasses.dataclass
class PreparedStream:
    """The records of one stream on one grid (``origin`` + k / ``sampling_rate``), and what was left out."""

    records: list[StationRecord]
    origin: Any  # obspy.UTCDateTime
    sampling_rate: float
    source: str
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class WaveformItem:
    """One thing to embed: waveforms (stations, 3, T) float32, its metadata row, and the stations'
    positions along the array in metres (from the inventory's coordinates; None when a station
    has none: the tower then places the stations on a line in the order given)."""

    id: str
    data: np.ndarray
    meta: dict
    station_x_m: np.ndarray | None = None


# Waveform formats read_stream reads, in the order their checks run when no format is given (ObsPy's
# own order, restricted to these). Each is ObsPy's ``isFormat`` function for it, imported directly:
# ObsPy's auto-detection would also try PICKLE, whose check unpickles the file (code execution).
WAVEFORM_FORMATS: dict[str, str] = {
    "MSEED": "obspy.io.mseed.core:_is_mseed",
    "SAC": "obspy.io.sac.core:_is_sac",
    "GSE2": "obspy.io.gse2.core:_is_gse2",
    "SEISAN": "obspy.io.seisan.core:_is_seisan",
    "SACXY": "obspy.io.sac.core:_is_sac_xy",
    "Q": "obspy.io.sh.core:_is_q",
    "SH_ASC": "obspy.io.sh.core:_is_asc",
    "SEGY": "obspy.io.segy.core:_is_segy",
    "SU": "obspy.io.segy.core:_is_su",
    "SEG2": "obspy.io.seg2.seg2:_is_seg2",
    "AH": "obspy.io.ah.core:_is_ah",
    "KNET": "obspy.io.nied.knet:_is_knet_ascii",
}
_ALLOWED = ", ".join(WAVEFORM_FORMATS)


def check_waveform_format(format: str | None) -> str | None:
    """``format`` in upper case if :func:`read_stream` reads it (``None`` stays ``None``), else :class:`InputError`."""
    if format is None:
        return None
    name = str(format).strip().upper()
    if name not in WAVEFORM_FORMATS:
        why = " (ObsPy's PICKLE format runs code from the file)" if name == "PICKLE" else ""
        raise InputError(f"waveform format {format!r} is not read{why}; allowed: {_ALLOWED}")
    return name


def detect_waveform_format(path: str | os.PathLike) -> str | None:
    """The first format of :data:`WAVEFORM_FORMATS` whose own check accepts the file, else ``None``.

    Only the listed formats' checks run (never ObsPy's detection loop, which includes PICKLE); a check
    that raises counts as "not this format".
    """
    import importlib

    for name, target in WAVEFORM_FORMATS.items():
        module, function = target.split(":")
        try:
            if getattr(importlib.import_module(module), function)(str(path)):
                return name
        except Exception:  # format checks raise anything on files of other formats
            continue
    return None


def read_stream(
    path: str | os.PathLike,
    format: str | None = None,
    headonly: bool = False,
    starttime=None,
    endtime=None,
):
    """Read a waveform file with ObsPy; a file it cannot read raises :class:`InputError` naming it.

    This is the only way seisbind reads waveform files. ``format`` must be one of
    :data:`WAVEFORM_FORMATS` (any case); without it the format is detected by those formats' own
    checks (:func:`detect_waveform_format`) and the file is read as exactly that format: ObsPy's
    auto-detection, which unpickles files that look like pickled streams, never runs. Compressed
    files (gzip, bzip2, zip, tar) are only unpacked when ``format`` names what they hold.
    """
    text = str(path)
    if "://" in text:
        raise InputError(f"{text}: URLs are not read (nothing is downloaded at run time); download the file first")
    try:
        name = check_waveform_format(format)
    except InputError as err:
        raise InputError(f"{text}: {err}") from None
    if not Path(text).is_file():
        raise InputError(f"{text}: no such file")
    import obspy

    if name is None:
        name = detect_waveform_format(text)
        if name is None:
            raise InputError(
                f"{text}: ObsPy cannot read it as a waveform format seisbind accepts ({_ALLOWED}); "
                "give the format if it is one of them (e.g. a compressed file)"
            )
        unpack = False  # read exactly the bytes that were checked
    else:
        unpack = True  # ObsPy's transparent decompression; every member is read as ``name``
    try:
        # glob.escape: ObsPy globs file names; "[" or "*" in a real name must not match other files.
        stream = obspy.read(glob.escape(text), format=name, headonly=headonly, starttime=starttime, endtime=endtime,
                            check_compression=unpack)  # fmt: skip
    except Exception as err:  # ObsPy's format readers raise anything from TypeError to their own classes
        raise InputError(f"{text}: ObsPy cannot read it as {name} ({describe(err)})") from err
    if len(stream) == 0:
        raise InputError(f"{text}: no traces" + (" in the requested time window" if starttime or endtime else ""))
    return stream


def group_traces(stream) -> dict[tuple[str, str, str, str], list]:
    """Traces by (network, station, location, instrument), in a stable order."""
    groups: dict[tuple[str, str, str, str], list] = defaultdict(list)
    for tr in stream:
        s = tr.stats
        groups[(s.network, s.station, s.location, s.channel[:-1])].append(tr)
    return dict(sorted(groups.items()))


def window_samples(window_seconds: float, rate: float) -> int:
    """Samples in a window: ``round(seconds * rate) + 1`` (30 s at 100 Hz -> 3001), 0 for whole records."""
    if not (math.isfinite(window_seconds) and window_seconds >= 0):
        raise ValueError(f"window_seconds must be a finite number >= 0 (0 = whole records), got {window_seconds}")
    return int(round(window_seconds * rate)) + 1 if window_seconds > 0 else 0


def window_bounds(n: int, window: int, stride: int, min_fraction: float = MIN_WINDOW_FRACTION) -> list[tuple[int, int]]:
    """``[start, stop)`` sample ranges of the windows of a record of ``n`` samples (rule in the module doc)."""
    if window <= 0 or n <= window:
        return [(0, n)] if n > 0 and (window <= 0 or n >= min_fraction * window) else []
    if stride < 1:
        raise ValueError(f"stride must be at least 1 sample, got {stride}")
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] + window < n:
        starts.append(n - window)
    return [(a, a + window) for a in starts]


def _check_rates(traces: list, where: str) -> float:
    rates = {tr.stats.channel: float(tr.stats.sampling_rate) for tr in traces}
    values = sorted(set(rates.values()))
    if values[0] <= 0:
        raise InputError(f"{where}: sampling rate {values[0]} Hz is not positive")
    if values[-1] / values[0] - 1 > 1e-6:
        listed = ", ".join(f"{ch} {r:g} Hz" for ch, r in sorted(rates.items()))
        raise InputError(f"{where}: channels sampled at different rates ({listed}); resample them to one rate first")
    return values[0]


def _contiguous(traces: list, gaps: str, source: str) -> list:
    """The traces of one channel as contiguous pieces, after applying the gap mode."""
    from obspy import Stream

    # split() first: a trace can carry its gaps as masked samples (e.g. after ``trace + trace``).
    st = Stream([tr.copy() for tr in traces]).split()
    st.sort(keys=["starttime"])
    where = f"{source}: {traces[0].id}"
    found = st.get_gaps()
    if found and gaps == "refuse":
        t1, delta = found[0][4], found[0][6]
        kind = "gap" if delta > 0 else "overlap"
        raise InputError(
            f"{where}: {len(found)} gap(s)/overlap(s), the first a {abs(delta):.3f} s {kind} at {t1}; "
            "use gaps='fill' to interpolate across them or gaps='split' to window each contiguous part"
        )
    try:
        if gaps == "fill":
            st.merge(method=1, fill_value="interpolate")
        else:
            st.merge(method=1)  # joins touching pieces; gaps become masked samples
            st = st.split()
    except Exception as err:  # ObsPy refuses to merge inconsistent pieces (e.g. differing dtypes)
        raise InputError(f"{where}: cannot merge the traces of one channel ({describe(err)})") from err
    return sorted(st, key=lambda tr: tr.stats.starttime)


def _intersect(intervals: list[list[tuple[Any, Any]]]) -> list[tuple[Any, Any]]:
    """Time intervals covered by every component."""
    common = intervals[0]
    for other in intervals[1:]:
        out = []
        for a0, a1 in common:
            for b0, b1 in other:
                lo, hi = max(a0, b0), min(a1, b1)
                if lo <= hi:
                    out.append((lo, hi))
        common = out
    return sorted(common)


def _onto_grid(tr, rate: float, t0, n: int) -> np.ndarray:
    """``n`` samples of ``tr`` at ``rate`` starting at ``t0``: copied if already on that grid, else
    anti-alias filtered (when downsampling) and Lanczos-interpolated."""
    src = float(tr.stats.sampling_rate)
    x = np.asarray(tr.data, dtype=np.float64)
    offset = (t0 - tr.stats.starttime) * src
    if abs(src - rate) <= 1e-9 * rate and abs(offset - round(offset)) < _ON_GRID:
        i = round(offset)
        return x[i : i + n].astype(np.float32)
    work = tr.copy()
    work.data = x
    if src > rate:
        work.filter("lowpass", freq=ANTIALIAS_FRACTION * rate / 2, corners=4, zerophase=True)
    # The grid may sit a rounding error outside the trace: clamp the start, pad the end by edge values.
    start = max(t0, work.stats.starttime)
    available = math.floor((work.stats.endtime - start) * rate + 1e-9) + 1
    take = min(n, available)
    work.interpolate(rate, method="lanczos", a=LANCZOS_A, starttime=start, npts=take)
    out = np.asarray(work.data, dtype=np.float32)
    return np.pad(out, (0, n - take), mode="edge") if take < n else out


def _orientations(inventory, traces: list, time) -> list[dict] | None:
    if inventory is None:
        return None
    try:
        return [inventory.get_orientation(tr.id, time) for tr in traces]
    except Exception:  # the inventory does not describe these channels: orientation unknown
        return None


def _rotate(choice: ComponentChoice, pieces: dict, data: np.ndarray, inventory, time) -> bool:
    """Rotate Z12 (with an inventory) or ZRT (with stats.back_azimuth) to true ZNE in place."""
    if choice.frame == "Z12" and None not in choice.codes:
        from obspy.signal.rotate import rotate2zne

        orient = _orientations(inventory, [pieces[c] for c in choice.codes], time)
        if orient is None:
            return False
        z, n, e = rotate2zne(*(v for k in range(3) for v in (data[k], orient[k]["azimuth"], orient[k]["dip"])))
        data[:] = np.stack([z, n, e])
        return True
    if choice.frame == "ZRT" and choice.codes[1] and choice.codes[2]:
        from obspy.signal.rotate import rotate_rt_ne

        bazs = {pieces[c].stats.get("back_azimuth") for c in choice.codes[1:]}
        if len(bazs) != 1 or None in bazs:
            return False
        data[1], data[2] = rotate_rt_ne(data[1], data[2], float(bazs.pop()))
        return True
    return False


def prepare_stream(
    stream,
    sampling_rate: float,
    missing: str = "fill",
    gaps: str = "refuse",
    inventory=None,
    source: str | None = None,
    max_upsampling: float = MAX_UPSAMPLING,
) -> PreparedStream:
    """Every instrument of ``stream`` as a :class:`StationRecord` at ``sampling_rate`` on one grid.

    ``inventory`` (an ObsPy ``Inventory``) supplies orientations to rotate Z12 to ZNE, and each
    station's coordinates (kept in the records, and as positions along the array for the tower). Problems
    (mismatched rates, a rate that would be upsampled more than ``max_upsampling``, refused gaps or components, non-finite samples) raise :class:`InputError`
    naming ``source`` and the station; instruments with no seismometer components are left out
    and noted.
    """
    if gaps not in GAP_MODES:
        raise ValueError(f"gaps must be one of {GAP_MODES}, got {gaps!r}")
    if not sampling_rate > 0:
        raise ValueError(f"sampling_rate must be positive, got {sampling_rate}")
    source = source or "<stream>"
    if len(stream) == 0:
        raise InputError(f"{source}: no traces")
    origin = min(tr.stats.starttime for tr in stream)
    prepared = PreparedStream([], origin, float(sampling_rate), source)
    for (net, sta, loc, inst), traces in group_traces(stream).items():
        where = f"{source}: {net}.{sta}.{loc}.{inst}?"
        by_code: dict[str, list] = defaultdict(list)
        for tr in traces:
            by_code[tr.stats.channel[-1:].upper()].append(tr)
        if not _KNOWN_CODES & set(by_code):
            prepared.notes.append(f"{where}: no seismometer components ({''.join(sorted(by_code))}), left out")
            continue
        choice = choose_components(by_code, missing=missing, where=where)
        used = [c for c in choice.codes if c is not None]
        src_rate = _check_rates([tr for c in used for tr in by_code[c]], where)
        check_sampling_rate(src_rate, float(sampling_rate), where, max_upsampling)
        pieces = {c: _contiguous(by_code[c], gaps, source) for c in used}
        spans = _intersect([[(p.stats.starttime, p.stats.endtime) for p in pieces[c]] for c in used])
        if not spans:
            prepared.notes.append(f"{where}: components never overlap in time, left out")
        for t_a, t_b in spans:
            k0 = math.ceil((t_a - origin) * sampling_rate - _ON_GRID)
            k1 = math.floor((t_b - origin) * sampling_rate + _ON_GRID)
            n = k1 - k0 + 1
            if n < 1:
                continue
            t0 = origin + k0 / sampling_rate
            data = np.zeros((3, n), dtype=np.float32)
            covering = {}
            for slot, code in enumerate(choice.codes):
                if code is None:
                    continue
                piece = next(p for p in pieces[code] if p.stats.starttime <= t_a and p.stats.endtime >= t_b)
                covering[code] = piece
                data[slot] = _onto_grid(piece, sampling_rate, t0, n)
            if not np.isfinite(data).all():
                raise InputError(f"{where}: NaN or infinite samples from {t0}")
            rotated = _rotate(choice, covering, data, inventory, t_a)
            coords = station_coordinates(inventory, [f"{net}.{sta}.{loc}.{inst}{c}" for c in used], t_a)
            prepared.records.append(
                StationRecord(net, sta, loc, inst, choice, rotated, t0, k0, float(sampling_rate), src_rate, data, source,
                              coords)
            )
    if not prepared.records:
        raise InputError(f"{source}: nothing usable; " + "; ".join(prepared.notes))
    return prepared


def _meta(records: list[StationRecord], start, n: int, rate: float) -> dict:
    def joined(attr: str) -> str:
        return ",".join(str(getattr(r, attr)) for r in records)

    return {
        "file": records[0].source,
        "network": joined("network"),
        "station": joined("station"),
        "location": joined("location"),
        "channel": ",".join(f"{r.instrument}?" for r in records),
        "n_stations": len(records),
        "components": ",".join(r.choice.label for r in records),
        "frame": joined("frame"),
        "filled": ",".join(r.choice.filled for r in records),
        "starttime": start.ns,
        "endtime": (start + (n - 1) / rate).ns,
        "sampling_rate": rate,
        "source_sampling_rate": max(r.source_sampling_rate for r in records),
        "n_samples": n,
        **{key: [r.coordinates[key] if r.coordinates else None for r in records] for key in COORDINATE_KEYS},
    }


def _positions(records: list[StationRecord]) -> np.ndarray | None:
    """The records' positions along their array (None unless every one has coordinates)."""
    if len(records) < 2 or any(r.coordinates is None for r in records):
        return None
    return positions_along_array_m([r.coordinates["latitude"] for r in records],
                                   [r.coordinates["longitude"] for r in records])  # fmt: skip


def iter_windows(
    prepared: PreparedStream,
    window_seconds: float = 30.0,
    stride_seconds: float | None = None,
    group: str = "station",
) -> Iterator[WaveformItem]:
    """The windows to embed from a prepared stream (rules in the module doc)."""
    if group not in GROUP_MODES:
        raise ValueError(f"group must be one of {GROUP_MODES}, got {group!r}")
    rate = prepared.sampling_rate
    window = window_samples(window_seconds, rate)
    stride_seconds = window_seconds if stride_seconds is None else stride_seconds
    if window and not stride_seconds > 0:
        raise ValueError(f"stride_seconds must be positive, got {stride_seconds}")
    stride = max(1, int(round(stride_seconds * rate)))
    if group == "station":
        for rec in prepared.records:
            bounds = window_bounds(rec.npts, window, stride)
            if not bounds:
                prepared.notes.append(f"{prepared.source}: {rec.seed_id}?: {rec.npts / rate:.2f} s record, too short")
            for a, b in bounds:
                start = rec.start + a / rate
                yield WaveformItem(
                    f"{prepared.source}|{rec.seed_id}|{start.isoformat()}",
                    rec.data[None, :, a:b],
                    _meta([rec], start, b - a, rate),
                )
        return
    lo = min(r.offset for r in prepared.records)
    hi = max(r.offset + r.npts for r in prepared.records)
    for a, b in window_bounds(hi - lo, window, stride):
        present = [r for r in prepared.records if r.offset <= lo + a and r.offset + r.npts >= lo + b]
        if not present:
            continue
        start = prepared.origin + (lo + a) / rate
        data = np.stack([r.data[:, lo + a - r.offset : lo + b - r.offset] for r in present])
        yield WaveformItem(f"{prepared.source}|*|{start.isoformat()}", data, _meta(present, start, b - a, rate),
                           _positions(present))


def window_fields():
    """The Arrow fields of a waveform window's metadata row."""
    import pyarrow as pa

    s, ts = pa.string(), pa.timestamp("ns", tz="UTC")
    return [
        pa.field("file", s), pa.field("network", s), pa.field("station", s), pa.field("location", s),
        pa.field("channel", s), pa.field("n_stations", pa.int64()), pa.field("components", s),
        pa.field("frame", s), pa.field("filled", s), pa.field("starttime", ts), pa.field("endtime", ts),
        pa.field("sampling_rate", pa.float64()), pa.field("source_sampling_rate", pa.float64()),
        pa.field("n_samples", pa.int64()),
        # one entry per station of the row (null where the inventory has none)
        *(pa.field(key, pa.list_(pa.float64())) for key in COORDINATE_KEYS),
    ]  # fmt: skip


def check_sampling_rate(source_rate: float, rate: float, where: str, max_upsampling: float = MAX_UPSAMPLING) -> None:
    """The one sampling-rate policy of every reading path (files, streams, .npy, manifests).

    A rate must be finite and positive; a record may be upsampled to the model's ``rate`` by at
    most ``max_upsampling`` (2 by default: it must carry at least half the band the model reads;
    a 1 Hz LH channel made 100 Hz is 99 % interpolation). Downsampling is always allowed (ObsPy's
    anti-alias filter runs first)."""
    if not (math.isfinite(source_rate) and source_rate > 0):
        raise InputError(f"{where}: sampling rate {source_rate} Hz cannot be resampled (it must be positive)")
    if rate / source_rate > max_upsampling * (1 + 1e-9):
        raise InputError(
            f"{where}: a {source_rate:g} Hz record would be upsampled {rate / source_rate:.3g}x to the model's "
            f"{rate:g} Hz, more than the {max_upsampling:g}x allowed (it carries nothing above "
            f"{source_rate / 2:g} Hz; the model reads up to {rate / 2:g} Hz); pass --max-upsampling "
            f"{math.ceil(rate / source_rate)} to force it"
        )


def resample_array(data: np.ndarray, source_rate: float, rate: float, max_upsampling: float = MAX_UPSAMPLING,
                   where: str = "array") -> np.ndarray:
    """Resample (..., n) samples (any leading axes: channels, stations) from ``source_rate`` to
    ``rate`` with the same anti-alias filter and interpolation as streams; the first sample stays
    where it is. Rates are checked by :func:`check_sampling_rate`."""
    from obspy import Trace, UTCDateTime

    data = np.asarray(data)
    check_sampling_rate(float(source_rate), float(rate), where, max_upsampling)
    if abs(source_rate - rate) <= 1e-9 * rate:
        return data.astype(np.float32)
    n_out = math.floor((data.shape[-1] - 1) * rate / source_rate + 1e-9) + 1
    t0 = UTCDateTime(0)
    rows = data.reshape(-1, data.shape[-1])
    out = np.stack(
        [_onto_grid(Trace(np.asarray(x, np.float64), {"sampling_rate": source_rate, "starttime": t0}), rate, t0, n_out)
         for x in rows]
    )  # fmt: skip
    return out.reshape(*data.shape[:-1], n_out)
