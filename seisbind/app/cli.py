"""``seisbind app``: serve a page on 127.0.0.1 to search an index and look at the answers.

    seisbind app --model runs/quickstart/train/best-model --index runs/quickstart/index --data runs/quickstart/data
    seisbind app --model runs/model --index runs/index --embeddings runs/test-embeddings.parquet --port 7861

Needs the ``app`` extra (``pip install -e ".[app]"``: Gradio and Plotly). Only argparse is imported
here, so ``seisbind app --help`` stays fast; Gradio and the model load in :func:`run`.
"""

from __future__ import annotations

import argparse

DEFAULT_PORT = 7860  # Gradio's own default


def port_number(text: str) -> int:
    """A TCP port, 1..65535 (argparse type)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {text!r}")
    return port


def add_arguments(p: argparse.ArgumentParser) -> None:
    from seisbind.argtypes import positive_float, positive_int
    from seisbind.io.components import MISSING_MODES

    p.add_argument("--model", required=True, help="the model that made the index's embeddings (a save_pretrained folder)")
    p.add_argument("--index", required=True, help="an index folder written by `seisbind index build`")
    p.add_argument("--data", help="the dataset the index was exported from: its items become queries, with the "
                                  "rank of their true match")  # fmt: skip
    p.add_argument("--embeddings", help="an export with both modalities (`seisbind export`), added to the map")
    p.add_argument("--port", type=port_number, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    p.add_argument("--k", type=positive_int, default=5, help="results shown at first (default 5; the page has a slider)")
    p.add_argument("--window-seconds", type=positive_float,
                   help="query window of a record, s (default: the dataset's record length with --data, else 30)")
    p.add_argument("--missing", default="fill", choices=MISSING_MODES,
                   help="a missing component: fill (the model copies a live one, as SeisLM) or refuse (default fill)")
    p.add_argument("--map", default="tsne", choices=("tsne", "umap", "none"),  # backend.MAP_METHODS
                   help="the map of the joint space: t-SNE (scikit-learn, default), UMAP (needs umap-learn) or none")
    p.add_argument("--map-points", type=positive_int, default=5000,
                   help="most points on the map, a seeded sample of the index and export (default 5000)")


def run(args: argparse.Namespace) -> int:
    import time

    from seisbind.app.backend import AppBackend
    from seisbind.app.page import HOST, build_page, check_port, serve

    import importlib.util

    missing = [m for m in ("gradio", "plotly") if importlib.util.find_spec(m) is None]
    if missing:  # before loading anything: the page's packages are an extra
        raise ImportError(f"the app needs {' and '.join(missing)}: pip install \"seisbind[app]\" "
                          "(or -e \".[cpu,app]\" in a clone)")
    check_port(args.port)  # before minutes of loading, not after
    backend = AppBackend(args.model, args.index, data=args.data, embeddings=args.embeddings, k=args.k,
                         window_seconds=args.window_seconds, missing=args.missing)  # fmt: skip
    print(backend.describe())
    if args.map != "none":
        t = time.perf_counter()
        jmap = backend.joint_map(args.map, args.map_points)
        if jmap is not None:
            print(f"map: {jmap.method} of {len(jmap.table)} items in {time.perf_counter() - t:.1f} s")
    page = build_page(backend, args.map, args.map_points)
    print(f"serving on http://{HOST}:{args.port} (Ctrl-C stops it)", flush=True)
    serve(page, args.port)
    return 0
