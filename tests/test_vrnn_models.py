"""The VRNN and the Disentangled VRNN (full and factorized) as models: the harness over every
model x layout, distribution shapes, every endpoint, what reaches the style path, generation
with one code fixed, encode, swap and interpolation."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from model_harness import run_model_harness
from vrnn_helpers import (F_DIM, KINDS, LAYOUTS, VARIANTS, Z_DIM, assert_close, make_batch,
                          make_model, record_decode)

tfd = tfp.distributions


# ---- the harness, every model x every layout --------------------------------------------


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("kind", KINDS)
def test_model_harness(kind, layout, tmp_path):
    # Tracing a recurrent train step costs seconds: the VRNN and the factorized model run
    # the traced train step on the first layout, the full model in
    # test_vrnn_training.py::test_training_on_digit_sequences_lowers_the_loss; everything
    # else runs eagerly (the same code, other shapes).
    traced = layout == "seq8x8" and kind in ("vrnn", "factorized")
    run_model_harness(lambda: make_model(kind, layout), make_batch(layout), tmp_path,
                      run_eagerly=not traced)


# ---- distributions and endpoints ----------------------------------------------------------


@pytest.mark.parametrize("layout", ["seq8x8", "rows"])
@pytest.mark.parametrize("kind", KINDS)
def test_distribution_shapes(kind, layout):
    model = make_model(kind, layout)
    x = make_batch(layout, batch=2)
    b, t = x.shape[:2]
    x_flat = model.flatten_frames(x)
    assert tuple(x_flat.shape) == (b, t, model.x_dim)
    feats = model.phi_x(x_flat)
    cond = None
    if kind != "vrnn":
        q_f = model.content_distribution(feats)
        assert (tuple(q_f.batch_shape), tuple(q_f.event_shape)) == ((b,), (F_DIM,))
        p_f = model.content_prior(b)
        assert (tuple(p_f.batch_shape), tuple(p_f.event_shape)) == ((b,), (F_DIM,))
        cond = tf.repeat(model.phi_f(q_f.sample())[:, None], t, axis=1)
    style = model.infer_style(feats, tf.zeros([b, t, Z_DIM]), cond=cond)
    posterior = tfd.Independent(tfd.Normal(style["loc"], style["scale"]), 1)
    prior = model.prior_distribution(style["h_prev"])
    for dist in (posterior, prior):
        assert (tuple(dist.batch_shape), tuple(dist.event_shape)) == ((b, t), (Z_DIM,))
    params = model.decoder_params(style["phi_z"], style["h_prev"], cond)
    likelihood = model.likelihood.distribution(params)
    assert (tuple(likelihood.batch_shape), tuple(likelihood.event_shape)) == ((b, t), (model.x_dim,))
    terms = model.compute_terms(x)
    assert set(terms) == {"nll", *model.kl_weights}
    assert all(v.shape.rank == 0 for v in terms.values())


@pytest.mark.parametrize("layout", ["seq8x8", "rows"])
def test_vrnn_endpoints(layout):
    model = make_model("vrnn", layout)
    x = make_batch(layout, batch=2)
    codes = model.encode(x)
    assert {k: tuple(v.shape) for k, v in codes.items()} == {
        k: (2, x.shape[1], Z_DIM) for k in ("z_loc", "z_scale", "z_sample")}
    for images in (model.reconstruct(x), model(x), model.generate(3)):
        assert tuple(images.shape)[1:] == x.shape[1:]
        assert float(tf.reduce_min(images)) >= 0 and float(tf.reduce_max(images)) <= 1
    assert tuple(model.generate(3).shape) == (3, *x.shape[1:])


@pytest.mark.parametrize("layout", ["seq8x8", "rows"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_disentangled_endpoints(variant, layout):
    model = make_model(variant, layout)
    x = make_batch(layout, batch=2)
    t, frame = x.shape[1], x.shape[2:]
    for sample in (True, False):
        codes = model.encode(x, sample=sample)
        assert {k: tuple(v.shape) for k, v in codes.items()} == {
            "f_loc": (2, F_DIM), "f_scale": (2, F_DIM), "f_sample": (2, F_DIM),
            "z_loc": (2, t, Z_DIM), "z_scale": (2, t, Z_DIM), "z_sample": (2, t, Z_DIM)}
    n = 3
    endpoints = {
        "reconstruct": (lambda: model.reconstruct(x), (2, t, *frame)),
        "call": (lambda: model(x), (2, t, *frame)),
        "generate": (lambda: model.generate(n), (n, t, *frame)),
        "generate_fixed_content": (lambda: model.generate_fixed_content(n), (n, t, *frame)),
        "generate_fixed_style": (lambda: model.generate_fixed_style(n), (n, t, *frame)),
        "swap": (lambda: model.swap(x, x[::-1]), (2, t, *frame)),
        "interpolate_f": (lambda: model.interpolate(x[:1], x[1:], steps=5, code="f"),
                          (5, t, *frame)),
        "interpolate_z": (lambda: model.interpolate(x[:1], x[1:], steps=4, code="z"),
                          (4, t, *frame)),
        "decode_f_per_step": (lambda: model.decode(tf.zeros([n, t, F_DIM])), (n, t, *frame)),
    }
    if layout == "rows":  # 28 eager generative steps per call: the layout-specific ones only
        endpoints = {k: endpoints[k] for k in ("reconstruct", "generate", "swap")}
    expected = {name: (call(), shape) for name, (call, shape) in endpoints.items()}
    for name, (images, shape) in expected.items():
        assert tuple(images.shape) == shape, name
        assert np.all(np.isfinite(images.numpy())), name
        assert float(tf.reduce_min(images)) >= 0 and float(tf.reduce_max(images)) <= 1, name
    with pytest.raises(ValueError, match="code"):
        model.interpolate(x[:1], x[1:], code="y")


def test_disentangled_rejects_unknown_variant():
    with pytest.raises(ValueError, match="variant"):
        make_model("partial")


# ---- what reaches the style path --------------------------------------------------------------


def _style_parameters(model, feats, f, eps):
    t = feats.shape[1]
    style = model.infer_style(feats, eps, cond=tf.repeat(model.phi_f(f)[:, None, :], t, axis=1))
    prior_loc, prior_scale = model.prior(model.prior_net(style["h_prev"]))
    return {"q_loc": style["loc"], "q_scale": style["scale"],
            "p_loc": prior_loc, "p_scale": prior_scale}


def _is_zero(gradient):
    return gradient is None or not np.any(gradient.numpy())


@pytest.mark.parametrize("variant", VARIANTS)
def test_style_prior_and_posterior_see_f_only_in_full(variant):
    model = make_model(variant)
    x = make_batch(batch=3)
    x_flat = model.flatten_frames(x)
    feats = model.phi_x(x_flat)
    f = model.content_distribution(feats).sample(seed=3)
    eps = tf.random.stateless_normal([3, x.shape[1], Z_DIM], seed=[1, 2])
    weights = tf.random.stateless_normal([3, x.shape[1], Z_DIM], seed=[3, 4])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(f)
        params = _style_parameters(model, feats, f, eps)
        objectives = {k: tf.reduce_sum(v * weights) for k, v in params.items()}
    for name, objective in objectives.items():
        gradient = tape.gradient(objective, f)
        if variant == "factorized":
            assert _is_zero(gradient), f"d {name} / d f != 0 in the factorized model"
        else:
            assert not _is_zero(gradient), f"d {name} / d f == 0 in the full model"
    # The decoder sees f in both variants.
    with tf.GradientTape() as tape:
        tape.watch(f)
        phi_f = tf.repeat(model.phi_f(f)[:, None], x.shape[1], 1)
        style = model.infer_style(feats, eps, cond=phi_f)
        objective = tf.reduce_sum(model.decoder_params(style["phi_z"], style["h_prev"], phi_f))
    assert not _is_zero(tape.gradient(objective, f))


@pytest.mark.parametrize("variant", VARIANTS)
def test_style_path_of_the_model_ignores_content_weights_only_in_factorized(variant):
    """The same through the model's own inference code (`_infer`, as compute_terms runs it)."""
    model = make_model(variant)
    x_flat = model.flatten_frames(make_batch(batch=3))
    content_weights = (model.content_rnn.trainable_variables + model.content.trainable_variables
                       + model.phi_f.trainable_variables)
    with tf.GradientTape(persistent=True) as tape:
        _, _, _, style = model._infer(x_flat)
        prior_loc, prior_scale = model.prior(model.prior_net(style["h_prev"]))
        objectives = {"q_loc": style["loc"], "q_scale": style["scale"],
                      "p_loc": prior_loc, "p_scale": prior_scale}
        objectives = {k: tf.reduce_sum(v * (1.0 + tf.cos(v))) for k, v in objectives.items()}
    for name, objective in objectives.items():
        gradients = tape.gradient(objective, content_weights)
        zero = all(_is_zero(g) for g in gradients)
        assert zero == (variant == "factorized"), name


# ---- generation with one code fixed --------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_generate_fixed_content_shares_one_f(variant, monkeypatch):
    model = make_model(variant)
    calls = record_decode(model, monkeypatch)
    images = model.generate_fixed_content(4)
    (f, z), = calls
    assert z is None  # fresh z_t from the prior in each sequence
    assert tuple(f.shape) == (4, F_DIM)
    assert_close(f, tf.repeat(f[:1], 4, axis=0), atol=0)
    assert float(tf.reduce_max(tf.abs(f))) > 0
    # Same f, different styles: the sequences differ.
    assert float(tf.reduce_max(tf.abs(images[1:] - images[:1]))) > 0
    # A second call draws another content.
    model.generate_fixed_content(4)
    assert not np.allclose(calls[1][0].numpy(), f.numpy())


@pytest.mark.parametrize("variant", VARIANTS)
def test_generate_fixed_style_keeps_z_and_varies_f(variant, monkeypatch):
    model = make_model(variant)
    calls = record_decode(model, monkeypatch)
    model.generate_fixed_style(3)
    (f, z), = calls
    t = model.seq_len
    assert tuple(z.shape) == (3, t, Z_DIM) and tuple(f.shape) == (3, t, F_DIM)
    assert_close(z, tf.repeat(z[:, :1], t, axis=1), atol=0)  # one z per sequence, every step
    assert not np.allclose(z[0].numpy(), z[1].numpy())
    assert not np.allclose(f[:, 0].numpy(), f[:, 1].numpy())  # a fresh f at each step


# ---- swap ------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_encode_means_are_deterministic(variant):
    model = make_model(variant)
    x = make_batch(batch=2)
    first, second = model.encode(x, sample=False), model.encode(x, sample=False)
    for key in first:
        assert_close(first[key], second[key], atol=0, msg=key)
    assert_close(first["f_sample"], first["f_loc"], atol=0)
    assert_close(first["z_sample"], first["z_loc"], atol=0)
    sampled = model.encode(x)
    assert_close(sampled["f_loc"], first["f_loc"], atol=1e-6)  # q(f | x) has no noise inside
    assert not np.allclose(sampled["f_sample"].numpy(), first["f_loc"].numpy())


@pytest.mark.parametrize("variant", VARIANTS)
def test_swap_twice_restores_the_codes(variant, monkeypatch):
    model = make_model(variant)
    x_a, x_b = make_batch(batch=2, seed=1), make_batch(batch=2, seed=2)
    code_a, code_b = model.encode(x_a, sample=False), model.encode(x_b, sample=False)
    calls = record_decode(model, monkeypatch)
    swapped_ab = model.swap(x_a, x_b)  # content of A, style of B
    swapped_ba = model.swap(x_b, x_a)  # content of B, style of A
    (f_ab, z_ab), (f_ba, z_ba) = calls
    assert_close(f_ab, code_a["f_loc"], atol=0)
    assert_close(z_ab, code_b["z_loc"], atol=0)
    assert_close(f_ba, code_b["f_loc"], atol=0)
    assert_close(z_ba, code_a["z_loc"], atol=0)
    # Swapping the f's back restores each sequence's own codes: (f_ab, z_ba) is A's,
    # (f_ba, z_ab) is B's, and they decode to the images of A's and B's own codes.
    for (f, z), code in (((f_ab, z_ba), code_a), ((f_ba, z_ab), code_b)):
        assert_close(f, code["f_loc"], atol=0)
        assert_close(z, code["z_loc"], atol=0)
        assert_close(model.decode(f, z), model.swap(x_a if code is code_a else x_b,
                                                    x_a if code is code_a else x_b))
    assert_close(swapped_ab, model.decode(code_a["f_loc"], code_b["z_loc"]))
    assert_close(swapped_ba, model.decode(code_b["f_loc"], code_a["z_loc"]))


@pytest.mark.parametrize("variant", VARIANTS)
def test_swap_with_itself_decodes_the_means(variant):
    model = make_model(variant)
    x = make_batch(batch=3)
    code = model.encode(x, sample=False)
    assert_close(model.swap(x, x), model.decode(code["f_loc"], code["z_loc"]), atol=1e-6)
    # ... and it is reproducible.
    assert_close(model.swap(x, x), model.swap(x, x), atol=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_interpolation_endpoints(variant):
    model = make_model(variant)
    x_a, x_b = make_batch(batch=1, seed=1), make_batch(batch=1, seed=2)
    a, b = model.encode(x_a, sample=False), model.encode(x_b, sample=False)
    by_f = model.interpolate(x_a, x_b, steps=3, code="f")
    assert_close(by_f[:1], model.decode(a["f_loc"], a["z_loc"]), atol=1e-6)
    assert_close(by_f[-1:], model.decode(b["f_loc"], a["z_loc"]), atol=1e-6)
    by_z = model.interpolate(x_a, x_b, steps=3, code="z")
    assert_close(by_z[-1:], model.decode(a["f_loc"], b["z_loc"]), atol=1e-6)
    middle = model.decode(a["f_loc"], 0.5 * (a["z_loc"] + b["z_loc"]))
    assert_close(by_z[1:2], middle, atol=1e-6)
