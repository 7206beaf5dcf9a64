"""Every sequence model with `--network=conv`: the harness (config, fit, `.keras` reload), the
FLOP count against the graph, SavedModel endpoints of the data's shape, mixed precision, XLA."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from dvrnn_tf.data import DataSpec
from dvrnn_tf.models.registry import build_model, get_family
from dvrnn_tf.perf import flops
from dvrnn_tf.settings import resolve
from model_harness import run_model_harness

SPEC = DataSpec((16, 16, 3), 3)
CONV = dict(network="conv", conv_channels=4, conv_layers=2, hidden_dim=16, rnn_dim=8, f_dim=4,
            z_dim=3, likelihood="gaussian_fixed", gaussian_scale=0.2)
MODELS = ("vrnn", "factorized", "full", "content_style")


def make(name, spec=SPEC, **changes):
    family = get_family(name)
    values = resolve(family.settings, {k: v for k, v in {**CONV, **changes}.items()
                                       if any(s.name == k for s in family.settings)})
    return build_model(name, values, spec, seed=0)


def frames(n=4, spec=SPEC, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, spec.seq_len, *spec.image_shape)
                                               ).astype("float32")


@pytest.mark.parametrize("name, changes", [*((n, {}) for n in MODELS),
                                           ("content_style", {"decoder_refine_layers": 1})])
def test_conv_models_pass_the_harness(name, changes, tmp_path):
    # The traced fit step of one model; the others' steps eagerly (same code, less tracing).
    run_model_harness(lambda: make(name, **changes), frames(), tmp_path,
                      run_eagerly=name != "full")


@pytest.mark.parametrize("name, changes", [*((n, {}) for n in MODELS),
                                           ("content_style", {"swap_consistency": 1.0}),
                                           ("full", {"decoder_refine_layers": 2})])
def test_step_costs_count_every_conv_and_matmul_of_the_graph(name, changes):
    model = make(name, **changes)
    declared = flops.step_matmuls(model, 2)
    traced = flops.traced_flops(model, 2)
    assert any(type(r).__name__ == "Conv" for r in declared)
    assert flops.total_flops(declared) == sum(sum(v.values()) for v in traced.values())
    assert flops.by_pass(declared)["forward"] == (traced["matmul"]["forward"]
                                                  + traced["conv"]["forward"])


def test_frames_the_stack_does_not_divide_are_refused_before_building():
    family = get_family("content_style")
    values = resolve(family.settings, {**{k: v for k, v in CONV.items() if k != "rnn_dim"},
                                       "conv_layers": 3})
    with pytest.raises(ValueError, match=r"--conv_layers=3 needs H and W divisible by 8, got "
                                         r"20x20 \(20 = 4 \* 5: use --conv_layers=2\)"):
        family.check("content_style", values, DataSpec((20, 20, 1), 3))


def test_saved_model_endpoints_take_the_sources_shape(tmp_path):
    from dvrnn_tf.export import export_saved_model

    model = make("content_style")
    names = export_saved_model(model, str(tmp_path / "sm"))
    assert {"reconstruct", "encode", "swap", "generate_fixed_content"} <= set(names)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    spec = loaded.signatures["reconstruct"].structured_input_signature[1]["x"]
    assert spec.shape.as_list() == [None, 3, 16, 16, 3]
    x = frames(5)
    np.testing.assert_allclose(loaded.reconstruct(tf.constant(x)).numpy(),
                               model.reconstruct(x).numpy(), atol=1e-5)
    with pytest.raises((ValueError, TypeError)):
        loaded.reconstruct(tf.zeros([2, 3, 16, 16, 1]))  # grey frames into an RGB model


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_conv_models_train_and_keep_float32_losses(policy):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = make("content_style")
        model.compile(keras.optimizers.Adam(3e-3))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    x = frames(8)
    low = policy.removeprefix("mixed_")
    assert model.compute_dtype == low and model.reconstruct(x).dtype.name == low
    assert all(w.dtype == "float32" for w in model.trainable_weights)
    assert {v.dtype.name for v in model.compute_terms(x).values()} == {"float32"}
    history = model.fit(x, epochs=6, batch_size=8, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)) and history[-1] < history[0], history
    # What the figures draw, in the low precision too.
    for code in ("f", "z"):
        assert model.interpolate(x[:1], x[1:2], steps=3, code=code).dtype.name == low
    assert model.swap(x[:2], x[2:4]).shape == (2, 3, 16, 16, 3)


@pytest.mark.parametrize("name", MODELS)
def test_the_likelihood_scores_the_data_not_its_bfloat16_rounding(name):
    """Under mixed_bfloat16 the networks read bfloat16 frames, the likelihood the float32 data:
    0.3 is 0.30078125 in bfloat16 (and a cast there and back is two passes over the frames)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = make(name)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    scored = []
    nll_per_image = model.nll_per_image
    model.nll_per_image = lambda params, data: scored.append(data) or nll_per_image(params, data)
    x = np.full((2, SPEC.seq_len, *SPEC.image_shape), 0.3, "float32")
    model.compute_terms(x, training=True)
    (data,) = scored
    assert data.dtype == tf.float32 and data.shape[-1] == np.prod(SPEC.image_shape)
    np.testing.assert_array_equal(data.numpy(), np.float32(0.3))


def test_xla_train_step_matches_the_graph_step():
    x = frames(4)
    losses = {}
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        model = make("content_style")
        model.compile(keras.optimizers.Adam(1e-3), jit_compile=jit)
        losses[jit] = model.fit(x, epochs=2, batch_size=4, verbose=0,
                                shuffle=False).history["loss"]
    np.testing.assert_allclose(losses[True], losses[False], rtol=2e-3)


def test_a_low_precision_model_reloads_whole_where_the_policy_is_float32(tmp_path):
    """A `.keras` file of a mixed_bfloat16 run, loaded by a float32 process (`evaluate`):
    every layer keeps the model's policy (not the loader's global one)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = make("content_style", style_prior="recurrent")
    finally:
        keras.mixed_precision.set_global_policy(previous)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert {layer.dtype_policy.name for layer in loaded._flatten_layers()} == {"mixed_bfloat16"}
    assert keras.mixed_precision.global_policy().name == previous.name
    x = frames(2)
    np.testing.assert_allclose(loaded.reconstruct(x).numpy().astype("float32"),
                               model.reconstruct(x).numpy().astype("float32"), atol=1e-2)
