"""Observation models p(x_t | .) over flattened pixels, as `tfd` distributions.

A decoder emits `params_per_pixel * D` numbers per time step; `distribution(params)` turns
them into a distribution with event_shape [D] (batch_shape the leading axes of `params`).
"""
import dataclasses
import math

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


@dataclasses.dataclass(frozen=True)
class Likelihood:
    """One observation model.

    name: the flag value.
    binarize: whether the data pipeline binarizes pixels (dynamic in training, fixed-seed in
      evaluation) for this likelihood; only then is the loss a density in nats.
    params_per_pixel: decoder outputs per pixel.
    scale: `gaussian_fixed`'s standard deviation (a setting, `--gaussian_scale`).
    """

    name: str
    binarize: bool
    params_per_pixel: int = 1
    scale: float | None = None  # gaussian_fixed: the standard deviation of every pixel

    def distribution(self, params: tf.Tensor) -> tfd.Distribution:
        """params [..., params_per_pixel * D] -> distribution with event_shape [D]."""
        if self.name in ("bernoulli", "bce"):
            # For "bce" the targets are grey levels: Bernoulli.log_prob is then the
            # negative cross-entropy of the first paper, not a density.
            base = tfd.Bernoulli(logits=params, dtype=params.dtype)
        elif self.name == "continuous_bernoulli":
            base = tfd.ContinuousBernoulli(logits=params)
        elif self.name == "gaussian":
            loc, raw_scale = tf.split(params, 2, axis=-1)
            base = tfd.Normal(loc=tf.sigmoid(loc), scale=tf.nn.softplus(raw_scale) + 1e-3)
        elif self.name == "gaussian_fixed":
            base = tfd.Normal(loc=tf.sigmoid(params), scale=tf.cast(self.scale, params.dtype))
        else:  # pragma: no cover - guarded by get_likelihood
            raise ValueError(self.name)
        return tfd.Independent(base, reinterpreted_batch_ndims=1)

    def nll(self, params: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        """-log p(x | params) summed over the event: [..., D] -> [...].

        Equal to ``-self.distribution(params).log_prob(x)``; for ``bernoulli`` and ``bce`` it
        is computed as ``softplus(l) - x * l`` (the same function: log p(x) = x l - softplus(l)),
        a handful of elementwise ops instead of tfd.Bernoulli's dozen, forward and backward,
        over the decoder's largest tensor (with the gradient written out: e = exp(-|l|) is
        computed once for both passes). ``gaussian_fixed`` likewise: one kernel each way
        instead of tfd.Normal's sigmoid, standardization, broadcast log-scale and their
        gradients (~80 ms of op time in a Sprites step, but only ~1% of its wall time: those
        ops ran beside the convolutions).
        """
        if self.name in ("bernoulli", "bce"):
            return _bernoulli_nll(params, tf.cast(x, params.dtype))
        if self.name == "gaussian_fixed":
            return _gaussian_fixed_nll(params, tf.cast(x, params.dtype),
                                       tf.constant(self.scale, params.dtype))
        return -self.distribution(params).log_prob(x)

    def mean(self, params: tf.Tensor) -> tf.Tensor:
        """The expected image in [0, 1], shape [..., D]."""
        if self.name in ("bernoulli", "bce", "gaussian_fixed"):
            return tf.sigmoid(params)
        if self.name == "gaussian":
            return tf.sigmoid(tf.split(params, 2, axis=-1)[0])
        return tf.clip_by_value(self.distribution(params).mean(), 0.0, 1.0)


# The decoder's logits are the step's largest tensor ([B*T, D]): unfused, the NLL and its
# gradient are a dozen passes over it, each costing about as much as a matmul of the step.
# Each direction is one XLA kernel instead (also inside a graph that is not compiled), and
# the backward pass recomputes e = exp(-|l|) rather than storing it.


@tf.function(jit_compile=True, autograph=False)
def _bernoulli_nll_forward(logits, x):
    e = tf.exp(-tf.abs(logits))
    return tf.reduce_sum(tf.nn.relu(logits) - x * logits + tf.math.log1p(e), axis=-1)


@tf.function(jit_compile=True, autograph=False)
def _bernoulli_nll_backward(dy, logits, x):
    e = tf.exp(-tf.abs(logits))
    sigmoid = tf.where(logits >= 0, tf.ones_like(e), e) / (1.0 + e)
    return dy[..., None] * (sigmoid - x)


@tf.custom_gradient
def _bernoulli_nll(logits, x):
    """sum_D softplus(l) - x l, with softplus(l) = relu(l) + log1p(e), e = exp(-|l|), and
    d/dl = sigmoid(l) - x, sigmoid(l) = (l >= 0 ? 1 : e) / (1 + e); d/dx = -l."""

    def grad(dy):
        return _bernoulli_nll_backward(dy, logits, x), -dy[..., None] * logits

    return _bernoulli_nll_forward(logits, x), grad


@tf.function(jit_compile=True, autograph=False)
def _gaussian_fixed_nll_forward(logits, x, scale):
    z = (x - tf.sigmoid(logits)) / scale
    d = tf.cast(tf.shape(logits)[-1], logits.dtype)
    return 0.5 * tf.reduce_sum(tf.square(z), axis=-1) + d * (
        tf.math.log(scale) + 0.5 * math.log(2.0 * math.pi))


@tf.function(jit_compile=True, autograph=False)
def _gaussian_fixed_nll_backward(dy, logits, x, scale):
    m = tf.sigmoid(logits)
    r = dy[..., None] * (m - x) / tf.square(scale)
    return r * m * (1.0 - m), -r


@tf.custom_gradient
def _gaussian_fixed_nll(logits, x, scale):
    """-log N(x; sigmoid(l), scale^2) summed over D: sum_D (x - m)^2 / (2 scale^2) +
    D (log scale + log(2 pi) / 2), m = sigmoid(l); d/dl = (m - x) m (1 - m) / scale^2,
    d/dx = (x - m) / scale^2. The scale is a setting: no gradient."""

    def grad(dy):
        return (*_gaussian_fixed_nll_backward(dy, logits, x, scale), tf.zeros_like(scale))

    return _gaussian_fixed_nll_forward(logits, x, scale), grad


LIKELIHOODS = {
    "bernoulli": Likelihood("bernoulli", binarize=True),
    "bce": Likelihood("bce", binarize=False),
    "continuous_bernoulli": Likelihood("continuous_bernoulli", binarize=False),
    "gaussian": Likelihood("gaussian", binarize=False, params_per_pixel=2),
    # A Gaussian of fixed standard deviation (DSVAE's choice for RGB video): the decoder
    # gives only the mean.
    "gaussian_fixed": Likelihood("gaussian_fixed", binarize=False, scale=0.1),
}


def get_likelihood(name: str, gaussian_scale: float | None = None) -> Likelihood:
    """The observation model `name`; `gaussian_scale` sets `gaussian_fixed`'s sigma."""
    try:
        likelihood = LIKELIHOODS[name]
    except KeyError:
        raise ValueError(
            f"Unknown likelihood {name!r}; allowed: {', '.join(LIKELIHOODS)}") from None
    if likelihood.scale is not None and gaussian_scale is not None:
        if not gaussian_scale > 0:
            raise ValueError(f"`gaussian_scale` must be > 0, got {gaussian_scale}")
        likelihood = dataclasses.replace(likelihood, scale=float(gaussian_scale))
    return likelihood
