"""Do more, and more varied, captions per image improve the image tower? (issue 14's question)

Trains the same text model twice on the same data, seed and step budget, changing only
``captions_per_geology`` (1: one fixed caption per geology; N: N phrasings of it, one drawn per
step), then evaluates both on the test split with the evaluation's own code (no retrieval
baselines): the image tower's linear and kNN probes (family, fault present, Vs30, depth to Vs 760),
image->waveform retrieval, text->image retrieval with held-out captions, and the emergent
waveform->text zero-shot. Prints the machine and one markdown row per setting.

    python benchmarks/bench_captions.py --data runs/quickstart/data --config quickstart --captions 1 16
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from machine import cpu_model  # benchmarks/machine.py: scripts run as python benchmarks/<name>.py


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a folder written by `seisbind generate`")
    parser.add_argument("--config", default="quickstart", help="train config (file or shipped name; default quickstart)")
    parser.add_argument("--captions", type=int, nargs="+", default=[1, 16], help="captions_per_geology settings")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="train config override")
    parser.add_argument("--out-json", help="write every figure here")
    args = parser.parse_args()

    from seisbind.evaluation.evaluate import evaluate
    from seisbind.training import load_config, train

    torch.set_flush_denormal(True)
    rows, figures = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.captions:
            out = Path(tmp) / f"captions-{n}"
            config = load_config(args.config, [f"data={args.data}", f"output_dir={out}", "progress=false",
                                               "tracker=none", f"captions_per_geology={n}", *args.set])  # fmt: skip
            start = time.perf_counter()
            result = train(config)
            seconds = time.perf_counter() - start
            res = evaluate(out / "final-model", args.data, "test", baseline_steps=0, gather_cnn_steps=0, progress=False)
            probes = res["probes"]["image tower, trained"]
            text = res["text"]
            r = res["retrieval"]["seisbind (trained)"]
            figures[n] = {"train_seconds": seconds, "steps": result.step, "probes_image": probes, "text": text,
                          "retrieval": r}  # fmt: skip
            z = text["zero_shot"]["family"]["waveform -> text prompts (emergent)"]["acc1"]
            rows.append(
                f"| {n} | {result.step} | {seconds:.0f} | {probes['family']['linear']['acc1']:.3f} | "
                f"{probes['fault_present']['linear']['acc1']:.3f} | {probes['vs30']['linear']['r2']:.3f} | "
                f"{probes['depth_vs760_m']['linear']['r2']:.3f} | {r['image_to_waveform']['recall@1']:.3f} | "
                f"{text['retrieval']['text_to_image']['recall@10']:.3f} | "
                f"{text['retrieval_heldout_phrasings']['text_to_image']['recall@10']:.3f} | {z:.3f} |"
            )
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"data {args.data}, config {args.config} {' '.join(args.set)}; test split\n")
    print("| captions per geology | steps | train s | image probe family acc1 | image probe fault acc1 | "
          "image probe Vs30 R^2 | image probe depth R^2 | i->w R@1 | text->image R@10 | text->image R@10, held-out "
          "phrasings | w->text family acc1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
