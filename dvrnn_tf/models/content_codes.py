"""The content code f of the models that have one (the Disentangled VRNN and the content/style
VAE): its posterior and prior (`--content_prior`, issue 15; DESIGN 7), noise, sampling, KL, the
IWAE proposal's terms, and the code-space operations generation needs.

The distributions themselves are `dvrnn_tf.layers.content_priors`; this mixin binds one of
them to a model. Names, for a code of size K = f_dim:

  params  the posterior's parameters, what the model's head outputs from features: a tuple of
          float32 tensors [*lead, width] (gaussian (loc, scale); dirichlet (concentration,);
          stick_breaking (a, b), width K - 1)
  u       the latent the densities are over (f itself; log f; the sticks' logits)
  f       the code the decoder reads, [*lead, K]: f = f_prior.to_code(u) (on the simplex for
          the simplex priors)

`lead` is [B] for one code per sequence, or [B, S] for a model with several content codes
per sequence (the attention slots of the Disentangled VRNN, `content_slots`).

Noise. Training and the endpoints draw from the model's seed generator: N(0, I) or U(0, 1)
noise like `normal_noise`, or (Dirichlet) a stateless seed drawn from it. The likelihood
metrics draw their own stateless noise: `content_noise(n, seed)` says what the model takes
as `eps_f` in `posterior_terms`, so the IWAE proposal is always the model's own posterior
(`dvrnn_tf.metrics.likelihood`). `eps_f=None` there is the posterior-mean path.
"""
import tensorflow as tf
import tensorflow_probability as tfp

from dvrnn_tf.layers import GaussianHead
from dvrnn_tf.layers import stick_breaking as sb
from dvrnn_tf.layers.content_priors import check_kind, content_prior, stateless_seed

tfd = tfp.distributions

# `content_latent(params, SAMPLE)`: draw from the model's seed generator.
SAMPLE = "sample"


class ContentCodes:
    """Mixin of a `LatentVariableModel` with a content code f of size `f_dim`.

    The model's `__init__` calls `_init_content(...)` (after `self.f_dim` is set), which
    returns the posterior head: features [..., d] -> params. `content_slots` (None, or S) says
    whether each sequence has one code or S of them.
    """

    content_slots = None

    def _init_content(self, content_prior="gaussian", dirichlet_concentration=1.0,
                      stick_breaking_alpha=5.0, name="content"):
        check_kind(content_prior)
        for arg, value in (("dirichlet_concentration", dirichlet_concentration),
                           ("stick_breaking_alpha", stick_breaking_alpha)):
            if isinstance(value, bool) or not float(value) > 0 or value == float("inf"):
                raise ValueError(f"`{arg}` must be a finite number > 0, got {value!r}")
        self.dirichlet_concentration = float(dirichlet_concentration)
        self.stick_breaking_alpha = float(stick_breaking_alpha)
        options = {"dirichlet": {"dirichlet_concentration": self.dirichlet_concentration},
                   "stick_breaking": {"stick_breaking_alpha": self.stick_breaking_alpha}}
        self.f_prior = content_prior_of(content_prior, self.f_dim,
                                        **options.get(content_prior, {}))
        if content_prior == "gaussian":  # today's layer: its weights load as they did
            return GaussianHead(self.f_dim, name=name)
        return self.f_prior.head(name=name)

    @property
    def content_prior_kind(self) -> str:
        return self.f_prior.kind

    def content_config(self) -> dict:
        return {"content_prior": self.f_prior.kind,
                "dirichlet_concentration": self.dirichlet_concentration,
                "stick_breaking_alpha": self.stick_breaking_alpha}

    # ---- sampling -----------------------------------------------------------------------

    def _lead(self, n):
        return [n] if self.content_slots is None else [n, self.content_slots]

    def _draw(self, batch_shape):
        """{"noise": ...} or {"seed": ...} for `sample_latent`, from the seed generator."""
        kind = self.f_prior.noise_kind
        if kind is None:
            return {"seed": stateless_seed(self.seed_generator)}
        shape = self.f_prior.noise_shape(batch_shape)
        draw = self.normal_noise if kind == "normal" else self.uniform_noise
        return {"noise": draw(shape)}

    def mean_latent(self, params):
        """u at the posterior mean of f: to_code(mean_latent(params)) = f_prior.mean(params)."""
        kind, params = self.f_prior.kind, self.f_prior.params(params)
        if kind == "gaussian":
            return params[0]
        if kind == "dirichlet":
            return tf.math.log(self.f_prior.mean(params))
        # The sticks are independent: E[pi] = stick_breaking(E[v]).
        v = sb.kumaraswamy_mean(*params)
        return tf.math.log(v) - tf.math.log1p(-v)

    def content_latent(self, params, eps_f):
        """u for the posterior `params`: eps_f None -> the mean path; SAMPLE -> a draw from
        the seed generator; else the stateless noise (or seed) of `content_noise`."""
        if eps_f is None:
            return self.mean_latent(params)
        if isinstance(eps_f, str) and eps_f == SAMPLE:
            return self.f_prior.sample_latent(params, **self._draw(tf.shape(params[0])[:-1]))
        if self.f_prior.noise_kind is None:
            return self.f_prior.sample_latent(params, seed=eps_f)
        return self.f_prior.sample_latent(params, noise=eps_f)

    def content_noise(self, n, seed):
        """What `posterior_terms` takes as `eps_f` for n rows, drawn from a stateless int32
        [2] seed: N(0, I) [n, *slots, f_dim] (gaussian), U(0, 1) [n, *slots, f_dim - 1]
        (stick_breaking), or (dirichlet, whose Gamma draws take a seed) a seed [2]."""
        kind = self.f_prior.noise_kind
        if kind is None:
            return tf.cast(seed, tf.int32)
        shape = self.f_prior.noise_shape(self._lead(n))
        if kind == "normal":
            return tf.random.stateless_normal(shape, seed)
        return tf.random.stateless_uniform(shape, seed)

    def sample_content(self, n):
        """f ~ p(f): [n, f_dim] ([n, S, f_dim] with slots), in the compute dtype."""
        return self._prior_codes(self._lead(n))

    def sample_content_per_step(self, n):
        """A fresh f ~ p(f) for each of the T steps: [n, T, f_dim] (`generate_fixed_style`).
        With slots a code of rank 3 is a set of slots: one fresh set per sequence."""
        if self.content_slots is not None:
            return self.sample_content(n)
        return self._prior_codes([n, self.seq_len])

    def _prior_codes(self, batch_shape):
        kind = self.f_prior.noise_kind
        if kind is None:
            f = self.f_prior.sample_prior(batch_shape, seed=stateless_seed(self.seed_generator))
        else:
            shape = self.f_prior.noise_shape(batch_shape)
            noise = self.normal_noise(shape) if kind == "normal" else self.uniform_noise(shape)
            f = self.f_prior.sample_prior(batch_shape, noise=noise)
        return tf.cast(f, self.compute_dtype)

    def interpolate_content(self, f_a, f_b, steps):
        """`steps` codes on the line from f_a to f_b ([1, ...] each): [steps, ...]; on the
        simplex for the simplex priors (a convex combination of two points of it)."""
        f_a = tf.cast(f_a, tf.float32)
        w = tf.linspace(0.0, 1.0, steps)
        w = tf.reshape(w, [steps] + [1] * (f_a.shape.rank - 2))  # against f's leading axes
        return tf.cast(self.f_prior.interpolate(f_a, f_b, w), self.compute_dtype)

    # ---- what encode, the losses and the metrics read ------------------------------------

    def content_scale(self, params):
        """The posterior standard deviation of each component of f: [*lead, f_dim]."""
        kind, params = self.f_prior.kind, self.f_prior.params(params)
        if kind == "gaussian":
            return params[1]
        if kind == "dirichlet":
            conc = params[0]
            total = tf.reduce_sum(conc, -1, keepdims=True)
            return tf.sqrt(conc * (total - conc) / (tf.square(total) * (total + 1.0)))
        # Independent sticks: E[pi_k^2] = E[v_k^2] prod_{j<k} E[(1 - v_j)^2].
        a, b = params
        m1 = sb.kumaraswamy_mean(a, b)
        m2 = tf.exp(tf.math.log(b) + tfp.math.lbeta(1.0 + 2.0 / a, b))  # E[v^2]
        second = _break(m2, 1.0 - 2.0 * m1 + m2)
        mean = self.f_prior.mean(params)
        return tf.sqrt(tf.maximum(second - tf.square(mean), 0.0))

    def content_posterior(self, params):
        """(f_loc, f_scale): the posterior mean and standard deviation of f, float32."""
        return self.f_prior.mean(params), self.content_scale(params)

    def content_kl(self, params):
        """KL(q(f | x) || p(f)) per sequence, nats: [B] (slots summed)."""
        kl = self.f_prior.kl(params)
        return kl if self.content_slots is None else tf.reduce_sum(kl, -1)

    def content_kl_dims(self, params):
        """KL per unit of the code, [*lead, units]: per component for gaussian, per stick
        (f_dim - 1) for stick_breaking; the Dirichlet's KL does not split, so its units are
        each component's marginal Beta(c_k, sum c - c_k) against the prior's marginal (what
        counts active units; these do not sum to the KL)."""
        kind, params = self.f_prior.kind, self.f_prior.params(params)
        if kind == "gaussian":
            return tfd.Normal(*params).kl_divergence(tfd.Normal(0.0, 1.0))
        if kind == "stick_breaking":
            return sb.kl_kumaraswamy_beta(*params, 1.0, self.stick_breaking_alpha)
        conc = tf.cast(params[0], tf.float64)
        a0 = tf.constant(self.dirichlet_concentration, tf.float64)
        marginal = tfd.Beta(conc, tf.reduce_sum(conc, -1, keepdims=True) - conc)
        prior = tfd.Beta(a0, a0 * (self.f_dim - 1))
        return tf.cast(marginal.kl_divergence(prior), tf.float32)

    def content_terms(self, params, u):
        """The content entries of `posterior_terms` (see `dvrnn_tf.metrics.likelihood`) for
        one latent u per row: log_pf, log_qf [N, 1]; kl_f [N]; kl_f_dims [N, units];
        f_loc, f_sample [N, f_dim] (slots: [N, S * .], flattened)."""
        log_q, log_p = self.f_prior.log_q(params, u), self.f_prior.log_p(u)
        if self.content_slots is not None:
            log_q, log_p = tf.reduce_sum(log_q, -1), tf.reduce_sum(log_p, -1)
        flat = (lambda v: v) if self.content_slots is None else _flatten_slots
        return {"log_pf": log_p[:, None], "log_qf": log_q[:, None],
                "kl_f": self.content_kl(params),
                "kl_f_dims": flat(self.content_kl_dims(params)),
                "f_loc": flat(self.f_prior.mean(params)),
                "f_sample": flat(self.f_prior.to_code(u))}


def content_prior_of(kind, dim, **options):
    """`content_prior(kind, dim, ...)` with the message a model's argument deserves."""
    if kind != "gaussian" and int(dim) < 2:
        raise ValueError(f"`f_dim` must be >= 2 for content_prior={kind!r} (a code on the "
                         f"simplex), got {dim}")
    return content_prior(kind, dim, **options)


def _break(p, q):
    """[..., K] from per-stick factors p, q [..., K-1]: p_k prod_{j<k} q_j, and prod_j q_j last
    (the stick-breaking map with v -> p and 1 - v -> q)."""
    before = tf.math.cumprod(q, axis=-1, exclusive=True)
    return tf.concat([p * before, tf.reduce_prod(q, -1, keepdims=True)], axis=-1)


def _flatten_slots(v):
    """[N, S, d] -> [N, S * d]."""
    return tf.reshape(v, [tf.shape(v)[0], -1])
