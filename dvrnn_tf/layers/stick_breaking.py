"""Kumaraswamy sticks, the stick-breaking map, the Kumaraswamy || Beta KL (Nalisnick & Smyth 2017).

A stick-breaking code of K components is drawn through K-1 stick fractions v_k in (0, 1):
pi_k = v_k prod_{j<k} (1 - v_j) (k < K), pi_K = prod_{j<K} (1 - v_j), so pi lies on the simplex.
The posterior of each v_k is Kumaraswamy(a_k, b_k), reparameterized by its inverse CDF
v = (1 - (1 - u)^(1/b))^(1/a), u ~ U(0, 1); the prior is Beta(1, alpha) (a GEM(alpha) prior
truncated at K). Note Beta(1, alpha) = Kumaraswamy(1, alpha), so the prior samples the same way.

Why logits: a fraction v is carried as l = logit(v) = log v - log(1 - v), from which both
log v = -softplus(-l) and log(1 - v) = -softplus(l) come back with full relative precision.
In float32 v itself rounds to 1 as soon as 1 - v < 6e-8, which small b makes common
(1 - v ~ (1 - u)^(1/b) / a), and then log(1 - v) = -inf poisons the densities. Every density
here is still the density *of v* (not of l): the IWAE weight p(x | pi(v)) p(v) / q(v) needs
p and q over the same variable, and the Jacobian of v -> l would cancel anyway.

All functions take float32 tensors with broadcastable shapes [..., K-1].
"""
import tensorflow as tf
import tensorflow_probability as tfp

# Uniform noise is clipped to [U_EPS, 1 - U_EPS] (2^-24: float32's spacing just below 1), so
# that log(1 - u) and log u stay finite; it removes a probability of 1e-7 from each tail.
U_EPS = 2.0 ** -24
# Where 1 - v < e^-20 (about 2e-9) the closed forms below switch to their first-order
# expansions, whose relative error is below e^-20 * (1 + 1/a) / 2 < 1e-7 for a >= 0.05.
_TAIL_LOGIT = 20.0
_LOG2 = 0.6931471805599453

# E_q[log(1 - v)] has no closed form. Its series (Nalisnick & Smyth 2017, appendix)
#   E[log(1 - v)] = -b sum_{m>=1} B(m/a, b) / (m + a b)
# converges like m^-(1+b): truncated at their M = 10 terms it is off by 0.09 at a = b = 1
# (exactly 1/(M+1)), by 2.9 at a = 1, b = 0.2 and by 0.67 at a = 10, b = 1; the KL inherits that
# error times (alpha - 1) per stick. We sum the first KL_SERIES_TERMS = M terms exactly and add
# the remainder in closed form (`_series_remainder`). Worst absolute error of E[log(1 - v)]
# over b in [0.01, 100] (float64, against scipy quadrature):
#   M    a <= 2    a = 5     a = 10    a = 20    a = 30
#   10   7.8e-6    1.1e-3    1.5e-2    9e-2      0.2
#   20   1.2e-7    3.8e-5    1.3e-3    1.7e-2    5e-2
#   30   1.3e-8    3.3e-6    1.9e-4    4.3e-3    1.7e-2
#   50   1.1e-9    1.7e-7    1.1e-5    5e-4      2.9e-3
# The error grows with a (the remainder's expansion is in M/a); the stick-breaking head keeps
# a <= 10 (STICK_MAX_CONCENTRATION), where M = 30 is within 1.9e-4 (alpha - 1) nats per stick,
# under 1e-3 for alpha <= 6. Each term costs a log-beta (and its digamma gradient) per stick,
# so M is kept no larger than that.
KL_SERIES_TERMS = 30


def log1mexp(x):
    """log(1 - exp(-x)) for x > 0 (Maechler 2012), with finite gradients on both branches:
    tfp.math.log1mexp's single tf.where lets the unused branch's infinite gradient near 0 turn
    into NaN."""
    small = x < _LOG2
    x_small, x_large = tf.where(small, x, _LOG2), tf.where(small, _LOG2, x)
    return tf.where(small, tf.math.log(-tf.math.expm1(-x_small)),
                    tf.math.log1p(-tf.math.exp(-x_large)))


def _check_terms(terms):
    if int(terms) < 1:
        raise ValueError(f"`terms` must be a positive integer, got {terms}")
    return int(terms)


def kumaraswamy_logit_sample(a, b, u):
    """logit(v) for v = (1 - (1 - u)^(1/b))^(1/a) ~ Kumaraswamy(a, b), given u ~ U(0, 1).

    Differentiable in a and b (the reparameterization); u is clipped to [U_EPS, 1 - U_EPS].
    """
    u = tf.clip_by_value(u, U_EPS, 1.0 - U_EPS)
    t = tf.math.log1p(-u) / b  # log w, w = (1 - u)^(1/b) = 1 - v^a; t < 0
    log_v = log1mexp(-t) / a
    # log(1 - v): for w < e^-20, 1 - v = w / a to first order; elsewhere exactly. The branch
    # not taken gets a harmless input: tf.where passes gradients of both branches.
    tail = t < -_TAIL_LOGIT
    log_v_safe = tf.where(tail, -1.0, log_v)
    log_1mv = tf.where(tail, t - tf.math.log(a), log1mexp(-log_v_safe))
    return log_v - log_1mv


def log_v_and_log_1mv(logit_v):
    """(log v, log(1 - v)) from l = logit(v), each to full relative precision."""
    return -tf.math.softplus(-logit_v), -tf.math.softplus(logit_v)


def kumaraswamy_log_prob(a, b, logit_v):
    """log Kumaraswamy(v; a, b) = log a b + (a - 1) log v + (b - 1) log(1 - v^a), a density of
    v given through l = logit(v)."""
    log_v, log_1mv = log_v_and_log_1mv(logit_v)
    log_a = tf.math.log(a)
    # 1 - v^a = a (1 - v) (1 + O((a - 1)(1 - v))) once v^a rounds to 1.
    tail = logit_v > _TAIL_LOGIT
    safe_log_v = tf.where(tail, -1.0, log_v)
    log_1m_va = tf.where(tail, log_a + log_1mv, log1mexp(-a * safe_log_v))
    return log_a + tf.math.log(b) + (a - 1.0) * log_v + (b - 1.0) * log_1m_va


def beta_log_prob(alpha, beta, logit_v):
    """log Beta(v; alpha, beta), a density of v given through l = logit(v)."""
    log_v, log_1mv = log_v_and_log_1mv(logit_v)
    return ((alpha - 1.0) * log_v + (beta - 1.0) * log_1mv
            - tfp.math.lbeta(alpha + tf.zeros_like(beta), beta + tf.zeros_like(alpha)))


def log_stick_breaking(logit_v):
    """log pi [..., K] from the K-1 fractions' logits [..., K-1]:
    log pi_k = log v_k + sum_{j<k} log(1 - v_j), log pi_K = sum_j log(1 - v_j)."""
    log_v, log_1mv = log_v_and_log_1mv(logit_v)
    before = tf.math.cumsum(log_1mv, axis=-1, exclusive=True)
    return tf.concat([log_v + before, tf.reduce_sum(log_1mv, -1, keepdims=True)], axis=-1)


def stick_breaking(v):
    """pi [..., K] from fractions v [..., K-1] in [0, 1] (not logits): the mean map."""
    before = tf.math.cumprod(1.0 - v, axis=-1, exclusive=True)
    return tf.concat([v * before, tf.reduce_prod(1.0 - v, -1, keepdims=True)], axis=-1)


def kumaraswamy_mean(a, b):
    """E[v] = b B(1 + 1/a, b) for v ~ Kumaraswamy(a, b)."""
    return tf.exp(tf.math.log(b) + tfp.math.lbeta(1.0 + 1.0 / a, b))


def _series_remainder(a, b, terms):
    """sum_{m > M} b B(m/a, b) / (m + a b) in closed form.

    The m-th term is (Gamma(b + 1) / a) Gamma(x) / Gamma(x + b + 1) with x = m/a. Replace the
    ratio by its asymptotic expansion in w = x + b/2 (Tricomi & Erdelyi 1951),
    w^-(b+1) (1 + b (b + 1)(b + 2) / (24 w^2)), and the sum by the midpoint rule,
    sum_{m>M} g(m) = int_{M+1/2}^inf g + g'(M + 1/2) / 24 + ...; integrating term by term:
      Gamma(b) w0^-b + Gamma(b + 2) w0^-(b+2) (b - 1/a^2) / 24,   w0 = (M + 1/2)/a + b/2.
    """
    w0 = (terms + 0.5) / a + 0.5 * b
    log_w0 = tf.math.log(w0)
    first = tf.exp(tf.math.lgamma(b) - b * log_w0)
    second = (tf.exp(tf.math.lgamma(b + 2.0) - (b + 2.0) * log_w0)
              * (b - 1.0 / tf.square(a)) / 24.0)
    return first + second


def expected_log1m_kumaraswamy(a, b, terms=KL_SERIES_TERMS):
    """E[log(1 - v)] for v ~ Kumaraswamy(a, b): the series' first `terms` terms plus its
    closed-form remainder (see KL_SERIES_TERMS for the accuracy)."""
    terms = _check_terms(terms)
    m = tf.range(1, terms + 1, dtype=a.dtype)  # [M], against a, b [..., 1]
    a_, b_ = a[..., None], b[..., None]
    log_terms = (tf.math.log(b_) + tfp.math.lbeta(m / a_, b_ + tf.zeros_like(m))
                 - tf.math.log(m + a_ * b_))
    series = tf.reduce_sum(tf.exp(log_terms), axis=-1)
    return -(series + _series_remainder(a, b, terms))


def kl_kumaraswamy_beta(a, b, alpha, beta, terms=KL_SERIES_TERMS):
    """KL(Kumaraswamy(a, b) || Beta(alpha, beta)) per fraction (Nalisnick & Smyth 2017, appendix):

      (a - alpha)/a (-gamma - psi(b) - 1/b) + log(a b) + log B(alpha, beta) - (b - 1)/b
        - (beta - 1) E_q[log(1 - v)]

    with gamma Euler's constant and E_q[log(1 - v)] from `expected_log1m_kumaraswamy`. Every
    term but the last is exact; for beta = 1 the last vanishes and the KL is exact.
    """
    euler = 0.5772156649015329
    harmonic_term = (a - alpha) / a * (-euler - tf.math.digamma(b) - 1.0 / b)
    return (harmonic_term + tf.math.log(a * b)
            + tfp.math.lbeta(alpha + tf.zeros_like(b), beta + tf.zeros_like(b))
            - (b - 1.0) / b - (beta - 1.0) * expected_log1m_kumaraswamy(a, b, terms))


__all__ = ["KL_SERIES_TERMS", "U_EPS", "beta_log_prob", "expected_log1m_kumaraswamy",
           "kl_kumaraswamy_beta", "kumaraswamy_log_prob", "kumaraswamy_logit_sample",
           "kumaraswamy_mean", "log1mexp", "log_stick_breaking", "log_v_and_log_1mv",
           "stick_breaking"]
