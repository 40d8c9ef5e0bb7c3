"""The whole evaluation of one trained model on one split, and its comparison table.

Does binding section images and waveforms in one space help, and by how much? Everything below
runs on the same splits in the same run: retrieval for the trained model, the same model before
contrastive training, and four baselines (random, CCA, a spectrogram image tower, the gather CNN);
zero-shot classification; linear and kNN probes on
frozen features of each tower before and after training and of both concatenated.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from seisbind.data.dataset import load_paired
from seisbind.evaluation import baselines, plots
from seisbind.evaluation.embed import SplitEmbeddings, embed_split
from seisbind.evaluation.gather_cnn import GatherCNNBaseline
from seisbind.evaluation.metrics import classification_report, recall_curve, retrieval_report
from seisbind.evaluation.probes import knn_probe, linear_probe_classification, linear_probe_regression
from seisbind.evaluation.zeroshot import class_prototypes, zero_shot_predict
from seisbind.modalities import ModalityType
from seisbind.paths import require_folder

CLASS_LABELS = ("family", "fault_present")
REGRESSION_LABELS = ("vs30", "depth_vs760_m", "source_depth_m")
# The gather CNN's budget when no wall time is given. The model folder (save_pretrained +
# training.json: step and metrics) does not record the main model's training wall time, so the
# default is this step budget; callers that know the wall time (the quickstart,
# benchmarks/bench_retrieval.py) pass it as gather_cnn_seconds.
GATHER_CNN_STEPS = 300
GATHER_CNN = "gather CNN"


def gather_cnn_budget(seconds: float | None, steps: int) -> dict | None:
    """The gather CNN's budget: ``{"max_seconds": s}`` if ``seconds`` is given, else
    ``{"steps": n}``; ``None`` (skip it) for 0 seconds or, without seconds, 0 steps."""
    if seconds is not None:
        if seconds < 0:
            raise ValueError(f"gather_cnn_seconds must be >= 0 (0 skips the gather CNN); got {seconds}")
        return {"max_seconds": float(seconds)} if seconds > 0 else None
    if steps < 0:
        raise ValueError(f"gather_cnn_steps must be >= 0 (0 skips the gather CNN); got {steps}")
    return {"steps": int(steps)} if steps > 0 else None


def describe_budget(budget: dict) -> str:
    if budget.get("max_seconds") is not None:
        return f"{budget['max_seconds']:.0f} s of wall time"
    return f"{budget['steps']} steps"


def retrieval_both_ways(similarity_w2i: np.ndarray, positives: np.ndarray) -> dict:
    return {
        "waveform_to_image": retrieval_report(similarity_w2i, positives),
        "image_to_waveform": retrieval_report(similarity_w2i.T, positives.T),
    }


def _features(emb: dict[str, SplitEmbeddings], kind: str) -> tuple[dict[str, np.ndarray], str]:
    """Features per split for a feature set, and whether they are per image or per waveform."""
    if kind == "image":
        return {s: e.image for s, e in emb.items()}, "image"
    if kind == "waveform":
        return {s: e.waveform for s, e in emb.items()}, "waveform"
    # both towers: each waveform next to the image of its own geology
    return {s: np.concatenate([e.waveform, e.image[e.waveform_geology]], 1) for s, e in emb.items()}, "waveform"


def run_probes(emb: dict[str, SplitEmbeddings], kind: str, split: str) -> dict:
    feats, level = _features(emb, kind)
    labels = {s: (e.image_labels if level == "image" else e.waveform_labels) for s, e in emb.items()}
    out = {}
    for name in CLASS_LABELS + REGRESSION_LABELS:
        if name not in labels["train"]:
            continue  # e.g. source depth has no meaning for an image-level feature
        ytr, yva, yte = (np.asarray(labels[s][name]) for s in ("train", "validation", split))
        args = (feats["train"], ytr, feats["validation"], yva, feats[split], yte)
        if name in CLASS_LABELS:
            if len(np.unique(ytr)) < 2:
                continue
            out[name] = {"linear": linear_probe_classification(*args), "knn": knn_probe(feats["train"], ytr, feats[split], yte, "classification")}
        else:
            out[name] = {"linear": linear_probe_regression(*args), "knn": knn_probe(feats["train"], ytr, feats[split], yte, "regression")}
    return out


def zero_shot(emb: dict[str, SplitEmbeddings], split: str) -> dict:
    """Classify the split's waveforms from prototypes of the train images' labels."""
    out = {}
    for name in CLASS_LABELS:
        classes, protos = class_prototypes(emb["train"].image, emb["train"].image_labels[name])
        pred = zero_shot_predict(emb[split].waveform, classes, protos)
        out[name] = {**classification_report(emb[split].waveform_labels[name], pred), "classes": [str(c) for c in classes]}
    return out


def evaluate(
    model_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    split: str = "test",
    *,
    plots_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    baseline_steps: int = 200,
    gather_cnn_seconds: float | None = None,
    gather_cnn_steps: int = GATHER_CNN_STEPS,
    gather_cnn=None,
    gather_cnn_sources_per_pair: int = 1,
    gather_cnn_mirror_prob: float = 0.0,
    mirror_average: bool | None = None,
    image_checkpoint: str | None = None,
    waveform_checkpoint: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Every evaluation of the model in ``model_dir`` on ``split`` of ``data_dir``, as a dict.

    ``baseline_steps`` trains the spectrogram baseline (0 skips it). The gather CNN trains for
    ``gather_cnn_seconds`` of wall time if given (pass the main model's training time, for a
    comparison at equal compute), else for ``gather_cnn_steps``; 0 skips it. Its budget and what
    it spent are under ``results["gather_cnn"]``. When this process has a core to spare (fewer
    torch threads than cores, as after a one-thread training run), the gather CNN trains in a
    spawned process with this process's thread count while the other stages run here on the
    spare cores; otherwise it trains here after them. ``gather_cnn`` is one already fitting
    (``start_in_process(..., budget=None)``, started beside the model's training, as the quickstart
    does): it gets ``gather_cnn_seconds`` as its wall budget and evaluate takes its answer.
    ``gather_cnn_sources_per_pair``: the sources a pair of the gather CNN's (give the model's
    ``sources_per_pair``, so the bar sees the data as the model did); ``gather_cnn_mirror_prob``
    its pairs' mirror probability (give the train config's ``mirror_prob``). ``mirror_average``
    True or False overrides the model's ``config.mirror_average`` for this evaluation. The CNN
    embeds each item once: averaged over the mirror it scored lower (test MRR 0.286 against 0.318).
    """
    from seisbind.models.joint import SeisBindModel

    if split == "train":
        raise ValueError("evaluate on validation or test: the probes and baselines are fitted on train")
    gather_budget = gather_cnn_budget(gather_cnn_seconds, gather_cnn_steps)
    if gather_cnn is not None:
        if not gather_cnn_seconds:
            raise ValueError("a gather CNN already fitting needs gather_cnn_seconds, the model's training wall time")
        gather_cnn.set_max_seconds(gather_cnn_seconds)  # before anything here can fail, so it always ends
    start = time.perf_counter()
    # A folder, never a Hub id: a mistyped relative path ("runs/modle") looks like one and would download.
    model = SeisBindModel.from_pretrained(require_folder(model_dir, "a model folder written by save_pretrained"))
    if mirror_average is not None:
        model.config.mirror_average = bool(mirror_average)
    torch.manual_seed(seed)
    before = SeisBindModel(model.config)  # the same architecture before contrastive training
    if image_checkpoint:
        before.load_tower_checkpoint("image", image_checkpoint)
    if waveform_checkpoint:
        before.load_tower_checkpoint("waveform", waveform_checkpoint)
    splits = ("train", "validation", split) if split != "validation" else ("train", "validation")
    data = {s: load_paired(data_dir, s) for s in splits}
    for s, ds in data.items():
        if len(ds) < 2:
            raise ValueError(f"split {s!r} of {data_dir} has {len(ds)} geologies; evaluation needs at least 2 in each split")
    stages: dict[str, float] = {}  # wall time of each stage, so a slow evaluation says where it went
    clock = time.perf_counter()
    # With a core to spare, the gather CNN trains in its own process while the rest runs here:
    # its loop keeps `threads` cores, as the model's loop had (beside its data worker).
    cnn_threads = torch.get_num_threads()
    spare = available_cores() - cnn_threads
    concurrent = gather_cnn is not None or gather_budget is not None and spare >= 1
    pending = gather_cnn
    if concurrent and pending is None:
        from seisbind.evaluation.gather_cnn import start_in_process

        pending = start_in_process(data_dir, split, gather_budget, seed, model.config.image, cnn_threads,
                                   sources_per_pair=gather_cnn_sources_per_pair, mirror_prob=gather_cnn_mirror_prob)
    try:
        with limited_threads(max(1, spare) if concurrent else None):
            results = _evaluate_here(model, before, data, split, stages, clock, baseline_steps=baseline_steps,
                                     gather_budget=gather_budget, pending=pending, seed=seed, plots_dir=plots_dir,
                                     progress=progress, batch_size=batch_size,
                                     gather_options={"sources_per_pair": gather_cnn_sources_per_pair,
                                                     "mirror_prob": gather_cnn_mirror_prob})  # fmt: skip
        results = {"model": str(model_dir), "data": str(data_dir), **results}
    finally:
        if pending is not None:
            pending.stop()  # a no-op once it has answered; on an error here, stops the fit
    results["seconds"] = time.perf_counter() - start
    results["stage_seconds"] = stages
    return results


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity mask
        return os.cpu_count() or 1


@contextlib.contextmanager
def limited_threads(n: int | None):
    """Within the block, torch and the BLAS/OpenMP pools use at most ``n`` threads (None: no change)."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)


def _evaluate_here(model, before, data, split, stages, clock, *, baseline_steps, gather_budget, pending, seed,
                   plots_dir, progress, batch_size, gather_options=None) -> dict:
    """The body of :func:`evaluate`; ``pending`` is the gather CNN running in another process, or None."""

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[name] = now - clock
        clock = now

    after_emb = {s: embed_split(model, ds, batch_size, progress, f"trained model, {s}") for s, ds in data.items()}
    before_emb = {s: embed_split(before, ds, batch_size, progress, f"untrained model, {s}") for s, ds in data.items()}
    lap("embed splits")
    test = after_emb[split]
    positives = test.positives()

    retrieval = {
        "seisbind (trained)": retrieval_both_ways(test.waveform @ test.image.T, positives),
        "seisbind (before training)": retrieval_both_ways(before_emb[split].waveform @ before_emb[split].image.T, positives),
        "random": retrieval_both_ways(baselines.random_similarity(*positives.shape, seed=seed), positives),
    }
    raw_train, raw_test = baselines.raw_features(data["train"]), baselines.raw_features(data[split])
    cca_sim = baselines.cca_similarity(raw_train, after_emb["train"].waveform_geology, raw_test)
    retrieval["CCA on PCA of raw data"] = retrieval_both_ways(cca_sim, positives)
    lap("CCA baseline")
    spectro_sim = None
    if baseline_steps > 0:
        spectro = baselines.SpectrogramBaseline(model.config, steps=baseline_steps, seed=seed)
        spectro.fit(data["train"])
        spectro_sim = spectro.similarity(data[split])
        retrieval["spectrogram image tower"] = retrieval_both_ways(spectro_sim, positives)
        lap("spectrogram baseline")
    gather_sim, gather_info = None, None
    if gather_budget is not None and pending is None:
        gather = GatherCNNBaseline(**gather_budget, seed=seed, image_config=model.config.image, **gather_options)
        gather.fit(data["train"], validation=data["validation"] if split != "validation" else None)
        gather_sim, gather_info = gather.similarity(data[split]), gather.fit_info
        lap("gather CNN")

    seen = after_emb["train"].first_geologies(len(test.image))
    results = {
        "split": split,
        "geologies": {s: len(ds) for s, ds in data.items()},
        "waveforms_per_geology": int(len(test.waveform) // max(1, len(test.image))),
        "mirror_average": bool(model.config.mirror_average),
        "retrieval": retrieval,
        "zero_shot": {"trained": zero_shot(after_emb, split), "before training": zero_shot(before_emb, split)},
        "probes": {
            "image tower, before training": run_probes(before_emb, "image", split),
            "waveform tower, before training": run_probes(before_emb, "waveform", split),
            "image tower, trained": run_probes(after_emb, "image", split),
            "waveform tower, trained": run_probes(after_emb, "waveform", split),
            "both towers concatenated, trained": run_probes(after_emb, "concat", split),
        },
        "baseline_steps": baseline_steps,
        # The memorisation check: the trained model on as many *training* geologies as the split
        # has, so that the gallery is the same size. Far above the split's figures, the model has
        # learnt its training set more than the mapping (more geologies, not more steps, then help).
        "training_geologies": retrieval_both_ways(seen.waveform @ seen.image.T, seen.positives()),
    }
    lap("zero-shot and probes")
    if ModalityType.TEXT in model.modalities:
        from seisbind.evaluation import text

        shared = text.train_shared_directions(after_emb)
        results["text"] = {
            "zero_shot": text.emergent_zero_shot(model, after_emb, split, shared),
            "retrieval": text.text_retrieval(model, data[split], test, seed, templates="train", shared=shared),
            "retrieval_heldout_phrasings": text.text_retrieval(model, data[split], test, seed, templates="heldout",
                                                               shared=shared),
        }
        lap("text")
    if pending is not None:
        gather_sim, gather_info = pending.get()
        gather_info["concurrent"] = True  # trained in its own process beside the stages above
        lap("gather CNN (waiting for its process)")
    if gather_sim is not None:
        retrieval[GATHER_CNN] = retrieval_both_ways(gather_sim, positives)
    results["gather_cnn"] = gather_info  # budget, steps done, seconds, pairs/s; None when skipped
    if plots_dir is not None:
        pdir = Path(plots_dir)
        pdir.mkdir(parents=True, exist_ok=True)
        curves = {"seisbind (trained)": recall_curve(test.waveform @ test.image.T, positives),
                  "seisbind (before training)": recall_curve(before_emb[split].waveform @ before_emb[split].image.T, positives),
                  "CCA on PCA of raw data": recall_curve(cca_sim, positives)}  # fmt: skip
        if spectro_sim is not None:
            curves["spectrogram image tower"] = recall_curve(spectro_sim, positives)
        if gather_sim is not None:
            curves[GATHER_CNN] = recall_curve(gather_sim, positives)
        results["plots"] = [
            str(plots.recall_curves(curves, pdir / "recall_at_k.png", f"waveform -> image, gallery {positives.shape[1]}")),
            str(plots.similarity_heatmap(test.waveform @ test.image.T, test.waveform_geology, pdir / "similarity.png")),
            str(plots.joint_space_map(test.image, test.waveform, test.image_labels["family"], test.waveform_labels["family"], pdir / "joint_space_tsne.png", seed)),
        ]  # fmt: skip
        lap("plots")
    return results


def markdown_tables(results: dict) -> str:
    """The comparison tables: retrieval, zero-shot, probes."""
    lines = [
        f"Retrieval on {results['split']}: {results['geologies'][results['split']]} images, "
        f"{results['waveforms_per_geology']} waveforms each"
        + (" (the model's embeddings mirror-averaged)" if results.get("mirror_average") else ""),
        "",
        "| method | w->i R@1 | w->i R@5 | w->i R@10 | w->i median rank | i->w R@1 | i->w mAP | gallery (w->i) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["retrieval"].items():
        w, i = r["waveform_to_image"], r["image_to_waveform"]
        lines.append(
            f"| {name} | {w['recall@1']:.3f} | {w['recall@5']:.3f} | {w['recall@10']:.3f} | {w['median_rank']:.1f} | "
            f"{i['recall@1']:.3f} | {i['mAP']:.3f} | {w['gallery_size']} |"
        )
    seen = results.get("training_geologies")
    if seen:
        w = seen["waveform_to_image"]
        lines += ["", f"memorisation check, the trained model on {w['gallery_size']} of its training geologies: w->i "
                  f"R@1 {w['recall@1']:.3f}, R@10 {w['recall@10']:.3f}, median rank {w['median_rank']:.1f} (a gap to "
                  f"the {results['split']} figures above is what it learnt of those geologies alone)"]
    gather = results.get("gather_cnn")
    if gather:
        lines += ["", f"{GATHER_CNN}: budget {describe_budget(gather['budget'])}; trained {gather['steps']} steps "
                  f"of {gather['batch_size']} pairs in {gather['seconds']:.1f} s ({gather['pairs_per_s']:.1f} pairs/s, "
                  f"{gather['threads']} torch threads)"]
    lines += ["", "| zero-shot from image prototypes | family acc1 | family mean recall | fault acc1 | fault mean recall |", "|---|---|---|---|---|"]
    for name, z in results["zero_shot"].items():
        f, t = z["family"], z["fault_present"]
        lines.append(f"| {name} | {f['acc1']:.3f} | {f['mean_per_class_recall']:.3f} | {t['acc1']:.3f} | {t['mean_per_class_recall']:.3f} |")
    cols = [("family", "acc1"), ("fault_present", "acc1"), ("vs30", "r2"), ("depth_vs760_m", "r2"), ("source_depth_m", "r2")]
    lines += ["", "| features (linear / kNN) | " + " | ".join(f"{c} {m}" for c, m in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, p in results["probes"].items():
        cells = [f"{p[c]['linear'][m]:.3f} / {p[c]['knn'][m]:.3f}" if c in p else "n/a" for c, m in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "text" in results:
        from seisbind.evaluation import text

        lines += ["", text.markdown(results["text"])]
    return "\n".join(lines)


def write_json(results: dict, path: str | os.PathLike) -> Path:
    """Write atomically, so an interrupted run never leaves half a results file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, path)
    return path
