"""Concept metrics (issue 15): Hungarian-matched clustering accuracy, NMI, clusters of codes."""
import numpy as np
import pytest

from dvrnn_tf.metrics.clustering import (
    cluster_codes, clustering_accuracy, concept_report, contingency, nmi)


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_permuted_cluster_ids_score_perfectly():
    labels = _rng().integers(0, 10, 2000)
    permutation = _rng(1).permutation(10) + 100  # other ids, other order
    assignments = permutation[labels]
    assert clustering_accuracy(assignments, labels) == 1.0
    assert nmi(assignments, labels) == pytest.approx(1.0)
    # One cluster merged into another: exactly its examples are lost.
    merged = np.where(assignments == permutation[3], permutation[4], assignments)
    assert clustering_accuracy(merged, labels) == pytest.approx(1 - np.mean(labels == 3))


def test_random_assignments_score_near_chance():
    labels = _rng(2).integers(0, 10, 20000)
    assignments = _rng(3).integers(0, 10, 20000)
    # Matching picks the best permutation, so a little above 1/10 (by ~sqrt(1/N) per cell).
    assert 0.1 <= clustering_accuracy(assignments, labels) < 0.12
    assert nmi(assignments, labels) < 0.01


def test_more_clusters_than_classes():
    labels = np.repeat(np.arange(3), 100)
    # Each class split in two clusters: a one-to-one matching keeps one half per class.
    assignments = labels * 2 + np.tile([0, 1], 150)
    table = contingency(assignments, labels)
    assert table.shape == (6, 3) and table.sum() == 300
    assert clustering_accuracy(assignments, labels) == pytest.approx(0.5)
    assert 0.5 < nmi(assignments, labels) < 1.0
    # An extra cluster of one example costs exactly that example.
    assignments = labels.copy()
    assignments[0] = 7
    assert clustering_accuracy(assignments, labels) == pytest.approx(299 / 300)


def test_kmeans_on_separated_blobs_and_argmax_on_the_simplex():
    rng = _rng(4)
    centers = 10.0 * rng.normal(size=(5, 3))
    labels = rng.integers(0, 5, 1000)
    codes = centers[labels] + 0.3 * rng.normal(size=(1000, 3))
    assignments = cluster_codes(codes, 5, "gaussian", seed=0)
    assert clustering_accuracy(assignments, labels) == 1.0
    np.testing.assert_array_equal(assignments, cluster_codes(codes, 5, "gaussian", seed=0))
    simplex = rng.dirichlet(np.full(4, 0.2), 500)
    for kind in ("dirichlet", "stick_breaking"):
        np.testing.assert_array_equal(cluster_codes(simplex, 4, kind, 0), simplex.argmax(-1))


def test_concept_report_fits_on_train_and_scores_test():
    rng = _rng(5)
    centers = 8.0 * rng.normal(size=(4, 6))
    y_train, y_test = rng.integers(0, 4, 800), rng.integers(0, 4, 400)
    f_train = centers[y_train] + rng.normal(size=(800, 6))
    f_test = centers[y_test] + rng.normal(size=(400, 6))
    report = concept_report(f_train, f_test, y_test, "gaussian", 4, seed=1)
    assert report["accuracy"] == 1.0 and report["nmi"] == pytest.approx(1.0)
    assert report["chance_accuracy"] < 0.35 and report["chance_nmi"] < 0.05
    assert report["num_clusters_used"] == 4 and sum(report["cluster_sizes"]) == 400
    assert report["uniform_accuracy"] == 0.25 and report["method"] == "kmeans"
    # Codes that ignore the class: chance-level scores.
    noise = rng.dirichlet(np.ones(4), 400)
    report = concept_report(rng.dirichlet(np.ones(4), 100), noise, y_test, "dirichlet", 4)
    assert report["method"] == "argmax"
    assert abs(report["accuracy"] - report["chance_accuracy"]) < 0.06
    assert report["accuracy"] < 0.35


def test_bad_inputs():
    with pytest.raises(ValueError, match="same length"):
        clustering_accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="integer"):
        nmi([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="kind"):
        cluster_codes(np.zeros((4, 2)), 2, "normal", 0)
    with pytest.raises(ValueError, match="num_clusters"):
        cluster_codes(np.zeros((4, 2)), 9, "gaussian", 0)
    with pytest.raises(ValueError, match="NaN"):
        cluster_codes(np.full((4, 2), np.nan), 2, "dirichlet", 0)
    with pytest.raises(ValueError, match="num_classes"):
        concept_report(np.zeros((4, 2)), np.zeros((4, 2)), np.zeros(4, int), "gaussian", 1)
