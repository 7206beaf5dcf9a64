"""Speed work that must not change what the models compute (issue 7; docs/performance.md).

* the fused recurrences (`VRNNCell.run_sequence`, `gru_last_state`) against the Keras
  layers they replace: values and gradients;
* the NLL of `bernoulli`/`bce` against `tfd.Bernoulli`;
* the analytic matmul count (`dvrnn_tf.perf.flops`) against the traced graph;
* the benchmark's plumbing on a tiny configuration.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from dvrnn_tf.cells import VRNNCell
from dvrnn_tf.cells.vrnn_cell import gru_last_state
from dvrnn_tf.models import VRNN, BetaVAE, ContentStyleVAE, DisentangledVRNN
from dvrnn_tf.objectives import get_likelihood
from dvrnn_tf.perf import flops

B, T = 3, 6


def _random(shape, seed):
    return tf.random.stateless_normal(shape, seed=[seed, 7])


def _close(a, b, atol=1e-5, what=""):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol, rtol=1e-5, err_msg=what)


@pytest.mark.parametrize("cond", ["none", "per_step", "per_sequence"])
def test_run_sequence_equals_the_cell_under_keras_rnn(cond):
    cell = VRNNCell(rnn_dim=5, z_dim=2, feature_dim=4, hidden_dim=6,
                    cond_dim=0 if cond == "none" else 3)
    rnn = keras.layers.RNN(cell, return_sequences=True)
    phi_x, eps = _random([B, T, 4], 1), _random([B, T, 2], 2)
    c = {"none": None, "per_step": _random([B, T, 3], 3), "per_sequence": _random([B, 3], 4)}[cond]
    steps = None if c is None else (c if c.shape.rank == 3 else tf.repeat(c[:, None], T, 1))
    inputs = tf.concat([phi_x, eps] + ([steps] if steps is not None else []), -1)
    rnn(inputs)  # builds the cell
    weights = {k: _random([B, T, d], 10 + i) for i, (k, d) in enumerate(
        [("h_prev", 5), ("z", 2), ("loc", 2), ("scale", 2), ("phi_z", 4)])}
    sources = [phi_x] + ([c] if c is not None else []) + cell.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([phi_x] + ([c] if c is not None else []))
        reference = cell.split_output(rnn(tf.concat(
            [phi_x, eps] + ([tf.repeat(c[:, None], T, 1) if c is not None and c.shape.rank == 2
                             else c] if c is not None else []), -1)))
        fast = cell.run_sequence(phi_x, eps, c)
        objectives = [sum(tf.reduce_sum(out[k] * w) for k, w in weights.items())
                      for out in (reference, fast)]
    for key in reference:
        _close(fast[key], reference[key], what=key)
    for g_ref, g_fast, v in zip(tape.gradient(objectives[0], sources),
                                tape.gradient(objectives[1], sources), sources, strict=True):
        _close(g_fast, g_ref, atol=1e-4, what=getattr(v, "path", "input"))


def test_gru_last_state_equals_keras_gru():
    gru = keras.layers.GRU(5)
    x = _random([B, T, 4], 5)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        reference, fast = gru(x), gru_last_state(gru, x)
        w = _random([B, 5], 6)
        objectives = [tf.reduce_sum(reference * w), tf.reduce_sum(fast * w)]
    _close(fast, reference)
    sources = [x] + gru.trainable_variables
    for a, b in zip(tape.gradient(objectives[0], sources), tape.gradient(objectives[1], sources)):
        _close(b, a, atol=1e-5)


def test_models_take_the_keras_rnn_path_when_t_is_unknown():
    model = DisentangledVRNN((4, 4, 1), variant="full", hidden_dim=8, rnn_dim=6, z_dim=2,
                             f_dim=3, seq_len=5, seed=0)
    feats, eps, phi_f = _random([2, 5, 8], 1), _random([2, 5, 2], 2), _random([2, 8], 3)
    assert model.cell.can_run_sequence(5) and not model.cell.can_run_sequence(None)
    static = model.infer_style(feats, eps, cond=phi_f)
    dynamic = tf.function(model.infer_style, input_signature=[
        tf.TensorSpec([None, None, 8]), tf.TensorSpec([None, None, 2]),
        tf.TensorSpec([None, 8])])(feats, eps, phi_f)
    for key in static:
        _close(dynamic[key], static[key], what=key)
    # The training step's time-major layout takes the same path.
    swap = lambda t: tf.transpose(t, [1, 0, 2])  # noqa: E731
    dynamic_tm = tf.function(lambda f, e, c: model.infer_style(f, e, c, time_major=True),
                             input_signature=[tf.TensorSpec([None, None, 8]),
                                              tf.TensorSpec([None, None, 2]),
                                              tf.TensorSpec([None, 8])])(
        swap(feats), swap(eps), phi_f)
    for key in static:
        _close(swap(dynamic_tm[key]), static[key], what=key)
    x = tf.random.stateless_uniform([2, 5, 4, 4, 1], seed=[1, 1])
    state = tf.identity(model.seed_generator.state)
    fast = model.compute_terms(x, training=True)
    model.seed_generator.state.assign(state)
    slow = tf.function(lambda x: model.compute_terms(x, training=True), input_signature=[
        tf.TensorSpec([None, None, 4, 4, 1])])(x)
    for key in fast:
        _close(slow[key], fast[key], what=key)


@pytest.mark.parametrize("name", ["bernoulli", "bce"])
def test_bernoulli_nll_equals_tfd(name):
    likelihood = get_likelihood(name)
    logits = tf.constant([[-60.0, -3.0, -0.1, 0.0, 0.2, 4.0, 60.0]] * 2)
    x = tf.constant([[0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0], [0.3, 0.0, 0.5, 1.0, 0.9, 0.2, 0.0]])
    if name == "bernoulli":
        x = tf.round(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([logits, x])
        fast = likelihood.nll(logits, x)
        reference = -likelihood.distribution(logits).log_prob(x)
    _close(fast, reference, atol=1e-4)
    for source in (logits, x):
        _close(tape.gradient(fast, source), tape.gradient(reference, source), atol=1e-5)


def test_gaussian_fixed_nll_equals_tfd():
    likelihood = get_likelihood("gaussian_fixed", gaussian_scale=0.2)
    logits = tf.constant([[-30.0, -3.0, -0.1, 0.0, 0.2, 4.0, 30.0]] * 2)
    x = tf.constant([[0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0], [0.3, 0.0, 0.5, 1.0, 0.9, 0.2, 0.0]])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([logits, x])
        fast = likelihood.nll(logits, x)
        reference = -likelihood.distribution(logits).log_prob(x)
    _close(fast, reference, atol=1e-4)
    assert not np.allclose(fast.numpy(), get_likelihood("gaussian_fixed").nll(logits, x))
    for source in (logits, x):
        _close(tape.gradient(fast, source), tape.gradient(reference, source), atol=1e-4)


def _tiny(kind):
    common = dict(seq_len=4, hidden_dim=8, z_dim=2, seed=0)
    if kind == "beta_vae":
        return BetaVAE((4, 4, 1), **common)
    if kind == "vrnn":
        return VRNN((4, 4, 1), rnn_dim=6, **common)
    if kind.startswith("disentangled"):
        return ContentStyleVAE((4, 4, 1), f_dim=3, style_sees_content=kind == "disentangled",
                               **common)
    return DisentangledVRNN((4, 4, 1), variant=kind, rnn_dim=6, f_dim=3, **common)


@pytest.mark.parametrize("kind", ["vrnn", "full", "factorized", "beta_vae", "disentangled",
                                  "disentangled_zx"])
def test_analytic_matmuls_equal_the_traced_graph(kind):
    model = _tiny(kind)
    passes = flops.by_pass(flops.step_matmuls(model, 5))
    traced = flops.traced_matmul_flops(model, 5)
    assert traced["forward"] == passes["forward"]
    assert traced["backward"] == passes["grad_weights"] + passes["grad_inputs"]


def test_reference_configuration_is_about_2_gflop_per_step():
    model = DisentangledVRNN((28, 28, 1))  # features and GRU 100, f 20, z 3, T 8
    matmuls = flops.step_matmuls(model, 128)
    total = flops.total_flops(matmuls)
    assert 2.0e9 < total < 2.6e9
    by_pass = flops.by_pass(matmuls)
    # Backward ~ 2x forward, less the input gradients nobody needs (the images, h_0).
    assert 1.7 < (by_pass["grad_weights"] + by_pass["grad_inputs"]) / by_pass["forward"] < 2.0


def test_benchmark_on_a_tiny_configuration():
    from dvrnn_tf.perf import benchmark as bench

    tiny = {"tiny": dict(hidden_dim=8, rnn_dim=8, f_dim=3, z_dim=2, seq_len=3, batch_size=4)}
    payload = bench.run_benchmark(["factorized"], tiny, ["off"], steps=2, warmup=0,
                                  roofline_repeats=2, roofline_max_reps=2,
                                  pipeline_data="synthetic", pipeline_batches=10,
                                  pipeline_images=400, isolate=False)
    assert [(r["model"], r["xla"]) for r in payload["results"]] == [("factorized", "off")]
    for r in payload["results"]:
        assert r["step_ms"]["min_s"] <= r["step_ms"]["median_s"] <= r["step_ms"]["max_s"]
        assert r["flops_per_step"] > 0 and r["roofline_ms"]["median"] > 0
        assert 0 < r["roofline_fraction"] and np.isfinite(r["final_loss"])
        assert r["peak_memory"]["rss_high_water_bytes"] > 0
    (pipeline,) = payload["pipeline"]
    assert pipeline["sequences_per_s"] > 0 and pipeline["ratio_to_fastest_training"] > 0
    table = bench.format_table(payload["results"], payload["pipeline"])
    assert "factorized" in table and "input pipeline" in table


def test_benchmark_of_a_flag_file_configuration_in_both_precisions():
    """The `sprites` kind of configuration: the model settings of a flag file (here
    flags/sprites.flags on small frames), timed in float32 and mixed_bfloat16, each against
    a roofline of its own convolution and matmul shapes in its compute dtype."""
    from dvrnn_tf.perf import benchmark as bench

    small = {"video": {**bench.CONFIGS["sprites"], "image_shape": (16, 16, 3),
                       "batch_size": 2}}
    payload = bench.run_benchmark(["content_style"], small, ["off", "on"], steps=2, warmup=0,
                                  roofline_repeats=2, roofline_max_reps=2, pipeline_data="none",
                                  isolate=False)
    cases = [(r["xla"], r["precision"]) for r in payload["results"]]
    assert cases == [("off", "float32"), ("off", "mixed_bfloat16")]  # the config's own XLA
    ops = {s.get("op") for r in payload["results"] for s in r["roofline_shapes"]}
    assert {"Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"} <= ops
    assert all(r["roofline_ms"]["median"] > 0 and np.isfinite(r["final_loss"])
               for r in payload["results"])
    assert "mixed_bfloat16" in bench.format_table(payload["results"], [])
