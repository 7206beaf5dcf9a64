"""Does the content code f cluster by class without labels? (issue 15; DESIGN 7)

Clusters of f: the argmax component for codes on the simplex (Dirichlet, stick-breaking: each
corner is a concept), k-means for Gaussian codes. Scored against the labels by

* unsupervised clustering accuracy: the best one-to-one matching of clusters to classes
  (Hungarian, `scipy.optimize.linear_sum_assignment` on the contingency table), as the
  fraction of examples whose cluster is matched to their class. With more clusters than
  classes the unmatched clusters count as errors (a many-to-one map would let a code with many
  small clusters score well without finding the classes);
* NMI (`sklearn.metrics.normalized_mutual_info_score`, arithmetic normalization).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from dvrnn_tf.layers.content_priors import CONTENT_PRIORS, SIMPLEX_KINDS

KMEANS_INIT = 10  # k-means restarts (sklearn's n_init), fixed so that a seed fixes the result
CHANCE_SHUFFLES = 20  # label permutations behind the chance levels


def _labels(values, name):
    values = np.asarray(values)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D array of integer ids, got shape "
                         f"{values.shape}")
    if not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.equal(np.mod(values, 1), 0)):
            raise ValueError(f"`{name}` must hold integer ids, got dtype {values.dtype}")
        values = values.astype(np.int64)
    return values


def _pair(assignments, labels):
    assignments, labels = _labels(assignments, "assignments"), _labels(labels, "labels")
    if assignments.shape != labels.shape:
        raise ValueError(f"`assignments` and `labels` must have the same length, got "
                         f"{assignments.size} and {labels.size}")
    return assignments, labels


def contingency(assignments, labels) -> np.ndarray:
    """Counts [clusters, classes] over the ids that occur (in sorted order)."""
    assignments, labels = _pair(assignments, labels)
    _, cluster = np.unique(assignments, return_inverse=True)
    _, label = np.unique(labels, return_inverse=True)
    table = np.zeros((cluster.max() + 1, label.max() + 1), np.int64)
    np.add.at(table, (cluster, label), 1)
    return table


def clustering_accuracy(assignments, labels) -> float:
    """Fraction of examples in a cluster matched to their class by the best one-to-one matching."""
    table = contingency(assignments, labels)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def nmi(assignments, labels) -> float:
    """Normalized mutual information between cluster ids and class labels, in [0, 1]."""
    assignments, labels = _pair(assignments, labels)
    return float(normalized_mutual_info_score(labels, assignments))


def _codes(f, name="f"):
    f = np.asarray(f, np.float64)
    if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] == 0:
        raise ValueError(f"`{name}` must be codes [N, dim] with N, dim > 0, got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError(f"`{name}` holds NaN or Inf")
    return f


def _clusterer(f_train, num_clusters, kind, seed):
    """fit on f_train -> a function from codes [N, dim] to cluster ids [N]."""
    if kind not in CONTENT_PRIORS:
        raise ValueError(f"`kind` must be one of {CONTENT_PRIORS}, got {kind!r}")
    f_train = _codes(f_train, "f_train")
    if kind in SIMPLEX_KINDS:  # each corner of the simplex is a cluster: nothing to fit
        return lambda f: np.argmax(_codes(f), axis=-1)
    if isinstance(num_clusters, bool) or int(num_clusters) != num_clusters or num_clusters < 1:
        raise ValueError(f"`num_clusters` must be a positive integer, got {num_clusters}")
    if num_clusters > len(f_train):
        raise ValueError(f"`num_clusters` ({num_clusters}) exceeds the number of codes "
                         f"({len(f_train)})")
    kmeans = KMeans(n_clusters=int(num_clusters), n_init=KMEANS_INIT, random_state=int(seed))
    kmeans.fit(f_train)
    return lambda f: kmeans.predict(_codes(f))


def cluster_codes(f, num_clusters, kind, seed=0) -> np.ndarray:
    """Cluster ids [N] of codes f [N, dim]: argmax for simplex kinds (num_clusters unused:
    there are dim corners), k-means with num_clusters (seeded) for Gaussian codes."""
    return _clusterer(f, num_clusters, kind, seed)(f)


def _chance(assignments, labels, seed):
    rng = np.random.default_rng(seed)
    shuffled = [rng.permutation(labels) for _ in range(CHANCE_SHUFFLES)]
    return (float(np.mean([clustering_accuracy(assignments, s) for s in shuffled])),
            float(np.mean([nmi(assignments, s) for s in shuffled])))


def concept_report(f_train, f_test, y_test, kind, num_classes, seed=0) -> dict:
    """Clusters fitted on training codes, scored on test codes against their labels.

    f_train [N_train, dim], f_test [N_test, dim] (the posterior means, as `encode` reports
    them), y_test [N_test]. k-means (Gaussian codes) uses num_classes clusters. Chance levels:
    the same clusters scored against shuffled labels (which keeps the cluster sizes and the
    class frequencies), mean of CHANCE_SHUFFLES permutations; also 1 / num_classes and the
    majority class's share.
    """
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes}")
    y_test = _labels(y_test, "y_test")
    if len(_codes(f_test, "f_test")) != len(y_test):
        raise ValueError(f"`f_test` and `y_test` must have the same length, got "
                         f"{len(f_test)} and {len(y_test)}")
    assignments = _clusterer(f_train, num_classes, kind, seed)(f_test)
    chance_accuracy, chance_nmi = _chance(assignments, y_test, seed)
    sizes = np.bincount(np.unique(assignments, return_inverse=True)[1])
    return {
        "kind": kind, "method": "argmax" if kind in SIMPLEX_KINDS else "kmeans",
        "accuracy": clustering_accuracy(assignments, y_test), "nmi": nmi(assignments, y_test),
        "chance_accuracy": chance_accuracy, "chance_nmi": chance_nmi,
        "uniform_accuracy": 1.0 / int(num_classes),
        "majority_accuracy": float(np.unique(y_test, return_counts=True)[1].max() / len(y_test)),
        "num_clusters_used": int(len(sizes)), "cluster_sizes": sorted(sizes.tolist(), reverse=True),
        "num_classes": int(num_classes), "num_train": int(len(f_train)),
        "num_test": int(len(y_test)), "seed": int(seed),
    }
