"""The VRNN cell, the VRNN and the Disentangled VRNN (full and factorized)."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from dvrnn_tf.cells import VRNNCell
from dvrnn_tf.models import DisentangledVRNN, VRNN
from dvrnn_tf.objectives import Capacity, LinearWarmup

from model_harness import ModelHarnessTests, copy_seed_state, one_batch_dataset, run_model_harness

tfd = tfp.distributions

KINDS = ("vrnn", "full", "factorized")
VARIANTS = ("full", "factorized")
# name -> (image_shape, T): sequences of images, and the rows of one 28x28 image as a sequence.
LAYOUTS = {"seq8x8": ((8, 8, 1), 8), "seq28x28": ((28, 28, 1), 8), "rows": ((1, 28, 1), 28)}
Z_DIM, F_DIM = 3, 4


def make_model(kind, layout="seq8x8", **kwargs):
    image_shape, seq_len = LAYOUTS[layout]
    kwargs = {"seq_len": seq_len, "hidden_dim": 16, "rnn_dim": 16, "z_dim": Z_DIM, "seed": 1,
              **kwargs}
    if kind == "vrnn":
        return VRNN(image_shape, **kwargs)
    return DisentangledVRNN(image_shape, variant=kind, f_dim=F_DIM, **kwargs)


def make_batch(layout="seq8x8", batch=3, seed=0):
    image_shape, seq_len = LAYOUTS[layout]
    return np.random.default_rng(seed).uniform(size=(batch, seq_len, *image_shape)).astype("float32")


def seed_state(model):
    return tf.identity(model.seed_generator.state)


def assert_close(a, b, atol=1e-6, msg=""):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol, rtol=0, err_msg=msg)


def record_decode(model, monkeypatch):
    """Wrap `model.decode` so that the codes it is given are kept in the returned list."""
    calls, decode = [], model.decode

    def recording(f, z=None):
        calls.append((tf.identity(f), None if z is None else tf.identity(z)))
        return decode(f, z)

    monkeypatch.setattr(model, "decode", recording)
    return calls


# ---- VRNNCell ------------------------------------------------------------------------------


def make_cell(**kwargs):
    return VRNNCell(**{"rnn_dim": 5, "z_dim": 2, "feature_dim": 4, "hidden_dim": 6,
                       "cond_dim": 3, **kwargs})


def test_cell_sizes_are_integers():
    cell = make_cell()
    assert type(cell.state_size) is int and cell.state_size == 5
    assert type(cell.output_size) is int and cell.output_size == 5 + 3 * 2 + 4
    assert cell.input_dim == 4 + 2 + 3


def test_cell_initial_state_is_zeros():
    state = make_cell().get_initial_state(batch_size=7)
    assert len(state) == 1
    assert tuple(state[0].shape) == (7, 5)
    assert not np.any(state[0].numpy())


def test_cell_rejects_bad_input_width_naming_the_widths():
    with pytest.raises(ValueError, match=r"= 9, got input shape \(None, 8\)"):
        make_cell().build((None, 8))
    # Through keras.layers.RNN, which builds the cell for one step: [B, width].
    with pytest.raises(ValueError, match=r"feature_dim \+ z_dim \+ cond_dim = 9, got input shape \(2, 8\)"):
        keras.layers.RNN(make_cell())(tf.zeros([2, 3, 8]))


@pytest.mark.parametrize("argument", ["rnn_dim", "z_dim", "feature_dim", "hidden_dim"])
def test_cell_rejects_non_positive_sizes(argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        make_cell(**{argument: 0})
    with pytest.raises(ValueError, match="`cond_dim`"):
        make_cell(cond_dim=-1)


def test_cell_config_round_trip():
    cell = make_cell(name="cell")
    clone = VRNNCell.from_config(cell.get_config())
    assert clone.get_config() == cell.get_config()
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cell))
    assert type(revived) is VRNNCell and revived.get_config() == cell.get_config()


def test_cell_outputs_under_rnn():
    cell = make_cell()
    rng = np.random.default_rng(0)
    inputs = tf.constant(rng.normal(size=(2, 6, cell.input_dim)), tf.float32)
    outputs, final = keras.layers.RNN(cell, return_sequences=True, return_state=True)(inputs)
    assert tuple(outputs.shape) == (2, 6, cell.output_size)
    parts = cell.split_output(outputs)
    assert {k: tuple(v.shape) for k, v in parts.items()} == {
        "h_prev": (2, 6, 5), "z": (2, 6, 2), "loc": (2, 6, 2), "scale": (2, 6, 2), "phi_z": (2, 6, 4)}
    assert not np.any(parts["h_prev"][:, 0].numpy())  # h_0 = 0
    eps = inputs[..., 4:6]
    assert_close(parts["z"], parts["loc"] + parts["scale"] * eps, atol=1e-5)
    assert float(tf.reduce_min(parts["scale"])) > 0
    # The state after step t is the h_prev of step t + 1; the final state closes the chain.
    h_next = tf.concat([parts["h_prev"][:, 1:], final[:, None]], axis=1)
    for t in range(6):
        expected = cell.transition(inputs[:, t, :4], parts["phi_z"][:, t], inputs[:, t, 6:],
                                   parts["h_prev"][:, t])
        assert_close(h_next[:, t], expected, atol=1e-5)


# ---- the harness, every model x every layout --------------------------------------------


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("kind", KINDS)
def test_model_harness(kind, layout, tmp_path):
    # Tracing a recurrent train step costs seconds: the VRNN and the factorized model run
    # the traced train step on the first layout, the full model in
    # test_training_on_digit_sequences_lowers_the_loss; everything else runs eagerly (the
    # same code, other shapes).
    traced = layout == "seq8x8" and kind in ("vrnn", "factorized")
    run_model_harness(lambda: make_model(kind, layout), make_batch(layout), tmp_path,
                      run_eagerly=not traced)


class TestHarnessWithKLSchedules(ModelHarnessTests):
    """The harness's class form; schedules survive config and saving, and the capacity
    target is a reported metric (the harness requires every name in `metric_names`)."""

    run_eagerly = True

    def make_model(self):
        return make_model("full", beta_z=Capacity(gamma=5.0, c_max=2.0, capacity_steps=10),
                          beta_f=LinearWarmup(beta=0.5, warmup_steps=3))

    def make_data(self):
        return make_batch()

    def test_metric_names(self):
        model = self.make_model()
        assert model.metric_names == ["loss", "nll", "kl_z", "kl_f", "capacity_kl_z"]
        assert isinstance(model.kl_weights["kl_z"], Capacity)


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


# ---- the loss terms, recomputed independently -----------------------------------------------


def _kl_diag_gaussians(m1, s1, m2, s2):
    """KL(N(m1, s1^2) || N(m2, s2^2)) summed over the last axis, in numpy float64."""
    m1, s1, m2, s2 = (np.asarray(a, np.float64) for a in (m1, s1, m2, s2))
    return np.sum(np.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5, axis=-1)


def _bce_nll(logits, x):
    logits, x = np.asarray(logits, np.float64), np.asarray(x, np.float64)
    return np.mean(np.sum(np.logaddexp(0.0, logits) - x * logits, axis=-1))


@pytest.mark.parametrize("kind", KINDS)
def test_compute_terms_match_independent_kl(kind):
    model = make_model(kind, likelihood="bce")
    x = make_batch(batch=4)
    b, t = x.shape[:2]
    state = seed_state(model)
    terms = model.compute_terms(x, training=True)

    # The same noise, drawn in the same order as the model draws it, through the pieces.
    model.seed_generator.state.assign(state)
    x_flat = model.flatten_frames(x)
    feats = model.phi_x(x_flat)
    cond = phi_f = None
    if kind != "vrnn":
        q_f = model.content_distribution(feats)
        f_loc, f_scale = q_f.distribution.loc, q_f.distribution.scale
        f = f_loc + f_scale * model.normal_noise((b, F_DIM))
    eps = model.normal_noise((b, t, Z_DIM))
    if kind != "vrnn":
        phi_f = tf.repeat(model.phi_f(f)[:, None, :], t, axis=1)
        cond = phi_f
    style = model.infer_style(feats, eps, cond=cond)
    prior_loc, prior_scale = model.prior(model.prior_net(style["h_prev"]))

    kl_z = tfd.kl_divergence(tfd.MultivariateNormalDiag(style["loc"], style["scale"]),
                             tfd.MultivariateNormalDiag(prior_loc, prior_scale))
    assert tuple(kl_z.shape) == (b, t)
    np.testing.assert_allclose(float(terms["kl_z"]), float(tf.reduce_mean(kl_z)), rtol=1e-5)
    np.testing.assert_allclose(
        float(terms["kl_z"]),
        np.mean(_kl_diag_gaussians(style["loc"], style["scale"], prior_loc, prior_scale)),
        rtol=1e-4)

    if kind != "vrnn":
        kl_f = tfd.kl_divergence(tfd.MultivariateNormalDiag(f_loc, f_scale),
                                 tfd.MultivariateNormalDiag(tf.zeros_like(f_loc)))
        assert tuple(kl_f.shape) == (b,)
        # One KL_f per sequence, shared by its T frames: per image it is KL_f / T.
        np.testing.assert_allclose(float(terms["kl_f"]), float(tf.reduce_mean(kl_f)) / t, rtol=1e-5)
        np.testing.assert_allclose(
            float(terms["kl_f"]), np.mean(_kl_diag_gaussians(f_loc, f_scale, 0.0, 1.0)) / t,
            rtol=1e-4)

    logits = model.decoder_params(style["phi_z"], style["h_prev"], phi_f)
    np.testing.assert_allclose(float(terms["nll"]), _bce_nll(logits, x_flat), rtol=1e-5)
    # The noise matters: a different draw gives a different KL_z (the test above is not vacuous).
    assert float(model.compute_terms(x)["kl_z"]) != pytest.approx(float(terms["kl_z"]), rel=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_beta_scales_the_loss_by_exactly_beta_times_kl(kind):
    betas = {"beta_z": 3.5} if kind == "vrnn" else {"beta_z": 3.5, "beta_f": 0.25}
    base = make_model(kind)
    scaled = make_model(kind, **betas)
    scaled.set_weights(base.get_weights())
    copy_seed_state(base, scaled)
    x = tf.constant(make_batch(batch=4))
    logs = {}
    for name, model in (("base", base), ("scaled", scaled)):
        model.compile(keras.optimizers.SGD(0.0))
        logs[name] = {k: float(v) for k, v in model.test_step(x).items()}
    a, b = logs["base"], logs["scaled"]
    for term in ("nll", *base.kl_weights):
        assert a[term] == pytest.approx(b[term], rel=1e-6), term
    assert a["loss"] == pytest.approx(a["nll"] + sum(a[k] for k in base.kl_weights), rel=1e-6)
    change = sum((betas[f"beta_{k[3:]}"] - 1.0) * a[k] for k in base.kl_weights)
    assert b["loss"] - a["loss"] == pytest.approx(change, rel=1e-5, abs=1e-5)
    assert abs(change) > 1e-3  # the KLs are not zero, so the check has teeth


def test_kl_schedule_uses_the_optimizer_step():
    model = make_model("full", beta_z=LinearWarmup(beta=4.0, warmup_steps=10),
                       beta_f=Capacity(gamma=2.0, c_max=5.0, capacity_steps=10))
    model.compile(keras.optimizers.SGD(0.0))
    x = tf.constant(make_batch(batch=2))
    model.optimizer.iterations.assign(5)
    logs = {k: float(v) for k, v in model.test_step(x).items()}
    assert logs["capacity_kl_f"] == pytest.approx(2.5)
    expected = logs["nll"] + 2.0 * logs["kl_z"] + 2.0 * abs(logs["kl_f"] - 2.5)
    assert logs["loss"] == pytest.approx(expected, rel=1e-6)


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


# ---- optimization ----------------------------------------------------------------------------


def _raw_gradient_norm(model, x):
    with tf.GradientTape() as tape:
        loss = model.total_loss(model.compute_terms(x, training=True), 0)
    return float(tf.linalg.global_norm(tape.gradient(loss, model.trainable_variables)))


CLIP = 0.05


@pytest.mark.parametrize("clip_norm", [CLIP, 0.0])
def test_gradient_clipping_bounds_the_update(clip_norm):
    model = make_model("factorized", clip_norm=clip_norm)
    model.compile(keras.optimizers.SGD(learning_rate=1.0), run_eagerly=True)
    assert model.optimizer.global_clipnorm == (clip_norm or None)
    x = tf.constant(make_batch(batch=4))
    state = seed_state(model)
    raw_norm = _raw_gradient_norm(model, x)
    assert raw_norm > 10 * CLIP  # clipping has something to do
    model.seed_generator.state.assign(state)  # the step sees the same noise
    before = [v.numpy() for v in model.trainable_variables]
    model.fit(one_batch_dataset(x), epochs=1, verbose=0, shuffle=False)
    change = np.sqrt(sum(np.sum((v.numpy() - b) ** 2)
                         for v, b in zip(model.trainable_variables, before)))
    if clip_norm:
        assert change <= clip_norm * (1 + 1e-3)
        assert change == pytest.approx(clip_norm, rel=1e-3)  # SGD(1) moves by the clipped gradient
    else:
        assert change == pytest.approx(raw_norm, rel=1e-3)


def test_compile_keeps_an_optimizer_that_clips_itself():
    model = make_model("vrnn", clip_norm=10.0)
    model.compile(keras.optimizers.SGD(global_clipnorm=3.0))
    assert model.optimizer.global_clipnorm == 3.0
    model = make_model("vrnn", clip_norm=10.0)
    model.compile("adam")
    assert model.optimizer.global_clipnorm == 10.0
    with pytest.raises(ValueError, match="clip_norm"):
        make_model("vrnn", clip_norm=-1.0)


def digit_sequences(seq_len=8, seed=0):
    """sklearn's 8x8 digits as sequences of seq_len images of one class: [N, T, 8, 8, 1]."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")
    rng = np.random.default_rng(seed)
    sequences = []
    for label in range(10):
        members = rng.permutation(np.flatnonzero(digits.target == label))
        usable = len(members) // seq_len * seq_len
        sequences.append(images[members[:usable]].reshape(-1, seq_len, 8, 8, 1))
    return rng.permutation(np.concatenate(sequences))


def test_training_on_digit_sequences_lowers_the_loss():
    x = digit_sequences()
    train, held_out = x[:192], x[192:]
    model = make_model("full", hidden_dim=32, rnn_dim=32, likelihood="bce", beta_f=0.5)
    model.compile(keras.optimizers.Adam(3e-3))

    def held_out_loss():  # test_step eagerly: one batch, no second function to trace
        for metric in model.metrics:
            metric.reset_state()
        return {k: float(v) for k, v in model.test_step(tf.constant(held_out)).items()}

    before = held_out_loss()
    history = model.fit(train, batch_size=32, epochs=4, shuffle=True, verbose=0)
    after = held_out_loss()
    losses = history.history["loss"]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert after["loss"] < 0.85 * before["loss"], (before, after)
    assert after["nll"] < before["nll"]
