"""A SeisBench ``WaveformDataset`` on local disk, trace by trace, with its metadata.

The dataset is opened from a local folder (``metadata.csv`` + ``waveforms.hdf5``, or SeisBench's
chunked layout) with ``seisbench.data.WaveformDataset(path, ...)``: nothing is downloaded, so
STEAD, ETHZ and the rest work once a user has them on disk. Each trace is read in its own
component order (``trace_component_order``) at its own rate (``trace_sampling_rate_hz``) and turned
into a small ObsPy stream, so the component rule, resampling and windowing are exactly those of
:mod:`seisbind.io.obspy_streams`. Every metadata column of the dataset is carried into the output
(object columns as strings; a name that clashes with seisbind's own columns gets a
``seisbench_`` prefix).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from seisbind.io.batch import InputError, describe

# Metadata columns SeisBench adds itself and that say nothing about a trace.
_DROPPED = {"index"}


def open_dataset(path: str | os.PathLike):
    """The SeisBench dataset in a local folder; a folder that is not one raises :class:`InputError`."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: no such folder (SeisBench datasets are folders with metadata.csv and waveforms.hdf5)")
    if not (any(path.glob("metadata*.csv")) and any(path.glob("waveforms*.hdf5"))):
        raise InputError(f"{path}: not a SeisBench dataset folder (needs metadata*.csv and waveforms*.hdf5)")
    import seisbench.data as sbd

    try:
        return sbd.WaveformDataset(path, dimension_order="NCW", component_order=_stored_order(path), cache=None)
    except Exception as err:  # SeisBench, pandas and h5py report broken folders in their own ways
        raise InputError(f"{path}: SeisBench cannot open it ({describe(err)})") from err


def _stored_order(path: Path) -> str:
    # Ask for the stored order so SeisBench neither warns nor reorders; each trace is re-read in
    # its own order below anyway.
    import h5py

    for wf in sorted(path.glob("waveforms*.hdf5")):
        with h5py.File(wf, "r") as fh:
            if "data_format" in fh and "component_order" in fh["data_format"]:
                value = fh["data_format"]["component_order"][()]
                return value.decode() if isinstance(value, bytes) else str(value)
    return "ZNE"


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def metadata_fields(dataset, reserved: set[str]) -> list:
    """Arrow fields for the dataset's metadata columns, and the output name of each column."""
    import pandas as pd
    import pyarrow as pa

    fields = []
    for col in dataset.metadata.columns:
        if col in _DROPPED:
            continue
        name = f"seisbench_{col}" if col in reserved else col
        dtype = dataset.metadata[col].dtype
        if pd.api.types.is_bool_dtype(dtype):
            kind = pa.bool_()
        elif pd.api.types.is_integer_dtype(dtype):
            kind = pa.int64()
        elif pd.api.types.is_float_dtype(dtype):
            kind = pa.float64()
        else:  # strings, datetimes, mixed: text keeps them all readable
            kind = pa.string()
        fields.append(pa.field(name, kind, metadata={"seisbench_column": col}))
    return fields


def row_metadata(row: dict, fields: list) -> dict:
    """One metadata row converted to the types of ``fields``."""
    import pyarrow as pa

    out = {}
    for field in fields:
        value = row.get(field.metadata[b"seisbench_column"].decode())
        if field.type == pa.string():
            out[field.name] = _text(value)
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            out[field.name] = None
        elif field.type == pa.bool_():
            out[field.name] = bool(value)
        elif field.type == pa.int64():
            out[field.name] = int(value)
        else:
            out[field.name] = float(value)
    return out


def trace_label(meta: dict, index: int) -> str:
    """A trace's name for messages and ids: the writer's original name when it packed traces into
    blocks (``trace_name`` then reads ``bucket3$0,:3,:3001``), else ``trace_name``, else its index."""
    return _text(meta.get("trace_name_original")) or _text(meta.get("trace_name")) or str(index)


def trace_stream(dataset, index: int, source: str):
    """Trace ``index`` of ``dataset`` as an ObsPy stream (one trace per component) and its metadata dict."""
    from obspy import Stream, Trace, UTCDateTime

    meta = dataset.metadata.iloc[index].to_dict()
    name = trace_label(meta, index)
    where = f"{source}: trace {name}"
    order = _text(meta.get("trace_component_order"))
    rate = meta.get("trace_sampling_rate_hz")
    if not order:
        raise InputError(f"{where}: no component order (trace_component_order or the dataset's data_format)")
    if rate is None or not np.isfinite(rate) or rate <= 0:
        raise InputError(f"{where}: no valid sampling rate (trace_sampling_rate_hz = {rate})")
    try:
        if dataset.component_order != order:
            dataset.component_order = order  # read in the trace's own order: the component rule is ours
        waveform = np.asarray(dataset.get_waveforms(index), dtype=np.float64)
    except Exception as err:  # h5py/SeisBench errors for a damaged trace
        raise InputError(f"{where}: cannot read its waveforms ({describe(err)})") from err
    if waveform.ndim != 2 or waveform.shape[0] != len(order):
        raise InputError(f"{where}: waveform shape {waveform.shape} does not match component order {order!r}")
    start_text = _text(meta.get("trace_start_time"))
    try:
        start = UTCDateTime(start_text) if start_text else UTCDateTime(0)
    except Exception as err:
        raise InputError(f"{where}: trace_start_time {start_text!r} is not a time ({describe(err)})") from err
    header = {
        "network": _text(meta.get("station_network_code")),
        "station": _text(meta.get("station_code")),
        "location": _text(meta.get("station_location_code")),
        "sampling_rate": float(rate),
        "starttime": start,
    }
    instrument = _text(meta.get("station_channel_code"))[:2]
    stream = Stream([Trace(waveform[k].copy(), {**header, "channel": f"{instrument}{c}"}) for k, c in enumerate(order)])
    return stream, meta


def iter_trace_indices(dataset, limit: int | None = None) -> Iterator[int]:
    """Trace indices in dataset order (the first ``limit``)."""
    n = len(dataset)
    yield from range(n if limit is None else min(n, int(limit)))
