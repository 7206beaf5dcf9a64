"""A learned dynamics prior p(z_t | z_<t) over per-frame style codes (DSVAE, Li & Mandt 2018).

For video the style code is dynamics: the prior must be able to carry motion. A GRU reads
the earlier codes (z_0 = 0) and a Gaussian head gives each step's prior:

    h_t = GRU(z_{t-1}, h_{t-1}),   p(z_t | z_<t) = N(loc(h_t), scale(h_t)).

In training the prior is evaluated on the posterior's sample path (`params`, all T steps in
one fused recurrence); generation draws the codes one step at a time (`sample`). The two
agree: feeding `sample`'s codes to `params` gives back the locs and scales they were drawn
with (tests/test_style_prior.py).
"""
import keras
import tensorflow as tf

from dvrnn_tf.cells.vrnn_cell import gru_states
from dvrnn_tf.layers import costs
from dvrnn_tf.layers.distributions import GaussianHead


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class RecurrentStylePrior(keras.layers.Layer):
    """p(z_t | z_<t) for codes z [B, T, z_dim]: a GRU of `units` over z_{t-1}, a Gaussian head."""

    def __init__(self, z_dim: int, units: int, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("z_dim", z_dim), ("units", units)):
            if int(value) <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {value}")
        self.z_dim, self.units = int(z_dim), int(units)
        self.rnn = keras.layers.GRU(self.units, return_sequences=True, name="rnn")
        self.head = GaussianHead(self.z_dim, name="head")

    def build(self, input_shape=None):
        self.rnn.build((None, None, self.z_dim))
        self.head.build((None, None, self.units))

    def params(self, z):
        """(loc, scale), each [B, T, z_dim]: p(z_t | z_<t) along the codes z [B, T, z_dim]."""
        z = tf.cast(z, self.compute_dtype)
        previous = tf.pad(z[:, :-1], [[0, 0], [1, 0], [0, 0]])  # z_0 = 0
        return self.head(gru_states(self.rnn, previous))

    def sample(self, eps):
        """Codes drawn step by step, z_t = loc_t + scale_t * eps_t: [n, T, z_dim] from
        standard-normal noise eps [n, T, z_dim] (T static)."""
        eps = tf.cast(eps, self.compute_dtype)
        n = tf.shape(eps)[0]
        state = tf.zeros([n, self.units], self.compute_dtype)
        z = tf.zeros([n, self.z_dim], self.compute_dtype)
        codes = []
        for t in range(eps.shape[1]):
            state, _ = self.rnn.cell(z, [state])
            loc, scale = self.head(state)
            z = loc + scale * eps[:, t]
            codes.append(z)
        return tf.stack(codes, axis=1)

    def step_costs(self, batch_size: int, steps: int) -> list:
        """Matmuls of one training step's evaluation of the prior (`params`)."""
        b, u, z = int(batch_size), self.units, self.z_dim
        return (costs.with_backward("style prior: z_{t-1} @ gru input", b * steps, z, 3 * u)
                + costs.recurrent("style prior: h @ gru recurrent", b, u, 3 * u, steps)
                + costs.with_backward("style prior loc|scale", b * steps, u, 2 * z))

    def get_config(self):
        return {**super().get_config(), "z_dim": self.z_dim, "units": self.units}
