"""A bias add whose low-precision gradient is summed without BiasAddGrad's stall, and Keras's
Dense, Conv2D and Conv2DTranspose with it.

Under a mixed policy a layer's output is bfloat16 (or float16), and TensorFlow's BiasAddGrad
(Keras adds biases with tf.nn.bias_add) sums the output's gradient over every row, image and
pixel in that dtype on the CPU: a bfloat16 sum of identical terms stops growing at 512 of
them (1,024 rows of 1.5 summed to 512, not 1,536). Measured on the Sprites decoder (64
sequences of 8 frames of 64x64x3, mixed_bfloat16), the last transposed convolution's bias
gradient came out 640 times too small, the earlier ones 5-40 times, the Gaussian heads' ~10%;
the output bias could not learn the background and both codes collapsed within ~100 steps
where float32 learned (the kind of bug PyTorch fixed for its CPU conv bias, pytorch/pytorch
#68048; TensorFlow's BiasAddGrad also disagrees between CPU and GPU, tensorflow/tensorflow
#86378). `bias_add` sums with TensorFlow's Sum, within one bfloat16 step of the float32 sum
(a float16 gradient is cast first: a float16 sum of a step's pixels overflows, 2e5 against a
maximum of 65504), and returns a float32 gradient (the bias is a cast of a float32 variable,
whose gradient casts it back). In float32 it is tf.nn.bias_add, and the layers are Keras's
own, op for op, but for a narrow bias (below).

A bias over few channels (fewer than `NARROW_CHANNELS`: the decoder's RGB or grey output) is
added, in every precision, to rows of W*C values with the bias tiled W times, and its gradient
summed over those rows first: TensorFlow's BiasAdd and its column sums over [N*H*W, 3] ran at a
third of the speed of the same work on [N*H, W*3] (the Sprites decoder's output, 512 frames of
64x64x3, forward add and bias gradient: 15 and 6 ms against 6 and 3 ms in bfloat16, 19 and 9
against 8 and 3 in float32), and at 8 channels and more the plain column sum was the faster.

The layers' weights, names and configs are the Keras layers': a model saved with those loads
here.
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


@tf.custom_gradient
def _bias_add_wide_grad(x, bias):
    # The gradient is float32 whatever bias's dtype: bias is a cast (of a float32 variable),
    # and Cast's gradient casts it to the variable's dtype.
    def grad(dy):
        rows = tf.reshape(dy, [-1, tf.shape(dy)[-1]])
        if dy.dtype == tf.bfloat16:
            # TensorFlow's bfloat16 Sum (unlike its BiasAddGrad) stays within one bfloat16
            # step of the float32 sum at any length (measured: 2**10 to 2**24 rows), in one
            # pass over dy: half the time of a cast and a float32 sum, which were ~20% of the
            # Sprites step's op time in a profile.
            return dy, tf.cast(tf.reduce_sum(rows, 0), tf.float32)
        return dy, tf.reduce_sum(tf.cast(rows, tf.float32), 0)  # float16 would overflow

    return tf.nn.bias_add(x, bias), grad


# Fewer channels than this make a bias "narrow" (module doc).
NARROW_CHANNELS = 8


def _narrow(channels) -> bool:
    return channels is not None and channels < NARROW_CHANNELS


def _narrow_width(x):
    """W if x is images [N, H, W, C] with a narrow bias's C and a known W, else None."""
    shape = x.shape
    if shape.rank != 4 or shape[-2] is None or not _narrow(shape[-1]):
        return None
    return shape[-2]


def _bias_add_narrow(x, bias, width):
    """x [N, H, W, C] + bias [C] as rows [N*H, W*C] + the bias tiled W times; d/dbias summed
    over the rows (in float32 for float16, whose sum would overflow), then over W in float32."""
    channels = x.shape[-1]

    @tf.custom_gradient
    def add(x, bias):
        def grad(dy):
            rows = tf.reshape(dy, [-1, width * channels])
            if dy.dtype == tf.float16:
                rows = tf.cast(rows, tf.float32)
            per_column = tf.cast(tf.reduce_sum(rows, 0), tf.float32)
            return dy, tf.reduce_sum(tf.reshape(per_column, [width, channels]), 0)

        rows = tf.reshape(x, [-1, width * channels]) + tf.tile(bias, [width])
        out = tf.reshape(rows, tf.shape(x))
        out.set_shape(x.shape)
        return out, grad

    return add(x, tf.cast(bias, x.dtype))


def bias_add(x, bias):
    """x [..., C] + bias [C] in x's dtype; under a low-precision x, d/dbias is summed over
    [...] to within one bfloat16 step of the float32 sum, and returned in float32; a narrow
    bias (fewer than NARROW_CHANNELS channels of images [N, H, W, C]) in every precision as
    rows of W*C values (module doc)."""
    width = _narrow_width(x)
    if width is not None:
        return _bias_add_narrow(x, bias, width)
    if x.dtype == tf.float32:
        return tf.nn.bias_add(x, bias)
    return _bias_add_wide_grad(x, tf.cast(bias, x.dtype))


def _activated(layer, outputs):
    outputs = bias_add(outputs, layer.bias)
    return layer.activation(outputs) if layer.activation is not None else outputs


def _keras_call(layer) -> bool:
    """Whether Keras's own call is the right one: no bias, float32 but for a convolution's
    narrow bias, or a path (channels first, quantized, LoRA) this module does not rewrite.
    Dense has no data_format and Conv2DTranspose no LoRA."""
    float32_wide = layer.compute_dtype == "float32" and not _narrow(getattr(layer, "filters", None))
    return (not layer.use_bias or float32_wide or layer.quantization_mode
            or getattr(layer, "data_format", "channels_last") != "channels_last"
            or getattr(layer, "lora_enabled", False))


class Dense(keras.layers.Dense):
    """keras.layers.Dense, its low-precision bias gradient summed right (module doc)."""

    def call(self, inputs, training=None):
        if _keras_call(self):
            return super().call(inputs, training=training)
        return _activated(self, ops.matmul(inputs, self.kernel))


class Conv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D, its low-precision bias gradient summed right (module doc)."""

    def call(self, inputs):
        if _keras_call(self):
            return super().call(inputs)
        return _activated(self, self.convolution_op(inputs, self.kernel))


class Conv2DTranspose(keras.layers.Conv2DTranspose):
    """keras.layers.Conv2DTranspose, its low-precision bias gradient summed right (module doc)."""

    def call(self, inputs):
        if _keras_call(self):
            return super().call(inputs)
        outputs = ops.conv_transpose(
            inputs, self.kernel, strides=list(self.strides), padding=self.padding,
            output_padding=self.output_padding, dilation_rate=self.dilation_rate,
            data_format=self.data_format)
        return _activated(self, outputs)
