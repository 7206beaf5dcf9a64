"""The beta-VAE (DESIGN 2.3) and its latent-space analysis (paper section 4.1)."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from sklearn.datasets import load_digits

from dvrnn_tf.analysis import (analyze, encode_means, knn_accuracy, nearest_latent_decodes,
                               scatter_by_class)
from dvrnn_tf.models import BetaVAE
from dvrnn_tf.objectives import Capacity, Constant

tfd = tfp.distributions

try:
    from dvrnn_tf.data import ImageSet
except ImportError:  # the analysis only needs `as_float()` and `labels`
    class ImageSet:
        def __init__(self, name, split, images, labels, num_classes):
            self.name, self.split, self.images, self.labels = name, split, images, labels

        def as_float(self):
            return self.images


@pytest.fixture(scope="module")
def digits():
    """sklearn's 8x8 digits in [0, 1], split 1400 / 397 with a fixed permutation."""
    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[..., None]
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], data.target[order].astype(np.int64)
    return {"train": ImageSet("digits", "train", images[:1400], labels[:1400], 10),
            "test": ImageSet("digits", "test", images[1400:], labels[1400:], 10)}


def binarized(images, seed=0):
    """[N, H, W, C] grey levels -> fixed-seed binary frames [N, 1, H, W, C] (T = 1)."""
    rng = np.random.default_rng(seed)
    return (rng.random(images.shape) < images).astype(np.float32)[:, None]


@pytest.fixture(scope="module")
def trained(digits):
    keras.utils.set_random_seed(0)
    model = BetaVAE((8, 8, 1), seq_len=1, hidden_dim=128, z_dim=2, seed=0)
    model.compile(keras.optimizers.Adam(2e-3))
    history = model.fit(binarized(digits["train"].as_float()), batch_size=64, epochs=12,
                        shuffle=True, verbose=0)
    return model, history.history


def test_shapes_of_distributions_and_methods():
    model = BetaVAE((8, 8, 1), seq_len=4, hidden_dim=16, z_dim=3, seed=1)
    x = np.random.default_rng(0).random((2, 4, 8, 8, 1)).astype(np.float32)
    x_flat = model.flatten_frames(x)
    q = model.posterior_distribution(x_flat)
    p = model.prior_distribution(tf.shape(x_flat)[:-1])
    lik = model.likelihood_distribution(q.sample())
    for dist, event in ((q, [3]), (p, [3]), (lik, [64])):
        assert dist.batch_shape == [2, 4] and dist.event_shape == event
    gaussian = BetaVAE((8, 8, 1), seq_len=4, hidden_dim=16, z_dim=3, likelihood="gaussian")
    assert gaussian.likelihood_distribution(tf.zeros([5, 3])).event_shape == [64]
    assert gaussian.decoder_out.units == 128  # loc and scale per pixel

    codes = model.encode(x)
    assert set(codes) == {"z_loc", "z_scale", "z_sample"}
    assert all(v.shape == (2, 4, 3) for v in codes.values())
    assert np.all(codes["z_scale"].numpy() > 0)
    for images, shape in ((model(x), (2, 4, 8, 8, 1)), (model.reconstruct(x), (2, 4, 8, 8, 1)),
                          (model.decode(tf.zeros([5, 4, 3])), (5, 4, 8, 8, 1)),
                          (model.decode(tf.zeros([5, 3])), (5, 8, 8, 1)),
                          (model.generate(6), (6, 4, 8, 8, 1))):
        assert images.shape == shape
        assert np.all((images.numpy() >= 0) & (images.numpy() <= 1))
    terms = model.compute_terms(x)
    assert set(terms) == {"nll", "kl_z"} and all(v.shape == () for v in terms.values())
    assert model.metric_names == ["loss", "nll", "kl_z"]
    with pytest.raises(ValueError):
        BetaVAE((8, 8, 1), z_dim=0)


def test_kl_term_is_analytic_kl_to_standard_normal():
    model = BetaVAE((8, 8, 1), seq_len=3, hidden_dim=32, z_dim=4, seed=7)
    x = np.random.default_rng(1).random((5, 3, 8, 8, 1)).astype(np.float32)
    codes = model.encode(x)
    loc, scale = codes["z_loc"].numpy(), codes["z_scale"].numpy()
    q = tfd.MultivariateNormalDiag(loc, scale)
    p = tfd.MultivariateNormalDiag(tf.zeros_like(loc), tf.ones_like(scale))
    expected = tf.reduce_mean(tfd.kl_divergence(q, p)).numpy()
    closed_form = np.mean(0.5 * np.sum(scale**2 + loc**2 - 1 - 2 * np.log(scale), axis=-1))
    np.testing.assert_allclose(expected, closed_form, rtol=1e-5)
    # The KL is analytic: the posterior noise drawn inside compute_terms must not change it.
    for _ in range(2):
        np.testing.assert_allclose(model.compute_terms(x)["kl_z"].numpy(), expected, rtol=1e-5)


GAMMA, C_MAX, C_STEPS = 10.0, 4.0, 6


def fit_with_capacity():
    """3 epochs of 4 steps under gamma * |KL - C(step)|, C: 0 -> C_MAX over C_STEPS steps."""
    model = BetaVAE((8, 8, 1), seq_len=1, hidden_dim=16, seed=0,
                    beta_z=Capacity(gamma=GAMMA, c_max=C_MAX, capacity_steps=C_STEPS))
    model.compile("adam")
    x = np.random.default_rng(2).random((8, 1, 8, 8, 1)).astype(np.float32)
    history = model.fit(x, batch_size=2, epochs=3, shuffle=False, verbose=0).history
    return model, x, history


def test_capacity_schedule_is_tracked_and_penalized():
    model, x, history = fit_with_capacity()
    assert "capacity_kl_z" in model.metric_names and len(history["capacity_kl_z"]) == 3
    # C rises over the first epochs and then holds at C_MAX.
    assert history["capacity_kl_z"][0] < history["capacity_kl_z"][1] < C_MAX
    assert history["capacity_kl_z"][2] == pytest.approx(C_MAX)
    result = model.evaluate(x, batch_size=8, verbose=0, return_dict=True)
    assert result["capacity_kl_z"] == pytest.approx(C_MAX)  # 12 steps > C_STEPS
    assert result["loss"] == pytest.approx(
        result["nll"] + GAMMA * abs(result["kl_z"] - C_MAX), rel=1e-5)
    # The schedule survives the config round trip.
    clone = BetaVAE.from_config(model.get_config())
    assert clone.kl_weights["kl_z"].get_config() == model.kl_weights["kl_z"].get_config()
    assert isinstance(BetaVAE((8, 8, 1), beta_z=5.0).kl_weights["kl_z"], Constant)


def test_tracked_capacity_is_the_one_in_the_loss():
    _, _, history = fit_with_capacity()
    # Mean over each epoch's 4 steps of C(step), step = iterations before that step's update.
    expected = [np.mean([C_MAX * min(1.0, s / C_STEPS) for s in range(4 * e, 4 * e + 4)])
                for e in range(3)]
    np.testing.assert_allclose(history["capacity_kl_z"], expected, rtol=1e-6)


def test_short_fit_on_digits_lowers_the_loss(trained):
    _, history = trained
    assert np.all(np.isfinite(history["loss"]))
    # A digit carries ~38 nats of binary pixels at init: training must win a good share.
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    assert history["nll"][-1] < history["nll"][0]


def test_keras_round_trip_keeps_weights_outputs_and_training(trained, digits, tmp_path):
    model, _ = trained
    path = str(tmp_path / "beta_vae.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, BetaVAE) and loaded.get_config() == model.get_config()
    assert len(loaded.weights) == len(model.weights)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = digits["test"].as_float()[:16, None]
    np.testing.assert_array_equal(model.reconstruct(x).numpy(), loaded.reconstruct(x).numpy())
    iterations = int(model.optimizer.iterations.numpy())
    assert int(loaded.optimizer.iterations.numpy()) == iterations
    history = loaded.fit(binarized(digits["train"].as_float()[:256], seed=1), batch_size=64,
                         epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert int(loaded.optimizer.iterations.numpy()) == iterations + 4


def test_knn_accuracy_separable_and_shuffled():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])

    def toy(n):
        labels = rng.integers(0, 3, n)
        return centres[labels] + 0.5 * rng.standard_normal((n, 2)), labels

    (train, train_y), (test, test_y) = toy(3000), toy(3000)
    assert knn_accuracy(train, train_y, test, test_y, k=5) == 1.0
    shuffled = knn_accuracy(train, rng.permutation(train_y), test, test_y, k=5)
    assert abs(shuffled - 1 / 3) < 0.06


def test_figures_and_nearest_latents(trained, digits, tmp_path):
    model, _ = trained
    images = digits["test"].as_float()
    codes = encode_means(model, images, batch_size=64)
    assert codes.shape == (len(images), 2)
    direct = model.encode(images[:, None])["z_loc"].numpy()[:, 0]
    np.testing.assert_allclose(codes, direct, rtol=1e-5, atol=1e-6)
    labels = digits["test"].labels
    for z_dim in (2, 3):
        path = scatter_by_class(np.random.default_rng(0).standard_normal((50, z_dim)),
                                labels[:50], str(tmp_path / f"scatter{z_dim}.png"))
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    path = str(tmp_path / "sub" / "nearest.png")
    decoded = nearest_latent_decodes(model, codes, codes[:3], k=4, path=path, labels=labels,
                                     query_labels=labels[:3])
    assert decoded.shape == (3, 4, 8, 8, 1) and os.path.getsize(path) > 0
    # A query that is a training latent is its own nearest neighbour.
    np.testing.assert_allclose(decoded[:, 0], model.decode(codes[:3]).numpy(), atol=1e-6)


def test_analyze_on_briefly_trained_digits_model(trained, digits, tmp_path):
    model, _ = trained
    result = analyze(model, digits["train"], digits["test"], str(tmp_path), seed=3,
                     max_points=1000)
    assert result["knn_accuracy"] > 0.2  # chance is ~0.1 for ten balanced classes
    assert result["chance_accuracy"] < 0.2
    assert (result["k"], result["n_train"], result["n_test"], result["seed"]) == (5, 1000, 397, 3)
    for name in ("latent_scatter.png", "nearest_latents.png"):
        assert os.path.getsize(tmp_path / name) > 1000
    with open(tmp_path / "latent_space.json") as f:
        assert json.load(f) == result
