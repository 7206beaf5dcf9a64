"""The VRNN's layers and recurrences (Chung et al. 2015; DESIGN 2.1), shared by the VRNN and
the Disentangled VRNN families."""
import keras
import tensorflow as tf
import tensorflow_probability as tfp

from dvrnn_tf.cells import VRNNCell
from dvrnn_tf.cells.vrnn_cell import MAX_UNROLL, dense_rows
from dvrnn_tf.layers import GaussianHead, costs, mlp, on_rows
from dvrnn_tf.models.base import LatentVariableModel, check_positive
from dvrnn_tf.models.networks import FrameNetworks

tfd = tfp.distributions


def _swap(x):
    """[B, T, ...] <-> [T, B, ...]."""
    return tf.transpose(x, [1, 0] + list(range(2, x.shape.rank)))


class VRNNBase(FrameNetworks, LatentVariableModel):
    """The VRNN's layers and recurrences, shared by `VRNN` and the Disentangled VRNN.

    Concrete (leaf) models call `self.build()` at the end of their `__init__`: every shape
    is known from the constructor, so weights exist from the start.

    Args (beyond `LatentVariableModel`'s):
      hidden_dim: width of every feature MLP (phi_x, phi_z, prior, posterior, decoder).
      rnn_dim: GRU state size.
      z_dim: style code size per step.
      beta_z: weight of KL_z: a float, a `KLWeight`, or its serialized form.
      network, conv_channels, conv_layers, decoder_refine_layers: the frame encoder phi_x
        and the decoder's output layer (`dvrnn_tf.models.networks`): "mlp" or "conv".
    """

    def __init__(self, image_shape, seq_len=8, hidden_dim=100, rnn_dim=100, z_dim=3,
                 beta_z=1.0, likelihood="bernoulli", clip_norm=10.0, seed=None,
                 network="mlp", conv_channels=32, conv_layers=4, decoder_refine_layers=0,
                 _extra_kl_weights=None, _cond_dim=0, **kwargs):
        check_positive(hidden_dim=hidden_dim, rnn_dim=rnn_dim, z_dim=z_dim)
        super().__init__(image_shape, seq_len=seq_len, likelihood=likelihood,
                         clip_norm=clip_norm, seed=seed,
                         kl_weights={"kl_z": beta_z, **(_extra_kl_weights or {})}, **kwargs)
        self.hidden_dim, self.rnn_dim, self.z_dim = int(hidden_dim), int(rnn_dim), int(z_dim)
        self._init_networks(network, conv_channels, conv_layers, decoder_refine_layers)
        h = self.hidden_dim
        self.phi_x = self.frame_encoder_layer(h)
        self.cell = VRNNCell(rnn_dim=self.rnn_dim, z_dim=self.z_dim, feature_dim=h,
                             hidden_dim=h, cond_dim=_cond_dim, name="vrnn_cell")
        self.rnn = keras.layers.RNN(self.cell, return_sequences=True, name="style_rnn")
        self.prior_net = mlp([h], name="prior_net")
        self.prior = GaussianHead(self.z_dim, name="prior")
        self.decoder_net = mlp([h, h], name="decoder_net")
        self.decoder_out = self.frame_decoder_layer()

    # ---- building blocks, shared with the Disentangled VRNN ----------------------------

    def decoder_inputs_width(self):
        return self.hidden_dim + self.rnn_dim

    def build(self, input_shape=None):
        h = self.hidden_dim
        self.phi_x.build((None, None, self.x_dim))
        self.rnn.build((None, None, self.cell.input_dim))
        self.prior_net.build((None, None, self.rnn_dim))
        self.prior.build((None, None, h))
        self.decoder_net.build((None, None, self.decoder_inputs_width()))
        self.decoder_out.build((None, None, h))
        self.built = True

    def infer_style(self, feats, eps, cond=None, time_major=False):
        """Run the inference recurrence.

        feats: phi_x(x) [B, T, F]; eps: [B, T, z_dim] noise (zeros give posterior means);
        cond: [B, T, cond_dim], [B, cond_dim] (the same at every step), None, or a function
        of h_{t-1} (`VRNNCell.run_sequence`). Returns the dict of `VRNNCell.split_output`,
        each [B, T, .]. time_major: [T, B, .] in and out.
        """
        if self.cell.can_run_sequence(feats.shape[0 if time_major else 1]):
            # The same function as the RNN layer below, reorganized for speed (VRNNCell).
            return self.cell.run_sequence(feats, eps, cond, time_major=time_major)
        if callable(cond):
            raise ValueError(f"a condition computed from the state needs a static T <= "
                             f"{MAX_UNROLL}, got T={feats.shape[0 if time_major else 1]}")
        if time_major:  # the RNN layer below is batch-major
            per_step = cond is not None and cond.shape.rank == 3
            out = self.infer_style(_swap(feats), _swap(eps), _swap(cond) if per_step else cond)
            return {k: _swap(v) for k, v in out.items()}
        if self.cell.cond_dim and cond.shape.rank == 2:
            cond = tf.repeat(cond[:, None], tf.shape(feats)[1], axis=1)
        inputs = [feats, eps] + ([cond] if self.cell.cond_dim else [])
        return self.cell.split_output(self.rnn(tf.concat(inputs, axis=-1)))

    def decoder_params(self, phi_z, h_prev, phi_f=None, time_major=False):
        """Parameters of p(x_t | .) from [phi_z(z_t), (phi_f(f)), h_{t-1}]; [..., params * D].

        phi_f: None, [..., F] like phi_z, or [B, F] for phi_z [B, T, F] (one content per
        sequence: its share of the first layer is computed for B rows, not B*T; with
        time_major, phi_z and h_prev are [T, B, F]).
        """
        if phi_f is not None and phi_f.shape.rank == phi_z.shape.rank - 1:
            first, rest = self.decoder_net.dense[0], self.decoder_net.dense[1:]
            dt = self.compute_dtype
            w_z, w_f, w_h = tf.split(tf.cast(first.kernel, dt), [
                phi_z.shape[-1], phi_f.shape[-1], h_prev.shape[-1]], axis=0)
            per_step = dense_rows(tf.concat([phi_z, h_prev], -1), tf.concat([w_z, w_h], 0))
            per_sequence = tf.nn.bias_add(tf.matmul(phi_f, w_f), tf.cast(first.bias, dt))
            per_sequence = per_sequence[None] if time_major else per_sequence[:, None, :]
            hidden = first.activation(per_step + per_sequence)

            def rest_and_out(h):
                for layer in rest:
                    h = layer(h)
                return self.decoder_out(h)

            return on_rows(rest_and_out, hidden)
        parts = [phi_z] + ([phi_f] if phi_f is not None else []) + [h_prev]
        return on_rows(self.decoder_out, self.decoder_net(tf.concat(parts, axis=-1)))

    def prior_distribution(self, h_prev):
        """p(z_t | h_{t-1}): batch_shape h_prev.shape[:-1], event_shape [z_dim]."""
        return self.prior.distribution(self.prior_net(h_prev))

    def run_generative(self, n, z=None, phi_f=None, eps=None):
        """The generative recurrence for T = seq_len steps.

        z: [n, T, z_dim] style codes to decode, or None to draw z_t from the prior p(z_t | h_{t-1});
        phi_f: [n, T, F] content features per step, None (VRNN), or a function h_{t-1} [n, r]
          -> [n, F] (the content attention's context, queried by the state).
        The decoded mean of each frame is fed back as x_t. Returns images [n, T, H, W, C].
        """
        if z is None and eps is None:
            eps = self.normal_noise((n, self.seq_len, self.z_dim))
        h = tf.zeros([n, self.rnn_dim], dtype=self.compute_dtype)
        no_cond = tf.zeros([n, 0], dtype=self.compute_dtype)
        frames = []
        for t in range(self.seq_len):  # T is static: a short unrolled loop
            if z is None:
                loc, scale = self.prior(self.prior_net(h))
                z_t = loc + scale * eps[:, t]
            else:
                z_t = z[:, t]
            phi_z = self.cell.phi_z(z_t)
            f_t = phi_f(h) if callable(phi_f) else None if phi_f is None else phi_f[:, t]
            x_t = tf.cast(self.likelihood.mean(self.decoder_params(phi_z, h, f_t)),
                          self.compute_dtype)
            cond = f_t if self.cell.cond_dim else no_cond
            h = self.cell.transition(self.phi_x(x_t), phi_z, cond, h)
            frames.append(x_t)
        return self.unflatten_frames(tf.stack(frames, axis=1))

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim,
                "rnn_dim": self.rnn_dim, "z_dim": self.z_dim, **self.network_config()}

    # ---- what the metrics and the benchmark read (see `dvrnn_tf.models.registry`) ---------

    def style_terms(self, style, params, x_flat):
        """The per-sequence log densities and KLs of the style path and the likelihood.

        style: `infer_style`'s dict ([N, T, .]); params: the decoder's [N, T, P * D];
        x_flat: [N, T, D] float32. Returns log_px, log_pz, log_qz [N, 1], kl_z [N, T],
        kl_z_dims [N, T, z_dim], z_loc, z_sample [N, T, z_dim], all float32.
        """
        prior = self.prior_distribution(style["h_prev"]).distribution  # tfd.Normal [N, T, z]
        p_loc, p_scale = tf.cast(prior.loc, tf.float32), tf.cast(prior.scale, tf.float32)
        loc, scale, z = (tf.cast(style[k], tf.float32) for k in ("loc", "scale", "z"))
        log_px = self.likelihood.distribution(tf.cast(params, tf.float32)).log_prob(x_flat)
        kl_dims = tfd.Normal(loc, scale).kl_divergence(tfd.Normal(p_loc, p_scale))
        per_sequence = lambda v: tf.reduce_sum(v, [-2, -1])[:, None]  # noqa: E731
        return dict(
            log_px=tf.reduce_sum(log_px, -1, keepdims=True),
            log_pz=per_sequence(tfd.Normal(p_loc, p_scale).log_prob(z)),
            log_qz=per_sequence(tfd.Normal(loc, scale).log_prob(z)),
            kl_z=tf.reduce_sum(kl_dims, -1), kl_z_dims=kl_dims, z_loc=loc, z_sample=z)

    def style_costs(self, b, cond_per_step=False):
        """Matmuls of one step's frame features, style recurrence, prior and decoder output
        (the content path and the decoder's content input are the subclass's). cond_per_step:
        the recurrence's condition is computed from the state at each step (a function
        `cond` of `run_sequence`), not once per sequence."""
        t, h, r, z = self.seq_len, self.hidden_dim, self.rnn_dim, self.z_dim
        rows = b * t
        mm = self.phi_x.step_costs(rows, input_grad=False)
        # The style recurrence (VRNNCell.run_sequence).
        mm += costs.with_backward("style: phi_x @ [posterior | gru input]", rows, h, h + 3 * r)
        if self.cell.cond_dim:  # the last step's transition is skipped (per-step cond)
            mm += costs.with_backward("style: phi_f @ gru input", b, h, 3 * r,
                                      count=t - 1 if cond_per_step else 1)
        mm += costs.recurrent("style: h @ [posterior | gru recurrent]", b, r, h + 3 * r, t)
        mm += costs.with_backward("style: posterior_net.dense1", b, h, h, count=t)
        mm += costs.with_backward("style: posterior loc|scale", b, h, 2 * z, count=t)
        mm += costs.with_backward("style: phi_z", b, z, h, count=t)
        # The last step's transition is skipped: h_T feeds nothing.
        mm += costs.with_backward("style: phi_z @ gru input", b, h, 3 * r, count=t - 1)
        mm += costs.with_backward("prior_net.dense0", rows, r, h)
        mm += costs.with_backward("prior loc|scale", rows, h, 2 * z)
        # [phi_z, h_{t-1}] per step (a content input, once per sequence, is the subclass's).
        mm += costs.with_backward("decoder_net.dense0", rows, h + r, h)
        mm += costs.with_backward("decoder_net.dense1", rows, h, h)
        mm += self.decoder_out.step_costs(rows)
        return mm
