"""The VRNN's inference recurrence as a Keras RNN cell (Chung et al. 2015; DESIGN 2.1, 2.2).

Only what feeds the recurrence runs inside the loop: the posterior q(z_t | x_t, h_{t-1}),
its reparameterized sample, phi_z(z_t) and the GRU transition. phi_x(x_t), the prior
p(z_t | h_{t-1}) and the decoder do not feed h_t, so the model runs them batched over all
time steps outside the loop, where they are single large matmuls.
"""
import keras
from keras import ops

from dvrnn_tf.layers import GaussianHead, mlp


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class VRNNCell(keras.layers.Layer):
    """One step of the VRNN's inference recurrence.

    Step input: concat[phi_x(x_t) (feature_dim), eps_t (z_dim), cond_t (cond_dim)], where
    eps_t ~ N(0, I) is drawn outside the loop (so the loop is stateless and XLA-friendly)
    and cond_t is extra GRU input: phi_f(f) in the *full* Disentangled VRNN, absent
    (cond_dim = 0) in the VRNN and the *factorized* model.

    State: h_{t-1}, [B, rnn_dim].

    Step output, [B, output_size], the concatenation split by `split_output`:
      h_prev [rnn_dim]   the state the step started from (the prior and decoder need it),
      z      [z_dim]     z_t = loc + scale * eps_t, a sample of q(z_t | x_t, h_{t-1}),
      loc    [z_dim], scale [z_dim]   the posterior's parameters,
      phi_z  [feature_dim]            features of z_t.
    """

    def __init__(self, rnn_dim: int = 100, z_dim: int = 3, feature_dim: int = 100,
                 hidden_dim: int = 100, cond_dim: int = 0, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("rnn_dim", rnn_dim), ("z_dim", z_dim),
                            ("feature_dim", feature_dim), ("hidden_dim", hidden_dim)):
            if int(value) <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {value}")
        if int(cond_dim) < 0:
            raise ValueError(f"`cond_dim` must be >= 0, got {cond_dim}")
        self.rnn_dim, self.z_dim = int(rnn_dim), int(z_dim)
        self.feature_dim, self.hidden_dim = int(feature_dim), int(hidden_dim)
        self.cond_dim = int(cond_dim)
        self.posterior_net = mlp([self.hidden_dim, self.hidden_dim], name="posterior_net")
        self.posterior = GaussianHead(self.z_dim, name="posterior")
        self.phi_z = mlp([self.feature_dim], name="phi_z")
        self.gru = keras.layers.GRUCell(self.rnn_dim, name="gru")
        # The keras.layers.RNN contract: one integer each.
        self.state_size = self.rnn_dim
        self.output_size = self.rnn_dim + 3 * self.z_dim + self.feature_dim

    @property
    def input_dim(self) -> int:
        return self.feature_dim + self.z_dim + self.cond_dim

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.input_dim:
            raise ValueError(
                f"VRNNCell expects step inputs of width feature_dim + z_dim + cond_dim = "
                f"{self.input_dim}, got input shape {tuple(input_shape)}")
        batch = input_shape[0]
        self.posterior_net.build((batch, self.feature_dim + self.rnn_dim))
        self.posterior.build((batch, self.hidden_dim))
        self.phi_z.build((batch, self.z_dim))
        self.gru.build((batch, 2 * self.feature_dim + self.cond_dim))

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, self.rnn_dim), dtype=self.compute_dtype)]

    def call(self, inputs, states, training=False):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        phi_x, eps, cond = ops.split(
            inputs, [self.feature_dim, self.feature_dim + self.z_dim], axis=-1)
        loc, scale = self.posterior(self.posterior_net(ops.concatenate([phi_x, h_prev], -1)))
        z = loc + scale * eps
        phi_z = self.phi_z(z)
        h = self.transition(phi_x, phi_z, cond, h_prev)
        return ops.concatenate([h_prev, z, loc, scale, phi_z], axis=-1), [h]

    def transition(self, phi_x, phi_z, cond, h_prev):
        """h_t = GRU([phi_x(x_t), phi_z(z_t), cond_t], h_{t-1}); also used by generation."""
        gru_inputs = [phi_x, phi_z] + ([cond] if self.cond_dim else [])
        h, _ = self.gru(ops.concatenate(gru_inputs, axis=-1), [h_prev])
        return h

    def split_output(self, outputs):
        """[..., output_size] -> dict(h_prev, z, loc, scale, phi_z)."""
        r, z = self.rnn_dim, self.z_dim
        parts = ops.split(outputs, [r, r + z, r + 2 * z, r + 3 * z], axis=-1)
        return dict(zip(("h_prev", "z", "loc", "scale", "phi_z"), parts))

    def get_config(self):
        return {
            **super().get_config(),
            "rnn_dim": self.rnn_dim, "z_dim": self.z_dim, "feature_dim": self.feature_dim,
            "hidden_dim": self.hidden_dim, "cond_dim": self.cond_dim,
        }
