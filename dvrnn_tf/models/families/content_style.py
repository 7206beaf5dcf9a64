"""A sequence VAE whose content and style codes cannot leak into each other
(`--model=content_style`; `--model=disentangled` is its former name).

Why not the Disentangled VRNN: its decoder reads the recurrent state h_{t-1}, which has seen
every earlier frame, so content reaches the decoder without f and style without z; one of the
two codes then collapses whatever the betas (issue 8's table; docs/disentanglement.md). Here
each leak is closed by construction:

* content: q(f | x_{1:T}) from the *mean* of the frames' features. Pooling is permutation
  invariant, so f can hold what the frames share (the class) but cannot say which frame
  looks how: per-frame style has no place in f.
* style: q(z_t | x_t, f) sees one frame (and f, so it can encode the frame *relative to* its
  content); the prior is p(z_t) = N(0, I) for every t when the frames of a sequence are
  independent draws (the papers' MNIST sequences: a recurrent prior has nothing to learn),
  or, for video, p(z_t | z_<t) from a GRU over the earlier codes (`style_prior="recurrent"`,
  DSVAE's dynamics prior), so that generated codes carry motion.
* decoder: p(x_t | z_t, f), no recurrent state: a frame's style reaches it only through z_t
  and the content only through f (which is cheaper to use: its KL is paid once per
  sequence, a class carried in z would be paid at every frame).
* free bits: KL_z is penalized only above `kl_z_free_bits` nats per frame (Kingma et al.
  2016), so z cannot collapse onto its prior (what the first paper's betas do).
* swap consistency (`swap_consistency` > 0, for video): in Sprites the motion is constant over
  a sequence like the appearance, so the pooled f can hold it as well as z (DESIGN 6's trap),
  and the ELBO does not care which. The term decodes every sequence's f with another
  sequence's z_{1:T}, encodes that swap again and asks for the codes it was made from (their
  samples, as targets): an f that also holds motion reads the partner's motion back, a
  decoder that takes motion from f renders a z that reads back wrong. Unsupervised; the
  cross-reconstruction cycle of Li & Mandt's and later sequential VAEs' evaluations, trained.

Loss per image: nll + beta_f KL_f / T + beta_z max(KL_z, free bits)
+ swap_consistency * swap_nll, each KL analytic
(`tfd` diagonal Gaussians against N(0, I); KL_f against the content prior, `--content_prior`:
Gaussian, Dirichlet or stick-breaking, `dvrnn_tf.models.content_codes`).
"""
import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from dvrnn_tf.layers import GaussianHead, costs, kl_diag_gaussians, mlp, on_rows
from dvrnn_tf.cells.style_prior import RecurrentStylePrior
from dvrnn_tf.models import settings as ms
from dvrnn_tf.models.base import LatentVariableModel, check_positive
from dvrnn_tf.models.content_codes import SAMPLE, ContentCodes
from dvrnn_tf.models.networks import FrameNetworks
from dvrnn_tf.models.registry import ModelFamily, register
from dvrnn_tf.settings import Setting
from dvrnn_tf.models.generation import ContentStyleGeneration

tfd = tfp.distributions
STYLE_PRIORS = ("normal", "recurrent")


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class ContentStyleVAE(ContentCodes, ContentStyleGeneration, FrameNetworks, LatentVariableModel):
    """Global content f, per-frame style z_t, and a decoder that sees only (z_t, f).

    Shapes: x [B, T, H, W, C]; q(f | x): batch_shape [B], event_shape [f_dim];
    q(z_t | x_t, f): batch_shape [B, T], event_shape [z_dim]; p(z_t) = N(0, I); p(f) the
    content prior (N(0, I) by default).

    Args (beyond `LatentVariableModel`'s):
      hidden_dim: width of every hidden layer.
      f_dim, z_dim: sizes of the content and style codes.
      beta_f, beta_z: KL weights (float or `KLWeight`).
      kl_z_free_bits: nats per frame of KL_z that cost nothing (0: plain beta-weighted KL).
      style_sees_content: q(z_t | x_t, f) if True, else q(z_t | x_t).
      network, conv_channels, conv_layers, decoder_refine_layers: the frame encoder phi_x
        and the decoder's output layer (`dvrnn_tf.models.networks`): "mlp" or "conv".
      style_prior: "normal", p(z_t) = N(0, I) for every frame (independent frames, the
        papers' MNIST sequences); or "recurrent", p(z_t | z_<t) from a GRU over the earlier
        codes (`RecurrentStylePrior`, DSVAE's dynamics prior: video, where z carries motion).
      content_prior, dirichlet_concentration, stick_breaking_alpha: the content code's
        posterior and prior (`dvrnn_tf.models.content_codes`).
      swap_consistency: weight of `swap_nll` (nats per image; 0: not computed).
    """

    def __init__(self, image_shape, seq_len=8, hidden_dim=256, f_dim=16, z_dim=8, beta_f=1.0,
                 beta_z=1.0, kl_z_free_bits=0.0, style_sees_content=True,
                 likelihood="bernoulli", clip_norm=10.0, seed=None, network="mlp",
                 conv_channels=32, conv_layers=4, decoder_refine_layers=0, style_prior="normal",
                 content_prior="gaussian", dirichlet_concentration=1.0,
                 stick_breaking_alpha=5.0, swap_consistency=0.0, **kwargs):
        check_positive(hidden_dim=hidden_dim, f_dim=f_dim, z_dim=z_dim)
        if style_prior not in STYLE_PRIORS:
            raise ValueError(f"`style_prior` must be one of {', '.join(STYLE_PRIORS)}, got "
                             f"{style_prior!r}")
        if not (kl_z_free_bits >= 0 and math.isfinite(kl_z_free_bits)):
            raise ValueError(f"`kl_z_free_bits` must be a finite number >= 0 (nats per frame), "
                             f"got {kl_z_free_bits}")
        if not (swap_consistency >= 0 and math.isfinite(swap_consistency)):
            raise ValueError(f"`swap_consistency` must be a finite number >= 0 (a weight), got "
                             f"{swap_consistency}")
        self.swap_consistency = float(swap_consistency)
        super().__init__(image_shape, seq_len=seq_len, likelihood=likelihood,
                         clip_norm=clip_norm, seed=seed,
                         kl_weights={"kl_z": beta_z, "kl_f": beta_f}, **kwargs)
        self.hidden_dim, self.f_dim, self.z_dim = int(hidden_dim), int(f_dim), int(z_dim)
        self.kl_z_free_bits = float(kl_z_free_bits)
        self.style_sees_content = bool(style_sees_content)
        self._init_networks(network, conv_channels, conv_layers, decoder_refine_layers)
        h = self.hidden_dim
        self.phi_x = self.frame_encoder_layer(h)
        self.content_net = mlp([h], name="content_net")
        self.content = self._init_content(content_prior, dirichlet_concentration,
                                          stick_breaking_alpha)
        self.phi_f = mlp([h], name="phi_f")
        self.style_net = mlp([h], name="style_net")
        self.style = GaussianHead(self.z_dim, name="style")
        self.phi_z = mlp([h], name="phi_z")
        self.decoder_net = mlp([h, h], name="decoder_net")
        self.decoder_out = self.frame_decoder_layer()
        self.style_prior = style_prior
        self.style_prior_net = (RecurrentStylePrior(self.z_dim, h, name="style_prior")
                                if style_prior == "recurrent" else None)
        self.build()

    def build(self, input_shape=None):
        h = self.hidden_dim
        if self.style_prior_net is not None:
            self.style_prior_net.build()
        self.phi_x.build((None, None, self.x_dim))
        self.content_net.build((None, h))
        self.content.build((None, h))
        self.phi_f.build((None, self.f_dim))
        self.style_net.build((None, None, 2 * h if self.style_sees_content else h))
        self.style.build((None, None, h))
        self.phi_z.build((None, None, self.z_dim))
        self.decoder_net.build((None, None, 2 * h))
        self.decoder_out.build((None, None, h))
        self.built = True

    # ---- distributions ---------------------------------------------------------------------

    def content_params(self, feats):
        """q(f | x_{1:T})'s parameters from frame features [B, T, h], each [B, width]
        (`dvrnn_tf.models.content_codes`; gaussian: (loc, scale))."""
        return self.content(self.content_net(tf.reduce_mean(feats, axis=1)))

    def style_params(self, feats, phi_f):
        """q(z_t | x_t, f): (loc, scale), each [B, T, z_dim]; phi_f [B, h] or [B, T, h]."""
        if self.style_sees_content:
            feats = tf.concat([feats, self._per_step(phi_f, tf.shape(feats)[1])], axis=-1)
        return self.style(on_rows(self.style_net, feats))

    def decoder_params(self, z, phi_f):
        """Parameters of p(x_t | z_t, f): z [B, T, z_dim], phi_f [B, h] or [B, T, h] ->
        [B, T, params_per_pixel * D]."""
        phi_z = on_rows(self.phi_z, z)
        hidden = tf.concat([phi_z, self._per_step(phi_f, tf.shape(z)[1])], axis=-1)
        return on_rows(self.decoder_out, on_rows(self.decoder_net, hidden))

    @staticmethod
    def _per_step(phi_f, steps):
        if phi_f.shape.rank == 3:
            return phi_f
        return tf.repeat(phi_f[:, None, :], steps, axis=1)

    def _infer(self, x, eps_f, eps_z):
        """Posterior samples of f (eps_f: as `content_latent` takes it; None: the mean) and of
        z = loc + scale eps_z (zeros: the means; SAMPLE: drawn here, after f's noise).
        Returns (x_flat, codes (f_loc, f_scale, f_sample, z_...), phi_f, params, u)."""
        x_flat = self.flatten_frames(x)
        feats = on_rows(self.phi_x, x_flat)
        params = self.content_params(feats)
        u = self.content_latent(params, eps_f)
        f = tf.cast(self.f_prior.to_code(u), self.compute_dtype)
        phi_f = self.phi_f(f)
        z_loc, z_scale = self.style_params(feats, phi_f)
        if isinstance(eps_z, str) and eps_z == SAMPLE:
            eps_z = self.normal_noise(tf.shape(z_loc))
        z = z_loc + z_scale * tf.cast(eps_z, z_loc.dtype)
        f_loc, f_scale = (tf.cast(v, self.compute_dtype) for v in self.content_posterior(params))
        codes = dict(f_loc=f_loc, f_scale=f_scale, f_sample=f, z_loc=z_loc, z_scale=z_scale,
                     z_sample=z)
        return x_flat, codes, phi_f, params, u

    # ---- the model -------------------------------------------------------------------------

    def compute_terms(self, x, training=False):
        steps = tf.shape(x)[1]
        _, q, phi_f, f_params, _ = self._infer(x, SAMPLE, SAMPLE)
        params = self.decoder_params(q["z_sample"], phi_f)
        prior = self.style_prior_params(q["z_sample"])  # on the sampled path
        kl_z = tf.reduce_mean(kl_diag_gaussians(q["z_loc"], q["z_scale"], *prior))  # per frame
        # One f per sequence: its KL shared by the T frames (nats per image).
        kl_f = tf.reduce_mean(self.content_kl(f_params))
        kl_f = kl_f / tf.cast(steps, kl_f.dtype)
        data = self.flatten_frames(x, tf.float32)
        terms = {"nll": self.nll_per_image(params, data), "kl_z": kl_z, "kl_f": kl_f}
        if self.swap_consistency:
            terms["swap_nll"] = self.swap_nll(q["f_sample"], q["z_sample"], phi_f)
        return terms

    def swap_nll(self, f, z, phi_f):
        """How far the codes of swapped sequences read back from what made them.

        Row i's content (f [B, f_dim], phi_f [B, h]) is decoded with row i-1's style
        (z [B, T, z_dim]), the decoder's mean is encoded again, and its posterior means are
        scored against those codes under a unit-scale Gaussian: -log N(f_i; f', 1) / T +
        mean_t -log N(z_{i-1,t}; z'_t, 1), nats per image (constants dropped). The targets
        are samples (a posterior that says nothing pays its variance) and stop gradients;
        the decoder and the encoder learn from the term.
        """
        z_partner = tf.roll(z, 1, axis=0)
        read = self.encode(self._decoded_mean(z_partner, phi_f), sample=False)
        steps = tf.shape(z)[1]
        f_nll = 0.5 * tf.reduce_sum(tf.square(tf.cast(
            tf.stop_gradient(f) - read["f_loc"], tf.float32)), -1)
        z_nll = 0.5 * tf.reduce_sum(tf.square(tf.cast(
            tf.stop_gradient(z_partner) - read["z_loc"], tf.float32)), -1)
        return tf.reduce_mean(f_nll) / tf.cast(steps, tf.float32) + tf.reduce_mean(z_nll)

    @property
    def metric_names(self):
        names = super().metric_names
        return names + ["swap_nll"] if self.swap_consistency else names

    def total_loss(self, terms, step):
        # Free bits: the first kl_z_free_bits nats per frame are free (no gradient pushes
        # KL_z below them); the logged kl_z stays the true KL.
        if self.kl_z_free_bits:
            terms = {**terms, "kl_z": tf.maximum(terms["kl_z"], self.kl_z_free_bits)}
        loss = super().total_loss(terms, step)
        if self.swap_consistency:
            loss += self.swap_consistency * terms["swap_nll"]
        return loss

    @property
    def iwae_proposal(self):
        return ("q(f|x) prod_t q(z_t|x_t,f), joint per sequence; content prior "
                f"{self.f_prior.kind}")

    def style_prior_params(self, z):
        """p(z_t | z_<t) along codes z [B, T, z_dim]: (loc, scale), or (None, None) for the
        standard normal prior."""
        if self.style_prior_net is None:
            return None, None
        return self.style_prior_net.params(z)

    def sample_style(self, n):
        """z_{1:T} ~ the style prior: [n, T, z_dim]."""
        eps = self.normal_noise((n, self.seq_len, self.z_dim))
        return eps if self.style_prior_net is None else self.style_prior_net.sample(eps)

    def posterior_terms(self, x, eps_z, eps_f):
        """What `dvrnn_tf.metrics.likelihood.forward_terms` needs (see there): one sample of
        q(f | x) q(z | x, f) per row (eps_f as `content_noise` draws it, None: f's mean), its
        log densities and the analytic KLs."""
        x_flat, q, phi_f, f_params, u = self._infer(x, eps_f, eps_z)
        params = self.decoder_params(q["z_sample"], phi_f)
        q = {k: tf.cast(v, tf.float32) for k, v in q.items()}
        log_px = self.likelihood.distribution(tf.cast(params, tf.float32)).log_prob(
            tf.cast(x_flat, tf.float32))
        q_z = tfd.Normal(q["z_loc"], q["z_scale"])
        p_loc, p_scale = self.style_prior_params(q["z_sample"])
        p_z = tfd.Normal(0.0, 1.0) if p_loc is None else tfd.Normal(
            tf.cast(p_loc, tf.float32), tf.cast(p_scale, tf.float32))
        kl_z_dims = q_z.kl_divergence(p_z)
        return {
            **self.content_terms(f_params, u),
            "log_px": tf.reduce_sum(log_px, -1, keepdims=True),
            "log_pz": tf.reduce_sum(p_z.log_prob(q["z_sample"]), [-2, -1])[:, None],
            "log_qz": tf.reduce_sum(q_z.log_prob(q["z_sample"]), [-2, -1])[:, None],
            "kl_z": tf.reduce_sum(kl_z_dims, -1), "kl_z_dims": kl_z_dims,
            **{k: q[k] for k in ("z_loc", "z_sample")}}

    def call(self, x, training=False):
        """The reconstruction (the decoder's mean at the posterior means): [B, T, H, W, C]."""
        return self.reconstruct(self.check_inputs(x))

    # ---- codes in and out (ContentStyleGeneration builds swap, interpolate, ... on these) -----

    def encode(self, x, sample=True):
        """Posteriors of f ([B, f_dim]; loc and scale: its posterior mean and standard
        deviation, on the simplex for the simplex priors) and z_{1:T} ([B, T, z_dim]): loc,
        scale, sample. sample=False: z's posterior given f's mean, samples equal to the locs."""
        if sample:
            return self._infer(x, SAMPLE, SAMPLE)[1]
        shape = tf.shape(x)
        return self._infer(x, None, tf.zeros(tf.stack([shape[0], shape[1], self.z_dim]),
                                              self.compute_dtype))[1]

    def reconstruct(self, x):
        """The decoder's mean at the posterior means of f and z: [B, T, H, W, C]."""
        q = self.encode(x, sample=False)
        return self.decode(q["f_loc"], q["z_loc"])

    def decode(self, f, z=None):
        """Images from content f ([n, f_dim], or [n, T, f_dim]: one per step) and style z
        ([n, T, z_dim]; None: z_{1:T} from the style prior). Returns [n, T, H, W, C]."""
        f = tf.cast(f, self.compute_dtype)  # float32 codes into a bf16 model
        if z is None:
            z = self.sample_style(tf.shape(f)[0])
        return self._decoded_mean(tf.cast(z, self.compute_dtype), self.phi_f(f))

    def _decoded_mean(self, z, phi_f):
        """The decoder's mean [n, T, H, W, C] at codes z [n, T, z_dim] and phi_f [n, h]."""
        mean = self.likelihood.mean(self.decoder_params(z, phi_f))
        return self.unflatten_frames(tf.cast(mean, self.compute_dtype))

    def get_config(self):
        # The base class adds image_shape, seq_len, likelihood, clip_norm, seed and the betas.
        return {**super().get_config(), "hidden_dim": self.hidden_dim, "f_dim": self.f_dim,
                "z_dim": self.z_dim, "kl_z_free_bits": self.kl_z_free_bits,
                "style_sees_content": self.style_sees_content, "style_prior": self.style_prior,
                "swap_consistency": self.swap_consistency,
                **self.network_config(), **self.content_config()}

    def step_costs(self, batch_size):
        """Every matmul of one training step on `batch_size` sequences (`layers.costs`)."""
        b = int(batch_size)
        mm = self._pass_costs(b, input_grad=False)
        if self.style_prior_net is not None:
            mm += self.style_prior_net.step_costs(b, self.seq_len)
        if self.swap_consistency:  # the swaps decoded and encoded once more, gradients through
            mm += self._pass_costs(b, input_grad=True)
        return mm

    def _pass_costs(self, b, input_grad):
        """One encode and decode of b sequences: frame encoder, content and style heads,
        decoder."""
        h, f, z = self.hidden_dim, self.f_dim, self.z_dim
        rows = b * self.seq_len
        style_in = 2 * h if self.style_sees_content else h
        mm = self.phi_x.step_costs(rows, input_grad=input_grad)
        # Content: the mean of the frames' features, one row per sequence.
        mm += costs.with_backward("content_net.dense0", b, h, h)
        mm += costs.with_backward("content head", b, h, self.f_prior.params_width)
        mm += costs.with_backward("phi_f", b, f, h)
        # Style per frame from [phi_x(x_t), phi_f(f)]; decoder from [phi_z(z_t), phi_f(f)].
        mm += costs.with_backward("style_net.dense0", rows, style_in, h)
        mm += costs.with_backward("style loc|scale", rows, h, 2 * z)
        mm += costs.with_backward("phi_z", rows, z, h)
        mm += costs.mlp_costs("decoder_net", rows, [2 * h, h, h])
        return mm + self.decoder_out.step_costs(rows)

KL_Z_FREE_BITS = Setting("kl_z_free_bits", 0.0, "Nats per frame of KL_z that cost nothing "
                         "(free bits: keeps the style code from collapsing).", lower=0.0)
STYLE_PRIOR = Setting("style_prior", "normal", "p(z_t) = N(0, I) for every frame (`normal`), "
                      "or p(z_t | z_<t) from a GRU over the earlier codes (`recurrent`, "
                      "DSVAE's dynamics prior, for video).", choices=STYLE_PRIORS)
SWAP_CONSISTENCY = Setting("swap_consistency", 0.0, "Weight of the swap-consistency term "
                           "(f of one sequence decoded with z of another, encoded again, "
                           "scored against those codes; 0: off). For video, where f can take "
                           "the motion.", lower=0.0)
STYLE_SEES_CONTENT = Setting("style_sees_content", True, "The style posterior is "
                             "q(z_t | x_t, f) (else q(z_t | x_t)).")


def _build(name, values, data, *, seed, clip_norm):
    return ContentStyleVAE(
        data.image_shape, seq_len=data.seq_len, hidden_dim=values.hidden_dim,
        f_dim=values.f_dim, z_dim=values.z_dim, beta_f=ms.kl_weight(values, "f"),
        **ms.content_prior_args(values),
        beta_z=ms.kl_weight(values, "z"), kl_z_free_bits=values.kl_z_free_bits,
        style_sees_content=values.style_sees_content, style_prior=values.style_prior,
        swap_consistency=values.swap_consistency, **ms.likelihood_args(values),
        **ms.network_args(values), clip_norm=clip_norm, seed=seed)


FAMILY = register(ModelFamily(
    names=("content_style",), aliases={"disentangled": "content_style"},
    model_class=ContentStyleVAE,
    settings=(*ms.LIKELIHOOD_SETTINGS, *ms.NETWORK_SETTINGS, ms.HIDDEN_DIM, ms.Z_DIM, ms.F_DIM,
              *ms.KL_Z_SETTINGS, *ms.KL_F_SETTINGS, KL_Z_FREE_BITS, STYLE_SEES_CONTENT,
              STYLE_PRIOR, SWAP_CONSISTENCY, *ms.CONTENT_PRIOR_SETTINGS),
    build=_build, check=ms.check_network_and_content,
    metrics=ms.CONTENT_AND_STYLE_METRICS,
    summary="this package's content/style VAE: f from pooled frames, z_t from one frame, a "
            "decoder that reads only (z_t, f)"))
