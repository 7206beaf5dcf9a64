"""Training the VRNN and the Disentangled VRNN: the loss terms recomputed independently, beta
and the KL schedules (through the harness too), gradient clipping, and a short training run on
digit sequences that lowers the loss."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from dvrnn_tf.objectives import Capacity, LinearWarmup

from model_harness import ModelHarnessTests, copy_seed_state, one_batch_dataset
from vrnn_helpers import F_DIM, KINDS, Z_DIM, make_batch, make_model, seed_state

tfd = tfp.distributions


# ---- the harness with KL schedules ----------------------------------------------------------


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
