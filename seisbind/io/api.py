"""A seismologist's data in, embeddings and a table of what each row is out: the Python API.

    import obspy, seisbind
    model = seisbind.SeisBindModel.from_pretrained("runs/quickstart/train/best-model")
    emb, table = seisbind.embed_stream(model, obspy.read("event.mseed", format="MSEED"), inventory=obspy.read_inventory("sta.xml", format="STATIONXML"))
    emb, table = seisbind.embed_sections(model, "survey.sgy")

As SeisBench's ``annotate``/``classify`` take a Stream, :func:`embed_stream` takes an ObsPy
``Stream`` and does what the ``embed-waveforms`` command does per file (group by instrument,
order ZNE, resample to the model's rate, window; rules in :mod:`seisbind.io.obspy_streams`);
:func:`embed_sections` cuts SEG-Y files (or arrays) into the image tower's patches as
``embed-images`` does. Both embed through :class:`~seisbind.io.encode.BatchEncoder`, the one
batching path of every command, and return ``(embeddings (n, d) float32, pandas.DataFrame)``
with one table row per embedding row. ``model`` is a :class:`SeisBindModel`, or what
``--model`` takes (a save_pretrained folder, a Hub repo id, an architecture name).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from seisbind.modalities import ModalityType


class _Rows:
    """What BatchEncoder writes to: rows kept in memory, in the order they were embedded."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.metas: list[dict] = []
        self.embeddings: list[np.ndarray] = []

    def add(self, ids: list[str], metas: list[dict], embeddings: np.ndarray) -> None:
        self.ids.extend(ids)
        self.metas.extend(metas)
        self.embeddings.extend(np.asarray(embeddings, np.float32))

    def result(self, dim: int, columns: list[str]):
        import pandas as pd

        table = pd.DataFrame(self.metas, columns=columns)
        table.insert(0, "id", self.ids)
        emb = np.stack(self.embeddings) if self.embeddings else np.zeros((0, dim), np.float32)
        return emb, table


def _model(model, device: str | None):
    from seisbind.io.encode import load_model

    if isinstance(model, (str, os.PathLike)):
        return load_model(model, device or "cpu")[0]
    if not hasattr(model, "encode_waveform") or not hasattr(model, "config"):
        raise TypeError(f"model must be a SeisBindModel or a folder/Hub id/architecture name; got {type(model).__name__}")
    return model.eval()


def _device(model, device: str | None) -> str:
    return device or str(next(model.parameters()).device)


def embed_stream(
    model,
    stream,
    inventory=None,
    window_seconds: float = 30.0,
    step_seconds: float | None = None,
    group: str = "station",
    missing: str = "fill",
    gaps: str = "refuse",
    max_upsampling: float | None = None,
    batch_size: int = 32,
    device: str | None = None,
) -> tuple[np.ndarray, Any]:
    """Embed every window of an ObsPy ``Stream``: ``(embeddings (n, d), table)``.

    ``window_seconds`` long windows start every ``step_seconds`` (default: the window, no
    overlap; 0 embeds each record whole). ``group="station"`` gives a row per station window,
    ``"stream"`` a row per time window over all stations (an array record; with an ``inventory``
    the stations' coordinates become their positions along the array, else the tower assumes a
    line in the stream's order). ``inventory`` (ObsPy ``Inventory``) also rotates Z12 to ZNE.

    Table columns: ``id``, ``network``, ``station``, ``location``, ``channel`` (``HH?``),
    ``n_stations``, ``components`` (the source code in each Z, N, E slot), ``frame`` (ZNE, Z12,
    ZRT), ``filled`` (components filled because missing), ``starttime``, ``endtime`` (pandas UTC
    timestamps), ``sampling_rate`` (the model's), ``source_sampling_rate``, ``n_samples`` and,
    when the inventory has them, ``latitude``, ``longitude``, ``elevation_m`` (per station: a
    number for station rows, a list for stream rows). Bad input raises
    :class:`~seisbind.io.batch.InputError` (a ValueError) saying what and where.
    """
    from seisbind.io.encode import BatchEncoder
    from seisbind.io.obspy_streams import (
        COORDINATE_KEYS,
        MAX_UPSAMPLING,
        iter_windows,
        prepare_stream,
        window_fields,
    )

    model = _model(model, device)
    waveform = model.config.waveform
    if waveform.in_chans != 3:
        raise ValueError(f"this model takes {waveform.in_chans} waveform channels, not Z, N, E")
    if type(stream).__name__ == "Trace":
        import obspy

        stream = obspy.Stream([stream])
    prepared = prepare_stream(stream, float(waveform.sampling_rate), missing, gaps, inventory, source="<stream>",
                              max_upsampling=MAX_UPSAMPLING if max_upsampling is None else max_upsampling)
    rows = _Rows()
    encoder = BatchEncoder(model, ModalityType.WAVEFORM, rows, batch_size, _device(model, device))
    for item in iter_windows(prepared, window_seconds, step_seconds, group):
        encoder.add(item.data, item.id, item.meta, item.station_x_m)
    encoder.close()
    columns = [f.name for f in window_fields() if f.name != "file"]
    emb, table = rows.result(model.config.embed_dim, columns)
    for key in COORDINATE_KEYS:
        if table[key].map(lambda v: v is None or all(x is None for x in v)).all():
            table = table.drop(columns=key)  # the inventory has none (or there is no inventory)
        elif group == "station":
            table[key] = table[key].map(lambda v: v[0])
    import pandas as pd

    for key in ("starttime", "endtime"):
        table[key] = pd.to_datetime(table[key], unit="ns", utc=True)
    table.attrs["notes"] = list(prepared.notes)
    return emb, table


def embed_sections(
    model,
    segy_path_or_array,
    stride: int | tuple[int, int] | None = None,
    slice: str = "auto",
    slice_step: int = 1,
    skip_dead: bool = True,
    iline: int = 189,
    xline: int = 193,
    batch_size: int = 32,
    device: str | None = None,
) -> tuple[np.ndarray, Any]:
    """Embed the image tower's patches of a post-stack SEG-Y file or of an array: ``(embeddings, table)``.

    A path is read with segyio (:mod:`seisbind.io.segy`: 2-D lines and 3-D volumes, ``slice`` =
    line, inline, crossline or time; ``iline``/``xline`` are the header bytes of the line numbers),
    and the table says where each patch lies: ``file``, ``slice``, ``line``, ``patch_row``,
    ``patch_col``, ``height``, ``width``, first/last ``inline``, ``crossline``, ``cdp``, CDP
    ``x``/``y``, ``sample`` and ``z`` (time or depth). An array is one section (samples x traces,
    as the image is drawn) or a stack of them (sections x samples x traces); its table has
    ``line`` (the stack index), ``patch_row``/``patch_col``, ``sample_first``/``sample_last`` and
    ``trace_first``/``trace_last``. Patches are ``stride`` apart (default: the patch size, no
    overlap, the last aligned to the edge); constant patches (padding, mutes) are left out with
    ``skip_dead``, and ones touching a missing trace always.
    """
    from seisbind.io.encode import BatchEncoder
    from seisbind.io.segy import coordinate_fields, iter_patches, patch_id, section_patches

    model = _model(model, device)
    image = model.config.image
    if image.in_chans != 1:
        raise ValueError(f"this model takes {image.in_chans}-channel images; seismic sections have 1 channel")
    h, w = image.img_hw
    rows = _Rows()
    encoder = BatchEncoder(model, ModalityType.IMAGE, rows, batch_size, _device(model, device))
    if isinstance(segy_path_or_array, (str, os.PathLike)):
        path = str(segy_path_or_array)
        for patch, coords in iter_patches(path, (h, w), stride, slice, slice_step, skip_dead=skip_dead,
                                          iline=iline, xline=xline):  # fmt: skip
            encoder.add(patch, patch_id(coords), coords)
        columns = [f.name for f in coordinate_fields()]
    else:
        sections = _sections(segy_path_or_array, (h, w))
        sh, sw = (h, w) if stride is None else ((stride, stride) if isinstance(stride, int) else tuple(stride))
        for line, section in list(enumerate(sections))[::slice_step]:
            for r, c, patch in section_patches(section, (h, w), (sh, sw), skip_dead):
                coords = {"line": line, "patch_row": r, "patch_col": c, "height": h, "width": w,
                          "sample_first": r, "sample_last": r + h - 1, "trace_first": c, "trace_last": c + w - 1}  # fmt: skip
                encoder.add(patch, f"array|{line}|{r}|{c}", coords)
        columns = ["line", "patch_row", "patch_col", "height", "width", "sample_first", "sample_last",
                   "trace_first", "trace_last"]  # fmt: skip
    encoder.close()
    return rows.result(model.config.embed_dim, columns)


def _sections(array, size: tuple[int, int]) -> np.ndarray:
    """An array as a stack of sections (n, samples, traces), checked: real, finite where present,
    at least one patch high and wide."""
    data = np.asarray(array)
    if data.dtype.kind not in "iuf":
        raise ValueError(f"a section must be an array of real numbers; got dtype {data.dtype}")
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ValueError(f"expected one section (samples, traces) or a stack (sections, samples, traces); got shape {data.shape}")
    if data.shape[1] < size[0] or data.shape[2] < size[1]:
        raise ValueError(f"sections of {data.shape[1]} x {data.shape[2]} (samples x traces) are smaller than the "
                         f"{size[0]} x {size[1]} patch the image tower takes")
    if np.isinf(data).any():
        raise ValueError("the section holds infinite values")
    return data.astype(np.float32, copy=False)
