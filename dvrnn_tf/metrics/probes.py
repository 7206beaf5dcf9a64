"""Linear probes on posterior samples of f and z against every factor label of the data.

DESIGN 4's style-leakage probe, generalized to any source's factors (`dvrnn_tf.data.Factor`):
what a code carries about a factor is what a linear read-out of its *samples* recovers on
held-out sequences. Probes on posterior means mislead (a posterior collapsed onto its prior
still has means that separate classes by tiny offsets); they are reported beside, marked.

For a factor of classes the score is accuracy (chance: the majority class's share); for a
continuous one (a position) it is R^2 of a ridge regression (chance: 0). Codes read:
  f           the content code, one per sequence (per-frame factors: repeated over frames);
  z_sequence  z_1..z_T concatenated (static factors);
  z_frame     each z_t alone, one example per frame (a static label repeated over frames).
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dvrnn_tf.metrics.disentanglement import _codes, _np, seeded


def majority_share(y) -> float:
    """The accuracy of always answering the most frequent class (the probes' chance level)."""
    counts = np.bincount(np.asarray(y))
    return float(counts.max() / counts.sum())


def probe_accuracy(train_x, train_y, test_x, test_y, seed: int = 0) -> float:
    """Test accuracy of a linear probe (standardized features, multinomial logistic regression)."""
    train_x = np.asarray(train_x, np.float64).reshape(len(train_x), -1)
    test_x = np.asarray(test_x, np.float64).reshape(len(test_x), -1)
    if len(np.unique(train_y)) < 2:
        return float(np.mean(np.asarray(test_y) == np.asarray(train_y)[0]))
    probe = make_pipeline(StandardScaler(),
                          LogisticRegression(max_iter=2000, C=1.0, random_state=seed))
    probe.fit(train_x, np.asarray(train_y))
    return float(probe.score(test_x, np.asarray(test_y)))


def probe_r2(train_x, train_y, test_x, test_y) -> float:
    """Test R^2 (averaged over outputs) of a ridge regression on standardized features."""
    train_x = np.asarray(train_x, np.float64).reshape(len(train_x), -1)
    test_x = np.asarray(test_x, np.float64).reshape(len(test_x), -1)
    train_y = np.asarray(train_y, np.float64).reshape(len(train_y), -1)
    test_y = np.asarray(test_y, np.float64).reshape(len(test_y), -1)
    probe = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(train_x, train_y)
    return float(r2_score(test_y, probe.predict(test_x)))


def _frames(codes):
    """[N, T, d] -> [N*T, d]: one example per frame."""
    return codes.reshape(-1, codes.shape[-1])


def _per_frame(values, steps):
    """A per-sequence array [N, ...] repeated over T frames: [N*T, ...]."""
    return np.repeat(values, steps, axis=0)


def probe_factor(factor, tr, te, train_labels, test_labels, steps, seed=0) -> dict:
    """The probes of one factor from encoded codes (`_codes` dicts) of train and test."""
    score = (lambda a, b, c, d: probe_accuracy(a, b, c, d, seed)) if factor.categorical \
        else probe_r2
    out = {"kind": factor.kind, "metric": "accuracy" if factor.categorical else "r2"}
    if factor.per_frame:
        y_tr, y_te = _frames_of(train_labels), _frames_of(test_labels)
        out["chance"] = majority_share(y_te) if factor.categorical else 0.0
        out["z_frame"] = score(_frames(tr["z_sample"]), y_tr, _frames(te["z_sample"]), y_te)
        if "f_sample" in tr:
            out["f"] = score(_per_frame(tr["f_sample"], steps), y_tr,
                             _per_frame(te["f_sample"], steps), y_te)
        return out
    out["chance"] = majority_share(test_labels) if factor.categorical else 0.0
    out["z_sequence"] = score(tr["z_sample"], train_labels, te["z_sample"], test_labels)
    out["z_frame"] = score(_frames(tr["z_sample"]), _per_frame(train_labels, steps),
                           _frames(te["z_sample"]), _per_frame(test_labels, steps))
    if factor.categorical:  # beside, to show why samples: means of collapsed codes still probe
        out["z_means"] = score(tr["z_loc"], train_labels, te["z_loc"], test_labels)
    if "f_sample" in tr:
        out["f"] = score(tr["f_sample"], train_labels, te["f_sample"], test_labels)
        if factor.categorical:
            out["f_means"] = score(tr["f_loc"], train_labels, te["f_loc"], test_labels)
    return out


def _frames_of(labels):
    """Per-frame labels [N, T, ...] -> [N*T, ...]."""
    labels = np.asarray(labels)
    return labels.reshape(labels.shape[0] * labels.shape[1], *labels.shape[2:])


def factor_probes(model, train_x, train_labels, test_x, test_labels, factors, seed: int = 0,
                  batch_size: int = 256) -> dict:
    """Probes of every factor from posterior samples of the model's codes.

    train_x / test_x: sequences [N, T, H, W, C]; *_labels: {factor name: [N, ...]};
    factors: the source's `Factor`s. Returns {"factors": {name: probes}, counts, seed}.
    """
    train_x, test_x = _np(train_x), _np(test_x)
    with seeded(model, seed):
        tr = _codes(model, train_x, True, batch_size)
        te = _codes(model, test_x, True, batch_size)
    if tr.get("f_sample") is not None and tr["f_sample"].shape[-1] == 0:
        tr.pop("f_sample"), te.pop("f_sample")
    steps = train_x.shape[1]
    return {"factors": {f.name: probe_factor(f, tr, te, np.asarray(train_labels[f.name]),
                                             np.asarray(test_labels[f.name]), steps, seed)
                        for f in factors},
            "train_sequences": int(len(train_x)), "test_sequences": int(len(test_x)),
            "seed": int(seed),
            "features": "posterior samples, standardized; logistic regression (classes) or "
                        "ridge regression (continuous factors)"}


def style_leakage(model, train_x, train_y, test_x, test_y, seed: int = 0,
                  batch_size: int = 256) -> dict:
    """DESIGN 4's probes of a class label y [N], flat: z_sequence, z_frame, z_means, f,
    f_means and chance, with the counts (`factor_probes` of one static factor "class")."""
    from dvrnn_tf.data.spec import Factor

    y_tr, y_te = np.asarray(train_y), np.asarray(test_y)
    factor = Factor("class", int(max(y_tr.max(), y_te.max())) + 1)
    out = factor_probes(model, train_x, {"class": y_tr}, test_x, {"class": y_te}, [factor],
                        seed=seed, batch_size=batch_size)
    flat = out.pop("factors")["class"]
    return {**out, **{k: v for k, v in flat.items() if k not in ("kind", "metric")}}
