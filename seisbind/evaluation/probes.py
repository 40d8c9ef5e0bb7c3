"""Probes on frozen embeddings: linear (CLIP_benchmark protocol) and kNN (AstroCLIP protocol).

Linear probe: the regularisation is chosen on the validation split by CLIP_benchmark's
coarse-then-fine search over the weight-decay grid ``logspace(-6, 2, 97)`` (7 values 16 grid steps
apart, then a bisection of spans 8, 4, 2, 1: 15 fits), then the probe is refit on train + validation and scored
on test. scikit-learn's ``C`` is the inverse of the summed-loss
penalty, so a weight decay ``wd`` on the mean loss is ``C = 1 / (wd * n_train)``; ridge's
``alpha`` is ``wd * n_train`` likewise.
kNN probe: standardised features, 64 neighbours (fewer if the training set is smaller),
weighted by inverse distance; accuracy for classes, R^2 for continuous labels.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg import LinAlgWarning
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.preprocessing import StandardScaler

from seisbind.evaluation.metrics import classification_report

WEIGHT_DECAYS = np.logspace(-6, 2, 97)
COARSE = np.arange(0, 97, 16)  # the 7 values logspace(-6, 2, 7), one decade and a third apart
SPANS = (8, 4, 2, 1)


def coarse_to_fine(score) -> tuple[float, float]:
    """Best ``(weight_decay, validation score)`` by CLIP_benchmark's search.

    First the 7 coarse values; then, around the best so far, the values ``span`` grid steps to
    either side for span 8, 4, 2, 1. Each value is scored once, strongest regularisation first:
    a warm-started probe then moves from the easy, smooth end towards the nearly separable one.
    Ties go to the weaker regularisation, as in CLIP_benchmark (its first, leftmost best).
    """
    cache: dict[int, float] = {}

    def best_of(indices) -> int:
        for i in sorted(set(indices) - cache.keys(), reverse=True):
            cache[i] = score(WEIGHT_DECAYS[i])
        return max(indices, key=lambda i: (cache[i], -i))

    peak = best_of(COARSE.tolist())
    for span in SPANS:
        peak = best_of([max(peak - span, 0), peak, min(peak + span, len(WEIGHT_DECAYS) - 1)])
    return float(WEIGHT_DECAYS[peak]), cache[peak]


def _scaled(train, *others):
    scaler = StandardScaler().fit(train)
    return [scaler.transform(x) for x in (train, *others)]


def linear_probe_classification(xtr, ytr, xva, yva, xte, yte) -> dict:
    """Logistic regression chosen on validation, refit on train + validation, scored on test."""
    xtr, xva, xte = _scaled(xtr, xva, xte)
    # One warm-started estimator walks the grid: each fit starts from its neighbour's solution, so
    # the weakly regularised end (nearly separable data) does not restart L-BFGS from zero.
    # The search needs the ranking of 15 weight decays, not converged weights: 100 L-BFGS steps each.
    probe = LogisticRegression(max_iter=100, tol=1e-3, warm_start=True)

    def val_acc(wd: float) -> float:
        probe.set_params(C=1.0 / (wd * len(xtr)))
        return float(np.mean(probe.fit(xtr, ytr).predict(xva) == yva))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the weakly regularised end of the grid
        wd, val = coarse_to_fine(val_acc)
        xall, yall = np.concatenate([xtr, xva]), np.concatenate([ytr, yva])
        # The refit starts from the search's last weights (the problem is convex, so only the time
        # changes) and, like CLIP_benchmark's fixed epoch budget, stops after 300 L-BFGS steps: at the
        # weak end of the grid the data are separable and full convergence would take minutes.
        # A class that only validation holds changes the weights' shape (binary -> multinomial):
        # then the refit starts cold (quickstart --seed 3: site class B in validation only).
        same_classes = np.array_equal(np.unique(yall), probe.classes_)
        probe.set_params(C=1.0 / (wd * len(xall)), max_iter=300, tol=1e-4, warm_start=same_classes)
        pred = probe.fit(xall, yall).predict(xte)
    return {**classification_report(yte, pred), "weight_decay": wd, "validation_acc1": val}


def ridge_validation_r2(xtr, ytr, xva, yva):
    """``score(weight_decay)``: validation R^2 of ridge regression fitted on train, for any decay.

    One SVD of the centred train features serves every value of the search: the ridge solution is
    ``V diag(s / (s^2 + alpha)) U^T y``. scikit-learn's ``Ridge`` refactorises per ``alpha``, and
    ``RidgeCV`` scores leave-one-out, not a validation split, so the search is written here; the
    final refit is scikit-learn's.
    """
    mean_x, mean_y = xtr.mean(0), ytr.mean()
    u, s, vt = np.linalg.svd(xtr - mean_x, full_matrices=False)
    proj_va = (xva - mean_x) @ vt.T  # validation features in the right-singular basis
    uty = u.T @ (ytr - mean_y)

    def score(wd: float) -> float:
        alpha = wd * len(xtr)
        return float(r2_score(yva, proj_va @ (s / (s**2 + alpha) * uty) + mean_y))

    return score


def linear_probe_regression(xtr, ytr, xva, yva, xte, yte) -> dict:
    """Ridge regression chosen on validation R^2, refit on train + validation, R^2 on test."""
    xtr, xva, xte = _scaled(xtr, xva, xte)
    ytr, yva, yte = (np.asarray(y, np.float64) for y in (ytr, yva, yte))
    wd, val = coarse_to_fine(ridge_validation_r2(xtr, ytr, xva, yva))
    xall, yall = np.concatenate([xtr, xva]), np.concatenate([ytr, yva])
    with warnings.catch_warnings():
        # With more features than samples the weakly regularised end is ill-conditioned by nature
        # (scikit-learn then falls back to least squares and says so); the grid's other end is fine.
        warnings.simplefilter("ignore", LinAlgWarning)
        warnings.filterwarnings("ignore", message="Singular matrix in solving dual problem")
        pred = Ridge(alpha=wd * len(xall)).fit(xall, yall).predict(xte)
    return {"r2": float(r2_score(yte, pred)), "weight_decay": wd, "validation_r2": val}


def knn_probe(xtr, ytr, xte, yte, task: str, k: int = 64) -> dict:
    """AstroCLIP's kNN probe: standardised features, ``k`` distance-weighted neighbours."""
    xtr, xte = _scaled(xtr, xte)
    k = min(k, len(xtr))
    if task == "classification":
        pred = KNeighborsClassifier(n_neighbors=k, weights="distance").fit(xtr, ytr).predict(xte)
        return {**classification_report(yte, pred), "k": k}
    pred = KNeighborsRegressor(n_neighbors=k, weights="distance").fit(xtr, ytr).predict(xte)
    return {"r2": float(r2_score(yte, pred)), "k": k}
