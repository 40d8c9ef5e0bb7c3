"""Retrieval metrics on hand-built similarity matrices with known ranks; zero-shot; probes."""

import numpy as np
import pytest

from seisbind.evaluation import metrics as M
from seisbind.evaluation.probes import coarse_to_fine, knn_probe, linear_probe_classification, linear_probe_regression
from seisbind.evaluation.zeroshot import class_prototypes, zero_shot_predict

# 3 queries x 4 gallery items; one positive each, placed at ranks 1, 3 and 4.
SIM = np.array([[0.9, 0.1, 0.2, 0.3], [0.5, 0.8, 0.6, 0.1], [0.4, 0.3, 0.2, 0.1]])
POS = np.zeros((3, 4), bool)
POS[0, 0] = POS[1, 0] = POS[2, 3] = True


def test_ranks_recall_and_mean_rank_by_hand():
    assert list(M.first_positive_rank(SIM, POS)) == [1, 3, 4]
    assert M.recall_at_k(SIM, POS, 1) == pytest.approx(1 / 3)
    assert M.recall_at_k(SIM, POS, 3) == pytest.approx(2 / 3)
    assert M.recall_at_k(SIM, POS, 4) == 1.0
    assert M.median_rank(SIM, POS) == 3.0
    assert M.mean_rank(SIM, POS) == pytest.approx(8 / 3)
    assert M.mean_reciprocal_rank(SIM, POS) == pytest.approx((1 + 1 / 3 + 1 / 4) / 3)
    assert M.retrieval_report(SIM, POS)["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 4) / 3)


def test_average_precision_with_several_positives():
    # One query, positives at ranks 1 and 3: AP = (1/1 + 2/3) / 2.
    sim = np.array([[0.9, 0.8, 0.7, 0.1]])
    pos = np.array([[True, False, True, False]])
    assert M.mean_average_precision(sim, pos) == pytest.approx((1 + 2 / 3) / 2)
    report = M.retrieval_report(sim, pos)
    assert report["recall@1"] == 1.0 and report["gallery_size"] == 4 and report["positives_per_query"] == 2
    assert report["mAP"] == pytest.approx((1 + 2 / 3) / 2) and report["mean_rank"] == 1.0


def test_ties_count_against_the_query():
    sim = np.ones((2, 5))
    pos = np.eye(2, 5, dtype=bool)
    assert list(M.first_positive_rank(sim, pos)) == [5, 5]  # a constant score never looks good


def test_bad_matrices_are_refused():
    with pytest.raises(ValueError, match="no positive"):
        M.recall_at_k(SIM, np.zeros_like(POS), 1)
    with pytest.raises(ValueError, match="NaN"):
        M.recall_at_k(np.full((3, 4), np.nan), POS, 1)
    with pytest.raises(ValueError, match="shape"):
        M.recall_at_k(SIM, POS[:2], 1)


def test_recall_curve_is_monotone_and_ends_at_one():
    curve = M.recall_curve(SIM, POS)
    assert list(curve) == pytest.approx([1 / 3, 1 / 3, 2 / 3, 1.0])


def test_classification_report_balanced():
    rep = M.classification_report(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]))
    assert rep["acc1"] == 0.75 and rep["mean_per_class_recall"] == 0.5


def test_zero_shot_from_prototypes():
    rng = np.random.default_rng(0)
    centres = np.eye(3, 16) * 5
    img_y = np.repeat([0, 1, 2], 20)
    img = centres[img_y] + rng.normal(size=(60, 16))
    classes, protos = class_prototypes(img, img_y)
    np.testing.assert_allclose(np.linalg.norm(protos, axis=1), 1.0)
    wav_y = np.repeat([0, 1, 2], 10)
    pred = zero_shot_predict(centres[wav_y] + rng.normal(size=(30, 16)), classes, protos)
    assert np.mean(pred == wav_y) > 0.95


def _blobs(n, rng, separable=True):
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 8)) + (np.eye(3, 8)[y] * 6 if separable else 0)
    return x, y


def test_probes_near_perfect_when_separable_and_chance_when_shuffled():
    rng = np.random.default_rng(1)
    (xtr, ytr), (xva, yva), (xte, yte) = (_blobs(n, rng) for n in (200, 60, 100))
    assert linear_probe_classification(xtr, ytr, xva, yva, xte, yte)["acc1"] > 0.97
    assert knn_probe(xtr, ytr, xte, yte, "classification")["acc1"] > 0.97
    shuffled = rng.permutation(ytr)
    lin = linear_probe_classification(xtr, shuffled, xva, rng.permutation(yva), xte, yte)
    knn = knn_probe(xtr, shuffled, xte, yte, "classification")
    assert lin["acc1"] < 0.55 and knn["acc1"] < 0.55  # chance is 1/3


def test_linear_probe_takes_a_class_that_only_validation_holds():
    # Train holds classes 0 and 1 (a binary fit), validation also 2: the refit on train +
    # validation is multinomial, and must not start from the binary weights (quickstart --seed 3).
    rng = np.random.default_rng(4)
    (xtr, ytr), (xva, yva), (xte, yte) = (_blobs(n, rng) for n in (200, 60, 100))
    keep = ytr < 2
    out = linear_probe_classification(xtr[keep], ytr[keep], xva, yva, xte, yte)
    assert out["acc1"] > 0.9  # class 2 is learnt from validation alone, and test reads it


def test_regression_probes_r2():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 6))
    y = x @ np.array([1.0, -2.0, 0.5, 0, 0, 0]) + 0.05 * rng.normal(size=400)
    parts = [(x[a:b], y[a:b]) for a, b in ((0, 250), (250, 300), (300, 400))]
    lin = linear_probe_regression(*parts[0], *parts[1], *parts[2])
    assert lin["r2"] > 0.99
    assert knn_probe(*parts[0], *parts[2], "regression")["r2"] > 0.5  # 64 neighbours smooth a 6-d plane
    noise = rng.normal(size=400)
    assert linear_probe_regression(x[:250], noise[:250], x[250:300], noise[250:300], x[300:], noise[300:])["r2"] < 0.1


@pytest.mark.parametrize("shape", [(120, 10), (40, 90)])  # more samples than features, and fewer
def test_ridge_search_matches_scikit_learn_ridge(shape):
    """The one-SVD validation score equals refitting scikit-learn's Ridge at each weight decay."""
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    from seisbind.evaluation.probes import WEIGHT_DECAYS, ridge_validation_r2

    rng = np.random.default_rng(5)
    n, d = shape
    x, xva = rng.normal(size=(n, d)) + 3.0, rng.normal(size=(30, d)) + 3.0  # off-centre: the intercept matters
    w = rng.normal(size=d)
    y, yva = x @ w + rng.normal(size=n) + 7.0, xva @ w + rng.normal(size=30) + 7.0
    score = ridge_validation_r2(x, y, xva, yva)
    for wd in WEIGHT_DECAYS[::12]:
        expected = r2_score(yva, Ridge(alpha=wd * n, solver="svd").fit(x, y).predict(xva))
        assert score(wd) == pytest.approx(expected, abs=1e-8)


@pytest.mark.parametrize("target", [1e-6, 1e-3, 3.1622776601683795e-2, 100.0])
def test_coarse_to_fine_finds_the_grid_optimum_in_15_fits(target):
    calls = []

    def score(wd):
        calls.append(wd)
        return -abs(np.log10(wd) - np.log10(target))

    wd, best = coarse_to_fine(score)
    assert wd == pytest.approx(target, rel=1e-9) and best == pytest.approx(0, abs=1e-12)
    assert len(calls) == len(set(calls)) <= 15  # CLIP_benchmark's 7 coarse values + 4 bisection rounds
    assert calls[:7] == sorted(calls[:7], reverse=True)  # strongest regularisation first
