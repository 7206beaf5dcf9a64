"""Feature extractors: the papers' "MLP = Dense layers with ReLU"."""
from collections.abc import Sequence

import keras
import tensorflow as tf

from dvrnn_tf.layers import bias_add


def on_rows(fn, x):
    """`fn` (Dense layers, or anything acting on the last axis) applied to x [..., d] as one
    2-D [rows, d] batch, its outputs reshaped back to x's leading axes.

    Keras's Dense on a [B, T, d] input multiplies through a reshape (tensordot) and adds the
    bias and activation as separate passes; on 2-D input TensorFlow fuses matmul, bias and
    ReLU into one kernel (and its gradient reads one tensor less).
    """
    x = tf.convert_to_tensor(x)
    if x.shape.rank is None or x.shape.rank <= 2:
        return fn(x)
    lead = tf.shape(x)[:-1]
    out = fn(tf.reshape(x, [-1, x.shape[-1]]))
    return tf.nest.map_structure(
        lambda t: tf.reshape(t, tf.concat([lead, tf.shape(t)[-1:]], 0)), out)


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class MLP(keras.layers.Layer):
    """Dense layers, each followed by `activation`: [..., d_in] -> [..., units[-1]].

    Dense acts on the last axis, so one network serves a single time step [B, d] inside a
    recurrent cell and all steps at once [B, T, d] outside it (a `keras.Sequential` built
    for one rank would refuse the other).
    """

    def __init__(self, units: Sequence[int], activation: str = "relu", **kwargs):
        super().__init__(**kwargs)
        units = [int(u) for u in units]
        if not units or min(units) <= 0:
            raise ValueError(f"`units` of {self.name!r} must be positive integers, got {units}")
        self.units, self.activation = units, activation
        self.dense = [bias_add.Dense(u, activation=activation, name=f"dense{i}")
                      for i, u in enumerate(units)]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.dense:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)

    def call(self, inputs):
        return on_rows(self._call_rows, inputs)

    def _call_rows(self, inputs):
        for layer in self.dense:
            inputs = layer(inputs)
        return inputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units[-1],)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation}


def mlp(units: Sequence[int], name: str, activation: str = "relu") -> MLP:
    return MLP(units, activation=activation, name=name)
