"""``seisbind quickstart``: the whole tool on one CPU in about a quarter of an hour.

1. generate a small ``quake`` set (configs/data/quake-quickstart.yaml),
2. train the ``tiny`` towers contrastively (configs/quickstart.yaml),
3. evaluate on the test split (retrieval, zero-shot, probes, baselines; eval_zeroshot.py's code;
   the gather CNN baseline gets the same wall time as step 2's training: with two cores or more
   it trains during step 2, in its own process on its own core),
4. export the test embeddings and build a FAISS index of the test sections,
5. write one test waveform as miniSEED with ObsPy and query the index with it,
then print the results table and where every output is.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from seisbind.argtypes import positive_int
from seisbind.configs import config_path, load_yaml
from seisbind.overrides import add_set_argument, split_override

DATA_CONFIG = config_path("data", "quake-quickstart.yaml")
TEXT_QUERY = "layers cut by a fault"
TRAIN_CONFIG = config_path("quickstart.yaml")
QUICKSTART_GALLERY = 100  # validation and test geologies at most (at 1,000 geologies a tenth each)


def split_sizes(num_geologies: int) -> tuple[int, int]:
    """(validation, test) geologies: a tenth each, at most 100, the gallery the quickstart's figures
    are quoted at; more geologies grow the training split only."""
    from seisbind.data.generate import default_split_sizes

    return tuple(min(QUICKSTART_GALLERY, n) for n in default_split_sizes(num_geologies))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/quickstart", help="folder for everything the quickstart writes")
    p.add_argument("--num-geologies", type=int, default=1000,
                   help="geologies to generate (default 1000: 800 train / 100 validation / 100 test); past "
                        "1,000 the validation and test splits stay at 100 each and the rest trains")
    p.add_argument("--workers", type=int, default=0, help="generation workers (0 = one per CPU)")
    p.add_argument("--max-steps", type=int,
                   help="train exactly this many steps (default: as many as fit configs/quickstart.yaml's time_budget_s)")
    p.add_argument("--batch-size", type=positive_int, help="training batch (default: configs/quickstart.yaml)")
    p.add_argument("--baseline-steps", type=int, default=200, help="training steps of the spectrogram baseline")
    add_set_argument(p, "a train config key of step 2 (configs/quickstart.yaml)", "lr=1e-3")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, training and baselines (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def write_query_mseed(row: dict, source: int, path: Path) -> Path:
    """One stored waveform (all stations of one source) as a miniSEED file, as a user would have it."""
    import obspy

    stream = obspy.Stream()
    waves = row["waveforms"][source].numpy()
    for k, station in enumerate(waves):
        for c, comp in enumerate(row["channels"]):
            header = {"network": "SB", "station": f"Q{k:03d}", "channel": f"HH{comp}",
                      "sampling_rate": float(row["sampling_rate"]), "starttime": obspy.UTCDateTime(2026, 1, 1)}  # fmt: skip
            stream.append(obspy.Trace(station[c].astype(np.float32), header=header))
    stream.write(str(path), format="MSEED")
    return path


def run(args: argparse.Namespace) -> int:

    from seisbind.data.dataset import load_paired
    from seisbind.data.generate import generate
    from seisbind.data.captions import site_class
    from seisbind.evaluation.cli import record_in_model_card
    from seisbind.evaluation.evaluate import available_cores, evaluate, markdown_tables, write_json
    from seisbind.evaluation.gather_cnn import start_in_process
    from seisbind.models.factory import model_config
    from seisbind.search.export import export
    from seisbind.search.index_cli import build, panel, query
    from seisbind.training.config import load_config
    from seisbind.training.trainer import train

    out = Path(args.out)
    progress = not args.no_progress
    timings = {}
    start = time.perf_counter()

    for item in args.set:
        split_override(item)  # a malformed or unknown --set fails now, not after generating the data
    load_config(TRAIN_CONFIG, list(args.set))
    print(f"[1/5] generating {args.num_geologies} quake geologies -> {out / 'data'}")
    data_cfg = load_yaml(DATA_CONFIG.read_text())
    report = generate(out / "data", "quake", args.num_geologies, seed=args.seed, workers=args.workers,
                      config=data_cfg, progress=progress, split_sizes=split_sizes(args.num_geologies))  # fmt: skip
    timings["generate"] = time.perf_counter() - start

    print(f"[2/5] training the tiny towers -> {out / 'train'}")
    overrides = [f"data={out / 'data'}", f"output_dir={out / 'train'}", f"seed={args.seed}", f"progress={str(progress).lower()}"]
    if args.batch_size:
        overrides.append(f"batch_size={args.batch_size}")
    if args.max_steps:
        # exactly this many steps (no time budget); the warm-up a tenth of them, and one evaluation
        # and save at the end
        every = max(1, args.max_steps)
        overrides += [f"max_steps={args.max_steps}", "time_budget_s=null", f"warmup_steps={args.max_steps // 10}",
                      f"eval_every={every}", f"save_every={every}"]  # fmt: skip
    config = load_config(TRAIN_CONFIG, overrides + list(args.set))
    # The gather CNN trains beside the towers, one core each (the towers' loop has config.threads,
    # their data worker is light), and stops after as much wall time as they took.
    gather_cnn = None
    if available_cores() >= (config.threads or available_cores()) + 1:
        image_config = model_config(config.model, **config.model_overrides).image
        # It reads as many sources of a geology a pair as the towers do (their sources_per_pair)
        # and mirrors its pairs as often.
        gather_cnn = start_in_process(out / "data", "test", None, args.seed, image_config, threads=1,
                                      sources_per_pair=config.sources_per_pair, mirror_prob=config.mirror_prob)
    try:
        t = time.perf_counter()
        result = train(config)
        model_dir = out / "train" / "best-model"
        timings["train"] = time.perf_counter() - t

        print(f"[3/5] evaluating on the test split -> {out / 'results.json'}")
        t = time.perf_counter()
        results = evaluate(model_dir, out / "data", "test", plots_dir=out / "plots", baseline_steps=args.baseline_steps,
                           gather_cnn_seconds=timings["train"], gather_cnn=gather_cnn, seed=args.seed,
                           gather_cnn_sources_per_pair=config.sources_per_pair,
                           gather_cnn_mirror_prob=config.mirror_prob, progress=progress)  # fmt: skip
    finally:
        if gather_cnn is not None:
            gather_cnn.stop()  # a no-op once it has answered; after a failure, ends its training

    write_json(results, out / "results.json")
    record_in_model_card(model_dir, results, out / "results.json")
    timings["evaluate"] = time.perf_counter() - t

    print(f"[4/5] exporting test embeddings and building the index -> {out / 'index'}")
    t = time.perf_counter()
    export(model_dir, out / "data", "test", out / "test-embeddings.parquet", progress=progress)
    build(str(out / "test-embeddings.parquet"), str(out / "index"))

    print("[5/5] querying the index with a test waveform written as miniSEED")
    test = load_paired(out / "data", "test")
    row = test[0]
    mseed = write_query_mseed(row, 0, out / "query.mseed")
    window = (row["waveforms"].shape[-1] - 1) / float(row["sampling_rate"])
    # Rank the whole gallery, to say where the query's own section landed; show the top 5.
    arr, scores, hits, _ = query(str(out / "index"), str(model_dir), waveform=str(mseed), k=len(test), window_seconds=window)
    own_rank = 1 + next(i for i, hit in enumerate(hits) if hit["geology_id"] == row["geology_id"])
    scores, hits = scores[:5], hits[:5]
    png = panel(arr, scores, hits, out / "query.png", waveform_query=True)
    timings["index+query"] = time.perf_counter() - t

    print("\n" + markdown_tables(results))
    print(f"\nquery: test geology {row['geology_id']} ({row['family']}), source 0, from {mseed}; "
          f"its own section ranks {own_rank} of {len(test)}")  # fmt: skip
    print("| rank | score | section | family |\n|---|---|---|---|")
    for rank, (score, hit) in enumerate(zip(scores, hits), start=1):
        mark = "  <- its own section" if hit["geology_id"] == row["geology_id"] else ""
        print(f"| {rank} | {score:.3f} | geology {hit['geology_id']} | {hit['family']}{mark} |")
    if "text" in results:  # a text query of the same index: sections found from a sentence
        _, text_scores, text_hits, _ = query(str(out / "index"), str(model_dir), text=TEXT_QUERY, k=5)
        print(f'\ntext query "{TEXT_QUERY}" (seisbind index query --text)')
        print("| rank | score | section | family | fault | site class |\n|---|---|---|---|---|---|")
        for rank, (score, hit) in enumerate(zip(text_scores, text_hits), start=1):
            print(f"| {rank} | {score:.3f} | geology {hit['geology_id']} | {hit['family']} | "
                  f"{'yes' if hit.get('fault_present') else 'no'} | {site_class(hit['vs30'])} |")
    total = time.perf_counter() - start
    best = f"{result.best_metric:.3f} at step {result.best_step}" if result.best_metric is not None else "not measured"
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in results["stage_seconds"].items())
    print(
        "\ntimes: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + f"; total {total / 60:.1f} min"
        f"\nevaluation stages: {stages}"
        f"\ntrained {result.step} steps; best validation MRR (waveform -> image) {best}"
        f"\nfigures: {out / 'results.json'}, plots in {out / 'plots'}, query panel {png}, model {model_dir}, "
        f"index {out / 'index'}, data {report.out_dir}"
    )
    return 0
