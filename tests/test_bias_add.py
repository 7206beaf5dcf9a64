"""`bias_add` and the frame networks' convolutions under mixed precision: the bias gradient is
the float32 one (summed in float32), the forward pass and the weights are Keras's; a narrow
bias (the decoder's RGB output) added and summed as rows of W*C values in every precision."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from dvrnn_tf.layers import bias_add
from dvrnn_tf.models.families.content_style import ContentStyleVAE

LAYERS = {"conv": (bias_add.Conv2D, keras.layers.Conv2D),
          "deconv": (bias_add.Conv2DTranspose, keras.layers.Conv2DTranspose)}


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
def test_bias_add_sums_the_gradient_of_many_rows_in_float32(dtype):
    """1,024 rows of 1.5: TensorFlow's own bfloat16 BiasAddGrad stops at 512."""
    x = tf.zeros((1024, 4), dtype)
    bias = tf.Variable(tf.ones(4))
    with tf.GradientTape() as tape:
        y = bias_add.bias_add(x, tf.cast(bias, dtype))
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * 1.5)
    np.testing.assert_array_equal(y.numpy().astype("float32"), np.ones((1024, 4)))
    np.testing.assert_array_equal(tape.gradient(loss, bias).numpy(), [1536.0] * 4)


@pytest.mark.parametrize("shape", [(512 * 64 * 64, 3), (512, 64, 64, 3)],
                         ids=["rows", "images"])
def test_a_bfloat16_bias_gradient_at_the_sprites_decoders_size(shape):
    """64 sequences x 8 frames x 64 x 64 rows of gradient, as rows of channels and as the
    decoder's images (the narrow path: summed over rows of W*C first): the sum is right to
    within one bfloat16 step (2**-7), as far from TensorFlow's bfloat16 BiasAddGrad, which
    stops growing at 512 terms, as from a float32 sum."""
    rows = 512 * 64 * 64
    x = tf.zeros(shape, tf.bfloat16)
    bias = tf.Variable(tf.zeros(3))
    upstream = tf.constant([1.5, 1.5 + 2.0 ** -7, 3.0], tf.bfloat16)
    with tf.GradientTape() as tape:
        y = bias_add.bias_add(x, tf.cast(bias, tf.bfloat16))
        loss = tf.reduce_sum(tf.cast(y * upstream, tf.float32))
    expected = rows * np.array([1.5, 1.5 + 2.0 ** -7, 3.0])
    np.testing.assert_allclose(tape.gradient(loss, bias).numpy(), expected, rtol=2.0 ** -7)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_low_precision_dense_bias_gradient_is_the_float32_one(policy):
    x = np.random.default_rng(0).normal(size=(1024, 16)).astype("float32")
    layers = {p: bias_add.Dense(8, activation="relu", dtype=p) for p in ("float32", policy)}
    for layer in layers.values():
        layer.build((None, 16))
    layers[policy].set_weights(layers["float32"].get_weights())
    grads = {}
    for p, layer in layers.items():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(layer(x), tf.float32) * 1.5)
        grads[p] = tape.gradient(loss, layer.bias).numpy()
    np.testing.assert_allclose(grads[policy], grads["float32"], rtol=0.02)


def _layer(kind, ours, policy, filters=3):
    cls = LAYERS[kind][0 if ours else 1]
    layer = cls(filters, 4, strides=2, padding="same", activation="relu", dtype=policy,
                bias_initializer=keras.initializers.RandomNormal(seed=1))
    layer.build((None, 32, 32, 8))
    return layer


def _output_and_grads(layer, x, upstream):
    with tf.GradientTape() as tape:
        y = layer(x)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    return y, tape.gradient(loss, [layer.kernel, layer.bias])


def _inputs(kind, n=64, channels=3):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 32, 32, 8)).astype("float32")
    side = 16 if kind == "conv" else 64
    # A gradient with a large mean: the sum over n*side*side terms is what a short
    # accumulator gets wrong.
    upstream = (1.0 + rng.uniform(size=(n, side, side, channels))).astype("float32")
    return x, upstream


@pytest.mark.parametrize("kind", ["conv", "deconv"])
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_low_precision_bias_gradient_is_the_float32_one(kind, policy):
    x, upstream = _inputs(kind)
    reference = _layer(kind, True, "float32")
    low = _layer(kind, True, policy)
    low.set_weights(reference.get_weights())
    _, (_, db32) = _output_and_grads(reference, x, upstream)
    y, (dk, db) = _output_and_grads(low, x, upstream)
    assert y.dtype == low.compute_dtype and db.dtype == tf.float32
    # Only the inputs' and products' rounding is left: ~1% (a bfloat16 sum was 640x off).
    np.testing.assert_allclose(db.numpy(), db32.numpy(), rtol=0.02)
    assert np.all(np.isfinite(dk.numpy()))


@pytest.mark.parametrize("kind", ["conv", "deconv"])
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("filters", [3, 8], ids=["narrow", "wide"])
def test_forward_pass_and_weights_are_keras_own(kind, policy, filters):
    x, upstream = _inputs(kind, n=4, channels=filters)
    theirs, ours = (_layer(kind, k, policy, filters) for k in (False, True))
    ours.set_weights(theirs.get_weights())
    assert [w.path.split("/")[-1] for w in ours.weights] == ["kernel", "bias"]
    y_ours, g_ours = _output_and_grads(ours, x, upstream)
    y_theirs, g_theirs = _output_and_grads(theirs, x, upstream)
    np.testing.assert_array_equal(y_ours.numpy().astype("float32"),
                                  y_theirs.numpy().astype("float32"))
    if policy == "float32" and filters >= bias_add.NARROW_CHANNELS:
        for a, b in zip(g_ours, g_theirs):  # the very same graph: Keras's call
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    elif policy == "float32":  # the same sums in another order
        for a, b in zip(g_ours, g_theirs):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16, tf.float16])
@pytest.mark.parametrize("channels", [1, 3, 7])
def test_a_narrow_bias_is_added_and_summed_as_tf_nn_bias_add(dtype, channels):
    """Images [N, H, W, C] of C < NARROW_CHANNELS: the same sum as tf.nn.bias_add, and the
    bias gradient the float64 column sum of the upstream gradient (to its dtype's rounding)."""
    rng = np.random.default_rng(channels)
    x = tf.constant(rng.normal(size=(6, 5, 12, channels)), dtype)
    bias = tf.Variable(rng.normal(size=channels).astype("float32"))
    upstream = rng.normal(size=(6, 5, 12, channels))
    with tf.GradientTape() as tape:
        y = bias_add.bias_add(x, tf.cast(bias, dtype))
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream.astype("float32"))
    assert y.shape == x.shape and y.dtype == dtype
    np.testing.assert_array_equal(y.numpy(), tf.nn.bias_add(x, tf.cast(bias, dtype)).numpy())
    grad = tape.gradient(loss, bias)
    assert grad.dtype == tf.float32
    rounding = 2.0 ** -7 if dtype == tf.bfloat16 else 1e-3
    np.testing.assert_allclose(grad.numpy(), upstream.sum(axis=(0, 1, 2)),
                               rtol=rounding, atol=rounding * np.abs(upstream).sum() / channels)


def test_a_bfloat16_conv_model_has_the_float32_model_gradients():
    """The whole content/style model with conv networks (the Sprites decoder's shapes, fewer
    frames): every gradient points where float32's does, the decoder's biases included
    (which collapsed Sprites training under mixed_bfloat16 before)."""
    kwargs = dict(image_shape=(64, 64, 3), seq_len=4, hidden_dim=32, f_dim=8, z_dim=4,
                  network="conv", conv_channels=8, conv_layers=4, style_prior="recurrent",
                  likelihood="gaussian_fixed", seed=0)
    models = {}
    for policy in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        try:
            models[policy] = ContentStyleVAE(**kwargs)
        finally:
            keras.mixed_precision.set_global_policy("float32")
    models["mixed_bfloat16"].set_weights(models["float32"].get_weights())
    rng = np.random.default_rng(0)
    x = (rng.uniform(size=(16, 4, 64, 64, 3)) < 0.2).astype("float32")
    grads = {}
    for policy, model in models.items():
        with tf.GradientTape() as tape:
            loss = model.total_loss(model.compute_terms(x, training=True), 0)
        grads[policy] = tape.gradient(loss, model.trainable_variables)
    paths = [v.path for v in models["float32"].trainable_variables]
    for path, g32, g16 in zip(paths, grads["float32"], grads["mixed_bfloat16"]):
        a, b = g32.numpy().ravel(), g16.numpy().ravel()
        assert np.linalg.norm(b) == pytest.approx(np.linalg.norm(a), rel=0.1), path
        assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.97, path


@pytest.mark.parametrize("kind", ["conv", "deconv"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_a_bfloat16_activation_after_the_bias_has_the_float32_gradients(kind, activation):
    """Both of the encoder's and decoder's activations after the rewritten bias add: kernel,
    bias and input gradients as float32's, the forward pass as Keras's own layer's."""
    x, upstream = _inputs(kind, n=8)
    layers = {}
    for policy in ("float32", "mixed_bfloat16"):
        layer = LAYERS[kind][0](3, 4, strides=2, padding="same", activation=activation,
                                dtype=policy, bias_initializer="random_normal")
        layer.build((None, 32, 32, 8))
        layers[policy] = layer
    layers["mixed_bfloat16"].set_weights(layers["float32"].get_weights())
    grads = {}
    for policy, layer in layers.items():
        inputs = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            y = layer(inputs)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
        grads[policy] = tape.gradient(loss, [layer.kernel, layer.bias, inputs])
        if policy == "mixed_bfloat16":
            keras_own = LAYERS[kind][1].from_config(layer.get_config())
            keras_own.build((None, 32, 32, 8))
            keras_own.set_weights(layer.get_weights())
            np.testing.assert_array_equal(y.numpy().astype("float32"),
                                          keras_own(x).numpy().astype("float32"))
    below = y.numpy() < 0 if activation == "leaky_relu" else y.numpy() == 0
    assert 0.2 < np.mean(below) < 0.8  # both of the activation's slopes carry gradient
    for name, g32, g16 in zip(("kernel", "bias", "input"), grads["float32"],
                              grads["mixed_bfloat16"]):
        a, b = g32.numpy().ravel(), g16.numpy().astype("float32").ravel()
        assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.999, name
        assert np.linalg.norm(b) == pytest.approx(np.linalg.norm(a), rel=0.02), name


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_the_decoders_rgb_output_runs_no_bias_add_op(policy):
    """The narrow path is the one taken: the traced step of a 3-channel transposed
    convolution holds no BiasAdd / BiasAddGrad (slow over 3 channels), an 8-channel one does."""
    x, upstream = _inputs("deconv", n=2)

    def op_types(filters):
        layer = _layer("deconv", True, policy, filters)

        @tf.function
        def step():
            return _output_and_grads(layer, x, upstream[..., :1].repeat(filters, -1))

        return {op.type for op in step.get_concrete_function().graph.get_operations()}

    assert not {"BiasAdd", "BiasAddGrad"} & op_types(3)
    assert "BiasAdd" in op_types(8)
