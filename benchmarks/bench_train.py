"""Training throughput of train_contrastive.py: pairs per second through the real loop.

Runs the training loop of a config (``seisbind.training.train``: data loader with its workers,
augmentations, forward, loss, backward, clipping, AdamW, schedule) for ``--warmup`` + ``--steps``
optimiser steps, logging every ``--window`` steps, and prints the median of the logged windows'
pairs per second after the warm-up, as a markdown row. FLOPs of a training step (forward +
backward) are counted with ``torch.utils.flop_counter`` on batches drawn by the same sampler;
on a GPU the row adds model-FLOPs utilisation against ``--peak-tflops`` and the peak memory.

Usage:
  python benchmarks/bench_train.py --config configs/quickstart.yaml --data runs/quake-quickstart [--threads 2]
  python benchmarks/bench_train.py --config configs/sfm-seislm-base.yaml --data runs/quake   # on a GPU, bf16
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from machine import cpu_model  # benchmarks/machine.py: scripts run as python benchmarks/<name>.py
from seisbind.training import load_config, train

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16 tensor-core peaks


def step_flops_per_pair(config, batches: int = 3) -> float:
    """FLOPs of forward + backward of the joint model and CLIP loss, per training pair."""
    from seisbind.models import ContrastiveLoss, create_model
    from seisbind.training.augment import WaveformAugment
    from seisbind.training.data import GlobalBatchSampler, PairDataset, collate_pairs, load_rows

    torch.manual_seed(0)
    model = create_model(config.model, **config.model_overrides)
    rows = load_rows(config.data, config.train_split)
    dataset = PairDataset(rows, config.seed, config.min_stations, config.max_stations, WaveformAugment(),
                          config.mirror_prob)
    sampler = iter(GlobalBatchSampler(len(rows), config.batch_size, config.seed))
    loss_fn = ContrastiveLoss(model.config.loss)
    total, pairs = 0.0, 0
    for _ in range(batches):
        batch = collate_pairs([dataset[k] for k in next(sampler)])
        with FlopCounterMode(display=False) as counter:
            out = model(images=batch["images"], waveforms=batch["waveforms"], station_mask=batch["station_mask"])
            loss_fn(out).backward()
        total += counter.get_total_flops()
        pairs += batch["images"].shape[0]
    return total / pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument("--data", help="generated dataset (default: the config's data)")
    parser.add_argument("--steps", type=int, default=40, help="timed optimiser steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--window", type=int, default=10, help="steps per logged throughput window")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the training process "
                        "(default: the config's threads key)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="GPU peak bf16 TFLOP/s for MFU")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="train config overrides")
    args = parser.parse_args()
    if args.steps % args.window or args.warmup % args.window:
        parser.error("--steps and --warmup must be multiples of --window")

    with tempfile.TemporaryDirectory() as out:
        overrides = [*args.overrides, f"output_dir={out}", f"max_steps={args.warmup + args.steps}",
                     f"log_every={args.window}", "eval_every=0", "save_every=0", "tracker=none", "progress=false",
                     f"warmup_steps={min(args.warmup, args.warmup + args.steps - 1)}"]
        if args.data:
            overrides.append(f"data={args.data}")
        if args.threads is not None:
            overrides.append(f"threads={args.threads}")
        config = load_config(args.config, overrides)
        if torch.cuda.is_available() and not config.cpu:
            torch.cuda.reset_peak_memory_stats()
        result = train(config)
        lines = [json.loads(ln) for ln in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    windows = [e["train/pairs_per_s"] for e in lines if "train/pairs_per_s" in e and e["step"] > args.warmup]
    pairs_per_s = statistics.median(windows)
    flops = step_flops_per_pair(config)
    cuda = torch.cuda.is_available() and not config.cpu
    device = torch.cuda.get_device_name() if cuda else f"{cpu_model()}, {torch.get_num_threads()} threads"
    row = (f"| {Path(args.config).stem} | {config.model} | {config.mixed_precision} | {config.batch_size} | "
           f"{config.min_stations}-{config.max_stations} | {torch.get_num_threads()} | {pairs_per_s:.1f} | "
           f"{flops / 1e9:.3f} | {pairs_per_s * flops / 1e9:.1f} |")
    header = ("| config | model | precision | batch | stations | torch threads | train pairs/s | "
              "GFLOP/pair (fwd+bwd) | achieved GFLOP/s |")
    if cuda:
        peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device), None)
        mfu = f"{100 * pairs_per_s * flops / (peak * 1e12):.1f}%" if peak else "n/a (give --peak-tflops)"
        row += f" {mfu} | {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB |"
        header += " MFU | peak memory |"
    print(f"device: {device}; windows (pairs/s): {[round(w, 1) for w in windows]}; final loss {result.loss:.4f}")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    print(row)


if __name__ == "__main__":
    main()
