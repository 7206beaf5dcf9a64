"""The Disentangled VRNN of the first paper (section 2; DESIGN 2.2): `--model=full` and
`--model=factorized`, with the two proposals of its section 5 (DESIGN 7, issue 15):
`--content_prior` (Gaussian, Dirichlet, stick-breaking) and `--content_attention=slots`.

Attention over the content encoder (`--content_attention=slots`). Shapes: B sequences,
T steps, S = T slots, r the GRU width, h = hidden_dim, K = f_dim.

  content states  c_{1:S} = GRU(phi_x(x_{1:T}))                            [B, S, r]
  slot codes      q(f_s | x) = head(c_s), f_s ~ q, independently per s     [B, S, K]
                  prior p(f_s) = the content prior, for every s
  keys, values    phi_f(f_{1:S})                                           [B, S, h]
  step t          context_t, weights_t = ContentAttention(h_{t-1}, phi_f(f_{1:S}))
                                                                           [B, h], [B, S]
  full            h_t = GRU([phi_x(x_t), phi_z(z_t), context_t], h_{t-1})  (in the loop)
  factorized      h_t = GRU([phi_x(x_t), phi_z(z_t)], h_{t-1})
  decoder         p(x_t | phi_z(z_t), context_t, h_{t-1})   (context_t in place of phi_f(f))

What it does to the ELBO: ELBO = E_q[log p(x | f_{1:S}, z)] - sum_s KL(q(f_s | x) || p(f_s))
- sum_t KL_z,t. The context is a deterministic function of the *sampled* slots, so every nat
that reaches the decoder through the attention is paid in KL_f, as through f without
attention (the first paper's wording, "attend over the content encoder's hidden states", read
literally attends over c_{1:S} themselves: c_s for s >= t has read x_t, so the decoder could
copy x_t for free and -ELBO would bound nothing; `dvrnn_tf.layers.content_attention` weighs
the variants). The IWAE proposal is prod_s q(f_s | x) prod_t q(z_t | .); generation draws
f_{1:S} from the prior. Which code carries what: f_s summarizes x_{1:s} (a forward GRU), so
a slot can carry per-frame style as well as the class, paid per nat at beta_f instead of
beta_z; the study measures it (swap accuracy, probes of f and z, KL_f against KL_z, and the
attention weights' mass on s = t, `attention_weights`).
"""
import keras
import tensorflow as tf

from dvrnn_tf.cells.vrnn_cell import MAX_UNROLL, gru_last_state, gru_states
from dvrnn_tf.layers import costs, kl_diag_gaussians, mlp
from dvrnn_tf.layers.content_attention import ContentAttention
from dvrnn_tf.models import settings as ms
from dvrnn_tf.models.base import check_positive
from dvrnn_tf.models.content_codes import SAMPLE, ContentCodes
from dvrnn_tf.models.generation import ContentStyleGeneration
from dvrnn_tf.models.registry import ModelFamily, register
from dvrnn_tf.models.vrnn_base import VRNNBase, _swap
from dvrnn_tf.settings import Setting

VARIANTS = ("full", "factorized")
ATTENTION = ("none", "slots")


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class DisentangledVRNN(ContentCodes, ContentStyleGeneration, VRNNBase):
    """A global content code f and per-step style codes z_t.

    Content: a GRU over phi_x(x_1..x_T); its last state gives q(f | x_{1:T}), event_shape
    [f_dim], against the content prior p(f) (`content_prior`: N(0, I), Dirichlet or
    stick-breaking; `dvrnn_tf.models.content_codes`). f enters every step through phi_f(f).
    Style: the VRNN recurrence, with
      full:       h_t = GRU([phi_x(x_t), phi_z(z_t), phi_f(f)], h_{t-1}), so the style prior
                  p(z_t | h_{t-1}) and posterior q(z_t | x_t, h_{t-1}) both see f;
      factorized: h_t = GRU([phi_x(x_t), phi_z(z_t)], h_{t-1}): the style path never receives
                  f, and q(f, z | x) = q(f | x) q(z | x).
    In both, the decoder is p(x_t | phi_z(z_t), phi_f(f), h_{t-1}).
    With content_attention="slots", one code per content state and an attention context in
    place of phi_f(f) (the module docstring). Loss per image:
    (nll + beta_f KL_f + beta_z sum_t KL_z,t) / T.

    Args (beyond `VRNNBase`'s): variant ("full" or "factorized"), f_dim, beta_f,
      content_prior ("gaussian", "dirichlet", "stick_breaking"), dirichlet_concentration,
      stick_breaking_alpha (the priors' parameters), content_attention ("none", "slots").
    """

    def __init__(self, image_shape, variant="factorized", f_dim=20, beta_f=1.0,
                 hidden_dim=100, content_prior="gaussian", dirichlet_concentration=1.0,
                 stick_breaking_alpha=5.0, content_attention="none", **kwargs):
        if variant not in VARIANTS:
            raise ValueError(f"`variant` must be one of {VARIANTS}, got {variant!r}")
        if content_attention not in ATTENTION:
            raise ValueError(f"`content_attention` must be one of {ATTENTION}, got "
                             f"{content_attention!r}")
        check_positive(f_dim=f_dim)
        super().__init__(image_shape, hidden_dim=hidden_dim,
                         _extra_kl_weights={"kl_f": beta_f},
                         _cond_dim=hidden_dim if variant == "full" else 0, **kwargs)
        self.variant, self.f_dim = variant, int(f_dim)
        self.content_attention = content_attention
        slots = content_attention == "slots"
        if slots and self.seq_len > MAX_UNROLL:
            raise ValueError(f"content_attention='slots' needs seq_len <= {MAX_UNROLL} (the "
                             f"attention runs in the unrolled loop), got {self.seq_len}")
        self.content_slots = self.seq_len if slots else None
        self.content_rnn = keras.layers.GRU(self.rnn_dim, return_sequences=slots,
                                            name="content_rnn")
        self.content = self._init_content(content_prior, dirichlet_concentration,
                                          stick_breaking_alpha)
        self.phi_f = mlp([self.hidden_dim], name="phi_f")
        self.attention = ContentAttention(self.hidden_dim, name="attention") if slots else None
        self.build()

    def decoder_inputs_width(self):
        return 2 * self.hidden_dim + self.rnn_dim

    def build(self, input_shape=None):
        super().build(input_shape)
        self.content_rnn.build((None, None, self.hidden_dim))
        self.content.build((None, self.rnn_dim))
        self.phi_f.build((None, self.f_dim))
        if self.attention is not None:
            self.attention.build((None, None, self.rnn_dim), (None, None, self.hidden_dim))

    # ---- pieces --------------------------------------------------------------------------

    def content_params(self, feats, time_major=False):
        """The posterior's parameters from phi_x features [B, T, F] ([T, B, F] if
        time_major): each [B, width], or [B, S, width] with slots (`content_codes`)."""
        # = self.content_rnn(feats), with the input projection of all steps as one matmul.
        if self.content_slots is None:
            return self.content(gru_last_state(self.content_rnn, feats, time_major=time_major))
        states = gru_states(self.content_rnn, feats, time_major=time_major)
        return self.content(_swap(states) if time_major else states)

    def content_distribution(self, feats, time_major=False):
        """q(f | x_{1:T}): batch_shape [B] ([B, S] with slots); event_shape [f_dim] (the
        stick-breaking posterior's is over the f_dim - 1 sticks)."""
        return self.f_prior.posterior(self.content_params(feats, time_major))

    def content_prior(self, batch_size):
        """p(f): batch_shape [batch_size] ([batch_size, S] with slots), like the posterior."""
        return self.f_prior.prior(self._lead(batch_size))

    def _per_step(self, phi_f):
        """phi_f(f) [B, F] -> [B, T, F], the same content at every step."""
        return tf.repeat(phi_f[:, None, :], self.seq_len, axis=1)

    def _style(self, feats, eps, u, time_major=False):
        """(what the decoder reads of the content, the style dict, attention weights or None)
        from features, style noise and the content latent u. The content input is phi_f(f)
        [B, F] (one per sequence), or with slots the context [B, T, F] (batch-major only)."""
        phi_f = self.phi_f(tf.cast(self.f_prior.to_code(u), self.compute_dtype))
        if self.attention is None:
            # phi_f(f) [B, F], one per sequence: the style recurrence (full) and the decoder
            # broadcast it over the T steps.
            return phi_f, self.infer_style(feats, eps, cond=phi_f, time_major=time_major), None
        feats = tf.ensure_shape(feats, [None, self.seq_len, feats.shape[-1]])
        attend = (lambda h: self.attention(h, phi_f)[0]) if self.variant == "full" else None
        style = self.infer_style(feats, eps, cond=attend)
        context, weights = self.attention(style["h_prev"], phi_f)
        return context, style, weights

    def _infer(self, x_flat, sample=True, time_major=False):
        """x_flat [B, T, D] ([T, B, D] if time_major, and then the style outputs too; not with
        slots). Returns (content params, u, the decoder's content input, style)."""
        feats = self.phi_x(x_flat)
        params = self.content_params(feats, time_major=time_major)
        u = self.content_latent(params, SAMPLE if sample else None)
        shape = tf.shape(x_flat)
        batch_major_shape = tf.stack([shape[1], shape[0]]) if time_major else shape[:2]
        eps_shape = tf.concat([batch_major_shape, [self.z_dim]], 0)
        if sample:
            eps = self.normal_noise(eps_shape)  # drawn [B, T, z]: the same noise either way
        else:
            eps = tf.zeros(eps_shape, self.compute_dtype)
        content, style, _ = self._style(feats, _swap(eps) if time_major else eps, u,
                                        time_major=time_major)
        return params, u, content, style

    # ---- the model ---------------------------------------------------------------------

    def compute_terms(self, x, training=False):
        # Time-major [T, B, .] throughout (not with slots): every term is a mean over
        # sequences or over all (b, t), so the order of the rows does not matter, and the
        # recurrences need no transposes.
        time_major = self.attention is None
        # The likelihood scores the float32 data; the networks read it in the compute dtype
        # (the same tensor in float32: one transpose).
        data = self.flatten_frames(x, tf.float32)
        data = _swap(data) if time_major else data
        x_flat = tf.cast(data, self.compute_dtype)
        params, _, content, style = self._infer(x_flat, time_major=time_major)
        prior_z = self.prior(self.prior_net(style["h_prev"]))  # p(z_t | h_{t-1}): loc, scale
        kl_z = tf.reduce_mean(kl_diag_gaussians(style["loc"], style["scale"], *prior_z))
        # KL_f is one term per sequence; per image it is shared by the T frames.
        kl_f = tf.reduce_mean(self.content_kl(params))
        kl_f = kl_f / tf.cast(tf.shape(x_flat)[0 if time_major else 1], kl_f.dtype)
        params = self.decoder_params(style["phi_z"], style["h_prev"], content,
                                     time_major=time_major)
        return {"nll": self.nll_per_image(params, data), "kl_z": kl_z, "kl_f": kl_f}

    def call(self, x, training=False):
        return self.reconstruct(self.check_inputs(x))

    def encode(self, x, sample=True):
        """Posteriors of f ([B, f_dim]; [B, S, f_dim] with slots) and z_{1:T} ([B, T, z_dim]):
        loc (f: the posterior mean, on the simplex for the simplex priors), scale (f: the
        posterior standard deviation), sample.

        z_t's posterior depends on z_{<t} (and, in *full*, on f) through h_{t-1}: with
        sample=True the locs are those along a sampled path, so they vary from call to call;
        with sample=False the path runs through the means (f = f_loc, z_t = z_loc_t, as in
        `reconstruct`), every output is deterministic and the samples equal the locs.
        """
        params, u, _, style = self._infer(self.flatten_frames(x), sample=sample)
        dt = self.compute_dtype
        f_loc, f_scale = (tf.cast(v, dt) for v in self.content_posterior(params))
        return {"f_loc": f_loc, "f_scale": f_scale,
                "f_sample": tf.cast(self.f_prior.to_code(u), dt),
                "z_loc": style["loc"], "z_scale": style["scale"], "z_sample": style["z"]}

    def attention_weights(self, x):
        """The attention of each step over the slots on the posterior-mean path: [B, T, S]
        (rows sum to 1). Only with content_attention="slots"."""
        if self.attention is None:
            raise ValueError("attention_weights needs content_attention='slots'")
        x_flat = self.flatten_frames(x)
        feats = self.phi_x(x_flat)
        params = self.content_params(feats)
        eps = tf.zeros(tf.concat([tf.shape(x_flat)[:2], [self.z_dim]], 0), self.compute_dtype)
        return self._style(feats, eps, self.mean_latent(params))[2]

    def reconstruct(self, x):
        """The decoder's mean at the posterior means of f and z: [B, T, H, W, C]."""
        x_flat = self.flatten_frames(x)
        _, _, content, style = self._infer(x_flat, sample=False)
        params = self.decoder_params(style["phi_z"], style["h_prev"], content)
        return self.unflatten_frames(self.likelihood.mean(params))

    def decode(self, f, z=None):
        """Images from content f and style z through the generative recurrence.

        f: [n, f_dim] (one content per sequence) or [n, T, f_dim] (one per step; with slots:
        the S = T slots, and [n, f_dim] fills every slot); z: [n, T, z_dim], or None to draw
        each z_t from the prior p(z_t | h_{t-1}). Returns [n, T, H, W, C].
        """
        f = tf.cast(f, self.compute_dtype)  # float32 codes into a bf16 model
        if self.attention is not None:
            if f.shape.rank == 2:
                f = tf.repeat(f[:, None], self.content_slots, axis=1)
            keys = self.phi_f(f)
            return self.run_generative(tf.shape(f)[0], z=z,
                                       phi_f=lambda h: self.attention(h, keys)[0])
        phi_f = self.phi_f(f)
        if f.shape.rank == 2:
            phi_f = self._per_step(phi_f)
        return self.run_generative(tf.shape(f)[0], z=z, phi_f=phi_f)

    def get_config(self):
        return {**super().get_config(), "variant": self.variant, "f_dim": self.f_dim,
                "content_attention": self.content_attention, **self.content_config()}

    # ---- what the metrics and the benchmark read (see `dvrnn_tf.models.registry`) ---------

    @property
    def iwae_proposal(self):
        content = "q(f|x)" if self.attention is None else "prod_s q(f_s|x)"
        return (f"{content} prod_t q(z_t|x_t,h_{{t-1}}), joint per sequence; content prior "
                f"{self.f_prior.kind}")

    def posterior_terms(self, x, eps_z, eps_f):
        """One joint sample of q(f | x) prod_t q(z_t | .) per row of x [N, T, H, W, C]
        (eps_z [N, T, z_dim], zeros: the mean path; eps_f as `content_noise` draws it, None:
        f's posterior mean), with every log density and KL the metrics need
        (`dvrnn_tf.metrics.likelihood.forward_terms`)."""
        dt = self.compute_dtype
        x_flat = tf.cast(self.flatten_frames(x), tf.float32)
        feats = self.phi_x(tf.cast(x_flat, dt))
        params = self.content_params(feats)
        u = self.content_latent(params, eps_f)
        content, style, _ = self._style(feats, tf.cast(eps_z, dt), u)
        params_x = self.decoder_params(style["phi_z"], style["h_prev"], content)
        return {**self.content_terms(params, u), **self.style_terms(style, params_x, x_flat)}

    def step_costs(self, batch_size):
        """Every matmul of one training step on `batch_size` sequences (`layers.costs`)."""
        b, t, h, r, f = int(batch_size), self.seq_len, self.hidden_dim, self.rnn_dim, self.f_dim
        slots = self.attention is not None
        mm = self.style_costs(b, cond_per_step=slots)
        rows = b * t if slots else b  # content codes: one per slot, or one per sequence
        mm += costs.with_backward("content: phi_x @ gru input", b * t, h, 3 * r)
        mm += costs.recurrent("content: h @ gru recurrent", b, r, 3 * r, t)
        mm += costs.with_backward("content head", rows, r, self.f_prior.params_width)
        mm += costs.with_backward("phi_f", rows, f, h)
        # The decoder's content input: phi_f(f) once per sequence, or a context per step.
        mm += costs.with_backward("decoder_net.dense0 (content)", rows, h, h)
        if slots:
            # In the loop (full: T - 1 calls of one step) and once for all T steps.
            # The loop's first query is h_0 = 0, a constant: no gradient flows into it.
            calls = [(1, t, 0)] + ([(t - 1, 1, 1)] if self.variant == "full" else [])
            for count, steps, constant in calls:
                mm += attention_costs("attention", b, steps, t, r, h, h, count, constant)
        return mm


def attention_costs(name, b, steps, slots, query_dim, key_dim, units, count=1,
                    constant_queries=0):
    """`ContentAttention` (one head of width `units`) of `steps` queries over `slots` keys,
    B sequences: the four projections and the two batched products, with gradients
    (`constant_queries` of the `count` calls take a query no gradient flows into)."""
    mm = costs.with_backward(f"{name}: query", b * steps, query_dim, units,
                             count=count - constant_queries)
    if constant_queries:
        mm += costs.with_backward(f"{name}: query", b * steps, query_dim, units,
                                  count=constant_queries, input_grad=False)
    mm += costs.with_backward(f"{name}: key|value", b * slots, key_dim, units,
                              count=2 * count)
    mm += costs.with_backward(f"{name}: scores", steps, units, slots, count=b * count)
    mm += costs.with_backward(f"{name}: weights @ values", steps, slots, units,
                              count=b * count)
    mm += costs.with_backward(f"{name}: output", b * steps, units, units, count=count)
    return mm


CONTENT_ATTENTION = Setting(
    "content_attention", "none", "--model=full|factorized: `slots`: one content code per "
    "state of the content GRU, and each step attends over them with the query h_{t-1} (the "
    "first paper's section 5; docstring of dvrnn_tf/models/families/disentangled_vrnn.py); "
    "`none`: one code f.", choices=ATTENTION)


def _build(name, values, data, *, seed, clip_norm):
    return DisentangledVRNN(
        data.image_shape, variant=name, seq_len=data.seq_len, hidden_dim=values.hidden_dim,
        rnn_dim=values.rnn_dim, z_dim=values.z_dim, f_dim=values.f_dim,
        beta_z=ms.kl_weight(values, "z"), beta_f=ms.kl_weight(values, "f"),
        content_attention=values.content_attention, **ms.content_prior_args(values),
        **ms.likelihood_args(values), **ms.network_args(values), clip_norm=clip_norm,
        seed=seed)


FAMILY = register(ModelFamily(
    names=VARIANTS, model_class=DisentangledVRNN,
    settings=(*ms.LIKELIHOOD_SETTINGS, *ms.NETWORK_SETTINGS, ms.HIDDEN_DIM, ms.RNN_DIM,
              ms.Z_DIM, ms.F_DIM, *ms.KL_Z_SETTINGS, *ms.KL_F_SETTINGS,
              *ms.CONTENT_PRIOR_SETTINGS, CONTENT_ATTENTION),
    build=_build, check=ms.check_network_and_content,
    metrics=ms.CONTENT_AND_STYLE_METRICS,
    summary="the first paper's Disentangled VRNN: content f and per-step style z_t; *full*: "
            "the style path sees f, *factorized*: it does not"))
