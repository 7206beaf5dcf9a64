"""The field's scores of generations (DESIGN 6), from a judge's softmax outputs p(y|x).

For N generated sequences and a factor with K classes, probs is [N, K] (rows sum to 1):

* accuracy: the share whose most probable class is the true one;
* Inception Score IS = exp E_x[KL(p(y|x) || p(y))], p(y) the mean of p(y|x) over x: K at best
  (confident and spread evenly over the classes), 1 at worst;
* H(y|x) = E_x[-sum_y p(y|x) log p(y|x)]: 0 when every judgement is confident;
* H(y) = -sum_y p(y) log p(y): ln K when the judgements cover the classes evenly.

log IS = H(y) - H(y|x). The published tables score a class-balanced subset
(`class_balanced_subset`) and report the mean and spread over several draws of the prior
samples (`mean_and_std`). Computed in float64; 0 log 0 is taken as 0 (`scipy.stats.entropy`).
"""
from __future__ import annotations

import numbers

import numpy as np
from scipy import stats

# Rows of float32 softmax outputs sum to 1 within ~1e-6; anything further off is not a softmax.
_ROW_SUM_TOLERANCE = 1e-3


def _probs(probs) -> np.ndarray:
    """probs as float64 [N, K], checked: finite, non-negative, rows summing to 1."""
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"probs must be [N, K] with N, K >= 1, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("probs must be finite and non-negative (a softmax output)")
    worst = float(np.max(np.abs(p.sum(axis=1) - 1.0)))
    if worst > _ROW_SUM_TOLERANCE:
        raise ValueError(f"each row of probs must sum to 1 (a softmax output), one is off by "
                         f"{worst:.3g}")
    return p


def conditional_entropy(probs) -> float:
    """H(y|x) = E_x[-sum_y p(y|x) log p(y|x)] in nats; probs [N, K]."""
    return float(np.mean(stats.entropy(_probs(probs), axis=1)))


def marginal_entropy(probs) -> float:
    """H(y) = -sum_y p(y) log p(y) in nats, p(y) the mean of p(y|x); probs [N, K]."""
    return float(stats.entropy(_probs(probs).mean(axis=0)))


def inception_score(probs) -> float:
    """exp E_x[KL(p(y|x) || p(y))]; probs [N, K]. Between 1 and K."""
    p = _probs(probs)
    marginal = np.broadcast_to(p.mean(axis=0), p.shape)
    return float(np.exp(np.mean(stats.entropy(p, marginal, axis=1))))


def judge_scores(probs, true_labels=None) -> dict:
    """accuracy, inception_score, h_y_given_x, h_y and n for probs [N, K], true_labels [N]
    (None: generations with no label to score against, and no accuracy)."""
    p = _probs(probs)
    scores = {"inception_score": inception_score(p), "h_y_given_x": conditional_entropy(p),
              "h_y": marginal_entropy(p), "n": int(p.shape[0])}
    if true_labels is None:
        return scores
    y = np.asarray(true_labels)
    if y.shape != (p.shape[0],):
        raise ValueError(f"true_labels must be [N] = [{p.shape[0]}] like probs, got shape "
                         f"{y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"true_labels must be integers in 0..{p.shape[1] - 1} (probs has "
                         f"{p.shape[1]} classes)")
    return {"accuracy": float(np.mean(p.argmax(axis=1) == y)), **scores}


def class_balanced_subset(labels, seed: int, per_class: int | None = None) -> np.ndarray:
    """Sorted indices into labels [N] holding `per_class` of each class present.

    per_class defaults to the smallest class's count. Which members of a larger class are kept
    is drawn with `seed` (deterministic per seed).
    """
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must be a non-empty [N] array, got shape {y.shape}")
    classes, counts = np.unique(y, return_counts=True)
    smallest = int(counts.min())
    if per_class is None:
        per_class = smallest
    if isinstance(per_class, bool) or not isinstance(per_class, numbers.Integral) or not (
            1 <= per_class <= smallest):
        raise ValueError(f"per_class must be an integer in 1..{smallest} (the smallest class's "
                         f"count), got {per_class!r}")
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(y == c), size=int(per_class), replace=False)
              for c in classes]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def mean_and_std(score_dicts) -> dict:
    """{name: {"mean", "std", "values"}} of each number in a list of score dicts (one a draw).

    std is the sample standard deviation over the draws (ddof = 1), None for a single draw.
    Every dict must hold the same names; values that are not numbers (e.g. a split's name) are
    left out.
    """
    dicts = list(score_dicts)
    if not dicts:
        raise ValueError("mean_and_std needs at least one score dict, got none")
    names = set(dicts[0])
    for i, d in enumerate(dicts):
        if set(d) != names:
            raise ValueError(f"score dict {i} has names {sorted(d)}, the first has "
                             f"{sorted(names)}: every draw must report the same scores")
    out = {}
    for name in sorted(names):
        values = [d[name] for d in dicts]
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
            continue
        v = np.asarray(values, np.float64)
        out[name] = {"mean": float(v.mean()),
                     "std": float(v.std(ddof=1)) if len(v) > 1 else None,
                     "values": [float(x) for x in v]}
    return out
