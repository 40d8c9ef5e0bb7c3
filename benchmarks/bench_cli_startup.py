"""Start-up time of the command line: `seisbind --help` and each `seisbind CMD --help`.

Target (issue 15): `seisbind --help` under 1 s. Each figure is the median wall time of --repeats
fresh interpreters, beside the time of `python -c pass` measured in the same run (the floor).

    python benchmarks/bench_cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from machine import cpu_model  # benchmarks/machine.py: scripts run as python benchmarks/<name>.py

from seisbind.cli import _COMMANDS


def wall(argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh interpreters per command (default 5)")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "seisbind"]
    floor = wall([sys.executable, "-c", "pass"], args.repeats)
    print(f"machine: {cpu_model()}, Python {sys.version.split()[0]}\n")
    print(f"| command | median wall s | x python -c pass |\n|---|---|---|\n| python -c pass | {floor:.3f} | 1.0 |")
    for name in [None, *_COMMANDS]:
        argv = cli + ([name] if name else []) + ["--help"]
        t = wall(argv, args.repeats)
        print(f"| seisbind {name + ' ' if name else ''}--help | {t:.3f} | {t / floor:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
