"""A manifest of image-waveform pairs a user brings, converted into the dataset ``seisbind generate`` writes.

The manifest is a CSV or Parquet table, one pair per row. Paths are relative to the manifest's
folder unless absolute.

==========================  ========================================================================
column                      meaning
==========================  ========================================================================
``image_path``              a SEG-Y file (``.sgy``/``.segy``) or a NumPy array file (``.npy``)
``image_slice``             SEG-Y: ``line`` (2-D), ``inline``, ``crossline`` or ``time``; default auto
``image_line``              SEG-Y: the inline or crossline number, or the sample index of a time slice
``image_row``,              SEG-Y: the patch's first row and column in that section (0-based; the
``image_col``               ``patch_row``/``patch_col`` that ``seisbind embed-images`` writes)
``image_index``             ``.npy`` holding a stack (N, H, W): which image
``waveform_path``           a waveform file (miniSEED, SAC, ...: ``obspy_streams.WAVEFORM_FORMATS``,
                            detected) or a ``.npy`` array (3, T), (stations, 3, T) or (1, stations, 3, T)
``waveform_start``          ObsPy files: the window's start time (ISO 8601; default: the record's
                            start); ``.npy``: seconds from the first sample (default 0)
``waveform_sampling_rate``  ``.npy``: its rate in Hz (default: the dataset's rate)
``pair_id``, ``split``,     optional: a name kept with the row; ``train``/``validation``/``test``;
``group``, ``family``,      rows of one group share a split and a ``geology_id`` (default group: the
``caption``                 image); labels kept as they are
==========================  ========================================================================

Other columns are kept as JSON in ``manifest_extra``. Every image is cut to one size (``image_size``,
by default the first ``.npy`` image's shape, else SFM's 224 x 224); every waveform window holds
``round(window_seconds * rate) + 1`` samples at the dataset rate (default 30 s at 100 Hz). ObsPy
files go through :mod:`seisbind.io.obspy_streams` (grouping, component rule, resampling); all the
stations that cover the window are kept. Rows with fewer stations than the most are padded with
zero stations, which ``station_mask`` marks absent.

The output is ``OUT/generation.json`` (scenario ``manifest``) and ``OUT/chunks/chunk-NNNNN/``, as
``seisbind generate`` writes, so :func:`seisbind.data.dataset.load_paired`, training and evaluation
read it unchanged. Images are stored raw (float32; SEG-Y amplitudes can overflow float16) and
waveforms as float16 scaled per trace with a float32 ``waveform_scale``, as the quake scenario
stores them. A row that cannot be converted (missing file, window outside the record, wrong shape,
...) is reported with its row number, file and problem, and the other rows are converted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from seisbind.io.batch import _STDERR, BatchJob, InputError, describe

IMAGE_COLUMNS = ("image_path", "image_slice", "image_line", "image_row", "image_col", "image_index")
WAVEFORM_COLUMNS = ("waveform_path", "waveform_start", "waveform_sampling_rate")
LABEL_COLUMNS = ("pair_id", "split", "group", "family", "caption")
REQUIRED = ("image_path", "waveform_path")
SEGY_SUFFIXES = (".sgy", ".segy")
DEFAULT_IMAGE_SIZE = (224, 224)  # SFM's patches


@dataclasses.dataclass
class ManifestReport:
    """What a conversion did: rows converted, rows refused (with reasons), the dataset's shapes."""

    out_dir: Path
    rows: int
    converted: int
    failures: list
    image_size: tuple[int, int]
    n_stations: int
    n_samples: int


def read_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The manifest's rows as dicts (empty cells as ``None``); CSV or Parquet by suffix."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such manifest")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype={"waveform_start": str, "pair_id": str, "group": str, "split": str})
    except Exception as err:  # pandas/pyarrow parse errors
        raise ValueError(f"{path}: cannot read the manifest ({describe(err)})") from err
    absent = [c for c in REQUIRED if c not in frame.columns]
    if absent:
        raise ValueError(f"{path}: manifest needs columns {list(REQUIRED)}; missing {absent} (has {list(frame.columns)})")
    frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_dict("records")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def _int(row: dict, key: str, default: int | None) -> int | None:
    value = row.get(key)
    if _blank(value):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{key} {value!r} is not a number") from None
    if number != int(number):
        raise InputError(f"{key} {value!r} is not a whole number")
    return int(number)


class _Sources:
    """Opened files shared by rows: SEG-Y surveys, the last section, the last prepared stream."""

    def __init__(self, rate: float, missing: str, gaps: str, max_upsampling: float = 2.0) -> None:
        self.rate, self.missing, self.gaps, self.max_upsampling = rate, missing, gaps, max_upsampling
        self.surveys: dict[Path, Any] = {}
        self.section_key: tuple | None = None
        self.section = None
        self.stream_key: Path | None = None
        self.prepared = None

    def survey(self, path: Path):
        from seisbind.io.segy import SegySurvey

        if path not in self.surveys:
            self.surveys[path] = SegySurvey(path)
        return self.surveys[path]

    def segy_section(self, path: Path, slice: str, line: int):
        sv = self.survey(path)
        slice = sv.resolve_slice(slice)
        key = (path, slice, line)
        if key != self.section_key:
            self.section, self.section_key = sv.section(slice, line), key
        return sv, self.section

    def stream(self, path: Path):
        from seisbind.io.obspy_streams import prepare_stream, read_stream

        if path != self.stream_key:
            self.prepared = None
            self.prepared = prepare_stream(read_stream(path), self.rate, self.missing, self.gaps, source=str(path),
                                           max_upsampling=self.max_upsampling)
            self.stream_key = path
        return self.prepared

    def close(self) -> None:
        for sv in self.surveys.values():
            sv.close()
        self.surveys.clear()


def _resolve(base: Path, row: dict, key: str) -> Path:
    value = row.get(key)
    if _blank(value):
        raise InputError(f"{key} is empty")
    path = Path(str(value)).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise InputError(f"{key} {path} does not exist")
    return path


def _npy(path: Path) -> np.ndarray:
    from seisbind.io.npy import read_npy

    return read_npy(path)


def _npy_image(path: Path, row: dict) -> np.ndarray:
    arr = _npy(path)
    if arr.ndim == 3:
        index = _int(row, "image_index", None if arr.shape[0] > 1 else 0)
        if index is None:
            raise InputError(f"{path} holds {arr.shape[0]} images {arr.shape}; set image_index")
        if not 0 <= index < arr.shape[0]:
            raise InputError(f"{path}: image_index {index} outside 0..{arr.shape[0] - 1}")
        arr = arr[index]
    elif arr.ndim != 2:
        raise InputError(f"{path}: an image array must be (H, W) or (N, H, W), got shape {arr.shape}")
    return arr


def _image(sources: _Sources, path: Path, row: dict, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    h, w = size
    if path.suffix.lower() in SEGY_SUFFIXES:
        slice = str(row.get("image_slice") or "auto").strip()
        line = _int(row, "image_line", -1)
        r, c = _int(row, "image_row", 0), _int(row, "image_col", 0)
        sv, section = sources.segy_section(path, slice, line)
        rows, cols = section.data.shape
        if not (0 <= r and r + h <= rows and 0 <= c and c + w <= cols):
            raise InputError(
                f"{path}: a {h} x {w} patch at row {r}, column {c} does not fit the {rows} x {cols} "
                f"{section.slice} section {section.line}"
            )
        patch = section.data[r : r + h, c : c + w]
        if not np.isfinite(patch).all():
            raise InputError(f"{path}: the patch at row {r}, column {c} of {section.slice} {section.line} touches missing traces")
        coords = sv.patch_coords(section, r, c, h, w)
        return patch.astype(np.float32), json.dumps(coords)
    arr = _npy_image(path, row)
    if arr.shape != (h, w):
        raise InputError(f"{path}: image is {arr.shape[0]} x {arr.shape[1]}, the dataset's images are {h} x {w} (see image_size)")
    arr = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise InputError(f"{path}: image holds NaN or infinite values")
    return arr, json.dumps({"file": str(path), "image_index": _int(row, "image_index", 0)})


def _npy_waveforms(path: Path) -> np.ndarray:
    arr = _npy(path)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] != 3:
        raise InputError(f"{path}: waveforms must be (3, T), (stations, 3, T) or (1, stations, 3, T), got {arr.shape}")
    return arr


def _waveforms(sources: _Sources, path: Path, row: dict, n: int) -> tuple[np.ndarray, list[str], str, str]:
    """``(waveforms (stations, 3, n), station ids, start time text, source description)``."""
    rate = sources.rate
    start_value = row.get("waveform_start")
    if path.suffix.lower() == ".npy":
        arr = _npy_waveforms(path)
        src_rate = float(row["waveform_sampling_rate"]) if not _blank(row.get("waveform_sampling_rate")) else rate
        from seisbind.io.obspy_streams import resample_array

        data = resample_array(arr, src_rate, rate, sources.max_upsampling, where=str(path))
        offset = 0.0 if _blank(start_value) else float(start_value)
        k0 = round(offset * rate)
        if k0 < 0 or k0 + n > data.shape[-1]:
            raise InputError(
                f"{path}: the {n}-sample window from {offset:g} s does not fit its {data.shape[-1]} samples at {rate:g} Hz"
            )
        data = data[:, :, k0 : k0 + n]
        if not np.isfinite(data).all():
            raise InputError(f"{path}: waveforms hold NaN or infinite values")
        return data, [f"{path.name}[{i}]" for i in range(len(data))], "", json.dumps({"file": str(path), "offset_s": offset})
    from obspy import UTCDateTime

    prepared = sources.stream(path)
    lo = min(r.offset for r in prepared.records)
    if _blank(start_value):
        k0 = lo
    else:
        try:
            start = UTCDateTime(str(start_value))
        except Exception as err:  # UTCDateTime raises plain Exception/TypeError for text it cannot parse
            raise InputError(f"waveform_start {start_value!r} is not a time ({describe(err)})") from None
        k0 = round((start - prepared.origin) * rate)
    present = [r for r in prepared.records if r.offset <= k0 and r.offset + r.npts >= k0 + n]
    t0 = prepared.origin + k0 / rate
    if not present:
        span = ", ".join(f"{r.seed_id}? {r.start}..{r.start + (r.npts - 1) / rate}" for r in prepared.records[:3])
        raise InputError(f"{path}: no station covers {t0} + {(n - 1) / rate:g} s (records: {span})")
    data = np.stack([r.data[:, k0 - r.offset : k0 - r.offset + n] for r in present])
    ids = [r.seed_id for r in present]
    return data, ids, t0.isoformat(), json.dumps({"file": str(path), "starttime": t0.isoformat(), "stations": ids})


def _station_count(path: Path) -> int:
    """Stations a waveform source holds, read cheaply (headers only) to size the dataset."""
    if path.suffix.lower() == ".npy":
        return int(_npy_waveforms(path).shape[0])
    from seisbind.io.obspy_streams import group_traces, read_stream

    return max(1, len(group_traces(read_stream(path, headonly=True))))


def manifest_features(size: tuple[int, int], n_stations: int, n_samples: int):
    """The Arrow schema of a manifest row: the common columns plus the pair and where it came from."""
    import datasets

    from seisbind.data.scenarios.base import COMMON_FEATURES

    k = n_stations
    return datasets.Features(
        {
            **COMMON_FEATURES,
            "image": datasets.Array2D(size, "float32"),
            "waveforms": datasets.Array4D((1, k, 3, n_samples), "float16"),
            "waveform_scale": datasets.Array2D((1, k), "float32"),
            "station_mask": datasets.Array2D((1, k), "bool"),
            "stations": datasets.Sequence(datasets.Value("string"), length=k),
            "starttime": datasets.Value("string"),
            "pair_id": datasets.Value("string"),
            "manifest_row": datasets.Value("int64"),
            "image_source": datasets.Value("string"),
            "waveform_source": datasets.Value("string"),
            "manifest_extra": datasets.Value("string"),
        }
    )


def _label(i: int, row: dict) -> str:
    return f"row {i}" + ("" if _blank(row.get("pair_id")) else f" ({row['pair_id']})")


def convert_manifest(
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    image_size: int | tuple[int, int] | None = None,
    window_seconds: float = 30.0,
    sampling_rate: float = 100.0,
    n_stations: int | None = None,
    missing: str = "fill",
    gaps: str = "refuse",
    max_upsampling: float = 2.0,
    chunk_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    log: TextIO | None | object = _STDERR,
) -> ManifestReport:
    """Convert ``manifest`` into a paired dataset at ``out_dir`` (layout in the module doc).

    Rows that fail are listed in the report (and printed to ``log``, standard error by default);
    a manifest none of whose rows converts raises ``ValueError`` listing why.
    """
    from tqdm.auto import tqdm

    from seisbind.data.generate import (
        DEFAULT_SPLIT_FRACTIONS,
        FORMAT_VERSION,
        SPLITS,
        assign_splits,
        chunk_dataset,
        save_atomically,
    )
    from seisbind.io.obspy_streams import window_samples

    manifest = Path(manifest)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; choose a new output folder (or delete a failed conversion)")
    if not window_seconds > 0:
        raise ValueError(f"window_seconds must be positive, got {window_seconds}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    rows = read_manifest(manifest)
    if not rows:
        raise ValueError(f"{manifest}: the manifest has no rows")
    base = manifest.parent
    n_samples = window_samples(window_seconds, sampling_rate)
    job = BatchJob("manifest row", log=log)
    sources = _Sources(float(sampling_rate), missing, gaps, max_upsampling)
    try:
        # Pass 1: every referenced file exists and has a usable shape; the dataset's sizes.
        size = (image_size, image_size) if isinstance(image_size, int) else image_size
        checked: list[tuple[int, dict, Path, Path, int]] = []
        for i, row in enumerate(rows):
            with job.guard(_label(i, row)):
                image_path, wave_path = _resolve(base, row, "image_path"), _resolve(base, row, "waveform_path")
                if image_path.suffix.lower() in SEGY_SUFFIXES:
                    sources.survey(image_path)
                elif size is None:
                    size = tuple(_npy_image(image_path, row).shape)
                checked.append((i, row, image_path, wave_path, _station_count(wave_path)))
        size = tuple(size or DEFAULT_IMAGE_SIZE)
        k = n_stations or max((c[-1] for c in checked), default=1)
        if k < 1:
            raise ValueError(f"n_stations must be at least 1, got {k}")

        # Groups share a split and a geology_id, as all sources of one geology do.
        def group_key(row: dict, image_path: Path) -> str:
            if not _blank(row.get("group")):
                return f"group:{row['group']}"
            parts = [row.get(c) for c in IMAGE_COLUMNS[1:]]
            return json.dumps([str(image_path), *[None if _blank(p) else str(p) for p in parts]])

        group_ids: dict[str, int] = {}
        for _, row, image_path, _, _ in checked:
            group_ids.setdefault(group_key(row, image_path), len(group_ids))
        group_split = assign_splits(max(len(group_ids), 1), seed)

        # Pass 2: convert and write chunks as they fill.
        features = manifest_features(size, k, n_samples)
        known = set(IMAGE_COLUMNS + WAVEFORM_COLUMNS + LABEL_COLUMNS)
        pending: list[dict] = []
        written = chunks = 0
        used_groups: set[int] = set()
        (out / "chunks").mkdir(parents=True, exist_ok=True)
        for i, row, image_path, wave_path, _ in tqdm(checked, desc="manifest pairs", unit="pair", disable=not progress):
            with job.guard(_label(i, row)):
                split = str(row.get("split") or "").strip()
                if split and split not in SPLITS:
                    raise InputError(f"split {split!r} is not one of {SPLITS}")
                image, image_source = _image(sources, image_path, row, size)
                waves, ids, start, wave_source = _waveforms(sources, wave_path, row, n_samples)
                if len(waves) > k:
                    raise InputError(f"{wave_path}: {len(waves)} stations, more than n_stations={k}")
                padded = np.zeros((k, 3, n_samples), np.float32)
                padded[: len(waves)] = waves
                scale = np.abs(padded).max(axis=(1, 2))
                scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
                gid = group_ids[group_key(row, image_path)]
                used_groups.add(gid)
                extra = {c: v for c, v in row.items() if c not in known and not _blank(v)}
                pending.append({
                    "geology_id": gid,
                    "split": split or str(group_split[gid]),
                    "scenario": "manifest",
                    "sampling_rate": float(sampling_rate),
                    "channels": "ZNE",
                    "family": "unknown" if _blank(row.get("family")) else str(row["family"]),
                    "caption": "" if _blank(row.get("caption")) else str(row["caption"]),
                    "image": image,
                    "waveforms": (padded / scale[:, None, None]).astype(np.float16)[None],
                    "waveform_scale": scale[None],
                    "station_mask": (np.arange(k) < len(waves))[None],
                    "stations": ids + [""] * (k - len(ids)),
                    "starttime": start,
                    "pair_id": "" if _blank(row.get("pair_id")) else str(row["pair_id"]),
                    "manifest_row": i,
                    "image_source": image_source,
                    "waveform_source": wave_source,
                    "manifest_extra": json.dumps(extra, default=str),
                })  # fmt: skip
            if len(pending) == chunk_size:
                save_atomically(chunk_dataset(pending, features), out / "chunks" / f"chunk-{chunks:05d}")
                written, chunks, pending = written + len(pending), chunks + 1, []
        if pending:
            save_atomically(chunk_dataset(pending, features), out / "chunks" / f"chunk-{chunks:05d}")
            written, chunks = written + len(pending), chunks + 1
    finally:
        sources.close()
    if written == 0:
        if not any((out / "chunks").iterdir()):
            (out / "chunks").rmdir()
            if not any(out.iterdir()):
                out.rmdir()
        raise ValueError(f"{manifest}: no row could be converted.\n{job.summary()}")
    plan = {
        "format_version": FORMAT_VERSION,
        "scenario": "manifest",
        "imported_from": str(manifest.resolve()),
        # chunk_dirs() counts chunks as ceil(num_geologies / chunk_size): here a "geology" is a row.
        "num_geologies": written,
        "num_groups": len(used_groups),
        "chunk_size": chunk_size,
        "seed": seed,
        "split_fractions": list(DEFAULT_SPLIT_FRACTIONS),
        "config": {
            "image_size": list(size),
            "n_stations": k,
            "n_samples": n_samples,
            "sampling_rate": float(sampling_rate),
            "window_seconds": float(window_seconds),
            "missing": missing,
            "gaps": gaps,
        },
        "failed_rows": [f.item for f in job.failures],
    }
    (out / "generation.json").write_text(json.dumps(plan, indent=2))  # written last: marks completion
    return ManifestReport(out, len(rows), written, list(job.failures), size, k, n_samples)

