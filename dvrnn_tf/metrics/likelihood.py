"""Likelihood bounds (DESIGN 4): -ELBO, the importance-weighted bound (IWAE), KLs, active units.

Everything here reads a trained model through its public building blocks and adds nothing to
the model classes:

* Each model defines its proposal (`posterior_terms`, described by `iwae_proposal`), and a
  model with a content code f says what noise its posterior takes (`content_noise(n, seed)`,
  `dvrnn_tf.models.content_codes`: Gaussian, uniform or a seed), so the proposal is always
  the model's own posterior q(f | x), whatever its content prior. E.g.
  the Disentangled VRNN's q(f | x) prod_t q(z_t | x_t, h_{t-1}), sampled along the path
  (h_t = GRU([phi_x(x_t), phi_z(z_t), (phi_f(f))], h_{t-1})), with the log weight of a sample
  of a whole sequence
      log p(x | f, z) + log p(f) + sum_t log p(z_t | h_{t-1}) - log q(f | x) - sum_t log q(z_t | .).
  f and z are drawn jointly, K samples per sequence; one weight per sequence.
* A model of independent frames (the beta-VAE) gives each frame its own K samples and its
  own bound; a sequence's bound is the sum over its frames.

Bounds are in nats per image (a sequence's value divided by T) and in bits per dimension.
`iwae_bound` loops over chunks of the K samples with a running log-sum-exp, so K = 1000 needs
only one chunk's memory. Noise is stateless, keyed on (seed, batch, chunk): a measurement is
reproducible and does not touch the model's own seed state.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: Cov_x(E_q[u | x]) > 0.01
ACTIVE_UNIT_KL_THRESHOLD = 0.01  # nats per unit (per step for z), the KL-based count


def check_measurable(model) -> None:
    """ValueError unless `model` defines its proposal (`posterior_terms`, `iwae_proposal`)."""
    if not (callable(getattr(model, "posterior_terms", None))
            and getattr(model, "iwae_proposal", None)):
        raise ValueError(f"no likelihood bound is defined for a {type(model).__name__}: it "
                         "has no `posterior_terms` / `iwae_proposal`")


def forward_terms(model, x, eps_z, eps_f=None):
    """One posterior sample per row, with every log-density and KL the metrics need.

    x: [N, T, H, W, C] (already tiled to N = samples * batch rows if needed);
    eps_z: [N, T, z_dim] standard-normal noise (zeros: the posterior-mean path);
    eps_f: for models with a content code f, what the model's `content_noise(N, seed)` draws
      (e.g. N(0, I) [N, f_dim] for a Gaussian f); None: f's posterior mean.
    Returns the model's `posterior_terms`: a dict of float32 tensors; the "units" axis U is
    1 for the sequence models (one weight per sequence) and T for models of independent
    frames (one per frame):
      log_px, log_pz, log_qz, log_pf, log_qf: [N, U]   (f terms are zeros without f)
      kl_z: [N, T] analytic KL(q(z_t) || p(z_t | .)) on the sampled path;  kl_f: [N]
      kl_z_dims: [N, T, z_dim];  kl_f_dims: [N, f_dim] (zero-width without f)
      z_loc: [N, T, z_dim];  f_loc, f_sample: [N, f_dim];  z_sample: [N, T, z_dim]
    """
    check_measurable(model)
    return model.posterior_terms(x, eps_z, eps_f)


def log_weights(terms):
    """log w = log p(x|.) + log p(f) + log p(z) - log q(f) - log q(z), [N, U]."""
    return (terms["log_px"] + terms["log_pf"] + terms["log_pz"] - terms["log_qf"]
            - terms["log_qz"])


def _noise(model, shape_z, n, key):
    """(eps_z, eps_f) for n rows: eps_f as the model's `content_noise` draws it, or None for a
    model without a content code."""
    kz, kf = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    eps_z = tf.random.stateless_normal(shape_z, kz)
    content_noise = getattr(model, "content_noise", None)
    return eps_z, content_noise(n, kf) if callable(content_noise) else None


class _Bounds:
    """tf.functions of one model, traced once per input shape."""

    def __init__(self, model):
        self.model = model

    @tf.function
    def chunk_logsumexp(self, x, samples, key):
        """logsumexp over `samples` draws per row of x [B, T, ...] -> [B, U]."""
        model = self.model
        b, t = tf.shape(x)[0], x.shape[1]
        tiled = tf.tile(x, tf.concat([[samples], tf.ones([tf.rank(x) - 1], tf.int32)], 0))
        eps_z, eps_f = _noise(model, [samples * b, t, model.z_dim], samples * b, key)
        lw = log_weights(forward_terms(model, tiled, eps_z, eps_f))
        lw = tf.reshape(lw, tf.concat([[samples, b], tf.shape(lw)[1:]], 0))
        return tf.reduce_logsumexp(lw, axis=0)

    @tf.function
    def one_sample(self, x, key, mean_path):
        model = self.model
        b, t = tf.shape(x)[0], x.shape[1]
        eps_z, eps_f = _noise(model, [b, t, model.z_dim], b, key)
        if mean_path:  # the posterior means of z along the path, and f's mean
            eps_z, eps_f = tf.zeros_like(eps_z), None
        terms = forward_terms(model, x, eps_z, eps_f)
        terms["log_w"] = log_weights(terms)
        return terms


def _bounds(model):
    cache = getattr(model, "_dvrnn_metrics_bounds", None)
    if cache is None:
        cache = _Bounds(model)
        try:
            object.__setattr__(model, "_dvrnn_metrics_bounds", cache)
        except Exception:  # pylint: disable=broad-except  # a model that refuses attributes
            pass
    return cache


def _batch_key(seed, index):
    return tf.random.experimental.stateless_fold_in(
        tf.constant([int(seed), 0x1AE], tf.int64), tf.cast(index, tf.int64))


def iwae_log_likelihood(model, x, num_samples: int, chunk_size: int = 100, seed: int = 0,
                        batch_index: int = 0) -> np.ndarray:
    """The IWAE bound log (1/K) sum_k w_k for each sequence of x [B, T, H, W, C], K = num_samples.

    Returns float64 [B]: nats per sequence (the beta-VAE's per-frame bounds summed over T).
    Samples are drawn `chunk_size` at a time (fewer in the last chunk) and accumulated with a
    running log-sum-exp.
    """
    if int(num_samples) < 1 or int(chunk_size) < 1:
        raise ValueError(f"num_samples and chunk_size must be >= 1, got {num_samples}, "
                         f"{chunk_size}")
    fns = _bounds(model)
    x = tf.convert_to_tensor(np.asarray(x, np.float32))
    key = _batch_key(seed, batch_index)
    total = None
    done, chunk = 0, 0
    while done < num_samples:
        s = min(int(chunk_size), int(num_samples) - done)
        part = fns.chunk_logsumexp(x, tf.constant(s), tf.random.experimental.stateless_fold_in(
            key, chunk)).numpy().astype(np.float64)
        total = part if total is None else np.logaddexp(total, part)
        done, chunk = done + s, chunk + 1
    return (total - math.log(num_samples)).sum(axis=-1)


def sample_terms(model, x, seed: int = 0, batch_index: int = 0, mean_path: bool = False):
    """`forward_terms` with one posterior sample per sequence (or the mean path), as numpy."""
    key = _batch_key(seed, 10_000_000 + batch_index)
    terms = _bounds(model).one_sample(tf.convert_to_tensor(np.asarray(x, np.float32)), key,
                                      bool(mean_path))
    return {k: v.numpy() for k, v in terms.items()}


def _mean_and_sem(values):
    values = np.asarray(values, np.float64)
    sem = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(values.mean()), sem


def _per_sequence_terms(model, batches, num_samples, chunk_size, seed, max_sequences):
    """({name: [per-batch arrays]}, sequences read, T): each sequence's -ELBO, NLL, KLs
    (totals over its frames, and per dimension), its posterior means and, when num_samples,
    its IWAE bound's negation."""
    v = {k: [] for k in ("neg_elbo", "iwae", "nll", "kl_z", "kl_f", "kl_z_dims", "kl_f_dims",
                         "z_loc", "f_loc")}
    count, t = 0, None
    for i, batch in enumerate(batches):
        x = np.asarray(batch[0] if isinstance(batch, (tuple, list)) else batch, np.float32)
        if max_sequences is not None:
            x = x[:max(0, max_sequences - count)]
        if len(x) == 0:
            break
        t = x.shape[1]
        terms = sample_terms(model, x, seed=seed, batch_index=i)
        v["nll"].append(-terms["log_px"].sum(-1))
        v["kl_z"].append(terms["kl_z"].sum(-1))
        v["kl_f"].append(terms["kl_f"])
        v["neg_elbo"].append(v["nll"][-1] + v["kl_z"][-1] + v["kl_f"][-1])
        v["kl_z_dims"].append(terms["kl_z_dims"])
        v["kl_f_dims"].append(terms["kl_f_dims"])
        mean_terms = sample_terms(model, x, seed=seed, batch_index=i, mean_path=True)
        v["z_loc"].append(mean_terms["z_loc"])
        v["f_loc"].append(mean_terms["f_loc"])
        if num_samples:
            v["iwae"].append(-iwae_log_likelihood(model, x, num_samples, chunk_size, seed, i))
        count += len(x)
        if max_sequences is not None and count >= max_sequences:
            break
    if count == 0:
        raise ValueError("likelihood_report got no sequence to measure")
    return v, count, t


def likelihood_report(model, batches, *, num_samples: int = 1000, chunk_size: int = 100,
                      seed: int = 0, max_sequences: int | None = None) -> dict:
    """-ELBO, the IWAE bound, KLs and active units over held-out batches.

    batches: an iterable of x [B, T, H, W, C] or (x, y, ...) batches (binarized already when the
    likelihood is Bernoulli: the sampler's evaluation split); max_sequences: stop after this
    many sequences (None: all).

    Returns per-image values in nats (each sequence's total divided by T) with their standard
    errors over sequences, bits per dimension, and the counts and K that produced them.
    """
    v, count, t = _per_sequence_terms(model, batches, num_samples, chunk_size, seed,
                                      max_sequences)
    cat = np.concatenate
    d = int(model.x_dim)
    per_image = lambda values: _mean_and_sem(cat(values) / t)  # noqa: E731
    report = {"num_sequences": int(count), "seq_len": int(t), "num_images": int(count * t),
              "seed": int(seed), "x_dim": d, "likelihood": model.likelihood.name}
    elbo_mean, elbo_sem = per_image(v["neg_elbo"])
    report["neg_elbo"] = {"nats_per_image": elbo_mean, "sem": elbo_sem,
                          "bits_per_dim": elbo_mean / (d * math.log(2)),
                          "note": "one posterior sample per sequence, analytic KLs"}
    for name in ("nll", "kl_z", "kl_f"):
        mean, sem = per_image(v[name])
        report[name] = {"nats_per_image": mean, "sem": sem}
    report["kl_z"]["nats_per_sequence"] = report["kl_z"]["nats_per_image"] * t
    report["kl_f"]["nats_per_sequence"] = report["kl_f"]["nats_per_image"] * t
    if num_samples:
        mean, sem = per_image(v["iwae"])
        report["iwae"] = {"nats_per_image": mean, "sem": sem,
                          "bits_per_dim": mean / (d * math.log(2)), "k": int(num_samples),
                          "chunk_size": int(chunk_size),
                          "proposal": model.iwae_proposal}
    report["active_units"] = active_units(*(cat(v[k]) for k in (
        "z_loc", "f_loc", "kl_z_dims", "kl_f_dims")))
    if not model.likelihood.binarize:
        report["warning"] = (f"likelihood {model.likelihood.name!r} on grey levels: these "
                             "'nats' are not a density of the data (DESIGN 1)")
    return report


def active_units(z_loc, f_loc, kl_z_dims, kl_f_dims) -> dict:
    """Active units of each code, two ways.

    burda: Var over data of the posterior mean > 0.01 (Burda et al. 2016); for z_t the posterior
      means along the mean path, the variance taken over sequences per step, then averaged over
      steps. With a learned prior p(z_t | h_{t-1}) a collapsed z_t still has means that move
      with h: read it next to
    kl: units whose KL to their prior, averaged over data (and steps), exceeds 0.01 nats.
    z_loc [N, T, z_dim], f_loc [N, f_dim], kl_z_dims [N, T, z_dim], kl_f_dims [N, f_dim].
    """
    out = {"threshold_variance": ACTIVE_UNIT_THRESHOLD,
           "threshold_kl_nats": ACTIVE_UNIT_KL_THRESHOLD}
    z_var = np.var(z_loc, axis=0).mean(axis=0)  # [z_dim]
    z_kl = kl_z_dims.mean(axis=(0, 1))
    out["z"] = {"dims": int(z_var.shape[0]), "burda": int((z_var > ACTIVE_UNIT_THRESHOLD).sum()),
                "kl": int((z_kl > ACTIVE_UNIT_KL_THRESHOLD).sum()),
                "variance_of_means": z_var.tolist(), "kl_per_unit_per_step": z_kl.tolist()}
    if f_loc.shape[-1]:
        f_var, f_kl = np.var(f_loc, axis=0), kl_f_dims.mean(axis=0)
        out["f"] = {"dims": int(f_var.shape[0]),
                    "burda": int((f_var > ACTIVE_UNIT_THRESHOLD).sum()),
                    "kl": int((f_kl > ACTIVE_UNIT_KL_THRESHOLD).sum()),
                    "variance_of_means": f_var.tolist(), "kl_per_unit": f_kl.tolist()}
    return out
