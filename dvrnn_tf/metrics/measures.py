"""One function per metric of `evaluate_run` (`dvrnn_tf.metrics.evaluation`), found by name in
`MEASURES`; the field's protocol (fixed_dynamics, fixed_content, factor_swap) is measured
apart, by `dvrnn_tf.metrics.protocol`, on one set of codes for all its tests.

Each takes the `Held` of the run (the model, its source, the held-out split and sequences,
the options, the judge when one is needed) and returns its section of eval.json; what the
report draws but eval.json does not keep goes into `held.extras`.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np


@dataclasses.dataclass
class Held:
    """What every metric reads. x: [N, T, H, W, C] held-out sequences; labels: {factor:
    [N] or [N, T]}; y: labels["class"] as int64, or None; judge: the image judge, or None."""

    model: object
    source: object
    held_out: object
    x: np.ndarray
    labels: dict
    y: np.ndarray | None
    opts: object
    judge: object = None
    judge_info: dict | None = None
    extras: dict = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def train_sequences(self):
        """`--probe_sequences` train-split sequences (x, labels) for the probes and clusters,
        read once for both."""
        return self.source.split("train").examples(self.opts.probe_sequences)


def likelihood(h: Held) -> dict:
    from dvrnn_tf.metrics import likelihood as lik

    opts, split = h.opts, h.held_out
    # About 25,600 frames per chunk of samples: ~100 MB per MNIST-sized tensor.
    batch = max(1, min(64, 25_600 // (opts.iwae_chunk * split.seq_len)))
    out = lik.likelihood_report(
        h.model, split.dataset(batch, training=False), num_samples=opts.iwae_k,
        chunk_size=opts.iwae_chunk, seed=opts.seed, max_sequences=opts.iwae_sequences or None)
    out["split"] = opts.split
    return out


def judge(h: Held) -> dict:
    from dvrnn_tf.metrics import disentanglement as dis
    from dvrnn_tf.metrics import judge as judge_lib

    frames = judge_lib.predict(h.judge, h.x)
    recon = dis._batched(lambda a, b: dis._np(h.model.reconstruct(h.x[a:b])), len(h.x), 256)
    h.extras["reconstructions"] = recon[:8]
    return {"info": h.judge_info,
            "held_out_frames_accuracy": float(np.mean(frames == h.y[:, None])),
            "reconstruction_accuracy": float(np.mean(
                judge_lib.predict(h.judge, recon) == h.y[:, None])),
            "num_sequences": int(len(h.y)), "split": h.opts.split,
            "note": "held-out frames as the model sees them (binarized for bernoulli); "
                    "reconstructions are decoded means"}


def swap(h: Held) -> dict:
    from dvrnn_tf.metrics import disentanglement as dis
    return dis.swap_accuracy(h.model, h.judge, h.x, h.y, seed=h.opts.seed)


def label_preservation(h: Held) -> dict:
    from dvrnn_tf.metrics import disentanglement as dis
    return dis.label_preservation(h.model, h.judge, h.x, h.y, num_styles=h.opts.num_styles,
                                  seed=h.opts.seed)


def probes(h: Held) -> dict:
    """Probes of every factor of the source; a "class" factor's also flat, as DESIGN 4's
    style-leakage numbers (probe_z, probe_f in the summary)."""
    from dvrnn_tf.metrics.probes import factor_probes

    train_x, train_labels = h.train_sequences
    out = factor_probes(h.model, train_x, train_labels, h.x, h.labels, h.held_out.factors,
                        seed=h.opts.seed)
    if "class" in out["factors"]:
        out.update({k: v for k, v in out["factors"]["class"].items()
                    if k not in ("kind", "metric")})
    out["train_split"], out["test_split"] = "train", h.opts.split
    return out


def style_preservation(h: Held) -> dict:
    from dvrnn_tf.metrics import disentanglement as dis

    sources = h.opts.style_sources
    out = dis.style_preservation(h.model, h.x, h.y, num_styles=sources, seed=h.opts.seed)
    h.extras["style_images"] = out.pop("images")
    h.extras["measures"] = out.pop("measures")
    # Beside it, how well plain reconstructions keep each measure (its yardstick).
    out["reconstruction_fidelity"] = dis.reconstruction_fidelity(h.model, h.x[:sources * 5])
    return out


def knn(h: Held) -> dict:
    from dvrnn_tf.metrics import disentanglement as dis

    train_set, test_set = h.source.image_set("train"), h.source.image_set(h.opts.split)
    rng = np.random.default_rng(h.opts.seed)
    tr = rng.permutation(len(train_set))[:10000]
    te = rng.permutation(len(test_set))[:10000]
    out = dis.knn_latent_accuracy(h.model, train_set.as_float()[tr], train_set.labels[tr],
                                  test_set.as_float()[te], test_set.labels[te])
    out.update(seed=h.opts.seed, train_split="train", test_split=h.opts.split,
               inputs="grey levels")
    return out


def concepts(h: Held) -> dict:
    """Does f cluster by class without labels (issue 15; `dvrnn_tf.metrics.clustering`)?
    Clusters of the posterior means of f fitted on train-split sequences (k-means with one
    cluster per class for a Gaussian f; the argmax component for a code on the simplex),
    scored on the held-out ones: Hungarian-matched accuracy and NMI, with chance levels."""
    from dvrnn_tf.metrics.clustering import concept_report
    from dvrnn_tf.metrics.disentanglement import _codes, seeded

    train_x, _ = h.train_sequences
    with seeded(h.model, h.opts.seed):
        f_train, f_test = (_codes(h.model, v, False, 256)["f_loc"] for v in (train_x, h.x))
    # Slot codes [N, S, K] (content_attention): their mean, on the simplex if they are.
    f_train, f_test = (f.mean(axis=1) if f.ndim == 3 else f for f in (f_train, f_test))
    factor = next((f for f in h.held_out.factors if f.name == "class"), None)
    num_classes = factor.num_classes if factor is not None else int(h.y.max()) + 1
    kind = getattr(h.model, "content_prior_kind", "gaussian")
    out = concept_report(f_train, f_test, h.y, kind, num_classes, seed=h.opts.seed)
    # Beside the corners of the simplex, k-means on the same codes: whether the classes
    # separate in f at all, by one method for every prior.
    kmeans = out if kind == "gaussian" else concept_report(
        f_train, f_test, h.y, "gaussian", num_classes, seed=h.opts.seed)
    out["kmeans"] = {k: kmeans[k] for k in ("accuracy", "nmi", "chance_accuracy", "chance_nmi")}
    out.update(train_split="train", test_split=h.opts.split, codes="posterior means of f")
    return out


MEASURES = {"likelihood": likelihood, "judge": judge, "swap": swap,
            "label_preservation": label_preservation, "probes": probes,
            "style_preservation": style_preservation, "knn": knn, "concepts": concepts}
# The metrics that read the image judge.
NEEDS_JUDGE = ("judge", "swap", "label_preservation")
