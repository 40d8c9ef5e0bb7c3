"""Latency of the app's queries through its backend (``seisbind.app``), one user and concurrent users.

Each query is what the page does for an upload: read a miniSEED file (the CLI's reader and
checks), embed, search (``AppBackend.query_file``); "+ draw" adds what the page then draws (each
hit read from its source and drawn, the query's record section, the map with the query on it).
"item" queries a dataset row and ranks its true match (``AppBackend.query_item``). Concurrent users
are threads sharing one backend, as Gradio's worker threads share it; the backend serialises model
calls with a lock, so only reading, searching and drawing overlap. Memory is the process's
resident set (RSS) after loading (model, index, dataset, map) and at the end.

    python benchmarks/bench_app.py --model runs/quickstart/train/best-model --index runs/quickstart/index \\
        --data runs/quickstart/data [--queries 200] [--users 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from machine import cpu_model  # benchmarks/machine.py: scripts run as python benchmarks/<name>.py


def rss_mib() -> float:
    """Resident set size of this process now, MiB (Linux /proc)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run(task, jobs: list, users: int) -> tuple[list[float], float]:
    """(latency of each job in s, wall time of all) with ``users`` threads taking jobs in turn."""

    def timed(job):
        t = time.perf_counter()
        task(job)
        return time.perf_counter() - t

    start = time.perf_counter()
    if users == 1:
        latencies = [timed(job) for job in jobs]
    else:
        with ThreadPoolExecutor(users) as pool:
            latencies = list(pool.map(timed, jobs))
    return latencies, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/quickstart/train/best-model", help="the index's model")
    parser.add_argument("--index", default="runs/quickstart/index", help="an index folder (of sections)")
    parser.add_argument("--data", default="runs/quickstart/data", help="the dataset the index came from")
    parser.add_argument("--split", default="test", help="split the query records are taken from (default test)")
    parser.add_argument("--queries", type=int, default=200, help="queries per measurement (default 200)")
    parser.add_argument("--users", type=int, default=4, help="concurrent users (threads) (default 4)")
    parser.add_argument("--files", type=int, default=20, help="distinct miniSEED query files, cycled (default 20)")
    parser.add_argument("--k", type=int, default=5, help="results per query (default 5)")
    args = parser.parse_args()

    import torch

    from seisbind.app.backend import AppBackend
    from seisbind.app.figures import map_figure, query_figure, tile_image
    from seisbind.data.dataset import load_paired
    from seisbind.quickstart import write_query_mseed

    torch.set_flush_denormal(True)  # as the seisbind command sets it
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} "
          f"threads, Python {sys.version.split()[0]}")  # fmt: skip
    print("command: python " + " ".join(sys.argv))
    print("load average (1, 5, 15 min) at the start: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    rss_before = rss_mib()
    t = time.perf_counter()
    backend = AppBackend(args.model, args.index, data=args.data, k=args.k)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    jmap = backend.joint_map("tsne")
    map_s = time.perf_counter() - t
    print(f"{backend.describe()}\nloaded in {load_s:.1f} s; map: {jmap.method} of {len(jmap.table)} items in {map_s:.1f} s")

    split = load_paired(args.data, args.split)
    tmp = Path(tempfile.mkdtemp(prefix="bench-app-"))
    files = [write_query_mseed(split[i % len(split)], 0, tmp / f"q{i}.mseed") for i in range(args.files)]
    sources = backend.sources_per_item()

    def search(i):
        backend.query_file(files[i % len(files)])

    def search_and_draw(i):
        answer = backend.query_file(files[i % len(files)])
        [tile_image(t) for t in backend.tiles(answer)]
        query_figure(answer, backend.sampling_rate, backend.station_spacing_m)
        map_figure(jmap, "family", answer)

    def item(i):
        backend.query_item(args.split, i % len(split), i % sources)

    for task in (search, search_and_draw, item):  # warm-up: first reads of the dataset, caches
        task(0)
    rss_start = rss_mib()
    jobs = list(range(args.queries))
    rows = []
    for name, task in (("search", search), ("search + draw", search_and_draw), ("item (rank of true match)", item)):
        for users in (1, args.users):
            latencies, wall = run(task, jobs, users)
            rows.append((name, users, len(jobs), statistics.median(latencies) * 1e3, percentile(latencies, 95) * 1e3,
                         len(jobs) / wall))  # fmt: skip
            print(f"  {name}, {users} user(s): done", file=sys.stderr, flush=True)
    rss_end = rss_mib()
    print("load average (1, 5, 15 min) at the end: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    print(f"\nRSS: {rss_before:.0f} MiB before loading, {rss_start:.0f} MiB after loading and warm-up, "
          f"{rss_end:.0f} MiB at the end\n")  # fmt: skip
    print("| query | users | queries | median ms | p95 ms | queries/s |\n|---|---|---|---|---|---|")
    for name, users, n, median, p95, rate in rows:
        print(f"| {name} | {users} | {n} | {median:.0f} | {p95:.0f} | {rate:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
