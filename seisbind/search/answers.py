"""What a search hit is, and how to show it: table columns and panel tiles from the hit's own source.

An index's metadata rows come from one of three writers, told apart by the columns they hold:

* ``dataset``: ``seisbind export`` of a generated or imported split (``geology_id``, ``family``,
  ``caption``, ``data``, ``split``, ``source``);
* ``waveform``: ``seisbind embed-waveforms`` windows of waveform files (``file``, ``network``,
  ``station``, ``location``, ``channel``, ``starttime``, ``endtime``: ``obspy_streams.window_fields``);
* ``segy``: ``seisbind embed-images`` patches of SEG-Y files (``file``, ``slice``, ``line``,
  ``patch_row``, ``patch_col``, ``height``, ``width`` and survey coordinates: ``segy.coordinate_fields``).

The table shows, for each hit, the columns of its kind that hold a value (:func:`hit_columns`),
never a blank column of another kind. A panel tile draws the hit from its source: the dataset row,
the SEG-Y patch read back from the file (:func:`segy_patch`), or the traces of the window read back
from the waveform file (:func:`waveform_traces`). A source that can no longer be read makes a text
tile of the hit's metadata, not a failed query.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from seisbind.io.batch import InputError

KIND_COLUMNS = {
    "dataset": ("id", "family", "caption"),
    "waveform": ("file", "stations", "start", "end"),
    "segy": ("file", "slice", "line", "inline", "crossline", "cdp", "samples", "z", "row, col"),
    "other": ("id",),
}
MAX_STATIONS_SHOWN = 3  # a gather of 40 stations is "A, B, C +37 more" in a cell


def hit_kind(hit: dict) -> str:
    """``dataset``, ``segy``, ``waveform`` or ``other``, from the columns the hit's row holds."""
    if hit.get("geology_id") is not None:
        return "dataset"
    if hit.get("patch_row") is not None and hit.get("file") is not None:
        return "segy"
    if hit.get("starttime") is not None and hit.get("station") is not None:
        return "waveform"
    return "other"


def to_utc(value):
    """An ``obspy.UTCDateTime`` from what a Parquet timestamp column gives back (a pandas
    ``Timestamp``, kept to the nanosecond, or a ``datetime``), from integer nanoseconds or a string."""
    from obspy import UTCDateTime

    if value is None or isinstance(value, UTCDateTime):
        return value
    ns = getattr(value, "value", None)  # pandas.Timestamp: integer nanoseconds since 1970 UTC
    if isinstance(ns, int):
        return UTCDateTime(ns=ns)
    if isinstance(value, (int, np.integer)):
        return UTCDateTime(ns=int(value))
    return UTCDateTime(value)


def iso(value) -> str:
    """ISO 8601 in UTC, with the fraction of a second only when there is one: ``2026-01-01T00:00:10Z``."""
    return to_utc(value).isoformat() + "Z"


def station_codes(hit: dict) -> list[str]:
    """``NET.STA.LOC.CHA`` of each station of a waveform window (the columns are comma-joined, one
    entry per station; the channel is the instrument with ``?`` for its component, e.g. ``HH?``)."""
    parts = [str(hit.get(name) or "").split(",") for name in ("network", "station", "location", "channel")]
    n = max(len(p) for p in parts)
    parts = [p + [""] * (n - len(p)) for p in parts]
    return [".".join(codes) for codes in zip(*parts)]


def _stations(hit: dict) -> str:
    codes = station_codes(hit)
    more = len(codes) - MAX_STATIONS_SHOWN
    return ", ".join(codes[:MAX_STATIONS_SHOWN]) + (f" +{more} more" if more > 0 else "")


def _range(hit: dict, name: str, fmt: str = "d") -> str | None:
    """``first-last`` (or one value) of ``name_first``/``name_last``; None when absent, or 0 in a
    2-D line (headers that a 2-D file leaves unset)."""
    a, b = hit.get(f"{name}_first"), hit.get(f"{name}_last")
    if a is None and b is None:
        return None
    if hit.get("survey") == "2d" and not a and not b:
        return None
    a, b = (b if a is None else a), (a if b is None else b)
    return format(a, fmt) if a == b else f"{a:{fmt}}-{b:{fmt}}"


def _basename(hit: dict) -> str | None:
    return os.path.basename(str(hit["file"]).rstrip("/\\")) if hit.get("file") else None


_CELLS: dict[str, Callable[[dict], Any]] = {
    "id": lambda h: h.get("id"),
    "family": lambda h: h.get("family"),
    "caption": lambda h: h.get("caption"),
    "file": _basename,
    "stations": lambda h: _stations(h) if h.get("station") else None,
    "start": lambda h: iso(h["starttime"]) if h.get("starttime") is not None else None,
    "end": lambda h: iso(h["endtime"]) if h.get("endtime") is not None else None,
    "slice": lambda h: h.get("slice"),
    "line": lambda h: None if h.get("line") is None or h.get("line") == -1 else h["line"],  # -1: a 2-D line
    "inline": lambda h: _range(h, "inline"),
    "crossline": lambda h: _range(h, "crossline"),
    "cdp": lambda h: _range(h, "cdp"),
    "samples": lambda h: _range(h, "sample"),
    "z": lambda h: _range(h, "z", "g"),
    "row, col": lambda h: f"{h['patch_row']}, {h['patch_col']}" if h.get("patch_row") is not None else None,
}


def cell(hit: dict, column: str) -> str:
    """The text of one table cell (empty when the hit has no value there)."""
    value = _CELLS[column](hit)
    return "" if value is None else str(value)


def hit_columns(hit: dict) -> list[str]:
    """The columns that describe ``hit``: those of its kind (:data:`KIND_COLUMNS`) that hold a value."""
    return [c for c in KIND_COLUMNS[hit_kind(hit)] if cell(hit, c) != ""]


def table_columns(hits: list[dict]) -> list[str]:
    """The columns of a table of ``hits``: every column some hit has, in first-seen order."""
    out: list[str] = []
    for hit in hits:
        out.extend(c for c in hit_columns(hit) if c not in out)
    return out


def format_table(scores, hits: list[dict]) -> str:
    """A Markdown table: rank, score and the columns the hits hold."""
    columns = table_columns(hits)
    head = ["rank", "score", *columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rank, (score, hit) in enumerate(zip(scores, hits), start=1):
        cells = [str(rank), f"{float(score):.3f}", *(cell(hit, c).replace("|", "\\|") for c in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def hit_title(hit: dict, score: float) -> str:
    """A tile title with the table's identification: station + time, inline/xline/CDP, or geology."""
    kind, c = hit_kind(hit), (lambda name: cell(hit, name))
    if kind == "dataset":
        lines = [f"geology {hit['geology_id']}", c("family")]
    elif kind == "waveform":
        lines = [c("stations"), c("start")]
    elif kind == "segy":
        where = [f"{name} {c(name)}" for name in ("inline", "crossline", "cdp") if c(name)]
        # an inline or crossline section is named by its inline/crossline range below; a time slice by its sample
        section = f"time slice {c('line')}" if hit.get("slice") == "time" else ""
        lines = [" ".join(filter(None, (c("file"), section))), " ".join(where[:2]),
                 " ".join(where[2:] + ([f"samples {c('samples')}"] if c("samples") else []))]  # fmt: skip
    else:
        lines = [c("id")]
    return f"{float(score):.3f}  " + "\n".join(line for line in lines if line)


# --- reading a hit back from its source ------------------------------------------------------------


def segy_patch(hit: dict, patch_size: tuple[int, int] | None = None, cache: dict | None = None) -> np.ndarray:
    """The (H, W) patch of a SEG-Y hit, read back from its file with :class:`seisbind.io.segy.SegySurvey`
    (raw amplitudes, as :func:`~seisbind.io.segy.iter_patches` cut it).

    The patch size is the row's ``height``/``width`` (else ``patch_size``, e.g. the Parquet options'
    ``patch_size``). The file's trace numbers under the patch must be those the row recorded, so a
    file rewritten since it was embedded (or read with other header bytes) is refused, not drawn."""
    from seisbind.io.segy import SegySurvey

    h, w = int(hit.get("height") or patch_size[0]), int(hit.get("width") or patch_size[1])
    r, c = int(hit["patch_row"]), int(hit["patch_col"])
    line = hit.get("line")
    key = ("segy", hit["file"], hit.get("slice") or "auto", -1 if line is None else int(line))
    section = None if cache is None else cache.get(key)
    if section is None:
        with SegySurvey(hit["file"]) as survey:
            section = survey.section(key[2], key[3])
        if cache is not None:
            cache[key] = section
    patch = section.data[r : r + h, c : c + w]
    if patch.shape != (h, w):
        raise InputError(f"{hit['file']}: {section.slice} {section.line} is {section.data.shape[0]} x "
                         f"{section.data.shape[1]}; it no longer holds the {h} x {w} patch at ({r}, {c})")  # fmt: skip
    t = section.traces
    first, last = (t[0, c], t[0, c + w - 1]) if t.shape[0] == 1 else (t[r, c], t[r + h - 1, c + w - 1])
    want = (hit.get("trace_first"), hit.get("trace_last"))
    if None not in want and (int(first), int(last)) != tuple(int(v) for v in want):
        raise InputError(f"{hit['file']}: traces {first}..{last} lie under the patch, the index recorded "
                         f"{want[0]}..{want[1]}: the file changed since it was embedded")  # fmt: skip
    return patch.copy()


@dataclasses.dataclass
class Trace:
    """One station's trace of a waveform hit: ``t`` seconds from the window's start, raw ``data``."""

    label: str
    t: np.ndarray
    data: np.ndarray


def waveform_traces(hit: dict) -> list[Trace]:
    """One trace per station of a waveform-window hit, ``starttime..endtime`` of its file, read with
    :func:`seisbind.io.obspy_streams.read_stream` (the format allow-list; never ObsPy's guessing).

    Each station gives its vertical component (the first channel of its instrument without one),
    with gaps interpolated for drawing."""
    from seisbind.io.obspy_streams import read_stream

    t0, t1 = to_utc(hit["starttime"]), to_utc(hit["endtime"])
    stream = read_stream(hit["file"], starttime=t0, endtime=t1)
    out = []
    for code in station_codes(hit):
        net, sta, loc, cha = code.split(".")
        picked = stream.select(network=net, station=sta, location=loc, channel=cha or "*")
        if not len(picked):
            continue
        channels = sorted({tr.stats.channel for tr in picked}, key=lambda ch: (ch[-1:].upper() != "Z", ch))
        part = picked.select(channel=channels[0]).copy()
        part.merge(method=1, fill_value="interpolate")
        tr = part[0]
        out.append(Trace(f"{net}.{sta}.{loc}.{tr.stats.channel}", tr.times(reftime=t0), np.asarray(tr.data, np.float64)))
    if not out:
        raise InputError(f"{hit['file']}: none of {', '.join(station_codes(hit))} between {iso(t0)} and {iso(t1)}")
    return out


@dataclasses.dataclass
class Tile:
    """What one panel tile shows: ``kind`` is ``image`` (``data`` (H, W)), ``seismic`` (a patch drawn
    with symmetric limits), ``gather`` (``data`` (stations, T) of a dataset row), ``traces``
    (``traces``) or ``text`` (``text``, when the source cannot be read)."""

    kind: str
    title: str
    data: np.ndarray | None = None
    traces: list[Trace] | None = None
    text: str = ""


# What reading a source can raise: a missing or changed file, a reader's own error, a bad row.
_SOURCE_ERRORS = (OSError, ValueError, KeyError, IndexError, RuntimeError, TypeError)


def _dataset_tile(hit: dict, waveform_query: bool, cache: dict) -> tuple[str, np.ndarray]:
    from seisbind.data.dataset import load_paired

    key = ("dataset", hit.get("data"), hit.get("split"))
    if not hit.get("data"):
        raise FileNotFoundError("the row names no dataset folder")
    if key not in cache:
        ds = load_paired(hit["data"], hit.get("split"))
        cache[key] = (ds, {g: i for i, g in enumerate(ds.with_format(None)["geology_id"])})
    ds, where = cache[key]
    row = ds[where[hit["geology_id"]]]
    is_image = hit.get("modality", "image" if waveform_query else "waveform") == "image"
    if is_image:
        return "image", np.asarray(row["image"][0])
    return "gather", np.asarray(row["waveforms"][hit["source"], :, 0])


def tile(hit: dict, score: float, waveform_query: bool, cache: dict | None = None,
         patch_size: tuple[int, int] | None = None) -> Tile:  # fmt: skip
    """The tile of one hit, read from its source; a source that cannot be read gives a text tile."""
    cache = {} if cache is None else cache
    title, kind = hit_title(hit, score), hit_kind(hit)
    try:
        if kind == "dataset":
            shape, data = _dataset_tile(hit, waveform_query, cache)
            return Tile(shape, title, data=data)
        if kind == "segy":
            return Tile("seismic", title, data=segy_patch(hit, patch_size, cache))
        if kind == "waveform":
            return Tile("traces", title, traces=waveform_traces(hit))
        why = "no source to read (the row names no dataset, SEG-Y patch or waveform window)"
    except _SOURCE_ERRORS as err:
        path = hit.get("data") if kind == "dataset" else hit.get("file")
        if path and not Path(str(path)).exists():
            why = f"source not found: {path}"
        else:
            why = f"source not readable: {' '.join(str(err).split())}"
    facts = "\n".join(f"{c}: {cell(hit, c)}" for c in hit_columns(hit))
    return Tile("text", title, text=f"{facts}\n{why}")


def _wiggles(ax, rows) -> None:
    """One line per row, each scaled to its own peak (a record section)."""
    for s, (t, x) in enumerate(rows):
        ax.plot(t, s + 0.45 * x / (np.abs(x).max() or 1.0), "k", lw=0.5)


def draw_tile(ax, t: Tile) -> None:
    """Draw a :class:`Tile` on a matplotlib axis."""
    import textwrap

    if t.kind == "image":
        ax.imshow(t.data, cmap="gray", aspect="auto")
    elif t.kind == "seismic":  # seismic convention: zero amplitude mid-grey, symmetric limits
        v = float(np.percentile(np.abs(t.data), 99)) or float(np.abs(t.data).max()) or 1.0
        ax.imshow(t.data, cmap="gray", vmin=-v, vmax=v, aspect="auto", interpolation="nearest")
    elif t.kind == "gather":
        _wiggles(ax, [(np.arange(len(x)), x) for x in t.data])
    elif t.kind == "traces":
        _wiggles(ax, [(tr.t, tr.data) for tr in t.traces])
        ax.set_yticks(range(len(t.traces)), [tr.label for tr in t.traces], fontsize=6)
        ax.set_xlabel("s from window start", fontsize=7)
        ax.tick_params(axis="x", labelsize=6)
    else:
        lines = [textwrap.fill(line, 40) for line in t.text.splitlines()]
        ax.text(0.5, 0.5, "\n".join(lines), ha="center", va="center", fontsize=6, transform=ax.transAxes)
    ax.set_title(t.title, fontsize=8)
    if t.kind != "traces":
        ax.set_xticks([])
        ax.set_yticks([])
