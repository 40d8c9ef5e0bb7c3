"""Which tower limits retrieval: the gather CNN's loop with either CNN swapped for the model's tower.

Trains one pairing of towers with the gather CNN's training loop
(``seisbind.evaluation.gather_cnn.GatherCNNBaseline``: open_clip's ClipLoss, AdamW, the train
config's ``sources_per_pair`` and ``mirror_prob``, best validation checkpoint kept, a wall-time
budget) and scores it on the test split. ``--image vit`` puts the model's image tower (built from
the train config's ``model`` and ``model_overrides``) where the image CNN was; ``--waveform
array`` does the same for the waveform tower. The same loop for every cell of the 2 x 2 table
separates what a tower learns from what the model's own loop (learning rate, schedule, batch)
does. Run the four cells, two at a time on a 2-core machine with ``OMP_NUM_THREADS=1``.

Usage:
  OMP_NUM_THREADS=1 python benchmarks/bench_tower_swap.py --data runs/quake-qs3 --config configs/quickstart.yaml \
      --image vit --waveform cnn --seconds 400
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from torch import nn


class _Encode(nn.Module):
    """A model's ``encode_<modality>`` as a CNN tower's call: inputs in, unit embeddings out."""

    def __init__(self, model, modality: str) -> None:
        super().__init__()
        self.model, self.modality = model, modality

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.modality == "image":
            return self.model.encode_image(x[:, None] if x.ndim == 3 else x)
        return self.model.encode_waveform(x)  # the line of stations the config assumes without positions


def main() -> None:
    from seisbind.data.dataset import load_paired
    from seisbind.evaluation.evaluate import retrieval_both_ways
    from seisbind.evaluation.gather_cnn import EMBED_DIM, GatherCNNBaseline
    from seisbind.models.factory import create_model
    from seisbind.training.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a folder written by `seisbind generate`")
    parser.add_argument("--config", required=True, help="a train_contrastive.py YAML config (the model's towers)")
    parser.add_argument("--image", choices=("cnn", "vit"), default="cnn")
    parser.add_argument("--waveform", choices=("cnn", "array"), default="cnn")
    parser.add_argument("--seconds", type=float, default=400.0, help="wall-time budget of the training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-json", help="write the figures as JSON here")
    parser.add_argument("overrides", nargs="*", help="train config overrides, key=value (as train_contrastive.py takes "
                        "them), e.g. model_overrides.waveform.input_norm=record_log")
    args = parser.parse_args()

    config = load_config(args.config, args.overrides)
    overrides = {k: v for k, v in config.model_overrides.items() if k != "mirror_average"}  # one embedding an item

    def tower(modality: str) -> _Encode:
        # A model of its own for each swapped tower: one model behind both would put every weight in
        # the optimiser twice (AdamW would step it twice a step). Its other towers get no gradient.
        torch.manual_seed(args.seed)
        return _Encode(create_model(config.model, **{**overrides, "embed_dim": EMBED_DIM}), modality)

    class Swapped(GatherCNNBaseline):
        def build(self, channels: int) -> None:
            super().build(channels)
            if args.image == "vit":
                self.image_cnn = tower("image")
            if args.waveform == "array":
                self.waveform_cnn = tower("waveform")

    baseline = Swapped(max_seconds=args.seconds, seed=args.seed, image_config=tower("image").model.config.image,
                       sources_per_pair=config.sources_per_pair, mirror_prob=config.mirror_prob)
    baseline.fit(load_paired(args.data, "train"), validation=load_paired(args.data, "validation"))
    similarity = baseline.similarity(load_paired(args.data, "test"))
    n = similarity.shape[1]
    positives = np.repeat(np.arange(n), similarity.shape[0] // n)[:, None] == np.arange(n)[None]
    w2i = retrieval_both_ways(similarity, positives)["waveform_to_image"]
    info = baseline.fit_info
    row = {"image": args.image, "waveform": args.waveform, "steps": info["steps"], "kept_step": info["kept_step"],
           "validation_mrr": info["validation_mrr"], "threads": torch.get_num_threads(),
           **{k: w2i[k] for k in ("recall@1", "recall@5", "recall@10", "median_rank", "mrr", "gallery_size")}}
    print("| image | waveform | steps | w->i R@1 | R@5 | R@10 | median rank | MRR | kept step (validation MRR) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.image} | {args.waveform} | {row['steps']} | {row['recall@1']:.3f} | {row['recall@5']:.3f} | "
          f"{row['recall@10']:.3f} | {row['median_rank']:.1f} | {row['mrr']:.3f} | {row['kept_step']} "
          f"({row['validation_mrr']:.3f}) |")
    if args.out_json:
        with open(args.out_json, "w") as f:
            json.dump(row, f, indent=2)


if __name__ == "__main__":
    main()
