"""FAISS index figures: build time, queries per second and recall@10 against exact search.

    python benchmarks/bench_index.py [--sizes 100000 1000000] [--ef-search 128 256] [--nprobe 64 128]
        [--exported FILE.parquet] [--latency INDEX MODEL MSEED]

Random vectors are unit-normalised Gaussian clusters at the model's 512 dimensions (uniform
random vectors on a 512-sphere have no neighbours worth finding). ``--exported`` adds a row for
real exported embeddings (sections indexed, waveforms as queries); ``--model-sections N --model DIR``
grows that collection with N fresh section images embedded by the same model, real embeddings at
index scale (section images without their wave simulations are cheap). ``--latency`` measures the
end-to-end query from a miniSEED file: cold (load model and index, read, embed, search) and warm
(model and index already loaded).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from machine import cpu_model  # benchmarks/machine.py: scripts run as python benchmarks/<name>.py
from seisbind.search.faiss_index import EmbeddingIndex, factory_string


def clustered(n: int, d: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    out = np.empty((n, d), np.float32)
    for start in range(0, n, 100_000):  # in blocks: bounded memory for millions of rows
        m = min(100_000, n - start)
        x = centres[rng.integers(0, len(centres), m)] + 0.7 * rng.standard_normal((m, d), dtype=np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_top10(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    import faiss

    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    return flat.search(q, min(10, len(x)))[1]


# the knob that trades speed for recall: (EmbeddingIndex.info key, FAISS's name for it)
SEARCH_PARAM = {"hnsw": ("hnsw_ef_search", "efSearch"), "ivfpq": ("ivf_nprobe", "nprobe")}


def measure(x: np.ndarray, q: np.ndarray, truth: np.ndarray, kind: str, sweep: dict[str, list[int]] | None = None) -> list[dict]:
    """Build once, then search at the index's default setting and at each value of ``sweep[kind]``."""
    import pyarrow as pa

    meta = pa.table({"row": np.arange(len(x))})
    t = time.perf_counter()
    index = EmbeddingIndex.build(x, meta, "bench", kind=kind, use_gpu=False)
    build = time.perf_counter() - t
    key, name = SEARCH_PARAM.get(kind, (None, None))
    values = [None]  # exact search has no knob
    if key:
        values = [index.info[key]] + [v for v in (sweep or {}).get(kind, []) if v != index.info[key]]
    out = []
    for value in values:
        if key:
            index.info[key] = value
            index._apply_search_params()
        t = time.perf_counter()
        _, rows = index.search(q, truth.shape[1])
        search = time.perf_counter() - t
        recall = float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(rows, truth)]))
        setting = f"{name} {value}" if key else "exact"
        out.append({"kind": kind, "factory": index.info["factory"], "setting": setting, "build_s": build,
                    "qps": len(q) / search, "recall@10": recall})  # fmt: skip
    return out


def _section_batch(args: tuple[dict, int, int]) -> np.ndarray:
    """Section images of geologies ``start..stop`` (no wave simulation: images alone are cheap)."""
    from seisbind.data.generate import geology_rng
    from seisbind.data.scenarios import get_scenario

    config, start, stop = args
    quake = get_scenario("quake")
    cfg = quake.make_config(**config)
    # seed 1: not the quickstart's geologies (seed 0)
    return np.stack([quake.draw_section(cfg, geology_rng(1, gid))[2] for gid in range(start, stop)])


def model_sections(model_dir: str, data_config: str, n: int, workers: int = 2, batch: int = 1000) -> np.ndarray:
    """``n`` real image embeddings at scale: fresh quake sections embedded by the trained image tower."""
    from concurrent.futures import ProcessPoolExecutor

    import torch
    import yaml
    from tqdm.auto import tqdm

    from seisbind.io.encode import load_model

    model, _ = load_model(model_dir)
    config = yaml.safe_load(open(data_config))
    out = np.empty((n, model.config.embed_dim), np.float32)
    jobs = [(config, a, min(a + batch, n)) for a in range(0, n, batch)]
    with ProcessPoolExecutor(workers) as pool, torch.no_grad():
        for (_, a, b), images in tqdm(zip(jobs, pool.map(_section_batch, jobs)), total=len(jobs), desc="sections"):
            out[a:b] = model.encode_image(torch.from_numpy(images)[:, None]).numpy()
    return out


def latency(index_dir: str, model_dir: str, mseed: str, window: float, repeats: int = 5) -> tuple[float, float]:
    from seisbind.search.index_cli import query

    t = time.perf_counter()
    query(index_dir, model_dir, waveform=mseed, k=5, window_seconds=window)
    cold = time.perf_counter() - t
    import torch

    from seisbind.io.encode import load_model
    from seisbind.search.index_cli import load_query_waveform

    model, _ = load_model(model_dir)
    index = EmbeddingIndex.load(index_dir)
    rate = float(model.config.waveform.sampling_rate)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        arr = load_query_waveform(mseed, rate, window, "refuse", None)
        with torch.no_grad():
            emb = model.encode_waveform(torch.from_numpy(arr)[None]).numpy()
        index.search(emb, 5)
        times.append(time.perf_counter() - t)
    return cold, min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000], help="random-vector collection sizes (none: skip)")
    p.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivfpq"])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--exported", help="a Parquet written by `seisbind export` (sections indexed, waveforms query)")
    p.add_argument("--model-sections", type=int, default=0, metavar="N",
                   help="with --exported and --model: add N fresh sections embedded by the model to the exported ones")
    p.add_argument("--model", help="the model that wrote --exported (for --model-sections)")
    p.add_argument("--data-config", default="configs/data/quake-quickstart.yaml", help="geology config for --model-sections")
    p.add_argument("--latency", nargs=3, metavar=("INDEX", "MODEL", "MSEED"), help="end-to-end query latency")
    p.add_argument("--window-seconds", type=float, default=8.0)
    p.add_argument("--ef-search", type=int, nargs="*", default=[], help="more HNSW efSearch values to search with (same build)")
    p.add_argument("--nprobe", type=int, nargs="*", default=[], help="more IVF nprobe values to search with (same build)")
    args = p.parse_args()
    import faiss

    print(f"machine: {cpu_model()}, faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads, CPU only\n")
    print("| vectors | data | kind | FAISS factory | search setting | build s | queries/s | recall@10 vs exact |")
    print("|---|---|---|---|---|---|---|---|")
    sweep = {"hnsw": args.ef_search, "ivfpq": args.nprobe}
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((1000, args.dim), dtype=np.float32)
    for n in args.sizes:
        x = clustered(n, args.dim, rng, centres)
        q = clustered(args.queries, args.dim, rng, centres)
        truth = exact_top10(x, q)
        for kind in args.kinds:
            for r in measure(x, q, truth, kind, sweep):
                print(f"| {n:,} | random (clustered) | {kind} | {r['factory']} | {r['setting']} | {r['build_s']:.1f} | {r['qps']:,.0f} | {r['recall@10']:.3f} |", flush=True)
        del x
    if args.exported:
        from seisbind.io.embeddings import embedding_matrix, read_embeddings

        table, _ = read_embeddings(args.exported)
        emb = embedding_matrix(table)
        modality = np.asarray(table.column("modality").to_pylist())
        x, q = emb[modality == "image"], emb[modality == "waveform"]
        label = "exported sections, waveform queries"
        kinds = ("flat", "hnsw")
        if args.model_sections:
            if not args.model:
                raise SystemExit("--model-sections needs --model (the model that wrote --exported)")
            x = np.concatenate([x, model_sections(args.model, args.data_config, args.model_sections)])
            label = f"exported sections + {args.model_sections:,} more by the same model, waveform queries"
            kinds = tuple(args.kinds)
        truth = exact_top10(x, q)
        for kind in kinds:
            for r in measure(x, q, truth, kind, sweep):
                print(f"| {len(x):,} | {label} | {kind} | {r['factory']} | {r['setting']} | {r['build_s']:.2f} | {r['qps']:,.0f} | {r['recall@10']:.3f} |", flush=True)
    if args.latency:
        cold, warm = latency(*args.latency, args.window_seconds)
        print(f"\nend-to-end query from miniSEED: cold {cold:.2f} s (load model + index, read, embed, search); "
              f"warm {1000 * warm:.0f} ms (read, resample/window, embed, search)")  # fmt: skip


if __name__ == "__main__":
    main()
