"""ContentStyleVAE (`--model=disentangled`): the structure that closes both leaks."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from dvrnn_tf.models import ContentStyleVAE
from tests.model_harness import ModelHarnessTests

tfd = tfp.distributions
SHAPE, T = (6, 6, 1), 4


def make(**kwargs):
    args = dict(seq_len=T, hidden_dim=16, f_dim=3, z_dim=2, seed=0) | kwargs
    return ContentStyleVAE(SHAPE, **args)


def data(b=5, seed=0):
    return (np.random.default_rng(seed).uniform(size=(b, T, *SHAPE)) < 0.4).astype("float32")


class TestHarness(ModelHarnessTests):
    def make_model(self):
        return make(beta_f=0.5, beta_z=2.0, kl_z_free_bits=0.3)

    def make_data(self):
        return data(8)


@pytest.mark.parametrize("sees_content", [True, False])
def test_kl_terms_are_tfd_kl_divergences(sees_content, monkeypatch):
    model = make(style_sees_content=sees_content)
    x = data()
    q = model.encode(x, sample=False)
    monkeypatch.setattr(model, "normal_noise", lambda shape: tf.zeros(shape))
    terms = model.compute_terms(x)
    prior_f = tfd.MultivariateNormalDiag(tf.zeros(3), tf.ones(3))
    prior_z = tfd.MultivariateNormalDiag(tf.zeros(2), tf.ones(2))
    kl_f = tfd.kl_divergence(tfd.MultivariateNormalDiag(q["f_loc"], q["f_scale"]), prior_f)
    kl_z = tfd.kl_divergence(tfd.MultivariateNormalDiag(q["z_loc"], q["z_scale"]), prior_z)
    assert kl_z.shape == (5, T) and kl_f.shape == (5,)
    np.testing.assert_allclose(terms["kl_f"], tf.reduce_mean(kl_f) / T, rtol=1e-5)
    np.testing.assert_allclose(terms["kl_z"], tf.reduce_mean(kl_z), rtol=1e-5)
    params = model.decoder_params(q["z_loc"], model.phi_f(q["f_loc"]))
    nll = -tfd.Independent(tfd.Bernoulli(logits=params), 1).log_prob(
        x.reshape(5, T, -1)).numpy().mean()
    np.testing.assert_allclose(terms["nll"], nll, rtol=1e-5)


def test_free_bits_make_kl_z_free_below_the_threshold():
    model = make(beta_z=3.0, beta_f=0.5, kl_z_free_bits=1.5)
    terms = {"nll": tf.constant(10.0), "kl_z": tf.constant(0.4), "kl_f": tf.constant(2.0)}
    assert float(model.total_loss(terms, 0)) == pytest.approx(10.0 + 3.0 * 1.5 + 0.5 * 2.0)
    terms["kl_z"] = tf.constant(2.5)
    assert float(model.total_loss(terms, 0)) == pytest.approx(10.0 + 3.0 * 2.5 + 0.5 * 2.0)
    # Below the threshold no gradient pushes KL_z down.
    x = data()
    with tf.GradientTape() as tape:
        loss_terms = model.compute_terms(x, training=True)
        assert float(loss_terms["kl_z"]) < 1.5
        penalty = model.total_loss(loss_terms, 0) - loss_terms["nll"]
    grads = tape.gradient(penalty, model.style.trainable_variables)
    assert all(g is None or float(tf.reduce_max(tf.abs(g))) == 0.0 for g in grads)
    with pytest.raises(ValueError, match="kl_z_free_bits"):
        make(kl_z_free_bits=-1.0)


def test_content_is_permutation_invariant_and_style_per_frame():
    model = make()
    x = data()
    perm = [2, 0, 3, 1]
    a, b = model.encode(x, sample=False), model.encode(x[:, perm], sample=False)
    np.testing.assert_allclose(b["f_loc"], a["f_loc"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b["z_loc"], tf.gather(a["z_loc"], perm, axis=1), rtol=1e-5,
                               atol=1e-6)


def test_a_frame_is_decoded_from_its_own_style_and_the_content_only():
    """No recurrent state: changing z_s (s != t) leaves frame t unchanged."""
    model = make()
    rng = np.random.default_rng(1)
    f = rng.normal(size=(3, 3)).astype("float32")
    z = rng.normal(size=(3, T, 2)).astype("float32")
    z2 = z.copy()
    z2[:, 1:] += 2.0
    a, b = model.decode(f, z).numpy(), model.decode(f, z2).numpy()
    np.testing.assert_allclose(a[:, 0], b[:, 0], rtol=1e-6)
    assert np.abs(a[:, 1:] - b[:, 1:]).max() > 1e-3
    assert a.shape == (3, T, *SHAPE)


def test_interface_shapes():
    model = make()
    x = data(3)
    assert model.generate(2).shape == (2, T, *SHAPE)
    assert model.generate_fixed_content(2).shape == (2, T, *SHAPE)
    assert model.generate_fixed_style(2).shape == (2, T, *SHAPE)
    assert model.swap(x, x[::-1]).shape == (3, T, *SHAPE)
    assert model.interpolate(x[:1], x[1:2], steps=5, code="z").shape == (5, T, *SHAPE)
    np.testing.assert_allclose(model.swap(x, x), model.reconstruct(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="`code`"):
        model.interpolate(x[:1], x[1:2], code="h")


def test_trains_on_digits_and_keeps_style_above_the_free_bits(tmp_path):
    from dvrnn_tf.training import TrainConfig, train

    payload = train(TrainConfig(model="disentangled", dataset="digits", hidden_dim=64, f_dim=8,
                                z_dim=4, kl_z_free_bits=1.0, beta_z=1.0, epochs=4,
                                batch_size=32, figures=False, export=False,
                                run_dir=str(tmp_path)), verbose=0)
    nats = payload["per_image_nats"]
    assert nats["kl_z"] > 0.5 and nats["kl_f"] > 0.0
    history = keras.models.load_model(tmp_path / "checkpoints" / "last.keras")
    assert isinstance(history, ContentStyleVAE) and history.kl_z_free_bits == 1.0
