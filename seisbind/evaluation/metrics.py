"""Retrieval metrics as small pure functions of a similarity matrix, as in CLIP_benchmark.

``similarity[i, j]`` scores query ``i`` against gallery item ``j``; ``positives[i, j]`` is True
where item ``j`` is a true match of query ``i``. Ties are broken against the query (a positive
tied with a negative ranks below it), so a constant similarity never looks good.
"""

from __future__ import annotations

import numpy as np


def _check(similarity: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    similarity = np.asarray(similarity, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if similarity.ndim != 2 or similarity.shape != positives.shape:
        raise ValueError(f"similarity and positives must be 2-D of one shape, got {similarity.shape} and {positives.shape}")
    if not np.all(np.isfinite(similarity)):
        raise ValueError("similarity holds NaN or infinite values")
    if not positives.any(axis=1).all():
        raise ValueError(f"{int((~positives.any(axis=1)).sum())} queries have no positive in the gallery")
    return similarity, positives


def positive_ranks(similarity: np.ndarray, positives: np.ndarray) -> list[np.ndarray]:
    """For each query, the 1-based ranks of its positives in the gallery (best first)."""
    similarity, positives = _check(similarity, positives)
    ranks = []
    for sim, pos in zip(similarity, positives):
        # rank of item j = 1 + (#items scoring higher) + (#negatives scoring equal): pessimistic ties
        above = (sim[None, :] > sim[pos][:, None]).sum(1)
        ties = ((sim[None, :] == sim[pos][:, None]) & ~pos[None, :]).sum(1)
        ranks.append(np.sort(1 + above + ties))
    return ranks


def first_positive_rank(similarity: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Rank of the best-placed positive of each query."""
    return np.array([r[0] for r in positive_ranks(similarity, positives)])


def _recall(first_ranks: np.ndarray, k: int) -> float:
    return float(np.mean(first_ranks <= k))


def _reciprocal(first_ranks: np.ndarray) -> float:
    return float(np.mean(1.0 / first_ranks))


def _average_precision(ranks: list[np.ndarray]) -> float:
    return float(np.mean([np.mean(np.arange(1, len(r) + 1) / r) for r in ranks]))


def recall_at_k(similarity: np.ndarray, positives: np.ndarray, k: int) -> float:
    """Share of queries with at least one positive in the top ``k`` (CLIP_benchmark's definition)."""
    return _recall(first_positive_rank(similarity, positives), k)


def median_rank(similarity: np.ndarray, positives: np.ndarray) -> float:
    return float(np.median(first_positive_rank(similarity, positives)))


def mean_rank(similarity: np.ndarray, positives: np.ndarray) -> float:
    return float(np.mean(first_positive_rank(similarity, positives)))


def mean_reciprocal_rank(similarity: np.ndarray, positives: np.ndarray) -> float:
    """Mean over queries of 1 / (rank of the best-placed positive): a smooth recall@1."""
    return _reciprocal(first_positive_rank(similarity, positives))


def mean_average_precision(similarity: np.ndarray, positives: np.ndarray) -> float:
    """Mean over queries of average precision: mean over positives of (hits so far / rank)."""
    return _average_precision(positive_ranks(similarity, positives))


def retrieval_report(similarity: np.ndarray, positives: np.ndarray, ks=(1, 5, 10)) -> dict:
    """Every retrieval figure for one direction, with the gallery size they depend on: the ranks
    are found once and the figures are the functions above of them (training's validation and
    evaluation both report through here)."""
    all_ranks = positive_ranks(similarity, positives)
    ranks = np.array([r[0] for r in all_ranks])
    out = {f"recall@{k}": _recall(ranks, k) for k in ks}
    out.update(
        median_rank=float(np.median(ranks)),
        mean_rank=float(np.mean(ranks)),
        mrr=_reciprocal(ranks),
        mAP=_average_precision(all_ranks),
        queries=int(similarity.shape[0]),
        gallery_size=int(similarity.shape[1]),
        positives_per_query=float(np.asarray(positives).sum(1).mean()),
    )
    return out


def recall_curve(similarity: np.ndarray, positives: np.ndarray, max_k: int | None = None) -> np.ndarray:
    """recall@k for k = 1..max_k (the gallery size by default)."""
    ranks = first_positive_rank(similarity, positives)
    max_k = max_k or similarity.shape[1]
    return np.array([np.mean(ranks <= k) for k in range(1, max_k + 1)])


def classification_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Top-1 accuracy and mean per-class recall (balanced accuracy) over the classes present."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = np.unique(y_true)
    per_class = [float(np.mean(y_pred[y_true == c] == c)) for c in classes]
    return {"acc1": float(np.mean(y_true == y_pred)), "mean_per_class_recall": float(np.mean(per_class))}
