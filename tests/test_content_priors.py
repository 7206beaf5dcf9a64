"""Content priors (issue 15): each KL against an independent estimate, samples on the simplex,
reparameterization gradients against analytic ones, the IWAE pieces, settings and dtypes."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import integrate, special, stats

from dvrnn_tf.layers import stick_breaking as sb
from dvrnn_tf.layers.content_posterior_head import HEAD_OPTIONS, ContentPosteriorHead
from dvrnn_tf.layers.content_priors import (
    CONTENT_PRIORS, STICK_MAX_CONCENTRATION, ContentPrior, content_prior, stateless_seed)

tfd = tfp.distributions
N_MC = 20000

# Parameters per kind, [P, width] each: ordinary values and the head's extremes.
PARAMS = {
    "gaussian": lambda: ([[0.0, 1.5, -2.0], [0.3, 0.0, 4.0]], [[1.0, 0.1, 3.0], [0.5, 2.0, 1e-2]]),
    "dirichlet": lambda: ([[1.0, 1.0, 1.0], [5.0, 0.3, 2.0], [0.05, 2.0, 300.0], [0.1, 0.1, 0.1],
                           [50.0, 1.0, 1.0]],),
    "stick_breaking": lambda: ([[1.0, 0.3, 3.0], [10.0, 0.5, 0.05], [2.0, 10.0, 0.05]],
                               [[1.0, 2.0, 0.2], [10.0, 8.0, 0.05], [0.05, 10.0, 10.0]]),
}
OPTIONS = {"gaussian": [{}], "dirichlet": [{"dirichlet_concentration": 0.5},
                                           {"dirichlet_concentration": 2.0}],
           "stick_breaking": [{"stick_breaking_alpha": 5.0}, {"stick_breaking_alpha": 0.5}]}
CASES = [(kind, opts) for kind in CONTENT_PRIORS for opts in OPTIONS[kind]]


def _params(kind, dtype=tf.float32):
    return tuple(tf.constant(p, dtype) for p in PARAMS[kind]())


def _tiled(params, n):
    return tuple(tf.tile(p[None], [n, 1, 1]) for p in params)


def _mean_se(values, axis=0):
    values = np.asarray(values, np.float64)
    return values.mean(axis), values.std(axis, ddof=1) / np.sqrt(values.shape[axis])


# ---- KL against independent estimates ----------------------------------------------------------


@pytest.mark.parametrize("kind,options", CASES)
def test_kl_equals_monte_carlo_of_log_q_minus_log_p(kind, options):
    # E_q[log q(u) - log p(u)] = KL: checks kl against the sampler and the two densities (and
    # so the consistency the IWAE needs), with a tolerance from the estimate's standard error.
    prior = content_prior(kind, 4 if kind == "stick_breaking" else 3, **options)
    params = _params(kind)
    u = prior.sample_latent(_tiled(params, N_MC), seed=7)
    diff = (prior.log_q(_tiled(params, N_MC), u) - prior.log_p(u)).numpy()
    mc, se = _mean_se(diff)
    kl = prior.kl(params).numpy()
    assert np.all(np.isfinite(diff)) and np.all(np.isfinite(kl))
    np.testing.assert_array_less(np.abs(kl - mc), 4 * se + 2e-3 * (1 + np.abs(kl)))


def _expected_log1m_v(a, b):
    """E[log(1 - v)], v ~ Kumaraswamy(a, b), by quadrature over log w, w = 1 - v^a ~ Beta(b, 1)."""
    def integrand(s):  # s = log w; log(1 - v) = log(1 - (1 - w)^(1/a)), first order below -30
        inner = s - np.log(a) if s < -30 else np.log(-np.expm1(np.log1p(-np.exp(s)) / a))
        return b * np.exp(b * s) * inner
    return sum(integrate.quad(integrand, lo, hi, limit=500, epsabs=1e-13, epsrel=1e-11)[0]
               for lo, hi in ((-np.inf, -30.0), (-30.0, 0.0)))


def test_kumaraswamy_beta_series_matches_quadrature():
    grid = [(a, b) for a in (0.05, 0.3, 1.0, 3.0, 10.0) for b in (0.05, 0.2, 1.0, 5.0, 50.0)]
    a, b = (tf.constant([g[i] for g in grid], tf.float32) for i in (0, 1))
    series = sb.expected_log1m_kumaraswamy(a, b).numpy()
    exact = np.array([_expected_log1m_v(*g) for g in grid])
    # Float32 rounding (1e-6 relative) and the remainder's error (1.9e-4 at a = 10).
    np.testing.assert_allclose(series, exact, rtol=2e-6, atol=2e-4)
    np.testing.assert_allclose(series[[i for i, g in enumerate(grid) if g[0] <= 3]],
                               exact[[i for i, g in enumerate(grid) if g[0] <= 3]], atol=2e-5,
                               rtol=2e-6)
    # The whole KL against its definition with the same quadrature, prior Beta(1, alpha0).
    alpha0 = 5.0
    kl = sb.kl_kumaraswamy_beta(a, b, 1.0, alpha0).numpy()
    a64, b64 = (np.array([g[i] for g in grid]) for i in (0, 1))
    harmonic = special.digamma(b64 + 1) + np.euler_gamma  # E[log v] = -H_b / a
    neg_entropy = -(1 - 1 / b64) - (1 - 1 / a64) * harmonic + np.log(a64 * b64)
    cross = np.log(alpha0) + (alpha0 - 1) * exact  # E_q[log Beta(v; 1, alpha0)]
    np.testing.assert_allclose(kl, neg_entropy - cross, rtol=2e-5, atol=1e-3)


def test_dirichlet_kl_matches_closed_form():
    conc = np.array([[0.05, 2.0, 300.0], [1.0, 1.0, 1.0], [7.0, 0.3, 0.9]])
    for alpha0 in (0.3, 1.0, 4.0):
        prior = content_prior("dirichlet", 3, dirichlet_concentration=alpha0)
        s = conc.sum(-1)
        expected = (special.gammaln(s) - special.gammaln(conc).sum(-1)
                    - special.gammaln(3 * alpha0) + 3 * special.gammaln(alpha0)
                    + ((conc - alpha0) * (special.digamma(conc)
                                          - special.digamma(s)[:, None])).sum(-1))
        np.testing.assert_allclose(prior.kl((tf.constant(conc, tf.float32),)).numpy(), expected,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", CONTENT_PRIORS)
def test_log_densities_agree_with_tfd(kind):
    # log_q / log_p on the latent are the tfd densities of f (gaussian, dirichlet) or of v.
    prior = content_prior(kind, 4 if kind == "stick_breaking" else 3)
    params = tuple(p[:2] for p in _params(kind))  # moderate values: tfd's f stays > 0
    u = prior.sample_latent(params, seed=3)
    point = tf.sigmoid(u) if kind == "stick_breaking" else prior.to_code(u)
    batch = tf.shape(params[0])[:1]
    np.testing.assert_allclose(prior.log_q(params, u).numpy(),
                               prior.posterior(params).log_prob(point).numpy(), rtol=1e-4)
    np.testing.assert_allclose(prior.log_p(u).numpy(), prior.prior(batch).log_prob(point).numpy(),
                               rtol=1e-4)


# ---- samples -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dirichlet", "stick_breaking"])
def test_samples_and_means_lie_on_the_simplex(kind):
    dim = 4 if kind == "stick_breaking" else 3
    prior = content_prior(kind, dim)
    params = _tiled(_params(kind), 2000)
    codes = [prior.sample(params, seed=11), prior.mean(params),
             prior.sample_prior([5000], seed=2)]
    for f in codes:
        f = f.numpy()
        assert f.shape[-1] == dim and np.all(np.isfinite(f)) and f.min() >= 0
        np.testing.assert_allclose(f.sum(-1), 1.0, atol=1e-5)


def test_kumaraswamy_sampler_matches_the_distribution():
    # Kolmogorov-Smirnov on l = logit v against F(l) = 1 - (1 - v^a)^b in float64 (in v itself
    # float32 rounds 5% of the draws of Kumaraswamy(8, 0.2) to exactly 1).
    def cdf(a, b, logit):
        log_va = -a * np.logaddexp(0.0, -logit.astype(np.float64))  # a log v
        return -np.expm1(b * np.log(-np.expm1(log_va)))

    for a, b in ((0.3, 2.0), (1.0, 1.0), (8.0, 0.2), (0.05, 10.0), (0.05, 0.05)):
        u = tf.random.stateless_uniform([20000], [1, 2])
        logit = sb.kumaraswamy_logit_sample(tf.constant(a), tf.constant(b), u).numpy()
        assert stats.kstest(logit, lambda x: cdf(a, b, x)).pvalue > 1e-3, (a, b)


def test_dirichlet_sampler_moments_in_log_space():
    # E[log f_k] = psi(alpha_k) - psi(sum alpha): the log-space draws are right even where a
    # float32 f underflows (alpha_k = 0.05: log f_k reaches below -100).
    prior = content_prior("dirichlet", 3)
    conc = np.array([0.05, 2.0, 30.0])
    u = prior.sample_latent((tf.constant(np.tile(conc, (N_MC, 1)), tf.float32),), seed=5).numpy()
    mean, se = _mean_se(u)
    expected = special.digamma(conc) - special.digamma(conc.sum())
    np.testing.assert_array_less(np.abs(mean - expected), 4 * se + 1e-4)
    assert u.min() < -88  # where float32 exp(u) is 0: the case the log space is for


# ---- gradients through samples ----------------------------------------------------------------


def _statistic(kind, u, weights):
    """A statistic of the latent sample u [..., width]: [...]."""
    if kind == "gaussian":
        return tf.reduce_sum(tf.square(u), -1)
    return tf.reduce_sum(weights * (u if kind == "dirichlet" else tf.sigmoid(u)), -1)


def _expectation(kind, params, weights):
    """E_q of `_statistic`, exactly, from tfd's moments or digamma (not from the sampler)."""
    if kind == "gaussian":
        loc, scale = params
        return tf.reduce_sum(tf.square(loc) + tf.square(scale), -1)
    if kind == "dirichlet":  # E[log f_k] = psi(alpha_k) - psi(sum alpha)
        (conc,) = params
        log_mean = tf.math.digamma(conc) - tf.math.digamma(tf.reduce_sum(conc, -1, keepdims=True))
        return tf.reduce_sum(weights * log_mean, -1)
    return tf.reduce_sum(weights * tfd.Kumaraswamy(*params).mean(), -1)


@pytest.mark.parametrize("kind", CONTENT_PRIORS)
def test_reparameterized_gradients_match_the_analytic_ones(kind):
    prior = content_prior(kind, 4 if kind == "stick_breaking" else 3)
    params = tuple(p[:2] for p in _params(kind))
    tiled = _tiled(params, N_MC)
    weights = tf.constant([[0.7, -1.3, 0.4]])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(tiled + params)
        total = tf.reduce_sum(_statistic(kind, prior.sample_latent(tiled, seed=9), weights))
        exact = _expectation(kind, params, weights)
    # Each sample depends on its own row of the tiled parameters only: per-sample gradients.
    for per_sample, analytic in zip(tape.gradient(total, tiled), tape.gradient(exact, params)):
        mean, se = _mean_se(per_sample.numpy())
        assert np.all(np.isfinite(mean))
        np.testing.assert_array_less(np.abs(mean - analytic.numpy()), 4 * se + 1e-3)
    with tf.GradientTape() as tape:
        tape.watch(params)
        f = prior.sample(params, seed=1)
        loss = tf.reduce_sum(f * tf.range(1.0, f.shape[-1] + 1))
    grads = tape.gradient(loss, params)  # through f itself (the simplex map included)
    assert all(np.all(np.isfinite(g.numpy())) and np.any(g.numpy() != 0) for g in grads)


def test_extreme_parameters_stay_finite():
    # The head's bounds, crossed: samples, densities, KL and their gradients stay finite.
    for kind, low, high in (("dirichlet", 0.05, 1e3), ("stick_breaking", 0.05, 10.0)):
        prior = content_prior(kind, 5)
        values = np.array([[low, high, low, high, low], [high, low, high, low, high],
                           [low] * 5, [high] * 5], np.float32)
        params = (values,) if kind == "dirichlet" else (values[:, :4], values[:, ::-1][:, :4])
        params = tuple(tf.constant(np.tile(p, (500, 1))) for p in params)
        with tf.GradientTape() as tape:
            tape.watch(params)
            u = prior.sample_latent(params, seed=4)
            terms = [prior.log_q(params, u), prior.log_p(u), prior.kl(params), prior.to_code(u)]
            total = sum(tf.reduce_sum(t) for t in terms)
        for t in terms + list(tape.gradient(total, params)):
            assert np.all(np.isfinite(t.numpy())), kind


# ---- the IWAE pieces ---------------------------------------------------------------------------


def _log_mean_exp(x):
    return float(special.logsumexp(x) - np.log(len(x)))


def _lme_se(x):
    w = np.exp(x - x.max())
    return float(w.std() / w.mean() / np.sqrt(len(x)))


@pytest.mark.parametrize("kind", CONTENT_PRIORS)
def test_iwae_with_these_proposals_converges_to_log_px(kind):
    # Toy model p(x | f) = N(x; f, 0.3^2 I): the IWAE bound with K samples of q must stay below
    # log p(x) and reach it as K grows; a q and a p over different variables would miss it.
    sigma, k = 0.3, 20000
    prior = content_prior(kind, 3)
    x = np.array([0.6, 0.3, 0.1], np.float32)
    log_lik = lambda f: tfd.Normal(f, sigma).log_prob(x).numpy().sum(-1)  # noqa: E731
    if kind == "gaussian":  # the exact posterior: every weight is p(x)
        params = (np.tile(x / (1 + sigma ** 2), (k, 1)),
                  np.full((k, 3), sigma / np.sqrt(1 + sigma ** 2), np.float32))
        log_px = tfd.Normal(0.0, np.sqrt(1 + sigma ** 2)).log_prob(x).numpy().sum()
    else:
        log_px_samples = log_lik(prior.sample_prior([400000], seed=3).numpy())
        log_px = _log_mean_exp(log_px_samples)
        params = ((np.tile([12.0, 6.0, 2.0], (k, 1)),) if kind == "dirichlet"
                  else (np.tile([2.0, 2.0], (k, 1)), np.tile([1.5, 1.0], (k, 1))))
    params = tuple(tf.constant(p, tf.float32) for p in params)
    u = prior.sample_latent(params, seed=8)
    log_w = log_lik(prior.to_code(u).numpy()) + (prior.log_p(u) - prior.log_q(params, u)).numpy()
    iwae, elbo = _log_mean_exp(log_w), log_w.mean()
    if kind == "gaussian":
        np.testing.assert_allclose(log_w, log_px, atol=1e-4)
        return
    tolerance = 4 * (_lme_se(log_w) + _lme_se(log_px_samples)) + 5e-3
    assert elbo < iwae < log_px + tolerance
    assert abs(iwae - log_px) < tolerance


# ---- interpolation, settings, dtypes ----------------------------------------------------------


def test_interpolation_stays_on_the_simplex_and_gaussian_is_linear():
    w = tf.linspace(-0.5, 1.5, 9)
    for kind in ("dirichlet", "stick_breaking"):
        prior = content_prior(kind, 4)
        f = prior.sample_prior([2], seed=6)
        path = prior.interpolate(f[:1], f[1:], w).numpy()
        assert path.shape == (9, 4) and path.min() >= 0
        np.testing.assert_allclose(path.sum(-1), 1.0, atol=1e-5)
        np.testing.assert_allclose(path[[0, 2]], np.repeat(f[:1].numpy(), 2, 0), atol=1e-7)
        np.testing.assert_allclose(path[[-3, -1]], np.repeat(f[1:].numpy(), 2, 0), atol=1e-7)
    a, b = np.array([[0.0, 1.0]], np.float32), np.array([[2.0, -1.0]], np.float32)
    line = (1 - w.numpy()[:, None]) * a + w.numpy()[:, None] * b  # extrapolates past A and B
    np.testing.assert_allclose(content_prior("gaussian", 2).interpolate(a, b, w).numpy(), line,
                               atol=1e-6)


def test_prior_config_round_trip_and_errors():
    for kind, opts in CASES:
        prior = content_prior(kind, 6, **opts)
        clone = ContentPrior.from_config(prior.get_config())
        assert type(clone) is type(prior) and clone.get_config() == prior.get_config()
    assert content_prior("stick_breaking", 6).latent_dim == 5
    bad = [(("normal", 3), {}, "content_prior"),
           (("dirichlet", 1), {}, "dim"),
           (("gaussian", 0), {}, "dim"),
           (("dirichlet", 3), {"stick_breaking_alpha": 2.0}, "stick_breaking_alpha"),
           (("stick_breaking", 3), {"stick_breaking_alpha": 0.0}, "stick_breaking_alpha"),
           (("dirichlet", 3), {"dirichlet_concentration": float("nan")}, "dirichlet_concentration"),
           (("dirichlet", 3), {"dirichlet_concentration": "big"}, "dirichlet_concentration")]
    for args, kwargs, name in bad:
        with pytest.raises(ValueError, match=name) as info:
            content_prior(*args, **kwargs)
        assert "\n" not in str(info.value)
    prior = content_prior("dirichlet", 3)
    with pytest.raises(ValueError, match="seed"):
        prior.sample_latent((tf.ones([2, 3]),), noise=tf.zeros([2, 3]))
    with pytest.raises(ValueError, match="exactly one"):
        content_prior("gaussian", 3).sample((tf.zeros([1, 3]), tf.ones([1, 3])), seed=1,
                                             noise=tf.zeros([1, 3]))
    with pytest.raises(ValueError, match=r"\(a, b,\)"):
        content_prior("stick_breaking", 3).kl((tf.ones([1, 2]),))


def test_head_ranges_config_and_keras_round_trip(tmp_path):
    inputs = tf.constant(30.0 * np.random.default_rng(0).normal(size=(64, 5)), tf.float32)
    for kind in CONTENT_PRIORS:
        head = ContentPosteriorHead(kind, 4, name="content")
        params = head(inputs)
        widths = {p.shape[-1] for p in params}
        assert widths == {3 if kind == "stick_breaking" else 4}
        assert len(params) == (1 if kind == "dirichlet" else 2)
        opts = HEAD_OPTIONS[kind]
        for p in params[1:] if kind == "gaussian" else params:
            low = opts.get("min_scale", opts.get("min_concentration"))
            assert p.dtype == tf.float32 and float(tf.reduce_min(p)) >= np.float32(low)
            assert float(tf.reduce_max(p)) <= opts.get("max_concentration", np.inf)
        clone = ContentPosteriorHead.from_config(head.get_config())
        assert clone.get_config() == head.get_config()
        x = keras.Input((5,))
        model = keras.Model(x, head(x))
        model.save(tmp_path / f"{kind}.keras")
        loaded = keras.saving.load_model(tmp_path / f"{kind}.keras")
        for p, q in zip(model(inputs), loaded(inputs)):
            np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="min_scale"):
        ContentPosteriorHead("dirichlet", 4, min_scale=0.1)
    with pytest.raises(ValueError, match="max_concentration"):
        ContentPosteriorHead("stick_breaking", 4, max_concentration=2 * STICK_MAX_CONCENTRATION)
    with pytest.raises(ValueError, match="content_prior"):
        ContentPosteriorHead("beta", 4)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_mixed_precision_params_are_computed_in_float32(dtype):
    for kind in CONTENT_PRIORS:
        prior = content_prior(kind, 4 if kind == "stick_breaking" else 3)
        low = _params(kind, tf.dtypes.as_dtype(dtype))
        rounded = tuple(tf.cast(p, tf.float32) for p in low)
        for fn in (lambda p: prior.kl(p), lambda p: prior.sample(p, seed=3), prior.mean,
                   lambda p: prior.log_q(p, prior.sample_latent(rounded, seed=3))):
            out, ref = fn(low), fn(rounded)
            assert out.dtype == tf.float32
            np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)
        head = ContentPosteriorHead(kind, 4, dtype=f"mixed_{dtype}")
        params = head(tf.random.stateless_normal([8, 5], [1, 1]))
        assert all(p.dtype == tf.float32 for p in params)
        assert np.all(np.isfinite(content_prior(kind, 4).kl(params).numpy()))


def test_stateless_seed_from_a_seed_generator():
    gen = keras.random.SeedGenerator(5)
    first, second = stateless_seed(gen), stateless_seed(gen)
    assert first.dtype == tf.int32 and first.shape == (2,)
    assert not np.array_equal(first.numpy(), second.numpy())
    again = keras.random.SeedGenerator(5)
    np.testing.assert_array_equal(stateless_seed(again).numpy(), first.numpy())
    prior = content_prior("dirichlet", 3)
    f = prior.sample((tf.ones([2, 3]),), seed=first)
    np.testing.assert_array_equal(f.numpy(), prior.sample((tf.ones([2, 3]),), seed=first).numpy())
