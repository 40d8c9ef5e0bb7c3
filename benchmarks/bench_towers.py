"""Throughput of the towers and time of a training step, printed as a markdown table.

For each model size (tiny: ``tiny``; base: ``sfm-seislm-base``) it times
  * each tower's forward pass (eval, no grad) in items per second, and
  * forward + backward of a training step: each tower alone (loss: sum of its embeddings) and the
    joint model with open_clip's CLIP loss.
Images are the config's size (tiny 64x64, base 224x224); waveforms are one station of three
components, 3001 samples (SeisLM's 30 s window at 100 Hz). FLOPs per item are counted with
``torch.utils.flop_counter``; on a GPU (bf16 autocast) the table adds model-FLOPs utilisation
against ``--peak-tflops`` (forward + backward counted as 3x the forward FLOPs).

Usage: python benchmarks/bench_towers.py [--sizes tiny base] [--threads 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from machine import cpu_model  # benchmarks/machine.py: scripts run as python benchmarks/<name>.py
from seisbind.models import ContrastiveLoss, create_model

MODELS = {"tiny": "tiny", "base": "sfm-seislm-base", "large": "sfm-seislm-large"}
WAVE_SAMPLES = 3001
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16 tensor-core peaks


def timed(fn, repeats: int, sync) -> float:
    """Best wall time of ``fn`` over ``repeats`` runs after one warm-up run.

    The minimum, not the median: on a shared machine it is the run least disturbed by others.
    """
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def forward_flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def bench_size(size: str, batch: int, repeats: int, device: torch.device, dtype: torch.dtype | None):
    torch.manual_seed(0)
    model = create_model(MODELS[size]).to(device)
    h, w = model.config.image.img_hw
    images = torch.randn(batch, model.config.image.in_chans, h, w, device=device)
    waves = torch.randn(batch, 1, model.config.waveform.in_chans, WAVE_SAMPLES, device=device)
    loss_fn = ContrastiveLoss("clip")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext

    def fwd(tower):
        def run():
            with torch.no_grad(), autocast():
                if tower == "image":
                    model.encode_image(images)
                else:
                    model.encode_waveform(waves)
        return run

    def train(tower):
        def run():
            model.zero_grad(set_to_none=True)
            with autocast():
                if tower == "image":
                    loss = model.encode_image(images).float().sum()
                elif tower == "waveform":
                    loss = model.encode_waveform(waves).float().sum()
                else:
                    out = model(images=images, waveforms=waves)
                    loss = loss_fn({k: v.float() for k, v in out.items()})
            loss.backward()
        return run

    rows = []
    inputs = {"image": f"1x{h}x{w}", "waveform": f"1 station x 3 x {WAVE_SAMPLES}", "joint": "both + CLIP loss"}
    for tower in ("image", "waveform", "joint"):
        model.eval()
        if tower == "joint":
            flops = forward_flops(fwd("image")) + forward_flops(fwd("waveform"))
            fwd_s = None
        else:
            flops = forward_flops(fwd(tower))
            fwd_s = timed(fwd(tower), repeats, sync)
        model.train()
        step_s = timed(train(tower), repeats, sync)
        rows.append({
            "tower": tower, "size": size, "batch": batch, "input": inputs[tower],
            "gflop_per_item": flops / batch / 1e9,
            "fwd_items_s": batch / fwd_s if fwd_s else None,
            "fwd_gflops": flops / fwd_s / 1e9 if fwd_s else None,
            "step_s": step_s,
            "step_gflops": 3 * flops / step_s / 1e9,
        })
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"], choices=sorted(MODELS))
    parser.add_argument("--batch", type=int, nargs="+", default=None, help="batch per size (default tiny 32, base 8)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--peak-tflops", type=float, default=None, help="GPU peak bf16 TFLOP/s for MFU")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else None
    peak = args.peak_tflops
    if device.type == "cuda" and peak is None:
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    batches = args.batch or [32 if s == "tiny" else 8 for s in args.sizes]
    if len(batches) != len(args.sizes):
        parser.error("give one --batch per --sizes entry")

    where = (torch.cuda.get_device_name(device) + ", bf16 autocast") if device.type == "cuda" else (
        f"{cpu_model()}, {args.threads} threads, fp32")
    print(f"torch {torch.__version__}; {where}; load average before: {os.getloadavg()[0]:.2f}\n")
    mfu = device.type == "cuda" and peak is not None
    head = ("| tower | size | batch | input | GFLOP/item (fwd) | forward items/s | forward GFLOP/s "
            "| train step fwd+bwd (s) |")
    print(head + (" train MFU |" if mfu else ""))
    print("|" + "---|" * (head.count("|") - 1 + (1 if mfu else 0)))
    for size, batch in zip(args.sizes, batches, strict=True):
        for r in bench_size(size, batch, args.repeats, device, dtype):
            fwd = f"{r['fwd_items_s']:.1f}" if r["fwd_items_s"] else "-"
            gf = f"{r['fwd_gflops']:.0f}" if r["fwd_gflops"] else "-"
            line = (f"| {r['tower']} | {size} | {batch} | {r['input']} | {r['gflop_per_item']:.3g} | {fwd} | {gf} | "
                    f"{r['step_s']:.3f} |")
            if mfu:
                line += f" {100 * r['step_gflops'] / (peak * 1e3):.1f}% |"
            print(line, flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
