"""``seisbind index build`` and ``seisbind index query``: FAISS search across the two modalities.

    seisbind index build --embeddings test.parquet --out runs/index            # sections, by default
    seisbind index query --index runs/index --model runs/model --waveform event.mseed --k 5 --png hits.png
    seisbind index build --embeddings test.parquet --modality waveform --out runs/windex
    seisbind index query --index runs/windex --model runs/model --image section.npy --k 5
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


def load_query_waveform(path: str, rate: float, window_seconds: float, missing: str, npy_rate: float | None,
                        max_upsampling: float = MAX_UPSAMPLING) -> np.ndarray:
    """(stations, 3, T) at the model's ``rate`` from a waveform file of an allow-listed format (``obspy_streams.read_stream``), or a ``.npy`` array."""
    from seisbind.io.batch import InputError
    from seisbind.io.npy import read_npy
    from seisbind.io.obspy_streams import iter_windows, prepare_stream, read_stream, resample_array

    if path.endswith(".npy"):
        arr = read_npy(path, mmap=False)
        arr = arr[None] if arr.ndim == 2 else arr
        if arr.ndim != 3 or arr.shape[1] != 3:
            raise ValueError(f"{path}: a .npy query must be (3, T) or (stations, 3, T) in ZNE order, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{path}: NaN or infinite samples")
        source_rate = rate if npy_rate is None else float(npy_rate)  # 0 is refused, not taken as the default
        return resample_array(arr.astype(np.float32), source_rate, rate, max_upsampling, where=path)
    stream = read_stream(path)
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
    missing: str = "refuse",
    npy_rate: float | None = None,
    max_upsampling: float = MAX_UPSAMPLING,
    allow_other_weights: bool = False,
):
    """Embed the query, search, and return ``(query array, scores, metadata rows, index)``."""
    import torch

    from seisbind.io.encode import load_model
    from seisbind.io.npy import read_npy
    from seisbind.search.faiss_index import EmbeddingIndex

    if (waveform is None) == (image is None):
        raise ValueError("give exactly one of --waveform FILE or --image FILE")
    index = EmbeddingIndex.load(index_dir)
    want = ModalityType.IMAGE if waveform else ModalityType.WAVEFORM
    if index.info.get("modality", ModalityType.IMAGE) != want:
        raise ValueError(f"{index_dir} indexes {index.info.get('modality')} embeddings; a {'waveform' if waveform else 'image'} query searches {want}s")
    model, info = load_model(model_spec)  # info carries the config and weights hashes, computed once
    with torch.no_grad():
        if waveform:
            arr = load_query_waveform(waveform, model.sampling_rate, window_seconds, missing, npy_rate, max_upsampling)
            emb = model.encode_waveform(torch.from_numpy(arr)[None]).numpy()
        else:
            arr = read_npy(image, mmap=False)
            if arr.ndim != 2:
                raise ValueError(f"{image}: an image query must be a 2-D (H, W) array, got {arr.shape}")
            emb = model.encode_image(torch.from_numpy(arr.astype(np.float32))[None, None]).numpy()
    scores, rows = index.search(emb, k, model_config_sha256=info["config_sha256"], model_weights_sha256=info["weights_sha256"],
                                allow_other_weights=allow_other_weights)
    hits = index.metadata.take(rows[0]).to_pylist()
    return arr, scores[0], hits, index


def panel(query_array: np.ndarray, scores, hits, path: str | os.PathLike, waveform_query: bool) -> Path:
    """PNG: the query next to its top-k results with their scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seisbind.data.dataset import load_paired

    k = len(hits)
    fig, axes = plt.subplots(1, k + 1, figsize=(3.2 * (k + 1), 3.6))
    if waveform_query:
        z = query_array[:, 0]
        for s, trace in enumerate(z):
            axes[0].plot(s + 0.45 * trace / (np.abs(trace).max() or 1.0), "k", lw=0.5)
        axes[0].set_title("query: Z, one line per station", fontsize=8)
    else:
        axes[0].imshow(query_array, cmap="gray", aspect="auto")
        axes[0].set_title("query section", fontsize=8)
    cache: dict = {}
    for ax, score, hit in zip(axes[1:], scores, hits):
        key = (hit.get("data"), hit.get("split"))
        if key[0] and key not in cache:
            ds = load_paired(*key)
            cache[key] = (ds, {g: i for i, g in enumerate(ds.with_format(None)["geology_id"])})
        title = f"{score:.3f}  geology {hit.get('geology_id')}\n{hit.get('family', '')}"
        if key[0]:
            ds, where = cache[key]
            row = ds[where[hit["geology_id"]]]
            if waveform_query:
                ax.imshow(row["image"][0], cmap="gray", aspect="auto")
            else:
                z = row["waveforms"][hit["source"], :, 0].numpy()
                for s, trace in enumerate(z):
                    ax.plot(s + 0.45 * trace / (np.abs(trace).max() or 1.0), "k", lw=0.5)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="build an index from exported embeddings")
    b.add_argument("--embeddings", required=True, help="a .parquet or .npy written by `seisbind export`")
    b.add_argument("--out", required=True, help="index folder to write")
    b.add_argument("--modality", default=ModalityType.IMAGE, choices=ModalityType.ALL, help="which embeddings to index")
    b.add_argument("--kind", default="auto", choices=("auto", "flat", "hnsw", "ivfpq"))
    b.add_argument("--cpu", action="store_true", help="build on the CPU even when faiss-gpu is installed")
    # benchmarks/RESULTS.md: at 1M vectors efSearch 64 -> 512 takes recall@10 from 0.82 to 0.94 at a third of the speed
    b.add_argument("--ef-search", type=int, default=64, help="HNSW search breadth, stored with the index (more: higher recall, slower)")
    b.add_argument("--nprobe", type=int, default=32, help="IVF lists searched per query, stored with the index")
    q = sub.add_parser("query", help="find the nearest sections of a waveform (or waveforms of a section)")
    q.add_argument("--index", required=True)
    q.add_argument("--model", required=True, help="the model that made the index's embeddings")
    q.add_argument("--waveform", help="a waveform file (miniSEED, SAC, SEG-Y, ...: an allow-list, never a pickle) or a .npy (3, T) / (stations, 3, T)")
    q.add_argument("--image", help="a .npy (H, W) section, to find waveforms")
    q.add_argument("--k", type=positive_int, default=5)
    q.add_argument("--window-seconds", type=positive_float, default=30.0, help="query window taken from the file's start")
    q.add_argument("--missing", default="refuse", choices=("refuse", "fill"), help="a missing component: refuse, or fill as SeisLM does")
    q.add_argument("--npy-sampling-rate", type=float, help="sampling rate of a .npy query (default: the model's)")
    q.add_argument("--allow-other-weights", action="store_true",
                   help="query with a model of the index's architecture but other weights (another embedding "
                        "space: the scores then mean little)")
    q.add_argument("--max-upsampling", type=positive_float, default=MAX_UPSAMPLING,
                   help="refuse a query that must be upsampled more than this factor to the model's rate "
                        f"(default {MAX_UPSAMPLING:g})")
    q.add_argument("--png", help="write a panel of the query and its top-k results")


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
                                     args.allow_other_weights)  # fmt: skip
    except InputError as err:
        print(f"seisbind index: error: {err}", file=sys.stderr)
        return 2
    print("| rank | score | id | family | caption |\n|---|---|---|---|---|")
    for rank, (score, hit) in enumerate(zip(scores, hits), start=1):
        print(f"| {rank} | {score:.3f} | {hit.get('id')} | {hit.get('family', '')} | {hit.get('caption', '')} |")
    if args.png:
        print(f"panel: {panel(arr, scores, hits, args.png, args.waveform is not None)}")
    return 0
