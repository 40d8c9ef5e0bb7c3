"""Post-stack SEG-Y surveys (2-D lines and 3-D volumes) cut into image patches with survey coordinates.

A file is opened trace by trace (``segyio.open(..., ignore_geometry=True)``) and its geometry is
read from the trace headers (inline at byte 189, crossline at 193 by default):

* **2-D line**: every trace has the same inline number or the same crossline number (including
  files whose headers leave both at 0). The section is the traces in file order.
* **3-D volume**: traces sit on an inline x crossline grid. Sections are inlines, crosslines or
  time (depth) slices. An **irregular** grid (traces missing, as in a survey with a ragged
  outline) is read too: missing traces are NaN and patches that touch one are skipped, so no
  invented data is embedded. Two traces at the same (inline, crossline) position mean pre-stack
  gathers or wrong header bytes; that file is refused with a message saying so.

Sections are images with time/depth down the rows and traces across the columns (for time slices:
inlines down, crosslines across), as SFM's training patches are. Patches of exactly the image
tower's size are cut every ``stride`` pixels; when the stride leaves a strip uncovered at the end
of a section, one more patch is aligned to its edge. Patches are returned as raw amplitudes
(``normalize=True`` applies SFM's per-image ``(x - mean) / (std + 1e-6)``; the model applies it
anyway). Each patch comes with its coordinates: pixel position in the section, first/last inline,
crossline, trace index, CDP, CDP x/y and sample (with its time or depth from the sample axis).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from seisbind.io.batch import InputError

SLICES = ("auto", "line", "inline", "crossline", "time")
INLINE_BYTE = 189  # SEG-Y rev1 standard positions
CROSSLINE_BYTE = 193
_CDP, _CDP_X, _CDP_Y, _SCALCO = 21, 181, 185, 71  # segyio.TraceField CDP, CDP_X, CDP_Y, SourceGroupScalar


@dataclasses.dataclass
class Section:
    """One 2-D section of a survey: an image and the file trace index behind every column (or pixel).

    ``traces`` is (1, W) for vertical sections (one trace per column) and (H, W) for time slices;
    -1 marks a missing trace. ``line`` is the inline or crossline number, the sample index of a time
    slice, or -1 for a 2-D line.
    """

    data: np.ndarray  # (H, W) float32, NaN where a trace is missing
    slice: str
    line: int
    traces: np.ndarray


class SegySurvey:
    """A SEG-Y file opened for reading sections, with its geometry taken from the trace headers.

    Use as a context manager (or call :meth:`close`). ``kind`` is ``"2d"`` or ``"3d"``;
    ``regular`` says whether every grid position of a 3-D survey holds a trace.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        iline: int = INLINE_BYTE,
        xline: int = CROSSLINE_BYTE,
        endian: str = "big",
    ) -> None:
        import segyio

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such file")
        try:
            self._file = segyio.open(str(self.path), "r", iline=iline, xline=xline, ignore_geometry=True, endian=endian)
        except (RuntimeError, OSError, ValueError, IndexError) as err:  # IndexError: a file with no whole trace
            raise InputError(f"{self.path}: not a readable SEG-Y file ({' '.join(str(err).split())}; "
                             f"{self.path.stat().st_size} bytes, a SEG-Y header alone is 3600)") from err
        try:
            self._read_geometry(iline, xline)
        except BaseException:
            self._file.close()
            raise
        self._cube: np.ndarray | None = None

    def _read_geometry(self, iline: int, xline: int) -> None:
        f = self._file
        self.n_traces = int(f.tracecount)
        self.samples = np.asarray(f.samples, dtype=np.float64)  # ms (time) or m (depth)
        if self.n_traces == 0 or len(self.samples) == 0:
            raise InputError(f"{self.path}: no traces or no samples")
        try:
            self.inline_numbers = np.asarray(f.attributes(iline)[:], dtype=np.int64)
            self.crossline_numbers = np.asarray(f.attributes(xline)[:], dtype=np.int64)
            self.cdp = np.asarray(f.attributes(_CDP)[:], dtype=np.int64)
            scalco = np.asarray(f.attributes(_SCALCO)[:], dtype=np.float64)
            # SEG-Y coordinate scalar: positive multiplies, negative divides, 0 means 1.
            factor = np.ones_like(scalco)
            factor[scalco > 0] = scalco[scalco > 0]
            factor[scalco < 0] = -1.0 / scalco[scalco < 0]
            self.cdp_x = np.asarray(f.attributes(_CDP_X)[:], dtype=np.float64) * factor
            self.cdp_y = np.asarray(f.attributes(_CDP_Y)[:], dtype=np.float64) * factor
        except (RuntimeError, OSError, ValueError, IndexError) as err:
            raise InputError(f"{self.path}: cannot read the trace headers ({err})") from err
        ils, xls = np.unique(self.inline_numbers), np.unique(self.crossline_numbers)
        if len(ils) == 1 or len(xls) == 1:
            self.kind, self.regular = "2d", True
            self.ilines = self.xlines = None
            self.grid = None
            return
        self.kind = "3d"
        self.ilines, self.xlines = ils, xls
        ii = np.searchsorted(ils, self.inline_numbers)
        xi = np.searchsorted(xls, self.crossline_numbers)
        flat = ii * len(xls) + xi
        positions, counts = np.unique(flat, return_counts=True)
        if (counts > 1).any():
            dup = positions[np.argmax(counts)]
            il, xl = ils[dup // len(xls)], xls[dup % len(xls)]
            raise InputError(
                f"{self.path}: {int((counts > 1).sum())} (inline, crossline) position(s) hold more than one "
                f"trace (e.g. inline {il} crossline {xl}: {counts.max()} traces). This is pre-stack data or the "
                f"inline/crossline header bytes are not at {iline}/{xline}; seisbind reads post-stack sections "
                "(pass iline=/xline= byte positions, or read it as a 2-D line with slice='line')"
            )
        self.grid = np.full((len(ils), len(xls)), -1, dtype=np.int64)
        self.grid[ii, xi] = np.arange(self.n_traces)
        self.regular = bool((self.grid >= 0).all())

    # --- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SegySurvey:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- sections --------------------------------------------------------------------------
    @property
    def default_slice(self) -> str:
        return "line" if self.kind == "2d" else "inline"

    def resolve_slice(self, slice: str) -> str:
        """``auto`` -> ``line`` (2-D) or ``inline`` (3-D); a slice that does not fit the survey is an error."""
        if slice not in SLICES:
            raise ValueError(f"slice must be one of {SLICES}, got {slice!r}")
        if slice == "auto":
            return self.default_slice
        if self.kind == "2d" and slice != "line":
            raise InputError(f"{self.path}: a 2-D line has no {slice} sections; use slice 'line' (or 'auto')")
        return slice

    def lines(self, slice: str) -> list[int]:
        """The line numbers of a slice: inline/crossline numbers, sample indices, or [-1] for a 2-D line."""
        slice = self.resolve_slice(slice)
        if slice == "line":
            return [-1]
        if slice == "inline":
            return [int(v) for v in self.ilines]
        if slice == "crossline":
            return [int(v) for v in self.xlines]
        return list(range(len(self.samples)))

    def section_shape(self, slice: str) -> tuple[int, int]:
        slice = self.resolve_slice(slice)
        ns = len(self.samples)
        if slice == "line":  # every trace in file order (2-D lines; any file as an escape hatch)
            return ns, self.n_traces
        if slice == "inline":
            return ns, len(self.xlines)
        if slice == "crossline":
            return ns, len(self.ilines)
        return len(self.ilines), len(self.xlines)

    def _read_traces(self, index: np.ndarray) -> np.ndarray:
        """Traces (len(index), samples) float32; -1 gives a NaN trace."""
        f = self._file
        out = np.full((len(index), len(self.samples)), np.nan, dtype=np.float32)
        present = np.flatnonzero(index >= 0)
        if len(present) == 0:
            return out
        ids = index[present]
        if len(ids) > 1 and np.all(np.diff(ids) == 1):  # one contiguous run: a single read
            out[present] = f.trace.raw[int(ids[0]) : int(ids[-1]) + 1]
        else:
            for row, i in zip(present, ids):
                out[row] = f.trace[int(i)]
        return out

    def _all_traces(self) -> np.ndarray:
        # Time slices need every trace; the volume is read once and kept for the next slices.
        if self._cube is None:
            self._cube = np.asarray(self._file.trace.raw[:], dtype=np.float32).reshape(self.n_traces, -1)
        return self._cube

    def section(self, slice: str, line: int = -1) -> Section:
        """One section as an image (rows = samples, or inlines for a time slice)."""
        slice = self.resolve_slice(slice)
        try:
            if slice == "line":
                traces = np.arange(self.n_traces)[None]
                data = self._read_traces(traces[0]).T
            elif slice in ("inline", "crossline"):
                numbers = self.ilines if slice == "inline" else self.xlines
                k = int(np.searchsorted(numbers, line))
                if k >= len(numbers) or numbers[k] != line:
                    raise InputError(f"{self.path}: no {slice} {line} (has {numbers[0]}..{numbers[-1]})")
                traces = (self.grid[k] if slice == "inline" else self.grid[:, k])[None]
                data = self._read_traces(traces[0]).T
            else:
                if not 0 <= line < len(self.samples):
                    raise InputError(f"{self.path}: no time slice {line} (samples 0..{len(self.samples) - 1})")
                traces = self.grid
                cube = self._all_traces()
                data = np.where(traces >= 0, cube[np.maximum(traces, 0), line], np.nan).astype(np.float32)
        except (RuntimeError, OSError) as err:
            raise InputError(f"{self.path}: reading {slice} {line} failed ({err})") from err
        return Section(np.ascontiguousarray(data, dtype=np.float32), slice, int(line), traces)

    def patch_coords(self, section: Section, row: int, col: int, height: int, width: int) -> dict:
        """Where a patch of ``section`` lies in the survey (first/last values are inclusive)."""
        if section.traces.shape[0] == 1:  # vertical section: one trace per column
            first, last = section.traces[0, col], section.traces[0, col + width - 1]
            s_first, s_last = row, row + height - 1
        else:  # time slice: a trace per pixel, one sample
            first, last = section.traces[row, col], section.traces[row + height - 1, col + width - 1]
            s_first = s_last = section.line

        def at(values: np.ndarray, trace: int):
            return values[trace].item() if trace >= 0 else None

        return {
            "file": str(self.path),
            "survey": self.kind,
            "slice": section.slice,
            "line": section.line,
            "patch_row": int(row),
            "patch_col": int(col),
            "height": int(height),
            "width": int(width),
            "inline_first": at(self.inline_numbers, first),
            "inline_last": at(self.inline_numbers, last),
            "crossline_first": at(self.crossline_numbers, first),
            "crossline_last": at(self.crossline_numbers, last),
            "trace_first": int(first),
            "trace_last": int(last),
            "cdp_first": at(self.cdp, first),
            "cdp_last": at(self.cdp, last),
            "x_first": at(self.cdp_x, first),
            "y_first": at(self.cdp_y, first),
            "x_last": at(self.cdp_x, last),
            "y_last": at(self.cdp_y, last),
            "sample_first": int(s_first),
            "sample_last": int(s_last),
            "z_first": float(self.samples[s_first]),
            "z_last": float(self.samples[s_last]),
        }


def patch_id(coords: dict) -> str:
    """A patch's id: file, slice, line and pixel position, unique within a run."""
    return f"{coords['file']}|{coords['slice']}|{coords['line']}|{coords['patch_row']}|{coords['patch_col']}"


def patch_starts(length: int, size: int, stride: int) -> list[int]:
    """Start offsets of patches of ``size`` every ``stride``, plus one aligned to the end if needed."""
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    if length < size:
        return []
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def normalize_patch(patch: np.ndarray) -> np.ndarray:
    """SFM's per-image normalisation, ``(x - mean) / (std + 1e-6)``, in NumPy."""
    from seisbind.models.preprocess import IMAGE_EPS

    x = patch.astype(np.float32)
    return (x - x.mean()) / (x.std() + IMAGE_EPS)


@dataclasses.dataclass
class PatchCounts:
    """What :func:`iter_patches` cut and left out (dead = constant, incomplete = missing traces or NaN)."""

    patches: int = 0
    dead: int = 0
    incomplete: int = 0
    sections: int = 0


def iter_patches(
    survey: SegySurvey | str | os.PathLike,
    size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    slice: str = "auto",
    slice_step: int = 1,
    skip_dead: bool = True,
    normalize: bool = False,
    counts: PatchCounts | None = None,
    **open_kwargs,
) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield ``(patch (H, W) float32, coords dict)`` for every patch of every ``slice_step``-th section.

    ``size`` is the image tower's ``(height, width)``; ``stride`` defaults to the size (no overlap).
    Constant patches (zero padding, dead areas) are skipped with ``skip_dead``; patches touching a
    missing trace are always skipped. ``counts`` (a :class:`PatchCounts`) is updated as it goes.
    """
    h, w = (size, size) if isinstance(size, int) else size
    sh, sw = (h, w) if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    if slice_step < 1:
        raise ValueError(f"slice_step must be at least 1, got {slice_step}")
    counts = counts if counts is not None else PatchCounts()
    own = not isinstance(survey, SegySurvey)
    sv = SegySurvey(survey, **open_kwargs) if own else survey
    try:
        slice = sv.resolve_slice(slice)
        height, width = sv.section_shape(slice)
        if height < h or width < w:
            raise InputError(
                f"{sv.path}: {slice} sections are {height} x {width} (rows x columns), smaller than the "
                f"{h} x {w} patch the image tower takes"
            )
        for line in sv.lines(slice)[::slice_step]:
            section = sv.section(slice, line)
            for r, c, patch in section_patches(section.data, (h, w), (sh, sw), skip_dead, counts):
                yield (normalize_patch(patch) if normalize else patch), sv.patch_coords(section, r, c, h, w)
    finally:
        if own:
            sv.close()


def section_patches(
    data: np.ndarray, size: tuple[int, int], stride: tuple[int, int], skip_dead: bool = True,
    counts: PatchCounts | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:  # fmt: skip
    """``(row, col, patch copy)`` of one section (rows x columns) cut into ``size`` patches every
    ``stride``, the last one aligned to the edge; patches with a non-finite sample (missing traces)
    are left out, constant ones too with ``skip_dead``; ``counts`` is updated (one section)."""
    (h, w), (sh, sw) = size, stride
    counts = counts if counts is not None else PatchCounts()
    counts.sections += 1
    for r in patch_starts(data.shape[0], h, sh):
        for c in patch_starts(data.shape[1], w, sw):
            patch = data[r : r + h, c : c + w]
            if not np.isfinite(patch).all():
                counts.incomplete += 1
                continue
            if skip_dead and float(patch.max()) == float(patch.min()):
                counts.dead += 1
                continue
            counts.patches += 1
            yield r, c, patch.copy()


def coordinate_fields():
    """The Arrow fields of the coordinates :meth:`SegySurvey.patch_coords` returns."""
    import pyarrow as pa

    i64, f64, s = pa.int64(), pa.float64(), pa.string()
    return [
        pa.field("file", s), pa.field("survey", s), pa.field("slice", s), pa.field("line", i64),
        pa.field("patch_row", i64), pa.field("patch_col", i64), pa.field("height", i64), pa.field("width", i64),
        pa.field("inline_first", i64), pa.field("inline_last", i64),
        pa.field("crossline_first", i64), pa.field("crossline_last", i64),
        pa.field("trace_first", i64), pa.field("trace_last", i64),
        pa.field("cdp_first", i64), pa.field("cdp_last", i64),
        pa.field("x_first", f64), pa.field("y_first", f64), pa.field("x_last", f64), pa.field("y_last", f64),
        pa.field("sample_first", i64), pa.field("sample_last", i64),
        pa.field("z_first", f64), pa.field("z_last", f64),
    ]  # fmt: skip
