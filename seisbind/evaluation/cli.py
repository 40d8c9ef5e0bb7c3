"""Command line of evaluation (``seisbind evaluate``, ``eval_zeroshot.py``): retrieval, zero-shot,
probes and baselines of a trained model, in one run.

    seisbind evaluate --model DIR --data DIR --split test --out results.json [--plots DIR]

Writes the results as JSON, prints the comparison tables as markdown, and draws the plots.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seisbind.argtypes import positive_int
from seisbind.overrides import add_set_argument, parse_overrides

DESCRIPTION = "Evaluate a trained seisbind model: retrieval, zero-shot, probes and baselines, in one run."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a folder written by save_pretrained (config.json + model.safetensors)")
    parser.add_argument("--data", required=True, help="a folder written by `seisbind generate` (or an import)")
    parser.add_argument("--split", default="test", choices=("validation", "test"), help="split to evaluate (default test)")
    parser.add_argument("--out", default="results.json", help="JSON file to write")
    parser.add_argument("--plots", help="folder for the plots (default: beside --out, <out stem>_plots)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="geologies embedded per forward pass (default 8)")
    parser.add_argument("--baseline-steps", type=int, default=200, help="training steps of the spectrogram baseline (0 skips it)")
    parser.add_argument("--gather-cnn-seconds", type=float, default=None,
                        help="wall time (s) of the gather CNN baseline's training; give the main model's training "
                             "time for a comparison at equal compute (0 skips it; default: --gather-cnn-steps)")
    parser.add_argument("--gather-cnn-steps", type=int, default=300,
                        help="training steps of the gather CNN baseline when no --gather-cnn-seconds is given "
                             "(0 skips it)")
    parser.add_argument("--gather-cnn-sources-per-pair", type=int, default=1,
                        help="sources of a geology in each of the gather CNN's training pairs; give the model's "
                             "train config sources_per_pair (default 1)")
    parser.add_argument("--gather-cnn-mirror-prob", type=float, default=0.0,
                        help="probability that a gather CNN training pair is mirrored left to right; give the "
                             "model's train config mirror_prob (default 0)")
    parser.add_argument("--mirror-average", action="store_true", default=None,
                        help="embed each section and record as the mean of its own and its mirror image's "
                             "embeddings, whatever the model's config says (model config mirror_average)")
    parser.add_argument("--image-checkpoint", help="SFM .pth for the 'before training' image tower (default: random init)")
    parser.add_argument("--waveform-checkpoint", help="SeisLM .ckpt for the 'before training' waveform tower")
    parser.add_argument("--seed", type=int, default=0, help="seed of the baselines and probes (default 0)")
    add_set_argument(parser, "an evaluation option by its name (any of the options above, with _ for -)",
                     "gather_cnn_steps=0")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser(prog: str = "eval_zeroshot.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None, prog: str = "eval_zeroshot.py") -> int:
    return run(build_parser(prog).parse_args(argv), prog)


def run(args: argparse.Namespace, prog: str = "seisbind evaluate") -> int:
    import torch

    from seisbind.evaluation.evaluate import evaluate, markdown_tables, write_json

    torch.set_num_threads(max(1, torch.get_num_threads()))
    torch.set_flush_denormal(True)  # m/s waveforms reach subnormal floats, many times slower on x86
    out = Path(args.out)
    plots_dir = Path(args.plots) if args.plots else out.with_name(out.stem + "_plots")
    options = {"batch_size": args.batch_size, "baseline_steps": args.baseline_steps,
               "gather_cnn_seconds": args.gather_cnn_seconds, "gather_cnn_steps": args.gather_cnn_steps,
               "gather_cnn_sources_per_pair": args.gather_cnn_sources_per_pair,
               "gather_cnn_mirror_prob": args.gather_cnn_mirror_prob, "mirror_average": args.mirror_average,
               "image_checkpoint": args.image_checkpoint, "waveform_checkpoint": args.waveform_checkpoint,
               "seed": args.seed}  # fmt: skip
    try:
        options.update(parse_overrides(args.set, allowed=set(options)))
        results = evaluate(args.model, args.data, args.split, plots_dir=plots_dir, progress=not args.no_progress,
                           **options)  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    write_json(results, out)
    card = record_in_model_card(args.model, results, out)
    print(markdown_tables(results))
    print(f"\nresults: {out}\nplots: {plots_dir}" + (f"\nmodel card: {card}" if card else ""))
    return 0


def record_in_model_card(model_dir: str, results: dict, out: Path) -> Path | None:
    """The retrieval table into the evaluation section of the model's card (its README.md), when
    the model is a folder that has one; a card that cannot be written is a warning, not a failure."""
    from seisbind.models.model_card import CARD_NAME, update_model_card

    if not (Path(model_dir) / CARD_NAME).is_file():
        return None
    rows = []
    for method, r in results["retrieval"].items():
        w, i = r["waveform_to_image"], r["image_to_waveform"]
        rows.append({"method": method, "w->i R@1": w["recall@1"], "w->i R@5": w["recall@5"],
                     "w->i R@10": w["recall@10"], "w->i median rank": w["median_rank"], "i->w R@1": i["recall@1"],
                     "i->w mAP": i["mAP"], "gallery (w->i)": w["gallery_size"]})
    note = (f"Retrieval on the {results['split']} split of {results['data']} "
            f"({results['geologies'][results['split']]} images, {results['waveforms_per_geology']} waveforms "
            f"each), by `seisbind evaluate`; every figure is in {out.name}.")
    try:
        return update_model_card(model_dir, rows, note)
    except (OSError, ValueError) as err:
        print(f"warning: the model card in {model_dir} was not updated ({err})", file=sys.stderr)
        return None


if __name__ == "__main__":
    sys.exit(main(prog="python -m seisbind.evaluation.cli"))
