"""Likelihood bounds (DESIGN 4): -ELBO, the importance-weighted bound (IWAE), KLs, active units.

Everything here reads a trained model through its public building blocks and adds nothing to
the model classes:

* VRNN and Disentangled VRNN: the proposal is q(f | x) prod_t q(z_t | x_t, h_{t-1}), sampled
  along the path (h_t = GRU([phi_x(x_t), phi_z(z_t), (phi_f(f))], h_{t-1})), and the log weight
  of a sample of a whole sequence is
      log p(x | f, z) + log p(f) + sum_t log p(z_t | h_{t-1}) - log q(f | x) - sum_t log q(z_t | .).
  f and z are drawn jointly, K samples per sequence; one weight per sequence.
* beta-VAE: frames are independent images, so each frame gets its own K samples and its own
  bound; a sequence's bound is the sum over its frames.

Bounds are in nats per image (a sequence's value divided by T) and in bits per dimension.
`iwae_bound` loops over chunks of the K samples with a running log-sum-exp, so K = 1000 needs
only one chunk's memory. Noise is stateless, keyed on (seed, batch, chunk): a measurement is
reproducible and does not touch the model's own seed state.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: Cov_x(E_q[u | x]) > 0.01
ACTIVE_UNIT_KL_THRESHOLD = 0.01  # nats per unit (per step for z), the KL-based count
_RECURRENT = "q(f|x) prod_t q(z_t|x_t,h_{t-1}), joint per sequence"
_PROPOSALS = {"beta_vae": "q(z|x) per frame", "vrnn": "prod_t q(z_t|x_t,h_{t-1}) per sequence",
              "full": _RECURRENT, "factorized": _RECURRENT,
              "disentangled": "q(f|x) prod_t q(z_t|x_t,f), joint per sequence"}


def model_kind(model) -> str:
    """"beta_vae", "vrnn", "full" or "factorized" (raises ValueError for anything else)."""
    from dvrnn_tf.models import VRNN, BetaVAE, ContentStyleVAE, DisentangledVRNN

    if isinstance(model, ContentStyleVAE):
        return "disentangled"
    if isinstance(model, BetaVAE):
        return "beta_vae"
    if isinstance(model, DisentangledVRNN):
        return model.variant
    if isinstance(model, VRNN):
        return "vrnn"
    raise ValueError(f"no likelihood bound is defined for a {type(model).__name__}; expected a "
                     "VRNN, DisentangledVRNN, ContentStyleVAE or BetaVAE")


def _std_normal_log_prob(u):
    return tf.reduce_sum(-0.5 * tf.square(u) - 0.5 * math.log(2 * math.pi), axis=-1)


def _normal_log_prob(u, loc, scale):
    return tf.reduce_sum(tfd.Normal(loc, scale).log_prob(u), axis=-1)


def forward_terms(model, x, eps_z, eps_f=None):
    """One posterior sample per row, with every log-density and KL the metrics need.

    x: [N, T, H, W, C] (already tiled to N = samples * batch rows if needed);
    eps_z: [N, T, z_dim] standard-normal noise (zeros: the posterior-mean path);
    eps_f: [N, f_dim] for the Disentangled VRNN (zeros: f's posterior mean).
    Returns a dict of float32 tensors; "units" axis U is 1 for the sequence models (one weight
    per sequence) and T for the beta-VAE (one per frame):
      log_px, log_pz, log_qz, log_pf, log_qf: [N, U]   (f terms are zeros without f)
      kl_z: [N, T] analytic KL(q(z_t) || p(z_t | .)) on the sampled path;  kl_f: [N]
      kl_z_dims: [N, T, z_dim];  kl_f_dims: [N, f_dim] (zero-width without f)
      z_loc: [N, T, z_dim];  f_loc, f_sample: [N, f_dim];  z_sample: [N, T, z_dim]
    """
    kind = model_kind(model)
    if kind == "disentangled":  # its own proposal q(f | x) prod_t q(z_t | x_t, f)
        return model.posterior_terms(x, eps_z, eps_f)
    x_flat = tf.cast(model.flatten_frames(x), tf.float32)
    n, t = tf.shape(x_flat)[0], x_flat.shape[1]
    dt = model.compute_dtype
    if kind == "beta_vae":
        loc, scale = model.posterior_params(tf.cast(x_flat, dt))
        z = loc + scale * tf.cast(eps_z, dt)
        log_px = model.likelihood.distribution(
            tf.cast(model.decoder_params(z), tf.float32)).log_prob(x_flat)
        loc, scale, z = (tf.cast(v, tf.float32) for v in (loc, scale, z))
        kl_dims = tfd.Normal(loc, scale).kl_divergence(tfd.Normal(0.0, 1.0))
        zeros = tf.zeros_like(log_px)
        return {"log_px": log_px, "log_pz": _std_normal_log_prob(z),
                "log_qz": _normal_log_prob(z, loc, scale), "log_pf": zeros, "log_qf": zeros,
                "kl_z": tf.reduce_sum(kl_dims, -1), "kl_f": tf.zeros([n]),
                "kl_z_dims": kl_dims, "kl_f_dims": tf.zeros([n, 0]),
                "z_loc": loc, "z_sample": z, "f_loc": tf.zeros([n, 0]),
                "f_sample": tf.zeros([n, 0])}
    feats = model.phi_x(tf.cast(x_flat, dt))
    out = {}
    if kind in ("full", "factorized"):
        q_f = model.content_distribution(feats)
        f_loc, f_scale = q_f.distribution.loc, q_f.distribution.scale
        f = f_loc + f_scale * tf.cast(eps_f, f_loc.dtype)
        phi_f = model.phi_f(f)
        style = model.infer_style(feats, tf.cast(eps_z, dt), cond=phi_f)
        phi_f_steps = tf.repeat(phi_f[:, None, :], t, axis=1)
        params = model.decoder_params(style["phi_z"], style["h_prev"], phi_f_steps)
        f_loc, f_scale, f = (tf.cast(v, tf.float32) for v in (f_loc, f_scale, f))
        kl_f_dims = tfd.Normal(f_loc, f_scale).kl_divergence(tfd.Normal(0.0, 1.0))
        out.update(log_pf=_std_normal_log_prob(f)[:, None],
                   log_qf=_normal_log_prob(f, f_loc, f_scale)[:, None],
                   kl_f=tf.reduce_sum(kl_f_dims, -1), kl_f_dims=kl_f_dims, f_loc=f_loc,
                   f_sample=f)
    else:
        style = model.infer_style(feats, tf.cast(eps_z, dt))
        params = model.decoder_params(style["phi_z"], style["h_prev"])
        out.update(log_pf=tf.zeros([n, 1]), log_qf=tf.zeros([n, 1]), kl_f=tf.zeros([n]),
                   kl_f_dims=tf.zeros([n, 0]), f_loc=tf.zeros([n, 0]), f_sample=tf.zeros([n, 0]))
    prior = model.prior_distribution(style["h_prev"]).distribution  # tfd.Normal [N, T, z]
    p_loc, p_scale = tf.cast(prior.loc, tf.float32), tf.cast(prior.scale, tf.float32)
    loc, scale, z = (tf.cast(style[k], tf.float32) for k in ("loc", "scale", "z"))
    log_px = model.likelihood.distribution(tf.cast(params, tf.float32)).log_prob(x_flat)
    kl_dims = tfd.Normal(loc, scale).kl_divergence(tfd.Normal(p_loc, p_scale))
    out.update(
        log_px=tf.reduce_sum(log_px, -1, keepdims=True),
        log_pz=tf.reduce_sum(_normal_log_prob(z, p_loc, p_scale), -1, keepdims=True),
        log_qz=tf.reduce_sum(_normal_log_prob(z, loc, scale), -1, keepdims=True),
        kl_z=tf.reduce_sum(kl_dims, -1), kl_z_dims=kl_dims, z_loc=loc, z_sample=z)
    return out


def log_weights(terms):
    """log w = log p(x|.) + log p(f) + log p(z) - log q(f) - log q(z), [N, U]."""
    return (terms["log_px"] + terms["log_pf"] + terms["log_pz"] - terms["log_qf"]
            - terms["log_qz"])


def _noise(model, shape_z, shape_f, key):
    kz, kf = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    eps_z = tf.random.stateless_normal(shape_z, kz)
    eps_f = tf.random.stateless_normal(shape_f, kf) if shape_f is not None else None
    return eps_z, eps_f


def _f_dim(model):
    return int(getattr(model, "f_dim", 0)) if model_kind(model) in ("full", "factorized",
                                                                    "disentangled") else 0


class _Bounds:
    """tf.functions of one model, traced once per input shape."""

    def __init__(self, model):
        self.model = model
        self.has_f = _f_dim(model) > 0

    @tf.function
    def chunk_logsumexp(self, x, samples, key):
        """logsumexp over `samples` draws per row of x [B, T, ...] -> [B, U]."""
        model = self.model
        b, t = tf.shape(x)[0], x.shape[1]
        tiled = tf.tile(x, tf.concat([[samples], tf.ones([tf.rank(x) - 1], tf.int32)], 0))
        eps_z, eps_f = _noise(model, [samples * b, t, model.z_dim],
                              [samples * b, _f_dim(model)] if self.has_f else None, key)
        lw = log_weights(forward_terms(model, tiled, eps_z, eps_f))
        lw = tf.reshape(lw, tf.concat([[samples, b], tf.shape(lw)[1:]], 0))
        return tf.reduce_logsumexp(lw, axis=0)

    @tf.function
    def one_sample(self, x, key, mean_path):
        model = self.model
        b, t = tf.shape(x)[0], x.shape[1]
        eps_z, eps_f = _noise(model, [b, t, model.z_dim],
                              [b, _f_dim(model)] if self.has_f else None, key)
        if mean_path:
            eps_z = tf.zeros_like(eps_z)
            eps_f = None if eps_f is None else tf.zeros_like(eps_f)
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


def likelihood_report(model, batches, *, num_samples: int = 1000, chunk_size: int = 100,
                      seed: int = 0, max_sequences: int | None = None) -> dict:
    """-ELBO, the IWAE bound, KLs and active units over held-out batches.

    batches: an iterable of x [B, T, H, W, C] or (x, y, ...) batches (binarized already when the
    likelihood is Bernoulli: the sampler's evaluation split); max_sequences: stop after this
    many sequences (None: all).

    Returns per-image values in nats (each sequence's total divided by T) with their standard
    errors over sequences, bits per dimension, and the counts and K that produced them.
    """
    neg_elbo, iwae, nll, kl_z, kl_f, kl_z_dims, kl_f_dims = [], [], [], [], [], [], []
    z_loc, f_loc = [], []
    count = 0
    t = None
    for i, batch in enumerate(batches):
        x = np.asarray(batch[0] if isinstance(batch, (tuple, list)) else batch, np.float32)
        if max_sequences is not None:
            x = x[:max(0, max_sequences - count)]
        if len(x) == 0:
            break
        t = x.shape[1]
        terms = sample_terms(model, x, seed=seed, batch_index=i)
        nll.append(-terms["log_px"].sum(-1))
        kl_z.append(terms["kl_z"].sum(-1))
        kl_f.append(terms["kl_f"])
        neg_elbo.append(nll[-1] + kl_z[-1] + kl_f[-1])
        kl_z_dims.append(terms["kl_z_dims"])
        kl_f_dims.append(terms["kl_f_dims"])
        mean_terms = sample_terms(model, x, seed=seed, batch_index=i, mean_path=True)
        z_loc.append(mean_terms["z_loc"])
        f_loc.append(mean_terms["f_loc"])
        if num_samples:
            iwae.append(-iwae_log_likelihood(model, x, num_samples, chunk_size, seed, i))
        count += len(x)
        if max_sequences is not None and count >= max_sequences:
            break
    if count == 0:
        raise ValueError("likelihood_report got no sequence to measure")
    cat = np.concatenate
    d = int(model.x_dim)
    per_image = lambda v: _mean_and_sem(cat(v) / t)  # noqa: E731
    report = {"num_sequences": int(count), "seq_len": int(t), "num_images": int(count * t),
              "seed": int(seed), "x_dim": d, "likelihood": model.likelihood.name}
    elbo_mean, elbo_sem = per_image(neg_elbo)
    report["neg_elbo"] = {"nats_per_image": elbo_mean, "sem": elbo_sem,
                          "bits_per_dim": elbo_mean / (d * math.log(2)),
                          "note": "one posterior sample per sequence, analytic KLs"}
    for name, values in (("nll", nll), ("kl_z", kl_z), ("kl_f", kl_f)):
        mean, sem = per_image(values)
        report[name] = {"nats_per_image": mean, "sem": sem}
    report["kl_z"]["nats_per_sequence"] = report["kl_z"]["nats_per_image"] * t
    report["kl_f"]["nats_per_sequence"] = report["kl_f"]["nats_per_image"] * t
    if num_samples:
        mean, sem = per_image(iwae)
        report["iwae"] = {"nats_per_image": mean, "sem": sem,
                          "bits_per_dim": mean / (d * math.log(2)), "k": int(num_samples),
                          "chunk_size": int(chunk_size),
                          "proposal": _PROPOSALS[model_kind(model)]}
    report["active_units"] = active_units(cat(z_loc), cat(f_loc), cat(kl_z_dims), cat(kl_f_dims))
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
