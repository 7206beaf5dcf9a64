"""Numbers instead of pictures (DESIGN 3-4): scoring a class-by-style grid, deciding whether it
is disentangled, who wins a competition, and binomial intervals for win rates.

A grid is images [K, J, H, W, C] whose cell (i, j) is mu_p(i, z_j): row i one class, column j
one style source z_j (the paper's Fig. 2). Two scores:

* label preservation: the share of cells the judge classifies as their row's class (chance
  1/K);
* style preservation: the Morpho-MNIST measures (slant, thickness, width, height) of every cell,
  and the share of each measure's variance explained by the column (the style source, an R^2 /
  eta squared) and by the row (the class), averaged over the measures; a random grouping of the
  same sizes explains (J - 1) / (n - 1) on average (the chance level).

**Disentangled** (the documented threshold): label preservation >= LABEL_THRESHOLD (0.8) AND the
style share above chance by at least STYLE_THRESHOLD (0.25) of what is left above chance:
(r2_style - chance) / (1 - chance) >= 0.25. A grid whose styles are scrambled across classes
(a label-dependent rotation of a style-preserving decoder) explains about chance; a
style-preserving one explains far more. Calibration: constructed decoders (tests/
test_shu_experiments.py: templates sheared, thickened and widened by z) score an excess of
0.40 when style-preserving and -0.05 (rotated twin) / -0.08 (reflected twin); on MNIST (seed 0,
the default 1500-step CVAE) the (split, split) grid scores -0.05 while grids with a shared
encoder or decoder score 0.37-0.48, and in the rotation competitions the scrambled side of a
pair scores 0.02-0.13 against 0.28-0.41 for the style-preserving side. Grids near 0.25 are
the genuinely ambiguous ones; they are what makes a seed's outcome a coin flip.

**Who wins** a competition (paper appendix B): the decoder wins when mu_p's grid is
disentangled and mu'_p's (= mu_p(y, T_y(z))) is not, the encoder wins in the reverse case, and
anything else (both or neither disentangled) is a tie.
"""
from __future__ import annotations

import numpy as np

LABEL_THRESHOLD = 0.8
STYLE_THRESHOLD = 0.25
OUTCOMES = ("decoder", "encoder", "tie")


def score_grid(grid, judge=None, scale: int = 4, label_threshold: float = LABEL_THRESHOLD,
               style_threshold: float = STYLE_THRESHOLD) -> dict:
    """Scores of a grid [K, J, H, W, C] (cell (i, j) of class i and style source j).

    judge: a classifier of single images (a Keras model, or anything `judge.predict` accepts:
      called on [N, H, W, C] returning logits [N, K], with `output_shape`); None skips label
      preservation (then it counts as met).
    Returns label_preservation, style_r2 / class_r2 (mean over measures) with their chance
    levels and per-measure values, style_excess ((style_r2 - chance) / (1 - chance)), the
    thresholds and `disentangled`.
    """
    from dvrnn_tf.metrics import morphometry

    grid = np.asarray(grid, np.float32)
    if grid.ndim != 5:
        raise ValueError(f"grid must be [K, J, H, W, C], got shape {grid.shape}")
    k, j = grid.shape[:2]
    rows = np.broadcast_to(np.arange(k)[:, None], (k, j)).ravel()
    cols = np.broadcast_to(np.arange(j)[None, :], (k, j)).ravel()
    out = {"num_classes": int(k), "num_styles": int(j)}
    if judge is not None:
        from dvrnn_tf.metrics.judge import predict
        pred = predict(judge, grid)  # [K, J]
        out["label_preservation"] = float(np.mean(pred == np.arange(k)[:, None]))
        out["label_per_class"] = np.mean(pred == np.arange(k)[:, None], axis=1).tolist()
    else:
        out["label_preservation"] = None
    measures = morphometry.measure_images(grid, scale=scale)
    shares = morphometry.variance_shares({m: v.ravel() for m, v in measures.items()},
                                         {"style_source": cols, "content_class": rows})
    style, cls = shares["style_source"], shares["content_class"]
    out.update(style_r2=style["mean"], style_chance=style["chance"],
               style_per_measure=style["per_measure"], class_r2=cls["mean"],
               class_chance=cls["chance"], class_per_measure=cls["per_measure"],
               unmeasurable=int(np.sum(~np.isfinite(measures["slant"]))))
    out["style_excess"] = excess_over_chance(style["mean"], style["chance"])
    out["label_threshold"], out["style_threshold"] = label_threshold, style_threshold
    out["disentangled"] = is_disentangled(out, label_threshold, style_threshold)
    return out


def excess_over_chance(r2, chance) -> float:
    """(r2 - chance) / (1 - chance): 0 at chance, 1 when the grouping explains everything."""
    if r2 is None or not np.isfinite(r2) or not np.isfinite(chance) or chance >= 1:
        return float("nan")
    return float((r2 - chance) / (1.0 - chance))


def is_disentangled(score: dict, label_threshold: float = LABEL_THRESHOLD,
                    style_threshold: float = STYLE_THRESHOLD) -> bool:
    """Label-preserving (or unjudged) and style-preserving, by the thresholds above."""
    label = score.get("label_preservation")
    label_ok = label is None or label >= label_threshold
    excess = score.get("style_excess", float("nan"))
    return bool(label_ok and np.isfinite(excess) and excess >= style_threshold)


def decide_winner(score_p: dict, score_p_prime: dict) -> str:
    """"decoder" if mu_p's grid is disentangled and mu'_p's is not, "encoder" if the reverse,
    else "tie"."""
    d, e = bool(score_p["disentangled"]), bool(score_p_prime["disentangled"])
    if d and not e:
        return "decoder"
    if e and not d:
        return "encoder"
    return "tie"


def wilson_interval(successes: int, trials: int, confidence: float = 0.95):
    """(rate, low, high): the share and its Wilson score interval (scipy's binomtest)."""
    if trials <= 0:
        return float("nan"), 0.0, 1.0
    from scipy.stats import binomtest

    ci = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence,
                                                                method="wilson")
    return successes / trials, float(ci.low), float(ci.high)


def mean_interval(values, confidence: float = 0.95):
    """(mean, low, high): Student-t interval of the mean over seeds (NaN-free values)."""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    from scipy.stats import t

    half = float(t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1)
                 / np.sqrt(len(values)))
    return mean, mean - half, mean + half
