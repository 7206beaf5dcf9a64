"""The beta-VAE of the first paper's section 4.1 (DESIGN 2.3): `--model=beta_vae`.

It models single images. Fed the same sequence batches as the VRNN models, x [B, T, H, W, C],
it treats the B*T frames as independent images, so one data pipeline, one `fit` and one
export path serve every model.
"""
import keras
import tensorflow as tf
import tensorflow_probability as tfp

from dvrnn_tf.layers import GaussianHead, costs, diag_gaussian, kl_diag_gaussians, mlp, on_rows
from dvrnn_tf.models import settings as ms
from dvrnn_tf.models.base import LatentVariableModel, check_positive, no_content_terms
from dvrnn_tf.models.networks import FrameNetworks
from dvrnn_tf.models.registry import ModelFamily, register

tfd = tfp.distributions


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class BetaVAE(FrameNetworks, LatentVariableModel):
    """beta-VAE (Higgins et al. 2017) with an optional capacity schedule (Burgess et al. 2018).

    Generative model, per frame: z ~ p(z) = N(0, I) (event_shape [z_dim]),
      x ~ p(x | z), decoded from z by an MLP [hidden, hidden] and a Dense layer.
    Inference: q(z | x) = N(mu(x), sigma(x)) from an MLP [hidden, hidden] and a `GaussianHead`.
    Loss per image: -log p(x | z) + beta_z.penalty(KL(q(z | x) || p(z)), step); with a
    `Capacity` weight this is the paper's "continual capacity increment", gamma * |KL - C|.

    Args (beyond `LatentVariableModel`'s):
      hidden_dim: width of the encoder's and decoder's hidden layers.
      z_dim: latent size (2 by default, so the latent space can be drawn: paper Fig. 3).
      beta_z: weight of KL_z: a float (constant beta), a `KLWeight`, or its serialized form.
      network, conv_channels, conv_layers, decoder_refine_layers: the encoder's frame network
        and the decoder's output layer (`dvrnn_tf.models.networks`): "mlp" or "conv".
    """

    def __init__(self, image_shape, seq_len=8, hidden_dim=512, z_dim=2, beta_z=1.0,
                 likelihood="bernoulli", clip_norm=10.0, seed=None, network="mlp",
                 conv_channels=32, conv_layers=4, decoder_refine_layers=0, **kwargs):
        check_positive(hidden_dim=hidden_dim, z_dim=z_dim)
        super().__init__(image_shape, seq_len=seq_len, likelihood=likelihood,
                         clip_norm=clip_norm, seed=seed, kl_weights={"kl_z": beta_z}, **kwargs)
        self.hidden_dim, self.z_dim = int(hidden_dim), int(z_dim)
        self._init_networks(network, conv_channels, conv_layers, decoder_refine_layers)
        h = self.hidden_dim
        self.encoder_net = self.frame_encoder_layer(h, name="encoder_net")
        self.posterior = GaussianHead(self.z_dim, name="posterior")
        self.decoder_net = mlp([h, h], name="decoder_net")
        self.decoder_out = self.frame_decoder_layer()
        self.build()

    def build(self, input_shape=None):
        # Every shape is known from the constructor: weights exist before the first call,
        # so `load_model` and `summary` work on a fresh model.
        h = self.hidden_dim
        self.encoder_net.build((None, None, self.x_dim))
        self.posterior.build((None, None, h))
        self.decoder_net.build((None, None, self.z_dim))
        self.decoder_out.build((None, None, h))
        self.built = True

    # ---- distributions -----------------------------------------------------------------

    def posterior_params(self, x_flat):
        """q(z | x) for x_flat [..., D]: (loc, scale), each [..., z_dim]."""
        return self.posterior(self.encoder_net(x_flat))

    def posterior_distribution(self, x_flat):
        """q(z | x): batch_shape x_flat.shape[:-1], event_shape [z_dim]."""
        return diag_gaussian(*self.posterior_params(x_flat))

    def prior_distribution(self, batch_shape):
        """p(z) = N(0, I): batch_shape `batch_shape`, event_shape [z_dim]."""
        zeros = tf.zeros(tf.concat([batch_shape, [self.z_dim]], 0), self.compute_dtype)
        return diag_gaussian(zeros, tf.ones_like(zeros))

    def decoder_params(self, z):
        """Parameters of p(x | z) for z [..., z_dim]: [..., params_per_pixel * D]."""
        return on_rows(self.decoder_out, self.decoder_net(z))

    def likelihood_distribution(self, z):
        """p(x | z) over flattened pixels: batch_shape z.shape[:-1], event_shape [D]."""
        return self.likelihood.distribution(tf.cast(self.decoder_params(z), tf.float32))

    # ---- the model -----------------------------------------------------------------------

    def compute_terms(self, x, training=False):
        x_flat = self.flatten_frames(x)
        loc, scale = self.posterior_params(x_flat)
        z = loc + scale * self.normal_noise(tf.shape(loc))  # reparameterized: gradients reach q
        # Analytic KL per frame [B, T], averaged: nats per image like every model here.
        kl_z = tf.reduce_mean(kl_diag_gaussians(loc, scale))  # against p(z) = N(0, I)
        return {"nll": self.nll_per_image(self.decoder_params(z),
                                          self.flatten_frames(x, tf.float32)), "kl_z": kl_z}

    def call(self, x, training=False):
        """The reconstruction (the decoder's mean at the posterior means): [B, T, H, W, C]."""
        return self.reconstruct(self.check_inputs(x))

    def encode(self, x):
        """Posterior of each frame's z: loc, scale and a sample, each [B, T, z_dim]."""
        loc, scale = self.posterior_params(self.flatten_frames(x))
        return {"z_loc": loc, "z_scale": scale,
                "z_sample": loc + scale * self.normal_noise(tf.shape(loc))}

    def reconstruct(self, x):
        """The decoder's mean at the posterior means: [B, T, H, W, C]."""
        loc, _ = self.posterior_params(self.flatten_frames(x))
        return self.decode(loc)

    def decode(self, z):
        """The decoder's mean image for each code.

        z: [n, T, z_dim] (as the other models' codes) -> [n, T, H, W, C], or
           [n, z_dim] (single images) -> [n, H, W, C]; any leading axes work alike.
        """
        z = tf.cast(z, self.compute_dtype)
        mean = tf.cast(self.likelihood.mean(self.decoder_params(z)), self.compute_dtype)
        return tf.reshape(mean, tf.concat([tf.shape(z)[:-1], self.image_shape], 0))

    def sample_prior(self, n):
        """z ~ p(z) for n sequences of T = seq_len frames: [n, T, z_dim]."""
        return self.normal_noise((n, self.seq_len, self.z_dim))

    def generate(self, n):
        """n sequences of independent prior samples, decoded: [n, T, H, W, C]."""
        return self.decode(self.sample_prior(n))

    def get_config(self):
        # The base class adds image_shape, seq_len, likelihood, clip_norm, seed and beta_z.
        return {**super().get_config(), "hidden_dim": self.hidden_dim, "z_dim": self.z_dim,
                **self.network_config()}

    # ---- what the metrics and the benchmark read (see `dvrnn_tf.models.registry`) ---------

    iwae_proposal = "q(z|x) per frame"
    # Frames are independent images: one bound and one code per frame, not per sequence.
    independent_frames = True

    def posterior_terms(self, x, eps_z, eps_f=None):
        """One sample of q(z | x_t) per frame of x [N, T, H, W, C] (eps_z [N, T, z_dim]):
        every entry has a units axis of T (one bound per frame; see
        `dvrnn_tf.metrics.likelihood.forward_terms`)."""
        dt = self.compute_dtype
        x_flat = tf.cast(self.flatten_frames(x), tf.float32)
        loc, scale = self.posterior_params(tf.cast(x_flat, dt))
        z = loc + scale * tf.cast(eps_z, dt)
        log_px = self.likelihood.distribution(
            tf.cast(self.decoder_params(z), tf.float32)).log_prob(x_flat)
        loc, scale, z = (tf.cast(v, tf.float32) for v in (loc, scale, z))
        kl_dims = tfd.Normal(loc, scale).kl_divergence(tfd.Normal(0.0, 1.0))
        content = no_content_terms(tf.shape(x_flat)[0])
        zeros = tf.zeros_like(log_px)
        return {**content, "log_pf": zeros, "log_qf": zeros, "log_px": log_px,
                "log_pz": tf.reduce_sum(tfd.Normal(0.0, 1.0).log_prob(z), -1),
                "log_qz": tf.reduce_sum(tfd.Normal(loc, scale).log_prob(z), -1),
                "kl_z": tf.reduce_sum(kl_dims, -1), "kl_z_dims": kl_dims, "z_loc": loc,
                "z_sample": z}

    def step_costs(self, batch_size):
        """Every matmul of one training step on `batch_size` sequences (`layers.costs`)."""
        rows, h, z = int(batch_size) * self.seq_len, self.hidden_dim, self.z_dim
        return (self.encoder_net.step_costs(rows, input_grad=False)
                + costs.with_backward("posterior loc|scale", rows, h, 2 * z)
                + costs.mlp_costs("decoder_net", rows, [z, h, h])
                + self.decoder_out.step_costs(rows))


def _build(name, values, data, *, seed, clip_norm):
    return BetaVAE(data.image_shape, seq_len=data.seq_len, hidden_dim=values.hidden_dim,
                   z_dim=values.z_dim, beta_z=ms.kl_weight(values, "z"),
                   **ms.likelihood_args(values), **ms.network_args(values),
                   clip_norm=clip_norm, seed=seed)


def _latent_analysis(model, train, held_out, out_dir, seed):
    """The section 4.1 study (kNN accuracy, latent scatter, nearest decodes), on data of
    single labelled images (the same-class sources); None for other data."""
    from dvrnn_tf.analysis import analyze

    if getattr(train, "image_set", None) is None:
        return None
    latent = analyze(model, train.image_set, held_out.image_set, out_dir, seed=seed)
    return {"latent_space": latent,
            "figures": {"latent_scatter": latent["scatter_png"],
                        "nearest_latents": latent["nearest_latents_png"]}}


FAMILY = register(ModelFamily(
    names=("beta_vae",), model_class=BetaVAE,
    settings=(*ms.LIKELIHOOD_SETTINGS, *ms.NETWORK_SETTINGS, ms.HIDDEN_DIM, ms.Z_DIM,
              *ms.KL_Z_SETTINGS),
    build=_build, check=ms.check_network, analyses=_latent_analysis,
    metrics=("likelihood", "judge", "probes", "knn"),
    summary="the first paper's beta-VAE of single frames (capacity schedule optional)"))
