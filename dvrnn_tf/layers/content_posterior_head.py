"""The layer that maps features to the parameters of the content posterior q(f | x), for
each kind of `dvrnn_tf.layers.content_priors` (whose checks and bounds it shares)."""
import math

import keras
import tensorflow as tf

from dvrnn_tf.layers import bias_add
from dvrnn_tf.layers.content_priors import (
    DIRICHLET_MAX_CONCENTRATION, DIRICHLET_MIN_CONCENTRATION, SIMPLEX_KINDS,
    STICK_MAX_CONCENTRATION, STICK_MIN_CONCENTRATION, check_dim, check_kind, resolve_options)
from dvrnn_tf.layers.distributions import MIN_SCALE
from dvrnn_tf.layers.mlp import on_rows

HEAD_OPTIONS = {
    "gaussian": {"min_scale": MIN_SCALE},
    "dirichlet": {"min_concentration": DIRICHLET_MIN_CONCENTRATION,
                  "max_concentration": DIRICHLET_MAX_CONCENTRATION},
    "stick_breaking": {"min_concentration": STICK_MIN_CONCENTRATION,
                       "max_concentration": STICK_MAX_CONCENTRATION}}


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class ContentPosteriorHead(keras.layers.Layer):
    """Dense map from features [..., d_in] to the parameters of q(f | x), float32 tensors:

      gaussian: (loc, scale) [..., dim], scale = softplus(.) + min_scale (as GaussianHead);
      dirichlet: (concentration,) [..., dim],
        concentration = min(softplus(.) + min_concentration, max_concentration);
      stick_breaking: (a, b) [..., dim - 1], each as the Dirichlet's concentration.

    The lower bound is an offset (smooth), the upper one a clip (its gradient is zero where a
    parameter sits on it); the defaults and their reasons are HEAD_OPTIONS and the constants
    above. The Dense runs in the compute dtype; the positive maps in float32.
    """

    def __init__(self, kind, dim, *, min_scale=None, min_concentration=None,
                 max_concentration=None, **kwargs):
        super().__init__(**kwargs)
        check_kind(kind)
        self.kind, self.dim = kind, check_dim(kind, dim)
        given = {k: v for k, v in (("min_scale", min_scale), ("min_concentration",
                 min_concentration), ("max_concentration", max_concentration)) if v is not None}
        self.options = resolve_options("content posterior head", kind, given, HEAD_OPTIONS)
        if kind in SIMPLEX_KINDS:
            low, high = self.options["min_concentration"], self.options["max_concentration"]
            limit = STICK_MAX_CONCENTRATION if kind == "stick_breaking" else math.inf
            if not low < high <= limit:
                bound = f" <= {limit} (the KL series' range)" if limit < math.inf else ""
                raise ValueError(f"a {kind!r} head needs `min_concentration` < `max_concentration`"
                                 f"{bound}, got {low} and {high}")
        self.width = self.dim - 1 if kind == "stick_breaking" else self.dim
        self.num_params = 1 if kind == "dirichlet" else 2
        self.dense = bias_add.Dense(self.num_params * self.width, dtype=self.dtype_policy,
                                    name="params")

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, inputs):
        return on_rows(self._call_rows, inputs)

    def _call_rows(self, inputs):
        raw = tf.split(tf.cast(self.dense(inputs), tf.float32), self.num_params, axis=-1)
        if self.kind == "gaussian":
            return raw[0], tf.math.softplus(raw[1]) + self.options["min_scale"]
        low, high = self.options["min_concentration"], self.options["max_concentration"]
        return tuple(tf.minimum(tf.math.softplus(r) + low, high) for r in raw)

    def compute_output_shape(self, input_shape):
        return (tuple(input_shape[:-1]) + (self.width,),) * self.num_params

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "dim": self.dim, **self.options}
