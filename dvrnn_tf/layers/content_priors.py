"""The content code f's posterior and prior: Gaussian, Dirichlet or stick-breaking (DESIGN 7).

A model holds one `ContentPrior` (from `content_prior(kind, dim, **options)`) and one
`ContentPosteriorHead` (its `head()`, `dvrnn_tf.layers.content_posterior_head`); the head
maps features [..., d_in] to the posterior's parameters, a tuple of float32 tensors, and the prior object does everything else with them:

  kind            params [...]               latent u (densities over)   f = to_code(u)
  gaussian        (loc, scale), [dim] each   f itself, [dim]             f, in R^dim
  dirichlet       (concentration,), [K]      log f, [K]                  exp(u), on the K-simplex
  stick_breaking  (a, b), [K-1] each         logit v, [K-1]              stick-breaking of v

`dim` is always the size of f as the decoder sees it (K for the simplex kinds). The latent u
is the variable `log_q` and `log_p` are densities *of* (for the simplex kinds: the density of
f, respectively of the stick fractions v, written in u for precision, see `stick_breaking`):
the IWAE weight p(x | f) p(u) / q(u) is valid because p and q are over the same variable.
Pass `log_q` and `log_p` the latent from `sample_latent`, never f itself.

Noise: `sample_latent(params, seed=..., noise=...)` takes exactly one of them. `noise` is
what the Gaussian eps of today's models is (`noise_kind`: "normal" for gaussian, "uniform"
for stick_breaking, drawn like `normal_noise`, shape `noise_shape(batch_shape)`). The
Dirichlet has no such noise (its Gamma draws are rejection samplers with implicit
reparameterization gradients) and needs `seed`: a stateless int32 [2] seed, which a model draws
from its SeedGenerator with `stateless_seed(self.seed_generator)`.

Mixed precision: parameters of any float dtype are cast to float32; every density, KL and
sample is float32 (a model casts f to its compute dtype before phi_f).
"""
import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from dvrnn_tf.layers import stick_breaking as sb

tfd = tfp.distributions

CONTENT_PRIORS = ("gaussian", "dirichlet", "stick_breaking")
SIMPLEX_KINDS = ("dirichlet", "stick_breaking")
# A Dirichlet's Gamma(alpha) draws are made in float64 log space: TFP's implicit gradient is
# NaN once a draw's exp underflows (log g < -708 in float64, -87 in float32), which happens
# with probability about exp(-708 alpha) / Gamma(1 + alpha): 4e-16 at alpha = 0.05 (measured:
# no NaN in 2e5 float64 draws at 0.03; in float32 NaN gradients already at alpha = 0.1).
DIRICHLET_MIN_CONCENTRATION = 0.05
# Above 1e3 a coordinate's standard deviation is below 1 / (2 sqrt(1e3)) = 0.016 whatever its
# mean: nothing sharper is worth learning. (The KL and log_q run in float64, where lgamma of
# the sums, up to K * 1e3, keeps ~1e-11 nats.)
DIRICHLET_MAX_CONCENTRATION = 1e3
# Kumaraswamy (a, b): v's reparameterization gradient in a grows as 1/a^2 (400 at a = 0.05);
# the KL series is accurate to 1.9e-4 nats per stick only up to a = 10 (stick_breaking).
STICK_MIN_CONCENTRATION = 0.05
STICK_MAX_CONCENTRATION = 10.0
# The prior's settings, with their defaults. stick_breaking_alpha = 5: GEM(5) leaves an
# expected (5/6)^10 = 16% of the mass beyond the 10th stick, so ten classes fit in K = 20
# sticks; alpha = 1 would leave 0.1%. dirichlet_concentration = 1: uniform on the simplex.
PRIOR_OPTIONS = {"gaussian": {}, "dirichlet": {"dirichlet_concentration": 1.0},
                 "stick_breaking": {"stick_breaking_alpha": 5.0}}


def check_kind(kind):
    if kind not in CONTENT_PRIORS:
        raise ValueError(f"`content_prior` must be one of {CONTENT_PRIORS}, got {kind!r}")


def check_dim(kind, dim):
    smallest = 2 if kind in SIMPLEX_KINDS else 1
    if isinstance(dim, bool) or int(dim) != dim or int(dim) < smallest:
        raise ValueError(f"`dim` of a {kind!r} content code must be an integer >= {smallest}, "
                         f"got {dim}")
    return int(dim)


def resolve_options(what, kind, given, table):
    """`given` options over the kind's defaults; a one-line error for a foreign or bad one."""
    allowed = table[kind]
    for name, value in given.items():
        if name not in allowed:
            names = ", ".join(allowed) or "none"
            raise ValueError(f"`{name}` is not an option of the {kind!r} {what} (its options: "
                             f"{names})")
        try:
            good = not isinstance(value, bool) and math.isfinite(value) and value > 0
        except TypeError:
            good = False
        if not good:
            raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}")
    return {name: float(given.get(name, default)) for name, default in allowed.items()}


def _float32(params, kind, names, width):
    params = tuple(params) if isinstance(params, (tuple, list)) else (params,)
    if len(params) != len(names):
        raise ValueError(f"`params` of the {kind!r} content prior must be ({', '.join(names)},), "
                         f"got {len(params)} tensors")
    params = tuple(tf.cast(p, tf.float32) for p in params)
    for name, p in zip(names, params):
        if p.shape.rank is not None and p.shape[-1] not in (None, width):
            raise ValueError(f"`{name}` of this {kind!r} content prior must be [..., {width}], "
                             f"got shape {p.shape.as_list()}")
    return params


def _seed_or_noise(seed, noise):
    """(stateless int32 [2] seed or None, float32 noise or None): exactly one of them."""
    if (seed is None) == (noise is None):
        raise ValueError("give exactly one of `seed` (a stateless int32 [2] seed) and `noise`")
    if noise is not None:
        return None, tf.cast(noise, tf.float32)
    if isinstance(seed, int):  # (tfp.random.sanitize_seed(int) draws a stateful random seed)
        return tf.constant([seed % 2 ** 31, seed // 2 ** 31 % 2 ** 31], tf.int32), None
    return tf.cast(tf.convert_to_tensor(seed), tf.int32), None


def stateless_seed(seed_generator) -> tf.Tensor:
    """A stateless int32 [2] seed drawn from a `keras.random.SeedGenerator` (advancing it).

    Under a tf.distribute strategy every replica draws the same seed from the mirrored
    generator; folding in the replica id makes the replicas' noise independent (so it is not
    the noise one device would draw for the global batch, unlike `normal_noise`).
    """
    seed = keras.random.randint([2], 0, 2 ** 31 - 1, dtype="int32", seed=seed_generator)
    replica = tf.distribute.get_replica_context()
    if replica is not None and replica.num_replicas_in_sync > 1:
        seed = tf.random.experimental.stateless_fold_in(seed, replica.replica_id_in_sync_group)
    return tf.cast(seed, tf.int32)


class ContentPrior:
    """Posterior q(u | x) and prior p(u) of a content code, u its latent (module docstring).

    Each kind defines: posterior(params) and prior(batch_shape), tfd distributions of the
    densities' variable; to_code(u) -> f; mean(params) -> f, the posterior mean (what `encode`
    reports as f_loc); kl(params); log_q(params, u); log_p(u). Shapes: params [..., width]
    each (width = latent_dim: `dim`, or `dim - 1` for stick_breaking); u [..., latent_dim];
    f [..., dim]; kl, log_q, log_p [...] nats (float32), summed over the code.
    """

    kind = None
    noise_kind = None  # "normal", "uniform", or None: sampling needs a seed
    param_names = ()

    def __init__(self, dim, **options):
        self.dim = int(dim)
        self.options = dict(options)

    @property
    def latent_dim(self) -> int:
        return self.dim

    @property
    def params_width(self) -> int:
        """Numbers the posterior head outputs per code: one latent_dim per parameter."""
        return len(self.param_names) * self.latent_dim

    def noise_shape(self, batch_shape):
        """[*batch_shape, latent_dim]: the shape of `noise` for `batch_shape` codes."""
        return tf.concat([tf.cast(batch_shape, tf.int32), [self.latent_dim]], 0)

    def head(self, **kwargs):
        """The layer that outputs this prior's posterior parameters (a `ContentPosteriorHead`)."""
        # Imported here: the head's module builds on this one's checks and constants.
        from dvrnn_tf.layers.content_posterior_head import ContentPosteriorHead
        return ContentPosteriorHead(self.kind, self.dim, **kwargs)

    def params(self, params):
        """`params` as float32 tensors, once their number and width are checked."""
        return _float32(params, self.kind, self.param_names, self.latent_dim)

    # ---- sampling ----------------------------------------------------------------------------

    def sample_latent(self, params, seed=None, noise=None):
        """u ~ q(u | params), reparameterized; exactly one of `seed` (stateless) and `noise`."""
        params = self.params(params)
        seed, noise = _seed_or_noise(seed, noise)
        if noise is None:
            return self._latent_from_seed(params, seed)
        return self._latent_from_noise(params, noise)

    def sample(self, params, seed=None, noise=None):
        """f ~ q(f | params): [..., dim] (on the simplex for the simplex kinds)."""
        return self.to_code(self.sample_latent(params, seed=seed, noise=noise))

    def sample_prior(self, batch_shape, seed=None, noise=None):
        """f ~ p(f): [*batch_shape, dim]; exactly one of `seed` and `noise`."""
        return self.to_code(self._prior_latent(batch_shape, *_seed_or_noise(seed, noise)))

    def _latent_from_noise(self, params, noise):
        raise ValueError(f"the {self.kind!r} content prior samples from a `seed`, not `noise`")

    def interpolate(self, f_a, f_b, w):
        """(1 - w) f_a + w f_b with w [...] broadcast against f's leading axes ([steps] against
        f [1, dim] gives [steps, dim]). On the simplex the combination stays on it (w is clipped
        to [0, 1] there: extrapolating would leave it); the Gaussian may extrapolate."""
        f_a = tf.convert_to_tensor(f_a)
        f_b = tf.cast(f_b, f_a.dtype)
        w = tf.cast(w, f_a.dtype)[..., None]
        if self.kind in SIMPLEX_KINDS:
            w = tf.clip_by_value(w, 0.0, 1.0)
        return (1.0 - w) * f_a + w * f_b

    # ---- serialization -----------------------------------------------------------------------

    def get_config(self) -> dict:
        return {"kind": self.kind, "dim": self.dim, **self.options}

    @classmethod
    def from_config(cls, config) -> "ContentPrior":
        return content_prior(**config)

    def __repr__(self):
        options = "".join(f", {k}={v}" for k, v in self.options.items())
        return f"content_prior({self.kind!r}, {self.dim}{options})"


class GaussianContent(ContentPrior):
    """q(f | x) = N(loc, diag(scale^2)), p(f) = N(0, I) (today's models); u = f."""

    kind, noise_kind, param_names = "gaussian", "normal", ("loc", "scale")

    def posterior(self, params):
        loc, scale = self.params(params)
        return tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=1)

    def prior(self, batch_shape):
        zeros = tf.zeros(self.noise_shape(batch_shape), tf.float32)
        return tfd.Independent(tfd.Normal(zeros, 1.0), reinterpreted_batch_ndims=1)

    def _latent_from_noise(self, params, noise):
        loc, scale = params
        return loc + scale * noise

    def _latent_from_seed(self, params, seed):
        eps = tf.random.stateless_normal(tf.shape(params[0]), seed)
        return self._latent_from_noise(params, eps)

    def _prior_latent(self, batch_shape, seed, noise):
        return noise if noise is not None else tf.random.stateless_normal(
            self.noise_shape(batch_shape), seed)

    def to_code(self, u):
        return u

    def mean(self, params):
        return self.params(params)[0]

    def kl(self, params):
        loc, scale = self.params(params)
        return tf.reduce_sum(tfd.Normal(loc, scale).kl_divergence(tfd.Normal(0.0, 1.0)), -1)

    def log_q(self, params, u):
        loc, scale = self.params(params)
        return tf.reduce_sum(tfd.Normal(loc, scale).log_prob(tf.cast(u, tf.float32)), -1)

    def log_p(self, u):
        return tf.reduce_sum(tfd.Normal(0.0, 1.0).log_prob(tf.cast(u, tf.float32)), -1)


class DirichletContent(ContentPrior):
    """q(f | x) = Dirichlet(concentration), p(f) = Dirichlet(dirichlet_concentration * 1);
    u = log f, drawn in log space (a float32 f of a small concentration is often exactly 0)."""

    kind, param_names = "dirichlet", ("concentration",)

    @property
    def alpha0(self):
        return self.options["dirichlet_concentration"]

    def posterior(self, params):
        return tfd.Dirichlet(self.params(params)[0])

    def prior(self, batch_shape):
        return tfd.Dirichlet(tf.fill(self.noise_shape(batch_shape), self.alpha0))

    @staticmethod
    def _log_dirichlet_draw(concentration, seed):
        # log g_k, g_k ~ Gamma(alpha_k), in float64 (see DIRICHLET_MIN_CONCENTRATION); then
        # log f = log g - logsumexp(log g), which is what tfd.Dirichlet samples before its exp.
        # g = a u^(1/alpha) with a ~ Gamma(alpha + 1), u ~ U(0, 1) (what tfd.ExpGamma does on
        # CPU), drawn with tf.random.stateless_gamma (implicit reparameterization gradients)
        # directly: tfd's sampler picks its implementation per device when a graph is
        # optimized, so eager calls and traced ones would draw different numbers from one seed.
        conc = tf.cast(concentration, tf.float64)
        seed_g, seed_u = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        boosted = tf.random.stateless_gamma(tf.shape(conc), seed_g, alpha=conc + 1.0,
                                            dtype=tf.float64)
        u = tf.random.stateless_uniform(tf.shape(conc), seed_u, minval=1e-300,
                                        dtype=tf.float64)
        log_g = tf.math.log(boosted) + tf.math.log(u) / conc
        return tf.cast(log_g - tf.reduce_logsumexp(log_g, -1, keepdims=True), tf.float32)

    def _latent_from_seed(self, params, seed):
        return self._log_dirichlet_draw(params[0], seed)

    def _prior_latent(self, batch_shape, seed, noise):
        if noise is not None:
            return self._latent_from_noise(None, noise)  # raises: the Dirichlet needs a seed
        return self._log_dirichlet_draw(tf.fill(self.noise_shape(batch_shape), self.alpha0), seed)

    def to_code(self, u):
        return tf.exp(u)

    def mean(self, params):
        (conc,) = self.params(params)
        return conc / tf.reduce_sum(conc, -1, keepdims=True)

    def kl(self, params):
        # float64: lgamma of the concentrations' sum (up to K * 1e3) cancels in the KL.
        conc = tf.cast(self.params(params)[0], tf.float64)
        prior = tfd.Dirichlet(tf.fill(tf.shape(conc), tf.constant(self.alpha0, tf.float64)))
        return tf.cast(tfd.Dirichlet(conc).kl_divergence(prior), tf.float32)

    def log_q(self, params, u):
        """log Dirichlet(f; concentration) at f = exp(u) (= tfd.Dirichlet.log_prob(f))."""
        conc = tf.cast(self.params(params)[0], tf.float64)
        u = tf.cast(u, tf.float64)
        return tf.cast(tf.reduce_sum((conc - 1.0) * u, -1) - tf.math.lbeta(conc), tf.float32)

    def log_p(self, u):
        u = tf.cast(u, tf.float64)
        k, a0 = float(self.dim), self.alpha0
        log_norm = k * math.lgamma(a0) - math.lgamma(k * a0)
        return tf.cast((a0 - 1.0) * tf.reduce_sum(u, -1) - log_norm, tf.float32)


class StickBreakingContent(ContentPrior):
    """K - 1 sticks v_k ~ Kumaraswamy(a_k, b_k) against Beta(1, stick_breaking_alpha) each;
    f = stick-breaking(v) on the K-simplex; u = logit v (`stick_breaking`)."""

    kind, noise_kind, param_names = "stick_breaking", "uniform", ("a", "b")

    @property
    def latent_dim(self) -> int:
        return self.dim - 1

    @property
    def alpha0(self):
        return self.options["stick_breaking_alpha"]

    def posterior(self, params):
        a, b = self.params(params)
        return tfd.Independent(tfd.Kumaraswamy(a, b), reinterpreted_batch_ndims=1)

    def prior(self, batch_shape):
        ones = tf.ones(self.noise_shape(batch_shape), tf.float32)
        return tfd.Independent(tfd.Beta(ones, self.alpha0 * ones), reinterpreted_batch_ndims=1)

    def _latent_from_noise(self, params, noise):
        a, b = params
        return sb.kumaraswamy_logit_sample(a, b, noise)

    def _latent_from_seed(self, params, seed):
        u = tf.random.stateless_uniform(tf.shape(params[0]), seed, dtype=tf.float32)
        return self._latent_from_noise(params, u)

    def _prior_latent(self, batch_shape, seed, noise):
        if noise is None:
            noise = tf.random.stateless_uniform(self.noise_shape(batch_shape), seed)
        # Beta(1, alpha) is Kumaraswamy(1, alpha).
        return sb.kumaraswamy_logit_sample(1.0, self.alpha0, noise)

    def to_code(self, u):
        return tf.exp(sb.log_stick_breaking(tf.cast(u, tf.float32)))

    def mean(self, params):
        # The sticks are independent, so E[pi_k] = E[v_k] prod_{j<k} (1 - E[v_j]) exactly.
        return sb.stick_breaking(sb.kumaraswamy_mean(*self.params(params)))

    def kl(self, params):
        a, b = self.params(params)
        return tf.reduce_sum(sb.kl_kumaraswamy_beta(a, b, 1.0, self.alpha0), -1)

    def log_q(self, params, u):
        a, b = self.params(params)
        return tf.reduce_sum(sb.kumaraswamy_log_prob(a, b, tf.cast(u, tf.float32)), -1)

    def log_p(self, u):
        return tf.reduce_sum(sb.beta_log_prob(1.0, self.alpha0, tf.cast(u, tf.float32)), -1)


_CLASSES = {"gaussian": GaussianContent, "dirichlet": DirichletContent,
            "stick_breaking": StickBreakingContent}


def content_prior(kind, dim, **options) -> ContentPrior:
    """The `kind` content prior of a code of size `dim` (K for the simplex kinds), with its
    settings (`PRIOR_OPTIONS[kind]`; unset ones take their defaults)."""
    check_kind(kind)
    dim = check_dim(kind, dim)
    return _CLASSES[kind](dim, **resolve_options("content prior", kind, options, PRIOR_OPTIONS))
