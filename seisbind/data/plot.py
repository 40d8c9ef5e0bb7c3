"""A picture of one stored pair: the section image, the ground it came from, and its waveforms.

``seisbind plot-sample --data DIR --split train --index 0 --out pair.png``
"""

from __future__ import annotations

import argparse
import os

import numpy as np


def plot_pair(row: dict, source: int = 0, path: str | os.PathLike | None = None):
    """Figure of a decoded quake row (``load_paired(..., decode=True)``) for one of its sources.

    Left: the section image as the towers see it. Middle: the Vs grid the solver saw, with the
    stations (triangles) and the source (star). Right: the vertical (Z) record section of that
    source, each trace scaled to its own peak, plotted against distance.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if row.get("scenario") != "quake":
        raise ValueError(f"plot_pair draws quake rows; this row is scenario {row.get('scenario')!r}")
    waveforms = np.asarray(row["waveforms"])
    n_sources = waveforms.shape[0]
    if not 0 <= source < n_sources:
        raise ValueError(f"source must be in 0..{n_sources - 1}, got {source}")
    vs = np.asarray(row["vs"], np.float32)
    nz, nx = vs.shape
    stations = np.asarray(row["station_x_m"])
    width = float(stations[-1] + stations[0])  # stations sit symmetrically inside the section
    depth = width * nz / nx
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [1, 1.6, 1.6]})
    axes[0].imshow(np.asarray(row["image"])[0], cmap="gray", aspect="auto")
    axes[0].set_title("section image (normalised)")
    axes[0].set_xlabel("pixel")
    axes[0].set_ylabel("pixel")
    im = axes[1].imshow(vs, extent=(0, width / 1e3, depth / 1e3, 0), cmap="viridis", aspect="auto")
    axes[1].plot(stations / 1e3, np.zeros_like(stations), "v", color="w", ms=7, mec="k", clip_on=False)
    axes[1].plot(row["source_x_m"][source] / 1e3, row["source_depth_m"][source] / 1e3, "*", color="r", ms=16, mec="k")
    axes[1].set_title(f"Vs (m/s); {row['family']}")
    axes[1].set_xlabel("distance (km)")
    axes[1].set_ylabel("depth (km)")
    fig.colorbar(im, ax=axes[1], fraction=0.04)
    t = np.arange(waveforms.shape[-1]) / float(row["sampling_rate"])
    spacing = np.diff(stations).mean() / 1e3 if len(stations) > 1 else 1.0
    for k, x in enumerate(stations):
        z = waveforms[source, k, 0]
        peak = np.abs(z).max() or 1.0
        axes[2].plot(t, x / 1e3 + 0.45 * spacing * z / peak, "k", lw=0.6)
    axes[2].set_title(f"Z velocity, source {source} at {row['source_depth_m'][source] / 1e3:.2f} km depth")
    axes[2].set_xlabel("time (s)")
    axes[2].set_ylabel("station distance (km)")
    fig.suptitle(row["caption"], fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=90)
        plt.close(fig)
    return fig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="a folder written by `seisbind generate`")
    p.add_argument("--split", default="train", choices=("train", "validation", "test"), help="split of the row (default train)")
    p.add_argument("--index", type=int, default=0, help="row of the split")
    p.add_argument("--source", type=int, default=0, help="which of the row's sources to draw")
    p.add_argument("--out", required=True, help="PNG file to write")


def run(args: argparse.Namespace) -> int:
    from seisbind.data.dataset import load_paired

    ds = load_paired(args.data, args.split)
    if not 0 <= args.index < len(ds):
        raise ValueError(f"--index must be in 0..{len(ds) - 1} for split {args.split}, got {args.index}")
    plot_pair(ds[args.index], args.source, args.out)
    print(f"wrote {args.out}")
    return 0
