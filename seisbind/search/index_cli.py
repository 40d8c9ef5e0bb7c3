"""``seisbind index build`` and ``seisbind index query``: FAISS search across the two modalities.

    seisbind index build --embeddings test.parquet --out runs/index            # sections, by default
    seisbind index query --index runs/index --model runs/model --waveform event.mseed --k 5 --png hits.png
    seisbind index build --embeddings test.parquet --modality waveform --out runs/windex
    seisbind index query --index runs/windex --model runs/model --image section.npy --k 5
    seisbind index query --index runs/index --model runs/model --waveform day.mseed --starttime 2026-01-01T03:12:40

The table and the panel show each hit as its source describes it (``seisbind.search.answers``): a
dataset row by geology, family and caption; a waveform window by file, stations and time; a SEG-Y
patch by file, line, inline/crossline/CDP and samples, drawn from the file itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from seisbind.argtypes import positive_float, positive_int
from seisbind.io.obspy_streams import MAX_UPSAMPLING
from seisbind.modalities import ModalityType


def read_export(path: str | os.PathLike):
    """``(embeddings (n, d), metadata table without the embedding column, seisbind metadata)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".npy":
        from seisbind.search.export import read_npy_export

        emb, table, meta = read_npy_export(path)
        return np.asarray(emb), table, meta
    from seisbind.io.embeddings import embedding_matrix, read_embeddings

    table, meta = read_embeddings(path)
    return embedding_matrix(table), table.drop_columns(["embedding"]), meta


def build(embeddings: str, out: str, modality: str = ModalityType.IMAGE, kind: str = "auto", use_gpu="auto",
          ef_search: int = 64, nprobe: int = 32):  # fmt: skip
    from seisbind.search.faiss_index import EmbeddingIndex

    emb, table, meta = read_export(embeddings)
    if "model_config_sha256" not in meta:
        raise ValueError(f"{embeddings} does not record the model's config hash; export it with `seisbind export`")
    keep = np.flatnonzero(np.asarray(table.column("modality").to_pylist()) == modality)
    if keep.size == 0:
        raise ValueError(f"{embeddings} holds no {modality} embeddings")
    index = EmbeddingIndex.build(emb[keep], table.take(keep), meta["model_config_sha256"], kind=kind, use_gpu=use_gpu,
                                 hnsw_ef_search=ef_search, ivf_nprobe=nprobe,
                                 model_weights_sha256=meta.get("weights_sha256") or None)  # fmt: skip
    index.info["modality"] = modality
    return index.save(out), index


# Seconds of record kept either side of a --starttime window before resampling, so the filter and
# the interpolation see the same samples as on the whole record: a 250 Hz record resampled to
# 100 Hz gave the window of the whole record to the last float with 0.5 s of margin.
QUERY_MARGIN_SECONDS = 1.0


def parse_time(text: str | None, option: str):
    """``obspy.UTCDateTime`` of an option's value (None stays None); a bad value is a one-line ValueError."""
    if text is None:
        return None
    from obspy import UTCDateTime

    try:
        return UTCDateTime(text)
    except Exception:  # UTCDateTime raises TypeError or ValueError with multi-line messages
        raise ValueError(f"{option} {text!r} is not a time ObsPy reads (e.g. 2026-01-01T03:12:40 or "
                         "2026-01-01T03:12:40.5Z; UTC)") from None  # fmt: skip


def query_span(stream, window_seconds: float, starttime=None, endtime=None, where: str = "record"):
    """``(t0, t1)`` of the window a query takes from ``stream``: ``starttime..endtime``, or
    ``window_seconds`` from ``starttime`` (before ``endtime`` when only it is given). A window not
    inside the record is a ValueError naming the record's span."""
    t0, t1 = parse_time(starttime, "--starttime"), parse_time(endtime, "--endtime")
    if t0 is None:
        t0 = t1 - window_seconds
    if t1 is None:
        t1 = t0 + window_seconds
    if not t1 > t0:
        raise ValueError(f"--endtime {t1} is not after --starttime {t0}")
    lo = min(tr.stats.starttime for tr in stream)
    hi = max(tr.stats.endtime for tr in stream)
    tol = 0.5 / max(float(tr.stats.sampling_rate) for tr in stream)
    if t0 < lo - tol or t1 > hi + tol:
        raise ValueError(f"{where}: the window {t0} .. {t1} is not inside the record, which spans {lo} .. {hi}")
    return t0, t1


def window_at(prepared, t0, t1) -> np.ndarray:
    """(stations, 3, T) of a prepared stream from the grid sample nearest ``t0`` for ``t1 - t0``
    seconds (``round(seconds * rate) + 1`` samples, as every window), over the stations that cover it."""
    from seisbind.io.obspy_streams import window_samples

    rate = prepared.sampling_rate
    k0 = max(0, round((t0 - prepared.origin) * rate))
    n = window_samples(t1 - t0, rate)
    present = [r for r in prepared.records if r.offset <= k0 and r.offset + r.npts >= k0 + n]
    if not present:
        raise ValueError(f"{prepared.source}: no station records the whole window {t0} .. {t1} "
                         "(each station's record must cover it)")  # fmt: skip
    return np.stack([r.data[:, k0 - r.offset : k0 - r.offset + n] for r in present])


def load_query_waveform(path: str, rate: float, window_seconds: float, missing: str, npy_rate: float | None,
                        max_upsampling: float = MAX_UPSAMPLING, starttime: str | None = None,
                        endtime: str | None = None) -> np.ndarray:  # fmt: skip
    """(stations, 3, T) at the model's ``rate`` from a waveform file of an allow-listed format
    (``obspy_streams.read_stream``), or a ``.npy`` array.

    A file gives its first ``window_seconds`` window, or the window ``starttime``/``endtime`` pick
    (:func:`query_span`; ObsPy ``UTCDateTime`` strings)."""
    from seisbind.io.batch import InputError
    from seisbind.io.npy import read_npy
    from seisbind.io.obspy_streams import LANCZOS_A, iter_windows, prepare_stream, read_stream, resample_array

    timed = starttime is not None or endtime is not None
    if path.endswith(".npy"):
        if timed:
            raise ValueError(f"{path}: --starttime/--endtime pick a window of a waveform file; a .npy query has no times")
        arr = read_npy(path, mmap=False)
        arr = arr[None] if arr.ndim == 2 else arr
        if arr.ndim != 3 or arr.shape[1] != 3:
            raise ValueError(f"{path}: a .npy query must be (3, T) or (stations, 3, T) in ZNE order, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{path}: NaN or infinite samples")
        source_rate = rate if npy_rate is None else float(npy_rate)  # 0 is refused, not taken as the default
        return resample_array(arr.astype(np.float32), source_rate, rate, max_upsampling, where=path)
    stream = read_stream(path)
    if timed:
        t0, t1 = query_span(stream, window_seconds, starttime, endtime, where=path)
        slowest = min(float(tr.stats.sampling_rate) for tr in stream)
        margin = max(QUERY_MARGIN_SECONDS, 2 * LANCZOS_A / slowest) if slowest > 0 else QUERY_MARGIN_SECONDS
        part = stream.slice(t0 - margin, t1 + margin)
        prepared = prepare_stream(part, rate, missing=missing, source=path, max_upsampling=max_upsampling)
        return window_at(prepared, t0, t1)
    prepared = prepare_stream(stream, rate, missing=missing, source=path, max_upsampling=max_upsampling)
    items = list(iter_windows(prepared, window_seconds, group="stream"))
    if not items:
        raise InputError(f"{path}: no window of {window_seconds} s with every station present")
    return items[0].data


def query(
    index_dir: str,
    model_spec: str,
    waveform: str | None = None,
    image: str | None = None,
    k: int = 5,
    window_seconds: float = 30.0,
    missing: str = "fill",
    npy_rate: float | None = None,
    max_upsampling: float = MAX_UPSAMPLING,
    allow_other_weights: bool = False,
    starttime: str | None = None,
    endtime: str | None = None,
    text: str | None = None,
):
    """Embed the query, search, and return ``(query array, scores, metadata rows, index)``.

    One of ``waveform`` (a file: finds sections), ``image`` (a .npy section: finds waveforms) or
    ``text`` (a sentence, with a model that has a text tower: finds whatever the index holds; the
    "query array" is then the sentence). ``starttime``/``endtime`` (ObsPy ``UTCDateTime``
    strings) pick the window of a waveform file."""
    import torch

    from seisbind.io.encode import load_model
    from seisbind.io.npy import read_npy
    from seisbind.search.faiss_index import EmbeddingIndex

    if sum(q is not None for q in (waveform, image, text)) != 1:
        raise ValueError("give exactly one of --waveform FILE, --image FILE or --text SENTENCE")
    if waveform is None and (starttime is not None or endtime is not None):
        raise ValueError("--starttime/--endtime pick a window of a --waveform file; this query has none")
    if text is not None and not text.strip():
        raise ValueError("--text is empty: give a sentence, e.g. 'layers cut by a reverse fault'")
    index = EmbeddingIndex.load(index_dir)
    indexed = index.info.get("modality", ModalityType.IMAGE)
    if text is not None:
        if indexed == ModalityType.TEXT:
            raise ValueError(f"{index_dir} indexes text embeddings; a text query searches sections or waveforms")
    else:
        want = ModalityType.IMAGE if waveform else ModalityType.WAVEFORM
        if indexed != want:
            raise ValueError(f"{index_dir} indexes {indexed} embeddings; a {'waveform' if waveform else 'image'} query searches {want}s")
    model, info = load_model(model_spec)  # info carries the config and weights hashes, computed once
    if text is not None and ModalityType.TEXT not in model.modalities:
        raise ValueError(f"model {model_spec} has no text tower (its modalities: {', '.join(model.modalities)}); "
                         "a text query needs a model trained with text, e.g. the quickstart's tiny-text")
    with torch.no_grad():
        if text is not None:
            arr = text
            emb = model.encode_text([text]).numpy()
        elif waveform:
            arr = load_query_waveform(waveform, model.sampling_rate, window_seconds, missing, npy_rate, max_upsampling,
                                      starttime, endtime)  # fmt: skip
            emb = model.encode_waveform(torch.from_numpy(arr)[None]).numpy()
        else:
            arr = read_npy(image, mmap=False)
            if arr.ndim != 2:
                raise ValueError(f"{image}: an image query must be a 2-D (H, W) array, got {arr.shape}")
            emb = model.encode_image(torch.from_numpy(arr.astype(np.float32))[None, None]).numpy()
    scores, rows = index.nearest(emb, k, model_config_sha256=info["config_sha256"], model_weights_sha256=info["weights_sha256"],
                                 allow_other_weights=allow_other_weights)
    hits = index.metadata.take(rows).to_pylist()
    return arr, scores, hits, index


def panel(query_array: np.ndarray, scores, hits, path: str | os.PathLike, waveform_query: bool) -> Path:
    """PNG: the query next to its top-k results, each drawn from its own source (``answers.tile``):
    a dataset row, the SEG-Y patch read back from its file, or the waveform window's traces; a source
    that cannot be read is a tile of the hit's metadata saying so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seisbind.search.answers import draw_tile, tile

    k = len(hits)
    fig, axes = plt.subplots(1, k + 1, figsize=(3.2 * (k + 1), 3.6), squeeze=False)
    axes = axes[0]
    if isinstance(query_array, str):  # a text query
        import textwrap

        axes[0].text(0.5, 0.5, textwrap.fill(query_array, 28), ha="center", va="center", fontsize=9, wrap=True)
        axes[0].set_title("query: text", fontsize=8)
    elif waveform_query:
        z = query_array[:, 0]
        for s, trace in enumerate(z):
            axes[0].plot(s + 0.45 * trace / (np.abs(trace).max() or 1.0), "k", lw=0.5)
        axes[0].set_title("query: Z, one line per station", fontsize=8)
    else:
        axes[0].imshow(query_array, cmap="gray", aspect="auto")
        axes[0].set_title("query section", fontsize=8)
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    cache: dict = {}  # datasets and SEG-Y sections read once for all tiles
    for ax, score, hit in zip(axes[1:], scores, hits):
        draw_tile(ax, tile(hit, score, waveform_query, cache))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from seisbind.io.components import MISSING_MODES

    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="build an index from exported embeddings")
    b.add_argument("--embeddings", required=True,
                   help="a .parquet written by `seisbind export`, `embed-images` or `embed-waveforms`, or an export's .npy")
    b.add_argument("--out", required=True, help="index folder to write")
    b.add_argument("--modality", default=ModalityType.IMAGE, choices=ModalityType.ALL,
                   help="which embeddings to index (default image: sections, found by waveform queries)")
    b.add_argument("--kind", default="auto", choices=("auto", "flat", "hnsw", "ivfpq"),
                   help="FAISS index: flat (exact), hnsw (graph), ivfpq (compressed); auto picks by count: "
                        "flat up to 50,000 vectors, hnsw up to 5 million, ivfpq beyond")
    b.add_argument("--cpu", action="store_true", help="build on the CPU even when faiss-gpu is installed")
    # benchmarks/RESULTS.md: at 1M vectors efSearch 64 -> 512 takes recall@10 from 0.82 to 0.94 at a third of the speed
    b.add_argument("--ef-search", type=int, default=64, help="HNSW search breadth, stored with the index (more: higher recall, slower)")
    b.add_argument("--nprobe", type=int, default=32, help="IVF lists searched per query, stored with the index")
    q = sub.add_parser("query", help="find the nearest sections of a waveform (or waveforms of a section, or either of a sentence)")
    q.add_argument("--index", required=True, help="an index folder written by `seisbind index build`")
    q.add_argument("--model", required=True, help="the model that made the index's embeddings")
    q.add_argument("--waveform", help="a waveform file (miniSEED, SAC, SEG-Y, ...: an allow-list, never a pickle) or a .npy (3, T) / (stations, 3, T)")
    q.add_argument("--image", help="a .npy (H, W) section, to find waveforms")
    q.add_argument("--text", metavar="SENTENCE",
                   help="a description, e.g. 'layers cut by a reverse fault, site class D', to find sections or "
                        "waveforms (a model with a text tower; text was bound to images only)")
    q.add_argument("--k", type=positive_int, default=5, help="how many nearest results to list (default 5)")
    q.add_argument("--window-seconds", type=positive_float, default=30.0,
                   help="query window length, s (default 30): from the file's start, or from --starttime")
    q.add_argument("--starttime", metavar="TIME",
                   help="start of the query window in the file (UTC, any time ObsPy's UTCDateTime reads, e.g. "
                        "2026-01-01T03:12:40); the window runs --window-seconds from it, or to --endtime")
    q.add_argument("--endtime", metavar="TIME",
                   help="end of the query window (UTC); alone, the window is the --window-seconds before it")
    q.add_argument("--missing", default="fill", choices=MISSING_MODES,
                   help="a missing component: fill (the model copies a live one, as SeisLM) or refuse (default fill)")
    q.add_argument("--npy-sampling-rate", type=float, help="sampling rate of a .npy query (default: the model's)")
    q.add_argument("--allow-other-weights", action="store_true",
                   help="query with a model of the index's architecture but other weights (another embedding "
                        "space: the scores then mean little)")
    q.add_argument("--max-upsampling", type=positive_float, default=MAX_UPSAMPLING,
                   help="refuse a query that must be upsampled more than this factor to the model's rate "
                        f"(default {MAX_UPSAMPLING:g})")
    q.add_argument("--png", help="write a panel of the query and its top-k results, each drawn from its source")


def run(args: argparse.Namespace) -> int:
    from seisbind.io.batch import InputError

    try:
        if args.action == "build":
            if args.ef_search < 1 or args.nprobe < 1:
                raise ValueError(f"--ef-search and --nprobe must be at least 1; got {args.ef_search} and {args.nprobe}")
            path, index = build(args.embeddings, args.out, args.modality, args.kind, use_gpu=False if args.cpu else "auto",
                                ef_search=args.ef_search, nprobe=args.nprobe)  # fmt: skip
            print(f"indexed {index.info['count']} {args.modality} embeddings ({index.info['factory']}) in {path}")
            return 0
        arr, scores, hits, _ = query(args.index, args.model, args.waveform, args.image, args.k, args.window_seconds,
                                     args.missing, args.npy_sampling_rate, args.max_upsampling,
                                     args.allow_other_weights, args.starttime, args.endtime, args.text)  # fmt: skip
    except InputError as err:
        print(f"seisbind index: error: {err}", file=sys.stderr)
        return 2
    from seisbind.search.answers import format_table

    print(format_table(scores, hits))
    if args.png:
        sections = args.waveform is not None or (args.text is not None and hits and hits[0].get("modality") == "image")
        print(f"panel: {panel(arr, scores, hits, args.png, sections)}")
    return 0
