"""Morpho-MNIST-style morphometrics of digit images and variance shares (DESIGN 4).

After Castro et al., "Morpho-MNIST" (JMLR 2019): each image is upscaled (``scale``, bicubic),
thresholded at half its maximum ink, and measured:

* slant: the horizontal shear of the ink from its second-order central moments,
  ``arctan(-mu11 / mu02)`` in radians (rows grow downwards, so a stroke whose top leans right
  has a positive slant);
* thickness: ink area over skeleton length (``skimage.morphology.skeletonize``), in pixels of the
  original image;
* width: the horizontal extent of the ink once the slant is sheared away; height: the vertical
  extent of the ink; both in pixels of the original image.

An image without ink measures NaN. `variance_shares` gives the share of each measure's variance
that a grouping explains (eta squared, the R^2 of the group means), beside its chance level.
"""
from __future__ import annotations

import numpy as np
from skimage.morphology import skeletonize
from skimage.transform import rescale

MEASURES = ("slant", "thickness", "width", "height")


def measure_image(image, threshold: float = 0.5, scale: int = 4) -> dict:
    """Morphometrics of one image [H, W] or [H, W, 1] with values in [0, 1].

    threshold: the share of the image's maximum above which a pixel is ink.
    Returns {"slant", "thickness", "width", "height"}; NaN for an image without ink.
    """
    image = np.asarray(image, np.float64)
    if image.ndim == 3:
        image = image[..., 0]
    if image.ndim != 2:
        raise ValueError(f"image must be [H, W] or [H, W, 1], got shape {image.shape}")
    peak = float(image.max()) if image.size else 0.0
    nan = {k: float("nan") for k in MEASURES}
    if not peak > 1e-3:
        return nan
    up = rescale(image, scale, order=3, mode="constant", anti_aliasing=False) if scale > 1 \
        else image
    ink = up > threshold * peak
    if not ink.any():
        return nan
    rows, cols = np.nonzero(ink)
    r, c = rows.astype(np.float64), cols.astype(np.float64)
    dr, dc = r - r.mean(), c - c.mean()
    mu02, mu11 = float(np.mean(dr * dr)), float(np.mean(dr * dc))
    shear = -mu11 / mu02 if mu02 > 0 else 0.0  # columns move right by `shear` per row upwards
    slant = float(np.arctan(shear))
    # Remove the shear: a pixel at row offset dr sits shear * dr columns too far left.
    upright = dc + shear * dr
    width = (upright.max() - upright.min() + 1.0) / scale
    height = (r.max() - r.min() + 1.0) / scale
    length = int(skeletonize(ink).sum())
    thickness = float(ink.sum()) / max(length, 1) / scale
    return {"slant": slant, "thickness": thickness, "width": float(width), "height": float(height)}


def measure_images(images, threshold: float = 0.5, scale: int = 4) -> dict:
    """`measure_image` of each image in [..., H, W, C]; -> {measure: float64 array [...]}."""
    images = np.asarray(images, np.float64)
    lead = images.shape[:-3]
    flat = images.reshape((-1,) + images.shape[-3:])
    rows = [measure_image(im, threshold, scale) for im in flat]
    return {k: np.array([row[k] for row in rows], np.float64).reshape(lead) for k in MEASURES}


def eta_squared(values, groups) -> float:
    """Share of the variance of `values` explained by `groups` (between-group SS / total SS).

    NaN values are dropped first; NaN when fewer than two values remain or they do not vary.
    """
    values, groups = np.asarray(values, np.float64).ravel(), np.asarray(groups).ravel()
    keep = np.isfinite(values)
    values, groups = values[keep], groups[keep]
    if len(values) < 2:
        return float("nan")
    total = float(np.sum((values - values.mean()) ** 2))
    if not total > 1e-12:
        return float("nan")
    _, inverse = np.unique(groups, return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    counts = np.bincount(inverse)
    between = float(np.sum(sums ** 2 / counts) - len(values) * values.mean() ** 2)
    return min(max(between / total, 0.0), 1.0)


def chance_eta_squared(groups) -> float:
    """R^2 of a random grouping of the same sizes: (k - 1) / (n - 1).

    The exact expectation of `eta_squared` over random permutations of `groups`, whatever the
    values (k groups, n values); `permuted_eta_squared` estimates the same by sampling.
    """
    groups = np.asarray(groups).ravel()
    n, k = len(groups), len(np.unique(groups))
    return float((k - 1) / (n - 1)) if n > 1 else float("nan")


def permuted_eta_squared(values, groups, num_permutations: int = 20, seed: int = 0) -> float:
    """Mean R^2 of `values` under `num_permutations` random permutations of `groups`."""
    rng = np.random.default_rng(seed)
    groups = np.asarray(groups).ravel()
    return float(np.nanmean([eta_squared(values, rng.permutation(groups))
                             for _ in range(num_permutations)]))


def variance_shares(measures: dict, groupings: dict) -> dict:
    """For each grouping: R^2 of every measure, their mean, and the chance level.

    measures: {name: values [N]} (NaN allowed, dropped per measure);
    groupings: {name: group ids [N]}.
    Returns {grouping: {"per_measure": {measure: R^2}, "mean": ..., "chance": ...,
    "num_groups": k}}; the chance level is that of the images with every measure finite.
    """
    finite = np.all([np.isfinite(np.asarray(v).ravel()) for v in measures.values()], axis=0)
    out = {}
    for gname, groups in groupings.items():
        groups = np.asarray(groups).ravel()
        per = {m: eta_squared(v, groups) for m, v in measures.items()}
        vals = [v for v in per.values() if np.isfinite(v)]
        out[gname] = {"per_measure": per,
                      "mean": float(np.mean(vals)) if vals else float("nan"),
                      "chance": chance_eta_squared(groups[finite]),
                      "num_groups": int(len(np.unique(groups)))}
    return out
