"""``seisbind import-manifest``: a CSV/Parquet manifest of pairs into the on-disk paired dataset."""

from __future__ import annotations

import argparse

from seisbind.argtypes import positive_float, positive_int
from seisbind.io.components import MISSING_MODES
from seisbind.io.obspy_streams import GAP_MODES, MAX_UPSAMPLING


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--image-size must be N or HxW, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--image-size must be N or HxW with positive sizes, got {text!r}")
    return (values[0], values[-1])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", help="CSV or Parquet table of pairs (columns: see seisbind.io.manifest)")
    p.add_argument("--out", required=True, help="output folder (new or empty)")
    p.add_argument("--image-size", type=_size,
                   help="image height x width, e.g. 224 or 128x256 (default: the first .npy image's shape, else 224)")
    p.add_argument("--window-seconds", type=positive_float, default=30.0,
                   help="waveform window, s: round(s * rate) + 1 samples (default 30)")
    p.add_argument("--sampling-rate", type=float, default=100.0, help="dataset sample rate, Hz (default 100, SeisLM's)")
    p.add_argument("--max-upsampling", type=positive_float, default=MAX_UPSAMPLING,
                   help=f"refuse records that must be upsampled more than this factor (default {MAX_UPSAMPLING:g})")
    p.add_argument("--stations", type=positive_int, help="stations per row (default: the most any row has; fewer are padded)")
    p.add_argument("--missing", choices=MISSING_MODES, default="fill", help="a missing component: fill or refuse")
    p.add_argument("--gaps", choices=GAP_MODES, default="refuse", help="gaps in miniSEED: refuse, fill or split")
    p.add_argument("--chunk-size", type=positive_int, default=64, help="rows per chunk (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/validation/test assignment")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from seisbind.io.manifest import convert_manifest

    report = convert_manifest(
        args.manifest,
        args.out,
        image_size=args.image_size,
        window_seconds=args.window_seconds,
        sampling_rate=args.sampling_rate,
        n_stations=args.stations,
        missing=args.missing,
        gaps=args.gaps,
        max_upsampling=args.max_upsampling,
        chunk_size=args.chunk_size,
        seed=args.seed,
        progress=not args.no_progress,
    )
    h, w = report.image_size
    print(
        f"converted {report.converted} of {report.rows} pair(s) into {report.out_dir} (images {h} x {w}, "
        f"{report.n_stations} station(s) x 3 x {report.n_samples} samples); load with seisbind.data.dataset.load_paired"
    )
    if report.failures:
        print(f"{len(report.failures)} row(s) failed:")
        for f in report.failures:
            print(f"  {f.item}: {f.reason}")
        return 1
    return 0
