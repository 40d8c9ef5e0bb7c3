"""Entry points whose jobs are not built yet say so and fail, rather than pretend to work."""

from __future__ import annotations

import argparse
import sys

WHERE = {
    "quickstart": "issue 7 (export, index and quickstart); meanwhile run `seisbind generate`",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    return not_built(args._name)


def not_built(name: str) -> int:
    print(f"{name} is not built yet: it arrives with {WHERE[name]}.", file=sys.stderr)
    return 2
