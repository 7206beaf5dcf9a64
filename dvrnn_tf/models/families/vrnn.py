"""The Variational RNN (Chung et al. 2015; DESIGN 2.1): `--model=vrnn`."""
import keras
import tensorflow as tf

from dvrnn_tf.layers import kl_diag_gaussians
from dvrnn_tf.models import settings as ms
from dvrnn_tf.models.base import no_content_terms
from dvrnn_tf.models.registry import ModelFamily, register
from dvrnn_tf.models.vrnn_base import VRNNBase, _swap


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class VRNN(VRNNBase):
    """VRNN over image sequences.

    Generative model, per step t (h_0 = 0):
      z_t ~ p(z_t | h_{t-1}) = N(mu_0(h_{t-1}), sigma_0(h_{t-1}))
      x_t ~ p(x_t | z_t, h_{t-1}), decoded from [phi_z(z_t), h_{t-1}]
      h_t = GRU([phi_x(x_t), phi_z(z_t)], h_{t-1})
    Inference: q(z_t | x_t, h_{t-1}) (`VRNNCell`).
    Loss per image: -log p(x_t | .) + beta_z * KL(q(z_t) || p(z_t)), averaged over t.
    Arguments: those of `VRNNBase`.
    """

    def __init__(self, image_shape, **kwargs):
        super().__init__(image_shape, **kwargs)
        self.build()

    def compute_terms(self, x, training=False):
        eps = self.normal_noise(tf.concat([tf.shape(x)[:2], [self.z_dim]], 0))
        # Time-major [T, B, .] throughout: every term is a mean over all (b, t), so the
        # order of the rows does not matter, and the recurrence needs no transposes. The
        # likelihood scores the float32 data; the networks read it in the compute dtype (the
        # same tensor in float32: one transpose).
        data = _swap(self.flatten_frames(x, tf.float32))
        x_tm = tf.cast(data, self.compute_dtype)
        style = self.infer_style(self.phi_x(x_tm), _swap(eps), time_major=True)
        prior = self.prior(self.prior_net(style["h_prev"]))  # p(z_t | h_{t-1}): loc, scale
        kl_z = tf.reduce_mean(kl_diag_gaussians(style["loc"], style["scale"], *prior))
        params = self.decoder_params(style["phi_z"], style["h_prev"], time_major=True)
        return {"nll": self.nll_per_image(params, data), "kl_z": kl_z}

    def call(self, x, training=False):
        """The reconstruction (the decoder's mean at the posterior means): [B, T, H, W, C]."""
        return self.reconstruct(self.check_inputs(x))

    def encode(self, x):
        """Posterior of z_{1:T}: loc, scale and a sample, each [B, T, z_dim]."""
        x_flat = self.flatten_frames(x)
        shape = tf.concat([tf.shape(x_flat)[:2], [self.z_dim]], 0)
        style = self.infer_style(self.phi_x(x_flat), self.normal_noise(shape))
        return {"z_loc": style["loc"], "z_scale": style["scale"], "z_sample": style["z"]}

    def reconstruct(self, x):
        x_flat = self.flatten_frames(x)
        style = self.infer_style(self.phi_x(x_flat), tf.zeros(
            tf.concat([tf.shape(x_flat)[:2], [self.z_dim]], 0), self.compute_dtype))
        params = self.decoder_params(style["phi_z"], style["h_prev"])
        return self.unflatten_frames(self.likelihood.mean(params))

    def generate(self, n):
        """n sequences from the prior: [n, T, H, W, C]."""
        return self.run_generative(n)

    # ---- what the metrics and the benchmark read (see `dvrnn_tf.models.registry`) ---------

    iwae_proposal = "prod_t q(z_t|x_t,h_{t-1}) per sequence"

    def posterior_terms(self, x, eps_z, eps_f=None):
        """One sample of the proposal per row of x [N, T, H, W, C] (eps_z [N, T, z_dim]; zeros:
        the posterior-mean path), with every log density and KL the metrics need
        (`dvrnn_tf.metrics.likelihood.forward_terms` documents the keys)."""
        x_flat = tf.cast(self.flatten_frames(x), tf.float32)
        feats = self.phi_x(tf.cast(x_flat, self.compute_dtype))
        style = self.infer_style(feats, tf.cast(eps_z, self.compute_dtype))
        params = self.decoder_params(style["phi_z"], style["h_prev"])
        return {**no_content_terms(tf.shape(x_flat)[0]),
                **self.style_terms(style, params, x_flat)}

    def step_costs(self, batch_size):
        """Every matmul of one training step on `batch_size` sequences (`layers.costs`)."""
        return self.style_costs(int(batch_size))


def _build(name, values, data, *, seed, clip_norm):
    return VRNN(data.image_shape, seq_len=data.seq_len, hidden_dim=values.hidden_dim,
                rnn_dim=values.rnn_dim, z_dim=values.z_dim, beta_z=ms.kl_weight(values, "z"),
                **ms.likelihood_args(values), **ms.network_args(values), clip_norm=clip_norm,
                seed=seed)


FAMILY = register(ModelFamily(
    names=("vrnn",), model_class=VRNN,
    settings=(*ms.LIKELIHOOD_SETTINGS, *ms.NETWORK_SETTINGS, ms.HIDDEN_DIM, ms.RNN_DIM,
              ms.Z_DIM, *ms.KL_Z_SETTINGS),
    build=_build, check=ms.check_network, metrics=("likelihood", "judge", "probes"),
    summary="the Variational RNN: per-step codes z_t with a learned prior p(z_t | h_{t-1})"))
