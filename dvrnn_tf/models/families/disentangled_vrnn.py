"""The Disentangled VRNN of the first paper (section 2; DESIGN 2.2): `--model=full` and
`--model=factorized`."""
import keras
import tensorflow as tf
import tensorflow_probability as tfp

from dvrnn_tf.cells.vrnn_cell import gru_last_state
from dvrnn_tf.layers import GaussianHead, costs, diag_gaussian, kl_diag_gaussians, mlp
from dvrnn_tf.models import settings as ms
from dvrnn_tf.models.base import check_positive
from dvrnn_tf.models.generation import ContentStyleGeneration
from dvrnn_tf.models.registry import ModelFamily, register
from dvrnn_tf.models.vrnn_base import VRNNBase, _swap

tfd = tfp.distributions

VARIANTS = ("full", "factorized")


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class DisentangledVRNN(ContentStyleGeneration, VRNNBase):
    """A global content code f and per-step style codes z_t.

    Content: a GRU over phi_x(x_1..x_T); its last state gives q(f | x_{1:T}) = N(., .),
    event_shape [f_dim]; prior p(f) = N(0, I). f enters every step through phi_f(f).
    Style: the VRNN recurrence, with
      full:       h_t = GRU([phi_x(x_t), phi_z(z_t), phi_f(f)], h_{t-1}), so the style prior
                  p(z_t | h_{t-1}) and posterior q(z_t | x_t, h_{t-1}) both see f;
      factorized: h_t = GRU([phi_x(x_t), phi_z(z_t)], h_{t-1}): the style path never receives
                  f, and q(f, z | x) = q(f | x) q(z | x).
    In both, the decoder is p(x_t | phi_z(z_t), phi_f(f), h_{t-1}).
    Loss per image: (nll + beta_f KL_f + beta_z sum_t KL_z,t) / T.

    Args (beyond `VRNNBase`'s): variant ("full" or "factorized"), f_dim, beta_f.
    """

    def __init__(self, image_shape, variant="factorized", f_dim=20, beta_f=1.0,
                 hidden_dim=100, **kwargs):
        if variant not in VARIANTS:
            raise ValueError(f"`variant` must be one of {VARIANTS}, got {variant!r}")
        check_positive(f_dim=f_dim)
        super().__init__(image_shape, hidden_dim=hidden_dim,
                         _extra_kl_weights={"kl_f": beta_f},
                         _cond_dim=hidden_dim if variant == "full" else 0, **kwargs)
        self.variant, self.f_dim = variant, int(f_dim)
        self.content_rnn = keras.layers.GRU(self.rnn_dim, name="content_rnn")
        self.content = GaussianHead(self.f_dim, name="content")
        self.phi_f = mlp([self.hidden_dim], name="phi_f")
        self.build()

    def decoder_inputs_width(self):
        return 2 * self.hidden_dim + self.rnn_dim

    def build(self, input_shape=None):
        super().build(input_shape)
        self.content_rnn.build((None, None, self.hidden_dim))
        self.content.build((None, self.rnn_dim))
        self.phi_f.build((None, self.f_dim))

    # ---- pieces --------------------------------------------------------------------------

    def content_distribution(self, feats, time_major=False):
        """q(f | x_{1:T}) from phi_x features [B, T, F] ([T, B, F] if time_major):
        batch_shape [B], event_shape [f_dim]."""
        # = self.content_rnn(feats), with the input projection of all steps as one matmul.
        return self.content.distribution(
            gru_last_state(self.content_rnn, feats, time_major=time_major))

    def content_prior(self, batch_size):
        """p(f) = N(0, I): batch_shape [batch_size], event_shape [f_dim]."""
        zeros = tf.zeros([batch_size, self.f_dim], self.compute_dtype)
        return diag_gaussian(zeros, tf.ones_like(zeros))

    def _per_step(self, phi_f):
        """phi_f(f) [B, F] -> [B, T, F], the same content at every step."""
        return tf.repeat(phi_f[:, None, :], self.seq_len, axis=1)

    def _infer(self, x_flat, sample=True, time_major=False):
        """x_flat [B, T, D] ([T, B, D] if time_major, and then the style outputs too)."""
        feats = self.phi_x(x_flat)
        q_f = self.content_distribution(feats, time_major=time_major)
        shape = tf.shape(x_flat)
        batch_major_shape = tf.stack([shape[1], shape[0]]) if time_major else shape[:2]
        batch = batch_major_shape[0]
        eps_shape = tf.concat([batch_major_shape, [self.z_dim]], 0)
        if sample:
            f = q_f.distribution.loc + q_f.distribution.scale * self.normal_noise((batch, self.f_dim))
            eps = self.normal_noise(eps_shape)  # drawn [B, T, z]: the same noise either way
        else:
            f = q_f.distribution.loc
            eps = tf.zeros(eps_shape, self.compute_dtype)
        # phi_f(f) [B, F], one per sequence: the style recurrence (full) and the decoder
        # broadcast it over the T steps.
        phi_f = self.phi_f(f)
        style = self.infer_style(feats, _swap(eps) if time_major else eps, cond=phi_f,
                                 time_major=time_major)
        return q_f, f, phi_f, style

    # ---- the model ---------------------------------------------------------------------

    def compute_terms(self, x, training=False):
        # Time-major [T, B, .] throughout: every term is a mean over sequences or over all
        # (b, t), so the order of the rows does not matter, and the recurrences need no
        # transposes.
        x_flat = _swap(self.flatten_frames(x))
        q_f, _, phi_f, style = self._infer(x_flat, time_major=True)
        prior_z = self.prior(self.prior_net(style["h_prev"]))  # p(z_t | h_{t-1}): loc, scale
        kl_z = tf.reduce_mean(kl_diag_gaussians(style["loc"], style["scale"], *prior_z))
        # KL_f is one term per sequence; per image it is shared by the T frames.
        # KL(q(f | x) || p(f) = N(0, I)).
        kl_f = tf.reduce_mean(kl_diag_gaussians(q_f.distribution.loc, q_f.distribution.scale))
        kl_f = kl_f / tf.cast(tf.shape(x_flat)[0], kl_f.dtype)
        params = self.decoder_params(style["phi_z"], style["h_prev"], phi_f, time_major=True)
        return {"nll": self.nll_per_image(params, x_flat), "kl_z": kl_z, "kl_f": kl_f}

    def call(self, x, training=False):
        return self.reconstruct(self.check_inputs(x))

    def encode(self, x, sample=True):
        """Posteriors of f ([B, f_dim]) and z_{1:T} ([B, T, z_dim]): loc, scale, sample.

        z_t's posterior depends on z_{<t} (and, in *full*, on f) through h_{t-1}: with
        sample=True the locs are those along a sampled path, so they vary from call to call;
        with sample=False the path runs through the means (f = f_loc, z_t = z_loc_t, as in
        `reconstruct`), every output is deterministic and the samples equal the locs.
        """
        # Fix (tests/test_vrnn_models.py): `sample` added; swap/interpolate use the deterministic
        # means.
        q_f, f, _, style = self._infer(self.flatten_frames(x), sample=sample)
        return {"f_loc": q_f.distribution.loc, "f_scale": q_f.distribution.scale, "f_sample": f,
                "z_loc": style["loc"], "z_scale": style["scale"], "z_sample": style["z"]}

    def reconstruct(self, x):
        """The decoder's mean at the posterior means of f and z: [B, T, H, W, C]."""
        x_flat = self.flatten_frames(x)
        _, _, phi_f, style = self._infer(x_flat, sample=False)
        params = self.decoder_params(style["phi_z"], style["h_prev"], phi_f)
        return self.unflatten_frames(self.likelihood.mean(params))

    def decode(self, f, z=None):
        """Images from content f and style z through the generative recurrence.

        f: [n, f_dim] (one content per sequence) or [n, T, f_dim] (one per step);
        z: [n, T, z_dim], or None to draw each z_t from the prior p(z_t | h_{t-1}).
        Returns [n, T, H, W, C].
        """
        f = tf.convert_to_tensor(f, self.compute_dtype)
        phi_f = self.phi_f(f)
        if f.shape.rank == 2:
            phi_f = self._per_step(phi_f)
        return self.run_generative(tf.shape(f)[0], z=z, phi_f=phi_f)

    def get_config(self):
        return {**super().get_config(), "variant": self.variant, "f_dim": self.f_dim}

    # ---- what the metrics and the benchmark read (see `dvrnn_tf.models.registry`) ---------

    iwae_proposal = "q(f|x) prod_t q(z_t|x_t,h_{t-1}), joint per sequence"

    def posterior_terms(self, x, eps_z, eps_f):
        """One joint sample of q(f | x) prod_t q(z_t | .) per row of x [N, T, H, W, C]
        (eps_z [N, T, z_dim], eps_f [N, f_dim]; zeros: the posterior-mean path), with every
        log density and KL the metrics need (`dvrnn_tf.metrics.likelihood.forward_terms`)."""
        dt = self.compute_dtype
        x_flat = tf.cast(self.flatten_frames(x), tf.float32)
        feats = self.phi_x(tf.cast(x_flat, dt))
        q_f = self.content_distribution(feats).distribution
        f = q_f.loc + q_f.scale * tf.cast(eps_f, q_f.loc.dtype)
        phi_f = self.phi_f(f)
        style = self.infer_style(feats, tf.cast(eps_z, dt), cond=phi_f)
        params = self.decoder_params(style["phi_z"], style["h_prev"], self._per_step(phi_f))
        f_loc, f_scale, f = (tf.cast(v, tf.float32) for v in (q_f.loc, q_f.scale, f))
        kl_f_dims = tfd.Normal(f_loc, f_scale).kl_divergence(tfd.Normal(0.0, 1.0))
        content = dict(
            log_pf=tf.reduce_sum(tfd.Normal(0.0, 1.0).log_prob(f), -1, keepdims=True),
            log_qf=tf.reduce_sum(tfd.Normal(f_loc, f_scale).log_prob(f), -1, keepdims=True),
            kl_f=tf.reduce_sum(kl_f_dims, -1), kl_f_dims=kl_f_dims, f_loc=f_loc, f_sample=f)
        return {**content, **self.style_terms(style, params, x_flat)}

    def step_costs(self, batch_size):
        """Every matmul of one training step on `batch_size` sequences (`layers.costs`)."""
        b, t, h, r, f = int(batch_size), self.seq_len, self.hidden_dim, self.rnn_dim, self.f_dim
        mm = self.style_costs(b)
        mm += costs.with_backward("decoder_net.dense0 (phi_f)", b, h, h)
        mm += costs.with_backward("content: phi_x @ gru input", b * t, h, 3 * r)
        mm += costs.recurrent("content: h @ gru recurrent", b, r, 3 * r, t)
        mm += costs.with_backward("content loc|scale", b, r, 2 * f)
        mm += costs.with_backward("phi_f", b, f, h)
        return mm


def _build(name, values, data, *, seed, clip_norm):
    return DisentangledVRNN(
        data.image_shape, variant=name, seq_len=data.seq_len, hidden_dim=values.hidden_dim,
        rnn_dim=values.rnn_dim, z_dim=values.z_dim, f_dim=values.f_dim,
        beta_z=ms.kl_weight(values, "z"), beta_f=ms.kl_weight(values, "f"),
        **ms.likelihood_args(values), **ms.network_args(values), clip_norm=clip_norm,
        seed=seed)


FAMILY = register(ModelFamily(
    names=VARIANTS, model_class=DisentangledVRNN,
    settings=(*ms.LIKELIHOOD_SETTINGS, *ms.NETWORK_SETTINGS, ms.HIDDEN_DIM, ms.RNN_DIM,
              ms.Z_DIM, ms.F_DIM, *ms.KL_Z_SETTINGS, *ms.KL_F_SETTINGS),
    build=_build, check=ms.check_network,
    metrics=("likelihood", "judge", "swap", "label_preservation", "probes",
             "style_preservation", "fixed_dynamics", "fixed_content", "factor_swap"),
    summary="the first paper's Disentangled VRNN: content f and per-step style z_t; *full*: "
            "the style path sees f, *factorized*: it does not"))
