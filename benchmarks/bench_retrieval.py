"""Test retrieval of a trained model against the gather CNN baseline trained for the same wall time.

Trains the main model with train_contrastive.py's loop (``seisbind.training.train``: the config's
``max_steps``, or as many as fit its ``time_budget_s``, or ``--max-steps``) and measures its wall
time (the whole ``train()`` call: data loader, steps, the config's validations and checkpoints),
then trains
``seisbind.evaluation.gather_cnn.GatherCNNBaseline`` on the same train split, on the same device
and torch threads, for that wall time (``--cnn-seconds`` to give another). Both are then scored
on the test split: the model's embeddings from ``embed_split`` (its ``best-model``, chosen on
validation MRR, and the CNN's best validation checkpoint; or both at their last step with
``--model-folder final-model``), the CNN's ``similarity``; a random
similarity gives chance. ``--side-by-side`` trains the two at once instead, each on its own core
(the CNN in a spawned process, stopped after the model's wall time, as ``seisbind quickstart``
does): half the benchmark's time on a 2-core machine. Prints the machine and a markdown table of both directions' recall@1/5/10,
median rank and gallery size, with each method's training seconds, steps and pairs per second
(pairs trained / training wall time, for both).

Usage:
  python benchmarks/bench_retrieval.py --data runs/quake-quickstart --config configs/quickstart.yaml
  python benchmarks/bench_retrieval.py --data runs/openfwi --config CONFIG --set batch_size=16 --out-json r.json
  python benchmarks/bench_retrieval.py --data runs/openfwi-1500 --config configs/openfwi.yaml --held-out runs/openfwi-new-families
  python benchmarks/bench_retrieval.py --data runs/openfwi-1500 --config configs/openfwi.yaml --side-by-side
  python benchmarks/bench_retrieval.py --data runs/openfwi-3fam --config configs/openfwi.yaml --side-by-side \
      --held-out runs/openfwi-heldout --held-out-split train
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from machine import cpu_model  # benchmarks/machine.py: scripts run as python benchmarks/<name>.py


def retrieval_row(name: str, r: dict, train: dict) -> str:
    w, i = r["waveform_to_image"], r["image_to_waveform"]
    cells = [name, f"{train['seconds']:.1f}" if train.get("seconds") is not None else "-",
             str(train.get("steps", "-")), f"{train['pairs_per_s']:.1f}" if train.get("pairs_per_s") else "-"]
    for d in (w, i):
        cells += [f"{d['recall@1']:.3f}", f"{d['recall@5']:.3f}", f"{d['recall@10']:.3f}", f"{d['median_rank']:.1f}"]
    cells.append(f"{w['gallery_size']} / {i['gallery_size']}")
    return "| " + " | ".join(cells) + " |"


def machine() -> dict:
    cuda = torch.cuda.is_available()
    return {
        "platform": platform.platform(), "python": platform.python_version(), "cpu": cpu_model(),
        "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if cuda else None,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a folder written by `seisbind generate`")
    parser.add_argument("--config", required=True, help="a train_contrastive.py YAML config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--max-steps", type=int,
                        help="main model's training steps, exactly (default: the config's max_steps, or its time_budget_s)")
    parser.add_argument("--cnn-seconds", type=float, help="gather CNN wall time (default: the main model's)")
    parser.add_argument("--cnn-batch-size", type=int, default=32)
    parser.add_argument("--model-folder", default="best-model", choices=("final-model", "best-model"),
                        help="the model scored: best-model (its best validation MRR; the gather CNN then keeps its "
                             "own best validation checkpoint too) or final-model (both their last step)")
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    parser.add_argument("--output-dir", help="training output folder (default: a temporary folder, removed after)")
    parser.add_argument("--batch-size", type=int, default=8, help="embedding batch of the main model")
    parser.add_argument("--out-json", help="write every figure as JSON here")
    parser.add_argument("--held-out", metavar="DIR",
                        help="also score both on another generated set (e.g. geology families the training data "
                             "lacks), on its --held-out-split")
    parser.add_argument("--held-out-split", default="test", choices=("train", "validation", "test"),
                        help="split of --held-out to score (any: none of it was trained on; default test)")
    parser.add_argument("--side-by-side", action="store_true",
                        help="train the gather CNN during the model's training, in its own process on its own core "
                             "(that process scores --split and --held-out)")
    args = parser.parse_args(argv)
    if args.side_by_side and (args.cnn_seconds is not None or args.cnn_batch_size != 32):
        parser.error("--side-by-side gives the CNN the model's wall time and its default batch: drop --cnn-seconds "
                     "and --cnn-batch-size, or --side-by-side")

    from seisbind.data.dataset import load_paired
    from seisbind.evaluation.baselines import random_similarity
    from seisbind.evaluation.embed import embed_split
    from seisbind.evaluation.evaluate import retrieval_both_ways
    from seisbind.evaluation.gather_cnn import GatherCNNBaseline, start_in_process
    from seisbind.models.factory import model_config
    from seisbind.models.joint import SeisBindModel
    from seisbind.training import load_config, train

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.output_dir or tmp)
        # Quiet defaults first, then the user's overrides, then what this benchmark must set.
        overrides = ["tracker=none", "progress=false", *args.set, f"data={args.data}", f"output_dir={out}"]
        if args.max_steps:
            warmup = load_config(args.config, overrides).warmup_steps
            overrides += [f"max_steps={args.max_steps}", "time_budget_s=null",
                          f"warmup_steps={min(warmup, args.max_steps // 10)}"]
        config = load_config(args.config, overrides)
        cuda = torch.cuda.is_available() and not config.cpu
        # The CNN keeps its best validation checkpoint when the model is scored as its best-model.
        select = args.model_folder == "best-model"
        beside, cnn_held_out = None, None
        if args.side_by_side:
            image_config = model_config(config.model, **config.model_overrides).image
            # Its process scores --split, and the held-out split with the same weights.
            also = [(args.held_out, args.held_out_split)] if args.held_out else []
            beside = start_in_process(args.data, args.split, None, config.seed, image_config, threads=1, select=select,
                                      also=also, sources_per_pair=config.sources_per_pair,
                                      mirror_prob=config.mirror_prob)
        length = (f"{config.time_budget_s:g} s (at most {config.max_steps} steps)" if config.time_budget_s
                  else f"{config.max_steps} steps")
        print(f"[1/3] training {config.model} for {length} ({args.config}) -> {out}"
              + (", the gather CNN beside it" if beside else ""), flush=True)
        try:
            t = time.perf_counter()
            result = train(config)
            train_seconds = time.perf_counter() - t
            if beside is not None:
                beside.set_max_seconds(train_seconds)
                cnn_similarity, cnn_fit_info, *also_scored = beside.get()
                cnn_held_out = also_scored[0][0] if also_scored else None
        finally:
            if beside is not None:
                beside.stop()
        windows = []
        metrics_file = out / "metrics.jsonl"
        if metrics_file.exists():
            entries = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
            windows = [e["train/pairs_per_s"] for e in entries if "train/pairs_per_s" in e]
        pairs = result.step * config.batch_size * config.gradient_accumulation_steps
        main_train = {
            "seconds": train_seconds, "steps": result.step, "pairs_per_s": pairs / train_seconds,
            "pairs_per_s_logged_median": statistics.median(windows) if windows else None,
            "batch_size": config.batch_size, "final_loss": result.loss, "best_val_mrr": result.best_metric,
        }  # fmt: skip

        cnn_seconds = args.cnn_seconds if args.cnn_seconds is not None else train_seconds
        data_test = load_paired(args.data, args.split)
        model = SeisBindModel.from_pretrained(out / args.model_folder)  # embedded on the CPU, as evaluate() does
        if beside is None:
            print(f"[2/3] training the gather CNN for {cnn_seconds:.1f} s", flush=True)
            cnn = GatherCNNBaseline(max_seconds=cnn_seconds, batch_size=args.cnn_batch_size, seed=config.seed,
                                    device="cuda" if cuda else "cpu", image_config=model.config.image,
                                    sources_per_pair=config.sources_per_pair, mirror_prob=config.mirror_prob)
            cnn.fit(load_paired(args.data, "train"),
                    validation=load_paired(args.data, "validation") if select and args.split != "validation" else None)
            cnn_similarity, cnn_fit_info = None, cnn.fit_info
        else:
            print("[2/3] the gather CNN trained beside the model", flush=True)

        def score(dataset, cnn_scored=None) -> dict:
            """Both directions' retrieval of the model, the CNN and chance on one split (``cnn_scored``:
            the CNN's similarities when its own process scored this split)."""
            emb = embed_split(model, dataset, args.batch_size, progress=False)
            positives = emb.positives()
            return {
                "seisbind": retrieval_both_ways(emb.waveform @ emb.image.T, positives),
                "gather CNN": retrieval_both_ways(cnn.similarity(dataset) if cnn_scored is None else cnn_scored,
                                                  positives),
                "random": retrieval_both_ways(random_similarity(*positives.shape, seed=config.seed), positives),
            }

        print(f"[3/3] scoring the {args.split} split ({len(data_test)} geologies)", flush=True)
        retrieval = score(data_test, cnn_similarity)
        held_out = None
        if args.held_out:
            held_out = score(load_paired(args.held_out, args.held_out_split), cnn_held_out)

    fit = cnn_fit_info
    cnn_train = {**fit, "pairs_per_s": fit["steps"] * fit["batch_size"] / fit["seconds"],  # per wall second, as above
                 "pairs_per_s_in_steps": fit["pairs_per_s"]}  # fmt: skip
    info = {"seisbind": main_train, "gather CNN": cnn_train, "random": {}}
    report = {
        "data": str(args.data), "config": str(args.config), "overrides": args.set, "split": args.split,
        "model_folder": args.model_folder, "side_by_side": args.side_by_side, "machine": machine(), "train": info, "retrieval": retrieval,
        "held_out": None if held_out is None else {"data": args.held_out, "split": args.held_out_split,
                                                   "retrieval": held_out},
    }  # fmt: skip
    m = report["machine"]
    device = m["gpu"] or f"{m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads"
    print(f"\nmachine: {m['platform']}; {device}; torch {m['torch']}")
    logged = main_train["pairs_per_s_logged_median"]
    print(f"seisbind: {result.step} steps of {config.batch_size} in {train_seconds:.1f} s (train() wall time)"
          + (f"; logged train pairs/s (median of windows) {logged:.1f}" if logged else ""))
    print(f"gather CNN: budget {cnn_seconds:.1f} s; {fit['steps']} steps of {fit['batch_size']} in {fit['seconds']:.1f} s"
          f"{' beside the model' if args.side_by_side else ''}; parameters {fit['parameters']}")
    header = ("| method | train s | steps | train pairs/s | w->i R@1 | w->i R@5 | w->i R@10 | w->i median rank | "
              "i->w R@1 | i->w R@5 | i->w R@10 | i->w median rank | gallery (w->i / i->w) |")
    print("\n" + header + "\n|" + "---|" * (header.count("|") - 1))
    for name, r in retrieval.items():
        print(retrieval_row(name, r, info[name]))
    if held_out is not None:
        print(f"\nheld out: {args.held_out} ({args.held_out_split} split)\n\n" + header + "\n|" + "---|" * (header.count("|") - 1))
        for name, r in held_out.items():
            print(retrieval_row(name, r, info[name]))
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(report, indent=2, default=float) + "\n")
        print(f"\nJSON: {args.out_json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
