"""Generated pairs per second, and how much of the time the deepwave solver takes.

    python benchmarks/bench_generate.py [--quake N] [--openfwi N] [--workers W]

Overhead = (wall time x workers - solver time) / solver time: everything the pipeline adds
around the solver (geology, image, labels, transfer, Arrow writing, assembly, worker start-up).
Goal: at most 10%.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from machine import cpu_model  # benchmarks/machine.py: scripts run as python benchmarks/<name>.py
from seisbind.data.generate import generate


def run(scenario: str, n: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report = generate(tmp, scenario, n, workers=workers, chunk_size=8, progress=False)
        wall = time.perf_counter() - start  # includes assembling the final DatasetDict
    busy_fraction = report.solver_seconds / report.worker_seconds
    overhead = (wall * workers - report.solver_seconds) / report.solver_seconds
    return {
        "scenario": scenario,
        "geologies": n,
        "pairs": report.pairs,
        "wall_s": wall,
        "pairs_per_s": report.pairs / wall,
        "solver_s": report.solver_seconds,
        "solver_share_of_worker_time": busy_fraction,
        "overhead_vs_solver": overhead,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quake", type=int, default=8, help="quake geologies (default settings: 4 sources, 16 stations, 30 s)")
    parser.add_argument("--openfwi", type=int, default=240, help="openfwi samples (OpenFWI settings)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {cpu_model()}, {torch.get_num_threads()} torch threads available, torch {torch.__version__}")
    print(f"workers: {args.workers} processes of one thread each\n")
    rows = [run("quake", args.quake, args.workers), run("openfwi", args.openfwi, args.workers)]
    print("| scenario | geologies | pairs | wall s | pairs/s | solver share of worker time | pipeline overhead vs solver |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['scenario']} | {r['geologies']} | {r['pairs']} | {r['wall_s']:.1f} | {r['pairs_per_s']:.2f} | "
            f"{r['solver_share_of_worker_time']:.1%} | {r['overhead_vs_solver']:.1%} |"
        )


if __name__ == "__main__":
    main()
