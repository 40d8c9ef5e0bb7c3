"""Validation during training: retrieval between waveforms and images on a held-out split.

Every source of every validation geology is a query, recorded at all its stations without
augmentation; the gallery is the validation images, one per geology. Waveform-to-image recall@k
is the fraction of queries whose own geology's image ranks in the top k (chance: k / gallery
size); image-to-waveform recall@1 asks whether an image's nearest waveform is one of its sources.
"""

from __future__ import annotations

import numpy as np
import torch

from seisbind.training.compiling import eager
from seisbind.training.data import decode_image, decode_positions, decode_record


def recall_metrics(image_emb: torch.Tensor, waveform_emb: torch.Tensor) -> dict[str, float]:
    """Retrieval metrics from embeddings: images (G, D), waveforms (G, S, D) with S sources per image.

    Computed by :func:`seisbind.evaluation.metrics.retrieval_report`, the one implementation
    evaluation uses too (a positive tied with a negative ranks below it)."""
    from seisbind.evaluation.metrics import retrieval_report

    g, s, d = waveform_emb.shape
    sims = (waveform_emb.reshape(g * s, d).float() @ image_emb.float().T).cpu().numpy()  # (queries, gallery)
    truth = np.repeat(np.arange(g), s)
    positives = truth[:, None] == np.arange(g)[None, :]
    w2i = retrieval_report(sims, positives, ks=(1, 5))
    # Image to waveform: correct if the image's best-placed waveform is one of its sources.
    i2w = retrieval_report(sims.T, positives.T, ks=(1,))
    return {
        "wave_to_image_r1": w2i["recall@1"],
        "wave_to_image_r5": w2i["recall@5"],
        "wave_to_image_mean_rank": w2i["mean_rank"],
        "wave_to_image_mrr": w2i["mrr"],
        "image_to_wave_r1": i2w["recall@1"],
        "gallery_size": float(g),
        "chance_r1": 1.0 / g,
    }


@torch.no_grad()
def evaluate_retrieval(model, rows, accelerator, batch_size: int = 64) -> dict[str, float]:
    """Embed a split (``data.load_rows``) with ``model`` and return :func:`recall_metrics`.

    Geologies are shared out across processes (``i % world_size``) and the embeddings gathered, so
    every process returns the same figures. A model whose towers were compiled for training runs
    them eagerly here (:func:`seisbind.training.compiling.eager`).
    """
    n = len(rows)
    if n < 2:
        raise ValueError(f"the validation split has {n} geologies; retrieval needs at least 2")
    world, rank = accelerator.num_processes, accelerator.process_index
    mine = list(range(rank, n, world))
    per_rank = -(-n // world)
    mine += [mine[-1] if mine else 0] * (per_rank - len(mine))  # equal shares for the gather
    device = accelerator.device
    was_training = model.training
    model.eval()
    images, records = [], []
    try:
        for start in range(0, len(mine), max(1, batch_size)):
            chunk = [rows[i] for i in mine[start : start + batch_size]]
            imgs = torch.stack([decode_image(r["image"]) for r in chunk]).to(device)
            wav = torch.stack([torch.from_numpy(decode_record(r)) for r in chunk])
            b, s = wav.shape[:2]
            positions = [decode_positions(r) for r in chunk]
            flat_x = None
            if all(p is not None for p in positions):
                flat_x = torch.from_numpy(np.stack(positions)).repeat_interleave(s, dim=0).to(device)
            with accelerator.autocast(), eager():
                images.append(model.encode_image(imgs).float())
                flat = wav.reshape(b * s, *wav.shape[2:]).to(device)
                records.append(model.encode_waveform(flat, station_x_m=flat_x).float().reshape(b, s, -1))
    finally:
        model.train(was_training)
    image_emb, waveform_emb = torch.cat(images), torch.cat(records)
    if world > 1:
        image_emb = accelerator.gather(image_emb.contiguous())
        waveform_emb = accelerator.gather(waveform_emb.contiguous())
        # gathered row r * per_rank + j is geology rank r + j * world_size
        order = torch.tensor([r + j * world for r in range(world) for j in range(per_rank)])
        keep = order < n
        image_emb = image_emb[keep][torch.argsort(order[keep])]
        waveform_emb = waveform_emb[keep][torch.argsort(order[keep])]
    return recall_metrics(image_emb.cpu(), waveform_emb.cpu())
