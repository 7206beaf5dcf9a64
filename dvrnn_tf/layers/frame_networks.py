"""Frame encoders and decoders: flat frames [..., H*W*C] to features, and codes to the
likelihood's parameters, by an MLP or a DCGAN-like convolutional network (DESIGN 6).

The models keep frames flat; every layer here takes and returns flat tensors with any number
of leading axes ([B, D], [B, T, D], [T, B, D]). A flat frame is `reshape([H, W, C]) -> [D]`
of the image, and a decoder's output is parameter-major, [params_per_pixel * D]: all D values
of parameter 0 (e.g. the Gaussian's mean), then all D of parameter 1, each in that same
pixel order, so `tf.split(params, params_per_pixel, axis=-1)` lines up with the frame.

Each layer declares the FLOPs of one training step over `rows` frames (`step_costs`), as
`MatMul`/`Conv` records (`dvrnn_tf.layers.costs`) that `dvrnn_tf.perf.roofline` times.
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from dvrnn_tf.layers import bias_add
from dvrnn_tf.layers.costs import conv_with_backward, with_backward
from dvrnn_tf.layers.mlp import MLP, on_rows

NETWORKS = ("mlp", "conv")
KERNEL, STRIDE = 4, 2  # DCGAN: 4x4 kernels, stride 2 halves (doubles) H and W per layer
REFINE_KERNEL = 3  # the decoder's optional stride-1 layers (ConvFrameDecoder.refine_layers)


def _int_at_least(name, value, lower=1) -> int:
    """int(value), or ValueError naming `name` unless it is an integer >= lower (1 or 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lower:
        kind = "positive" if lower == 1 else "non-negative"
        raise ValueError(f"`{name}` must be a {kind} integer, got {value!r}")
    return int(value)


def _image_shape(image_shape) -> tuple:
    try:
        shape = tuple(image_shape)
        ok = len(shape) == 3 and all(_int_at_least("image_shape", s) for s in shape)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"`image_shape` must be (H, W, C) of positive integers, got {image_shape!r}")
    return tuple(int(s) for s in shape)


def _twos(n: int) -> int:
    """The exponent of 2 in n: how many stride-2 halvings n survives."""
    return (n & -n).bit_length() - 1


def check_conv_shape(image_shape, conv_layers) -> None:
    """ValueError unless `conv_layers` stride-2 layers divide H and W exactly (each layer
    halves them; the decoder must double them back to the frame's size)."""
    h, w, _ = _image_shape(image_shape)
    layers = _int_at_least("conv_layers", conv_layers)
    factor = 2 ** layers
    if h % factor == 0 and w % factor == 0:
        return
    limit = min(h, w, key=_twos)  # the side with the fewest factors of 2
    k = _twos(limit)
    why = (f"{limit} is odd: no --conv_layers works" if k == 0
           else f"{limit} = {2 ** k} * {limit >> k}: use --conv_layers={k}")
    raise ValueError(f"--network=conv with --conv_layers={layers} needs H and W divisible by "
                     f"{factor}, got {h}x{w} ({why})")


def _check_frame_dim(layer, input_shape, dim):
    last = tuple(input_shape)[-1]
    if last is not None and int(last) != dim:
        raise ValueError(f"{type(layer).__name__} {layer.name!r} takes frames of H*W*C = {dim} "
                         f"values on the last axis, got {last}")


def _restore_lead(y, x):
    """y [N, k] -> [*x.shape[:-1], k] (a no-op when x is already [N, d])."""
    if x.shape.rank == 2:
        return y
    return tf.reshape(y, tf.concat([tf.shape(x)[:-1], tf.shape(y)[-1:]], 0))


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class ConvFrameEncoder(keras.layers.Layer):
    """DCGAN-like encoder: [..., H*W*C] -> [..., output_dim].

    `conv_layers` Conv2D (4x4, stride 2, "same"), widths channels * 2**i, each followed by
    LeakyReLU(0.2); then the [H/2^L, W/2^L, channels * 2^(L-1)] map, flattened, through
    Dense(output_dim, relu). LeakyReLU as in DCGAN's discriminator: every unit keeps a
    gradient for every frame, so no encoder unit dies and stops carrying information into
    q(z | x). No batch norm: a VAE evaluates single sequences, and batch statistics would
    make a frame's code depend on the other frames in its batch.
    """

    def __init__(self, image_shape, channels=32, conv_layers=4, output_dim=256, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = _image_shape(image_shape)
        self.channels = _int_at_least("channels", channels)
        self.conv_layers = _int_at_least("conv_layers", conv_layers)
        self.output_dim = _int_at_least("output_dim", output_dim)
        check_conv_shape(self.image_shape, self.conv_layers)
        # The last conv's LeakyReLU is applied after the flatten: TensorFlow's graph rewriter
        # (grappler's remapper) fails on Conv2D + BiasAdd + LeakyRelu feeding a Reshape when
        # the gradient reads the pre-activation; it logs an error and drops all its fusions
        # for the step's graph (TF 2.21, float32, no XLA).
        self.convs = [bias_add.Conv2D(
            self.channels * 2 ** i, KERNEL, strides=STRIDE, padding="same",
            activation="leaky_relu" if i < self.conv_layers - 1 else None, name=f"conv{i}",
            dtype=self.dtype_policy) for i in range(self.conv_layers)]
        self.dense = bias_add.Dense(self.output_dim, activation="relu", name="dense",
                                    dtype=self.dtype_policy)

    def _map_shape(self):
        """[H/2^L, W/2^L, channels * 2^(L-1)]: the last conv's output per frame."""
        h, w, _ = self.image_shape
        s = 2 ** self.conv_layers
        return h // s, w // s, self.convs[-1].filters

    def build(self, input_shape):
        _check_frame_dim(self, input_shape, math.prod(self.image_shape))
        h, w, c = self.image_shape
        for conv in self.convs:
            conv.build((None, h, w, c))
            h, w, c = h // STRIDE, w // STRIDE, conv.filters
        self.dense.build((None, h * w * c))

    def call(self, inputs):
        # One reshape in (leading axes become the conv batch), one out.
        y = tf.reshape(inputs, (-1,) + self.image_shape)
        for conv in self.convs:
            y = conv(y)
        y = tf.nn.leaky_relu(tf.reshape(y, (-1, math.prod(self._map_shape()))), alpha=0.2)
        y = self.dense(y)
        return _restore_lead(y, inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.output_dim,)

    def step_costs(self, rows: int, input_grad: bool = True) -> list:
        """MatMul/Conv records of one training step over `rows` frames; `input_grad=False`
        when the input is data (no gradient into the images: the first conv's dx is not run)."""
        out, (h, w, c) = [], self.image_shape
        for i, conv in enumerate(self.convs):
            out += conv_with_backward(f"{self.name}.{conv.name}", rows, h, w, c, conv.filters,
                                      KERNEL, STRIDE, input_grad=input_grad or i > 0)
            h, w, c = h // STRIDE, w // STRIDE, conv.filters
        return out + with_backward(f"{self.name}.dense", rows, h * w * c, self.output_dim)

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "channels": self.channels, "conv_layers": self.conv_layers,
                "output_dim": self.output_dim}


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class ConvFrameDecoder(keras.layers.Layer):
    """DCGAN-like decoder: [..., d_in] -> [..., params_per_pixel * H*W*C], parameter-major.

    Dense(d_in -> H/2^L * W/2^L * channels * 2^(L-1)) + ReLU, reshaped to that map, then
    `conv_layers` Conv2DTranspose (4x4, stride 2, "same") with ReLU, widths halving down to
    `channels`; the last one has params_per_pixel * C channels and no activation (the
    likelihood reads logits / raw parameters). ReLU as in DCGAN's generator (and the MLP
    decoders). Output channel p * C + c holds parameter p of image channel c; the flat
    output is [parameter 0's frame, parameter 1's frame, ...], each frame reshape([H, W, C]).

    `refine_layers` k > 0 deepens it without changing its resolutions: each transposed
    convolution is followed by k 3x3 stride-1 convolutions of its width with ReLU; the last
    transposed convolution then keeps `channels` and the very last 3x3 convolution gives the
    parameters (no activation). Layers in order, `deconv<i>` then `refine<i>_<j>`.
    """

    def __init__(self, image_shape, channels=32, conv_layers=4, params_per_pixel=1,
                 refine_layers=0, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = _image_shape(image_shape)
        self.channels = _int_at_least("channels", channels)
        self.conv_layers = _int_at_least("conv_layers", conv_layers)
        self.params_per_pixel = _int_at_least("params_per_pixel", params_per_pixel)
        self.refine_layers = _int_at_least("refine_layers", refine_layers, lower=0)
        check_conv_shape(self.image_shape, self.conv_layers)
        h, w, c = self.image_shape
        s = 2 ** self.conv_layers
        self._map_shape = (h // s, w // s, self.channels * 2 ** (self.conv_layers - 1))
        self.dense = bias_add.Dense(math.prod(self._map_shape), activation="relu",
                                    name="dense", dtype=self.dtype_policy)
        widths = [self.channels * 2 ** (self.conv_layers - 2 - i)
                  for i in range(self.conv_layers - 1)]
        widths.append(self.channels if self.refine_layers else self.params_per_pixel * c)
        self.deconvs = [bias_add.Conv2DTranspose(
            width, KERNEL, strides=STRIDE, padding="same",
            activation="relu" if i < self.conv_layers - 1 or self.refine_layers else None,
            name=f"deconv{i}", dtype=self.dtype_policy) for i, width in enumerate(widths)]
        # A flat list (the .keras file's layout keeps `deconvs` as it was without them).
        last = (self.conv_layers - 1, self.refine_layers - 1)
        self.refines = [bias_add.Conv2D(
            self.params_per_pixel * c if (i, j) == last else width, REFINE_KERNEL,
            padding="same", activation=None if (i, j) == last else "relu",
            name=f"refine{i}_{j}", dtype=self.dtype_policy)
            for i, width in enumerate(widths) for j in range(self.refine_layers)]

    def _stack(self) -> list:
        """Every layer after the dense map, in the order applied: (layer, stride) pairs."""
        k = self.refine_layers
        return [pair for i, deconv in enumerate(self.deconvs)
                for pair in [(deconv, STRIDE)] + [(r, 1) for r in self.refines[i * k:(i + 1) * k]]]

    def build(self, input_shape):
        self.dense.build((None, tuple(input_shape)[-1]))
        h, w, c = self._map_shape
        for layer, stride in self._stack():
            layer.build((None, h, w, c))
            h, w, c = h * stride, w * stride, layer.filters

    def call(self, inputs):
        y = self.dense(tf.reshape(inputs, (-1, inputs.shape[-1])))
        y = tf.reshape(y, (-1,) + self._map_shape)
        for layer, _ in self._stack():
            y = layer(y)
        p, (h, w, c) = self.params_per_pixel, self.image_shape
        if p > 1:  # [N, H, W, P*C] -> [N, P, H, W, C]: parameter-major
            y = tf.transpose(tf.reshape(y, (-1, h, w, p, c)), (0, 3, 1, 2, 4))
        return _restore_lead(tf.reshape(y, (-1, p * h * w * c)), inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.params_per_pixel * math.prod(self.image_shape),)

    def step_costs(self, rows: int, input_grad: bool = True) -> list:
        """MatMul/Conv records of one training step over `rows` codes (built layers only);
        `input_grad=False` if nothing upstream needs the gradient of the codes."""
        if not self.dense.built:
            raise ValueError(f"{self.name!r}: build() the layer before asking its step_costs")
        (h, w, c), d_in = self._map_shape, self.dense.kernel.shape[0]
        out = with_backward(f"{self.name}.dense", rows, d_in, h * w * c, input_grad=input_grad)
        for layer, stride in self._stack():
            transpose = stride == STRIDE
            out += conv_with_backward(f"{self.name}.{layer.name}", rows, h, w, c, layer.filters,
                                      KERNEL if transpose else REFINE_KERNEL, stride,
                                      transpose=transpose)
            h, w, c = h * stride, w * stride, layer.filters
        return out

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "channels": self.channels, "conv_layers": self.conv_layers,
                "params_per_pixel": self.params_per_pixel, "refine_layers": self.refine_layers}


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class MLPFrameEncoder(MLP):
    """`mlp(units)` on flat frames [..., H*W*C] -> [..., units[-1]], with the frame's shape
    known (checked at build) like ConvFrameEncoder's. Weights as MLP's: `<name>/dense<i>/`."""

    def __init__(self, image_shape, units, activation="relu", **kwargs):
        shape = _image_shape(image_shape)
        super().__init__(units, activation=activation, **kwargs)
        self.image_shape = shape

    def build(self, input_shape):
        _check_frame_dim(self, input_shape, math.prod(self.image_shape))
        super().build(input_shape)

    def step_costs(self, rows: int, input_grad: bool = True) -> list:
        """MatMul records of one training step over `rows` frames (see ConvFrameEncoder)."""
        out, d = [], math.prod(self.image_shape)
        for i, layer in enumerate(self.dense):
            out += with_backward(f"{self.name}.{layer.name}", rows, d, layer.units,
                                 input_grad=input_grad or i > 0)
            d = layer.units
        return out

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape)}


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class DenseFrameDecoder(bias_add.Dense):
    """Dense(params_per_pixel * H*W*C): [..., d_in] -> [..., params_per_pixel * D], with
    no activation, as the models' "decoder_out" (weights `<name>/kernel`, `<name>/bias`).
    Applied on rows (one 2-D matmul whatever the leading axes)."""

    def __init__(self, image_shape, params_per_pixel=1, **kwargs):
        shape = _image_shape(image_shape)
        per_pixel = _int_at_least("params_per_pixel", params_per_pixel)
        super().__init__(per_pixel * math.prod(shape), **kwargs)
        self.image_shape, self.params_per_pixel = shape, per_pixel

    def call(self, inputs):
        return on_rows(super().call, inputs)

    def step_costs(self, rows: int, input_grad: bool = True) -> list:
        """MatMul records of one training step over `rows` codes (built layers only)."""
        if not self.built:
            raise ValueError(f"{self.name!r}: build() the layer before asking its step_costs")
        return with_backward(self.name, rows, self.kernel.shape[0], self.units,
                             input_grad=input_grad)

    def get_config(self):
        # Dense's own config (units, initializers, ...) is fixed by the constructor.
        return {**keras.layers.Layer.get_config(self), "image_shape": list(self.image_shape),
                "params_per_pixel": self.params_per_pixel}


def frame_encoder(network, image_shape, hidden_dim, conv_channels=32, conv_layers=4,
                  name="phi_x") -> keras.layers.Layer:
    """phi_x: flat frames [..., D] -> features [..., hidden_dim]; "mlp" is today's
    mlp([hidden_dim, hidden_dim]), "conv" a ConvFrameEncoder."""
    hidden_dim = _int_at_least("hidden_dim", hidden_dim)
    if network == "mlp":
        return MLPFrameEncoder(image_shape, [hidden_dim, hidden_dim], name=name)
    if network == "conv":
        return ConvFrameEncoder(image_shape, _int_at_least("conv_channels", conv_channels),
                                conv_layers, output_dim=hidden_dim, name=name)
    raise ValueError(f"`network` must be one of {', '.join(NETWORKS)}, got {network!r}")


def frame_decoder(network, image_shape, params_per_pixel, conv_channels=32, conv_layers=4,
                  refine_layers=0, name="decoder_out") -> keras.layers.Layer:
    """Codes [..., d_in] -> the likelihood's parameters [..., params_per_pixel * D]; "mlp" is
    today's Dense(params_per_pixel * D), "conv" a ConvFrameDecoder (`refine_layers` its
    stride-1 layers; "mlp" has none and ignores it)."""
    if network == "mlp":
        return DenseFrameDecoder(image_shape, params_per_pixel, name=name)
    if network == "conv":
        return ConvFrameDecoder(image_shape, _int_at_least("conv_channels", conv_channels),
                                conv_layers, params_per_pixel, refine_layers, name=name)
    raise ValueError(f"`network` must be one of {', '.join(NETWORKS)}, got {network!r}")
