"""The ``seisbind`` command line: one sub-command per job.

Each job lives in its own module and registers itself here with a parser builder
and a ``run(args) -> int`` function, so a new job is one line in ``_COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, help). The module defines ``add_arguments(parser)`` and ``run(args)``.
_COMMANDS = {
    "generate": ("seisbind.data.generate_cli", "generate physics-based paired data (quake, openfwi)"),
    "plot-sample": ("seisbind.data.plot", "draw one stored pair: section image, Vs model, waveforms"),
    "embed-images": ("seisbind.io.embed_images_cli", "embed SEG-Y section patches with their survey coordinates"),
    "embed-waveforms": ("seisbind.io.embed_waveforms_cli", "embed miniSEED/ObsPy files or a local SeisBench dataset"),
    "import-manifest": ("seisbind.io.manifest_cli", "convert a CSV/Parquet manifest of pairs into a paired dataset"),
    "train": ("seisbind.training.cli", "train the joint model contrastively (train_contrastive.py)"),
    "evaluate": ("seisbind.evaluation.cli", "retrieval, zero-shot, probes and baselines of a model (eval_zeroshot.py)"),
    "quickstart": ("seisbind.quickstart", "generate, train, evaluate, index and query, on one CPU"),
    "export": ("seisbind.search.export", "export a split's embeddings to Parquet or NumPy"),
    "index": ("seisbind.search.index_cli", "build and query a FAISS index across modalities"),
    "app": ("seisbind.app.cli", "serve a local page (127.0.0.1) to query an index and look at the answers and the joint space"),
}


def chosen_command(argv: list[str]) -> str | None:
    """The sub-command named on the command line (its first word that is one), or None."""
    return next((word for word in argv if word in _COMMANDS), None)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``only``, the other sub-commands are listed but their options (and
    modules) are not loaded, so ``seisbind --help`` and each job start fast."""
    parser = argparse.ArgumentParser(prog="seisbind", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name, _name=name)
        if only is None or name == only:
            importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=chosen_command(argv) or "")
    args = parser.parse_args(argv)
    if args.version:
        from seisbind import __version__

        print(__version__)
        return 0
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    module = importlib.import_module(args._module)
    import torch

    # Ground velocities are ~1e-9 m/s and their products reach subnormal floats, which x86 CPUs
    # compute many times slower; flushing only zeroes values below ~1e-38.
    torch.set_flush_denormal(True)
    try:
        return int(module.run(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as err:
        # Bad input (or a missing optional dependency, such as FAISS) is one clear line, not a traceback.
        print(f"seisbind {args._name}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
