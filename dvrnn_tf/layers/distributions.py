"""Layers that output the parameters of diagonal Gaussians, and the `tfd` objects they define.

Keras layers return tensors (so that Keras can trace, cast and serialize them); the
distribution is built from those tensors by `diag_gaussian` or `GaussianHead.distribution`.
"""
import keras
import tensorflow as tf
import tensorflow_probability as tfp

from dvrnn_tf.layers import bias_add

tfd = tfp.distributions

# DESIGN 2: every standard deviation is softplus(.) + eps.
MIN_SCALE = 1e-4


def diag_gaussian(loc: tf.Tensor, scale: tf.Tensor) -> tfd.Distribution:
    """N(loc, diag(scale^2)) with the last axis as event.

    For loc of shape [B, T, d]: batch_shape [B, T], event_shape [d].
    """
    return tfd.Independent(tfd.Normal(loc=loc, scale=scale), reinterpreted_batch_ndims=1)


def kl_diag_gaussians(q_loc, q_scale, p_loc=None, p_scale=None) -> tf.Tensor:
    """KL(N(q_loc, q_scale^2) || N(p_loc, p_scale^2)) summed over the last axis, in float32.

    p_loc, p_scale None: the standard normal. Parameters of any float dtype (float16 or
    bfloat16 under mixed precision) are cast to float32 first: losses stay float32.
    """
    q_loc, q_scale = tf.cast(q_loc, tf.float32), tf.cast(q_scale, tf.float32)
    if p_loc is None:
        p_loc, p_scale = tf.zeros_like(q_loc), tf.ones_like(q_scale)
    p_loc, p_scale = tf.cast(p_loc, tf.float32), tf.cast(p_scale, tf.float32)
    return diag_gaussian(q_loc, q_scale).kl_divergence(diag_gaussian(p_loc, p_scale))


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class GaussianHead(keras.layers.Layer):
    """Dense map from features to the mean and standard deviation of a diagonal Gaussian.

    Input [..., d_in]; `call` returns (loc, scale), each [..., dim], with
    scale = softplus(.) + min_scale > 0.
    """

    def __init__(self, dim: int, min_scale: float = MIN_SCALE, **kwargs):
        super().__init__(**kwargs)
        if int(dim) <= 0:
            raise ValueError(f"`dim` must be a positive integer, got {dim}")
        if not min_scale > 0:
            raise ValueError(f"`min_scale` must be > 0, got {min_scale}")
        self.dim = int(dim)
        self.min_scale = float(min_scale)
        # Weight holders: `_call_rows` runs both as one matmul and one `bias_add`.
        self.loc_layer = keras.layers.Dense(self.dim, name="loc")
        self.scale_layer = keras.layers.Dense(self.dim, name="scale")

    def build(self, input_shape):
        self.loc_layer.build(input_shape)
        self.scale_layer.build(input_shape)

    def call(self, inputs):
        from dvrnn_tf.layers.mlp import on_rows

        return on_rows(self._call_rows, inputs)

    def _call_rows(self, inputs):
        # = loc_layer(inputs), scale_layer(inputs): both Dense layers in one matmul.
        inputs = tf.convert_to_tensor(inputs, self.compute_dtype)
        kernel = tf.concat([tf.convert_to_tensor(self.loc_layer.kernel),
                            tf.convert_to_tensor(self.scale_layer.kernel)], axis=1)
        bias = tf.concat([tf.convert_to_tensor(self.loc_layer.bias),
                          tf.convert_to_tensor(self.scale_layer.bias)], axis=0)
        loc, raw = tf.split(bias_add.bias_add(tf.matmul(inputs, kernel), bias), 2, axis=-1)
        return loc, keras.ops.softplus(raw) + self.min_scale

    def distribution(self, inputs) -> tfd.Distribution:
        """The Gaussian for `inputs` [..., d_in]: batch_shape [...], event_shape [dim]."""
        return diag_gaussian(*self(inputs))

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape[:-1]) + (self.dim,)
        return shape, shape

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "min_scale": self.min_scale}
