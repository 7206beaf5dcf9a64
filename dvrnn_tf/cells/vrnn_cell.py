"""The VRNN's inference recurrence as a Keras RNN cell (Chung et al. 2015; DESIGN 2.1, 2.2).

Only what feeds the recurrence runs inside the loop: the posterior q(z_t | x_t, h_{t-1}),
its reparameterized sample, phi_z(z_t) and the GRU transition. phi_x(x_t), the prior
p(z_t | h_{t-1}) and the decoder do not feed h_t, so the model runs them batched over all
time steps outside the loop, where they are single large matmuls.

`VRNNCell.call` is one step, the reference that `keras.layers.RNN` runs. The models run
`VRNNCell.run_sequence` instead: the same function of the same weights, reorganized for speed
(see its docstring; tests/test_perf.py checks the two agree). Likewise `gru_last_state` for a
`keras.layers.GRU`.
"""
import keras
import tensorflow as tf
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

    def can_run_sequence(self, steps) -> bool:
        """Whether `run_sequence` handles T = `steps` (static, at most MAX_UNROLL)."""
        return steps is not None and steps <= MAX_UNROLL and fusable_gru(self.gru)

    def run_sequence(self, phi_x, eps, cond=None, time_major=False):
        """The whole recurrence over T steps: `split_output(keras.layers.RNN(self)(inputs))`.

        phi_x [B, T, feature_dim], eps [B, T, z_dim]; cond None (cond_dim = 0), [B, T, cond_dim]
        or [B, cond_dim] (the same at every step, as the model's phi_f(f)), or a function
        h_{t-1} [B, rnn_dim] -> cond_t [B, cond_dim], called in the loop (a condition that
        depends on the state: the attention of `ContentAttention`). Returns the dict of
        `split_output`, each [B, T, .]. time_major: phi_x, eps, a per-step cond and the
        outputs are [T, B, .] instead (what the models' training step uses: no transposes).

        What `call` computes step by step, reorganized (same weights, same function):
          * the parts of the posterior MLP's first layer and of the GRU's input projection that
            see phi_x (and cond) do not depend on h or z: one matmul for all B*T rows, outside
            the loop (cond per sequence: B rows, broadcast over T);
          * in the loop, h_{t-1} meets the posterior's and the GRU's recurrent weights in one
            matmul [rnn_dim, hidden_dim + 3 rnn_dim]; loc and scale come from one matmul;
          * the loop is unrolled (T is static and short): no while loop, no per-step slicing
            of [B, T, .] tensors (unstack/stack, whose gradients are cheap).
        Requires `can_run_sequence(T)`; otherwise run the cell under `keras.layers.RNN`.
        """
        phi_x = tf.convert_to_tensor(phi_x, self.compute_dtype)
        eps = tf.convert_to_tensor(eps, self.compute_dtype)
        steps = phi_x.shape[0 if time_major else 1]
        if not self.can_run_sequence(steps):
            raise ValueError(f"run_sequence needs a static T <= {MAX_UNROLL} and a GRU with "
                             f"reset_after, biases and no dropout; got T={steps}")
        cond, cond_of_state = self._split_cond(cond)
        if not self.built:
            self.build((None, self.input_dim))
        dt, r, hd = self.compute_dtype, self.rnn_dim, self.hidden_dim
        post0, post1 = self.posterior_net.dense
        w = self._sequence_weights(dt)
        # Time-major [T, B, .] inside, so that per-step slices (unstack) and the stacking of
        # the outputs (and their gradients) copy contiguous blocks.
        if not time_major:
            phi_x, eps = _time_major(phi_x), _time_major(eps)
        # Outside the loop: phi_x @ [posterior | GRU input] for all T*B rows at once.
        proj = dense_rows(phi_x, w["x"], w["b_x"])
        post_proj, gru_proj = tf.split(proj, [hd, 3 * r], axis=-1)
        if cond is not None:
            if cond.shape.rank == 2:  # one per sequence: B rows, broadcast over T
                gru_proj += tf.matmul(cond, w["gru_c"])[None]
            else:
                gru_proj += dense_rows(cond if time_major else _time_major(cond), w["gru_c"])
        post_t, gru_t, eps_t = (tf.unstack(v, num=steps) for v in (post_proj, gru_proj, eps))
        h = tf.zeros([tf.shape(post_t[0])[0], r], dt)
        out = {k: [] for k in ("h_prev", "z", "loc", "scale", "phi_z")}
        for t in range(steps):
            if t == 0:  # h_0 = 0: its products with the weights are 0
                post_pre, inner = post_t[0], w["b_rec"]
            else:
                post_h, inner_h = tf.split(tf.matmul(h, w["h"]), [hd, 3 * r], axis=1)
                post_pre, inner = post_t[t] + post_h, inner_h + w["b_rec"]
            hidden = post1(post0.activation(post_pre))
            loc, raw = tf.split(tf.nn.bias_add(tf.matmul(hidden, w["head"]), w["b_head"]), 2,
                                axis=1)
            scale = tf.nn.softplus(raw) + w["min_scale"]
            z = loc + scale * eps_t[t]
            phi_z = self.phi_z(z)
            for k, v in (("h_prev", h), ("z", z), ("loc", loc), ("scale", scale),
                         ("phi_z", phi_z)):
                out[k].append(v)
            if t + 1 < steps:  # h_T feeds nothing that is returned
                x_proj = gru_t[t] + tf.matmul(phi_z, w["gru_z"])
                if cond_of_state is not None:  # cond_t from h_{t-1}, the state h still is
                    x_proj += tf.matmul(tf.cast(cond_of_state(h), dt), w["gru_c"])
                h = gru_gates(self.gru, x_proj, inner, h)
        out = {k: tf.stack(v) for k, v in out.items()}
        return out if time_major else {k: _time_major(v) for k, v in out.items()}

    def _split_cond(self, cond):
        """run_sequence's cond -> (a tensor or None, a function of h_{t-1} or None)."""
        if cond is None or not self.cond_dim:
            return None, None
        if callable(cond):
            return None, cond
        return tf.convert_to_tensor(cond, self.compute_dtype), None

    def _sequence_weights(self, dt) -> dict:
        """The weights run_sequence multiplies by, split and joined as it uses them: "x"
        [feature_dim, hidden_dim + 3 rnn_dim] and "b_x" (phi_x into the posterior and the GRU), "h"
        [rnn_dim, hidden_dim + 3 rnn_dim] (h_{t-1} into both), "head" [hidden_dim, 2 z_dim]
        (loc and scale), and the GRU's parts for z and cond, in dtype `dt`."""
        f, r, c = self.feature_dim, self.rnn_dim, self.cond_dim
        post0 = self.posterior_net.dense[0]
        w_post_x, w_post_h = tf.split(_read(post0.kernel, dt), [f, r], axis=0)
        w_gru_x, w_gru_z, w_gru_c = tf.split(_read(self.gru.kernel, dt), [f, f, c], axis=0)
        b_in, b_rec = tf.unstack(_read(self.gru.bias, dt))
        loc, scale = self.posterior.loc_layer, self.posterior.scale_layer
        return {
            "x": tf.concat([w_post_x, w_gru_x], axis=1),
            "b_x": tf.concat([_read(post0.bias, dt), b_in], axis=0), "b_rec": b_rec,
            "h": tf.concat([w_post_h, _read(self.gru.recurrent_kernel, dt)], axis=1),
            "gru_z": w_gru_z, "gru_c": w_gru_c,
            "head": tf.concat([_read(loc.kernel, dt), _read(scale.kernel, dt)], axis=1),
            "b_head": tf.concat([_read(loc.bias, dt), _read(scale.bias, dt)], axis=0),
            "min_scale": tf.cast(self.posterior.min_scale, dt)}

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


# Longest sequence `run_sequence` and `gru_last_state` unroll; longer ones (and a T unknown
# when tracing) take keras.layers.RNN's while loop.
MAX_UNROLL = 64


def _read(variable, dtype):
    """A weight as a tensor of the compute dtype (outside a layer's call, Keras does not
    autocast: under mixed precision the float32 weight is cast here)."""
    return tf.cast(variable, dtype)


def _time_major(x):
    """[B, T, ...] <-> [T, B, ...]."""
    return tf.transpose(x, [1, 0] + list(range(2, x.shape.rank)))


def dense_rows(x, kernel, bias=None):
    """x [..., d] @ kernel [d, n] (+ bias) as one 2-D matmul over all leading rows."""
    rows = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), kernel)
    if bias is not None:
        rows = tf.nn.bias_add(rows, bias)
    return tf.reshape(rows, tf.concat([tf.shape(x)[:-1], [kernel.shape[-1]]], 0))


def fusable_gru(cell) -> bool:
    """Whether `cell` (a keras.layers.GRUCell) is the GRU `gru_gates` computes."""
    return (cell.reset_after and cell.use_bias and not cell.dropout
            and not cell.recurrent_dropout)


def gru_gates(cell, x_proj, inner, h):
    """One keras.layers.GRUCell (reset_after=True) step from its two projections.

    x_proj = x @ kernel + input_bias, inner = h @ recurrent_kernel + recurrent_bias, each
    [B, 3 units] in Keras's gate order (update z, reset r, candidate).
    """
    x_z, x_r, x_h = tf.split(x_proj, 3, axis=-1)
    i_z, i_r, i_h = tf.split(inner, 3, axis=-1)
    z = cell.recurrent_activation(x_z + i_z)
    r = cell.recurrent_activation(x_r + i_r)
    candidate = cell.activation(x_h + r * i_h)
    return z * h + (1.0 - z) * candidate


def gru_last_state(gru, inputs, time_major=False):
    """`gru(inputs)` for a keras.layers.GRU returning its last state, from a zero state.

    inputs [B, T, d] ([T, B, d] if time_major). The input projection of all T steps is one
    matmul outside the (unrolled) loop; falls back to calling the layer when T is not static
    or the layer is configured otherwise.
    """
    if gru.return_sequences:
        raise ValueError("gru_last_state needs a GRU with return_sequences=False")
    return _gru_run(gru, inputs, time_major, sequence=False)


def gru_states(gru, inputs, time_major=False):
    """`gru(inputs)` for a keras.layers.GRU with return_sequences=True, from a zero state:
    every state h_1..h_T, [B, T, units] ([T, B, units] if time_major); fused like
    `gru_last_state`."""
    if not gru.return_sequences:
        raise ValueError("gru_states needs a GRU with return_sequences=True")
    return _gru_run(gru, inputs, time_major, sequence=True)


def _gru_run(gru, inputs, time_major, sequence):
    cell = gru.cell
    steps = inputs.shape[0 if time_major else 1]
    if (steps is None or steps > MAX_UNROLL or not fusable_gru(cell) or gru.return_state
            or gru.go_backwards):
        out = gru(_time_major(inputs) if time_major else inputs)
        return _time_major(out) if time_major and sequence else out
    dt = gru.compute_dtype
    inputs = tf.convert_to_tensor(inputs, dt)
    if not time_major:
        inputs = _time_major(inputs)
    b_in, b_rec = tf.unstack(_read(cell.bias, dt))
    x_t = tf.unstack(dense_rows(inputs, _read(cell.kernel, dt), b_in), num=steps)
    kernel = _read(cell.recurrent_kernel, dt)
    h = tf.zeros([tf.shape(inputs)[1], cell.units], dt)
    states = []
    for t in range(steps):
        # h_0 = 0: its product with the recurrent kernel is 0.
        inner = b_rec if t == 0 else tf.nn.bias_add(tf.matmul(h, kernel), b_rec)
        h = gru_gates(cell, x_t[t], inner, h)
        states.append(h)
    if not sequence:
        return h
    out = tf.stack(states)
    return out if time_major else _time_major(out)
