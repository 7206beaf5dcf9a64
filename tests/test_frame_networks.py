"""Frame encoders/decoders (`dvrnn_tf.layers.frame_networks`), their FLOP records
(`dvrnn_tf.layers.costs`) against the traced graph, and the roofline's convolutions."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from dvrnn_tf.layers import mlp
from dvrnn_tf.layers.costs import Conv, MatMul, conv_with_backward
from dvrnn_tf.layers.frame_networks import (
    NETWORKS, ConvFrameDecoder, ConvFrameEncoder, DenseFrameDecoder, MLPFrameEncoder,
    check_conv_shape, frame_decoder, frame_encoder)
from dvrnn_tf.objectives import get_likelihood
from dvrnn_tf.perf import flops
from dvrnn_tf.perf.graph_flops import graph_flops
from dvrnn_tf.perf.roofline import Roofline, roofline

# (image_shape, conv_channels, conv_layers): an RGB and a grey case.
CASES = [((16, 16, 3), 4, 2), ((32, 32, 1), 2, 3)]
HIDDEN = 6


def _random(shape, seed):
    return tf.random.stateless_uniform(shape, seed=[seed, 3])


def _pair(network, image_shape, channels, layers, params_per_pixel=2, refine_layers=0):
    """A built (encoder, decoder) pair, the decoder reading the encoder's features."""
    enc = frame_encoder(network, image_shape, HIDDEN, channels, layers)
    dec = frame_decoder(network, image_shape, params_per_pixel, channels, layers, refine_layers)
    enc.build((None, math.prod(image_shape)))
    dec.build((None, HIDDEN))
    return enc, dec


def _close(a, b, atol=1e-5, rtol=1e-5):
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                               atol=atol, rtol=rtol)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("image_shape,channels,layers", CASES)
def test_leading_axes_are_rows(network, image_shape, channels, layers):
    enc, dec = _pair(network, image_shape, channels, layers)
    d = math.prod(image_shape)
    x = _random([2, 3, d], 0)
    feats, rows = enc(x), enc(tf.reshape(x, [6, d]))
    assert feats.shape == (2, 3, HIDDEN) and rows.shape == (6, HIDDEN)
    _close(tf.reshape(feats, [6, HIDDEN]), rows)
    params, params_rows = dec(feats), dec(rows)
    assert params.shape == (2, 3, 2 * d) and params_rows.shape == (6, 2 * d)
    _close(tf.reshape(params, [6, 2 * d]), params_rows)
    assert float(tf.math.reduce_std(params_rows)) > 0


def _conv_reference(enc, frames):
    """The encoder written out with tf.nn on frames [N, H, W, C]."""
    y = frames
    for conv in enc.convs:
        y = tf.nn.leaky_relu(tf.nn.conv2d(y, conv.kernel, 2, "SAME") + conv.bias, 0.2)
    dense = enc.dense
    return tf.nn.relu(tf.reshape(y, [y.shape[0], -1]) @ dense.kernel + dense.bias)


@pytest.mark.parametrize("image_shape,channels,layers", CASES)
def test_conv_encoder_reads_flat_frames_in_image_order(image_shape, channels, layers):
    enc = ConvFrameEncoder(image_shape, channels, layers, output_dim=HIDDEN)
    enc.build((None, math.prod(image_shape)))
    frames = _random([4, *image_shape], 1)
    _close(enc(tf.reshape(frames, [4, -1])), _conv_reference(enc, frames))
    assert [c.filters for c in enc.convs] == [channels * 2 ** i for i in range(layers)]


def test_decoder_layout_is_parameter_major_in_image_order():
    (h, w, c), channels = (8, 8, 3), 2
    dec = ConvFrameDecoder((h, w, c), channels, conv_layers=2, params_per_pixel=2)
    dec.build((None, 5))
    last = dec.deconvs[-1]
    # Parameter 0 near -100 - 10c, parameter 1 near +100 + 10c; small kernels keep the
    # pixels distinct around those levels.
    last.kernel.assign(0.01 * _random(last.kernel.shape, 2))
    last.bias.assign(np.array([-100 - 10 * k for k in range(c)] + [100 + 10 * k for k in range(c)],
                              np.float32))
    codes = _random([3, 5], 3)
    y = tf.reshape(tf.nn.relu(codes @ dec.dense.kernel + dec.dense.bias), [3, 2, 2, 4])
    for i, deconv in enumerate(dec.deconvs):
        y = tf.nn.conv2d_transpose(y, deconv.kernel, [3, 2 * y.shape[1], 2 * y.shape[2],
                                                      deconv.filters], 2, "SAME") + deconv.bias
        y = tf.nn.relu(y) if i == 0 else y
    params = dec(codes).numpy()
    first, second = params[:, :h * w * c], params[:, h * w * c:]
    for p, half in enumerate((first, second)):
        image = half.reshape(3, h, w, c)
        _close(image, y[..., p * c:(p + 1) * c])
        sign = 1 if p else -1
        _close(image.mean(axis=(0, 1, 2)), [sign * (100 + 10 * k) for k in range(c)], atol=2)
    assert np.unique(first.round(4)).size > 3 * c  # pixels differ, not one constant each
    # The Gaussian's mean (the first half) is the frame [H, W, C] flattened like the data.
    mean = get_likelihood("gaussian").mean(tf.constant(params))
    _close(tf.reshape(mean, [3, h, w, c]), tf.sigmoid(y[..., :c]))


def test_refine_layers_deepen_the_decoder_at_its_resolutions():
    """refine_layers=k: k 3x3 stride-1 ReLU convolutions after each transposed convolution
    (the last of which now keeps `channels`), the very last one giving the parameters."""
    (h, w, c), channels = (8, 8, 3), 4
    dec = ConvFrameDecoder((h, w, c), channels, conv_layers=2, params_per_pixel=2,
                           refine_layers=2)
    dec.build((None, 5))
    assert [d.filters for d in dec.deconvs] == [4, 4]
    assert [(r.name, r.filters, r.kernel.shape[0]) for r in dec.refines] == [
        ("refine0_0", 4, 3), ("refine0_1", 4, 3), ("refine1_0", 4, 3), ("refine1_1", 6, 3)]
    codes = _random([3, 5], 11)
    y = tf.reshape(tf.nn.relu(codes @ dec.dense.kernel + dec.dense.bias), [3, 2, 2, 8])
    for i, deconv in enumerate(dec.deconvs):
        y = tf.nn.relu(tf.nn.conv2d_transpose(
            y, deconv.kernel, [3, 2 * y.shape[1], 2 * y.shape[2], 4], 2, "SAME") + deconv.bias)
        for j, refine in enumerate(dec.refines[2 * i:2 * i + 2]):
            y = tf.nn.conv2d(y, refine.kernel, 1, "SAME") + refine.bias
            y = y if (i, j) == (1, 1) else tf.nn.relu(y)
    # Parameter-major, as without refinement: [mean frame, scale frame].
    expected = tf.reshape(tf.transpose(tf.reshape(y, [3, h, w, 2, c]), [0, 3, 1, 2, 4]), [3, -1])
    _close(dec(codes), expected)
    assert ConvFrameDecoder((h, w, c), channels, 2).get_config()["refine_layers"] == 0
    with pytest.raises(ValueError, match="`refine_layers` must be a non-negative integer, "
                                         "got -1"):
        ConvFrameDecoder((h, w, c), channels, 2, refine_layers=-1)


def test_mlp_variants_equal_todays_layers():
    image_shape, d = (4, 4, 2), 32
    x, codes = _random([2, 3, d], 4), _random([2, 3, HIDDEN], 5)
    enc, old_enc = MLPFrameEncoder(image_shape, [HIDDEN, HIDDEN], name="phi_x"), mlp(
        [HIDDEN, HIDDEN], name="phi_x")
    dec = DenseFrameDecoder(image_shape, 2, name="decoder_out")
    old_dec = keras.layers.Dense(2 * d, name="decoder_out")
    for new, old, shape in ((enc, old_enc, (None, None, d)), (dec, old_dec, (None, None, HIDDEN))):
        new.build(shape)
        old.build(shape)
        assert [v.path for v in new.weights] == [v.path for v in old.weights]
        old.set_weights([_random(v.shape, i).numpy() for i, v in enumerate(old.weights)])
        new.set_weights(old.get_weights())
    _close(enc(x), old_enc(x))
    _close(dec(codes), old_dec(codes))
    assert frame_encoder("mlp", image_shape, HIDDEN).units == [HIDDEN, HIDDEN]
    assert frame_decoder("mlp", image_shape, 2).units == 2 * d


def _all_layers(image_shape=(16, 16, 3), channels=4, layers=2):
    d = math.prod(image_shape)
    return [(ConvFrameEncoder(image_shape, channels, layers, output_dim=HIDDEN, name="enc"), d),
            (ConvFrameDecoder(image_shape, channels, layers, params_per_pixel=2, name="dec"),
             HIDDEN),
            (ConvFrameDecoder(image_shape, channels, layers, params_per_pixel=2,
                              refine_layers=2, name="refined_dec"), HIDDEN),
            (MLPFrameEncoder(image_shape, [HIDDEN, 5], name="mlp_enc"), d),
            (DenseFrameDecoder(image_shape, 2, name="dense_dec"), HIDDEN)]


def test_get_config_round_trip_and_keras_file(tmp_path):
    for layer, d_in in _all_layers():
        inputs = keras.Input((d_in,))
        model = keras.Model(inputs, layer(inputs))
        x = _random([3, d_in], 6)
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
        clone.build((None, d_in))
        clone.set_weights(layer.get_weights())
        _close(clone(x), layer(x))
        path = str(tmp_path / f"{layer.name}.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        assert type(loaded.layers[-1]) is type(layer)
        _close(loaded(x), model(x))


def test_check_conv_shape_messages():
    with pytest.raises(ValueError) as err:
        check_conv_shape((28, 28, 1), 4)
    assert str(err.value) == ("--network=conv with --conv_layers=4 needs H and W divisible by "
                              "16, got 28x28 (28 = 4 * 7: use --conv_layers=2)")
    check_conv_shape((64, 64, 3), 4)
    check_conv_shape((28, 28, 1), 2)
    with pytest.raises(ValueError, match=r"got 28x30 \(30 = 2 \* 15: use --conv_layers=1\)"):
        check_conv_shape((28, 30, 1), 2)
    with pytest.raises(ValueError, match=r"27 is odd: no --conv_layers works"):
        check_conv_shape((27, 28, 1), 1)
    with pytest.raises(ValueError, match="`conv_layers` must be a positive integer, got 0"):
        check_conv_shape((64, 64, 3), 0)
    with pytest.raises(ValueError, match="28x28 .*use --conv_layers=2"):
        frame_decoder("conv", (28, 28, 1), 1, conv_layers=3)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"`network` must be one of mlp, conv, got 'cnn'"):
        frame_encoder("cnn", (8, 8, 1), 4)
    with pytest.raises(ValueError, match=r"`network` must be one of mlp, conv, got 'cnn'"):
        frame_decoder("cnn", (8, 8, 1), 1)
    with pytest.raises(ValueError, match="`conv_channels` must be a positive integer, got 0"):
        frame_encoder("conv", (8, 8, 1), 4, conv_channels=0)
    with pytest.raises(ValueError, match="`conv_channels` must be a positive integer, got 0"):
        frame_decoder("conv", (8, 8, 1), 1, conv_channels=0)
    with pytest.raises(ValueError, match="`hidden_dim` must be a positive integer, got -1"):
        frame_encoder("mlp", (8, 8, 1), -1)
    with pytest.raises(ValueError, match="`params_per_pixel` must be a positive integer"):
        frame_decoder("mlp", (8, 8, 1), 0)
    with pytest.raises(ValueError, match=r"`image_shape` must be \(H, W, C\)"):
        ConvFrameEncoder((8, 8), channels=2, conv_layers=1)
    for layer in (ConvFrameEncoder((8, 8, 1), 2, 1, name="e"), MLPFrameEncoder((8, 8, 1), [3])):
        with pytest.raises(ValueError, match="takes frames of H\\*W\\*C = 64 values .* got 63"):
            layer.build((None, 63))


def test_gradients_reach_every_weight():
    for layer, d_in in _all_layers():
        x = _random([2, 3, d_in], 7)
        with tf.GradientTape() as tape:
            out = layer(x)
            loss = tf.reduce_sum(out * _random(out.shape, 8))
        grads = tape.gradient(loss, layer.trainable_variables)
        assert len(grads) == len(layer.weights) > 0
        for g, v in zip(grads, layer.trainable_variables, strict=True):
            assert g is not None and float(tf.norm(g)) > 0, v.path


@pytest.fixture(params=["mixed_float16", "mixed_bfloat16"])
def policy(request):
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_dtype_policy(request.param)
    yield keras.mixed_precision.global_policy()
    keras.mixed_precision.set_dtype_policy(before)


def test_mixed_precision_and_xla(policy):
    keras.mixed_precision.set_dtype_policy("float32")
    reference = {layer.name: (layer, d) for layer, d in _all_layers()}
    keras.mixed_precision.set_dtype_policy(policy)
    for layer, d_in in _all_layers():
        ref = reference[layer.name][0]
        ref.build((None, d_in))
        layer.build((None, d_in))
        layer.set_weights(ref.get_weights())
        assert {v.dtype for v in layer.weights} == {"float32"}
        x = _random([2, 3, d_in], 9)
        compiled = tf.function(lambda x, layer=layer: layer(x), jit_compile=True)
        for out in (layer(x), compiled(x)):
            assert out.dtype == policy.compute_dtype, (layer.name, out.dtype)
            # Half precision: ~3 significant digits (bfloat16: ~2).
            _close(out, ref(x), atol=0.05, rtol=0.05)
    compiled_f32 = tf.function(lambda x: reference["enc"][0](x), jit_compile=True)
    x = _random([2, 256 * 3], 10)
    _close(compiled_f32(x), reference["enc"][0](x), atol=1e-5)


@pytest.mark.parametrize("network,refine", [("mlp", 0), ("conv", 0), ("conv", 2)])
def test_step_costs_equal_the_traced_graph(network, refine):
    (image_shape, channels, layers), rows = CASES[0], 5
    enc, dec = _pair(network, image_shape, channels, layers, refine_layers=refine)
    weights = enc.trainable_variables + dec.trainable_variables

    @tf.function(autograph=False)
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(dec(enc(x)) ** 2)
        return tape.gradient(loss, weights)

    graph = step.get_concrete_function(
        tf.TensorSpec([rows, math.prod(image_shape)], tf.float32)).graph
    traced = graph_flops(graph)
    records = enc.step_costs(rows, input_grad=False) + dec.step_costs(rows)
    for kind, cls in (("matmul", MatMul), ("conv", Conv)):
        ours = [r for r in records if isinstance(r, cls)]
        assert traced[kind]["forward"] == sum(r.flops for r in ours if r.pass_ == "forward")
        assert traced[kind]["backward"] == sum(r.flops for r in ours if r.pass_ != "forward")
    assert (traced["conv"]["forward"] > 0) == (network == "conv")
    # No gradient into the images: the first layer has no grad_inputs record.
    first = enc.step_costs(rows, input_grad=False)[:3]
    assert [r.pass_ for r in first] == ["forward", "grad_weights", "forward"]


def test_step_graph_rewrites_cleanly(capfd):
    """Grappler's remapper fails on Conv2D + BiasAdd + LeakyRelu feeding a Reshape under a
    gradient (and then drops every fusion of the graph): the encoder must not build that."""
    enc, dec = _pair("conv", (16, 16, 3), 4, 2)
    weights = enc.trainable_variables + dec.trainable_variables

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(dec(enc(x)) ** 2)
        return tape.gradient(loss, weights)

    capfd.readouterr()
    step(_random([4, 768], 11))
    assert "remapper failed" not in capfd.readouterr().err


class _TinyConvModel:
    """What traced_conv_flops reads of a model, around one encoder/decoder pair."""

    def __init__(self):
        self.seq_len, self.image_shape = 2, (8, 8, 1)
        self.enc, self.dec = _pair("conv", self.image_shape, 2, 2, params_per_pixel=1)
        self.trainable_variables = self.enc.trainable_variables + self.dec.trainable_variables

    def compute_terms(self, x, training):
        flat = tf.reshape(x, [x.shape[0], self.seq_len, -1])
        return {"nll": get_likelihood("bce").nll(self.dec(self.enc(flat)), flat)}

    def total_loss(self, terms, step):
        return tf.reduce_mean(terms["nll"])


def test_traced_conv_flops_of_a_model():
    model = _TinyConvModel()
    records = model.enc.step_costs(6, input_grad=False) + model.dec.step_costs(6)
    convs = [r for r in records if isinstance(r, Conv)]
    assert flops.traced_conv_flops(model, 3) == {
        "forward": sum(r.flops for r in convs if r.pass_ == "forward"),
        "backward": sum(r.flops for r in convs if r.pass_ != "forward")}


def test_roofline_times_conv_records():
    records = (conv_with_backward("enc", 2, 8, 8, 3, 4, 4, 2)
               + conv_with_backward("dec", 2, 4, 4, 4, 3, 4, 2, transpose=True)
               + [MatMul("dense", 4, 8, 16)])
    timings = {}
    roof = roofline(records, timings, repeats=2, max_reps=2)
    assert roof["median_s"] > 0 and roof["min_s"] > 0
    assert [s["shape"][:1] for s in roof["shapes"][:1]] == [[4]]  # matmuls first
    # The transposed conv mirrors the conv (4x4x4 <-> 8x8x3): its three passes run the
    # conv's three ops on the same geometry, timed once.
    assert sorted(s["op"] for s in roof["shapes"][1:]) == [
        "Conv2D", "Conv2DBackpropFilter", "Conv2DBackpropInput"]
    assert len(timings) == 4
    assert all(s["median_s"] > 0 and s["gflops"] > 0 for s in roof["shapes"])
    assert records[3].shape == ("Conv2DBackpropInput", 2, 8, 8, 3, 4, 4, 2)
    assert records[3].flops == records[0].flops  # same geometry, same multiply-adds
    again = roofline(records[:1], timings, repeats=2, max_reps=2)
    assert again["shapes"][0] is timings[records[0].shape]  # measured once, reused


def test_interleaved_roofline_sums_what_its_rounds_timed():
    """Roofline: the same records and sums as `roofline`, a call per shape per sample()."""
    records = (conv_with_backward("enc", 2, 8, 8, 3, 4, 4, 2)
               + [MatMul("dense", 4, 8, 16, count=3)])
    timer = Roofline(records, max_reps=2)
    with pytest.raises(ValueError, match="before any sample"):
        timer.result()
    for _ in range(3):
        timer.sample()
    roof = timer.result()
    assert len(roof["shapes"]) == len({r.shape for r in records}) == 4
    assert all(len(t.times) == 3 for t in timer._timers.values())  # once a round
    expected = sum(r.count * timer._timers[r.shape].stats()["median_s"] for r in records)
    assert roof["median_s"] == pytest.approx(expected)
    assert roof["shapes"][0]["shape"] == [4, 8, 16, False, False]  # matmuls first
    assert roof["min_s"] <= roof["median_s"]


def test_train_steps_call_between_outside_the_timed_interval():
    import time

    from dvrnn_tf.perf import timing

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = (tf.ones([4, 3]), tf.ones([4, 1]))
    seen = []
    out = timing.time_train_steps(model, x, steps=3, warmup=0,
                                  between=lambda i: (seen.append(i), time.sleep(0.3)))
    assert seen == [0, 1, 2]
    assert out["step"]["n"] == 3 and out["step"]["max_s"] < 0.3
