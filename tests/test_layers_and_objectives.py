"""Building blocks: MLP, GaussianHead / diag_gaussian, the likelihoods and the KL weights."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from dvrnn_tf.layers import MLP, GaussianHead, diag_gaussian
from dvrnn_tf.objectives import (
    LIKELIHOODS, SCHEDULES, Capacity, Constant, LinearWarmup, get_likelihood, kl_weight_from_flags)
from dvrnn_tf.objectives.kl_weights import deserialize, serialize

tfd = tfp.distributions
B, T, D = 3, 5, 12


def _rng(seed=0):
    return np.random.default_rng(seed)


# ---- layers ------------------------------------------------------------------------------


@pytest.mark.parametrize("leading", [(B,), (B, T)])
def test_mlp_acts_on_last_axis(leading):
    net = MLP([7, 4], name="net")
    out = net(tf.zeros(leading + (D,)))
    assert tuple(out.shape) == leading + (4,)
    assert net.compute_output_shape(leading + (D,)) == leading + (4,)
    assert float(tf.reduce_min(net(tf.constant(_rng().normal(size=leading + (D,)), tf.float32)))) >= 0.0


def test_mlp_config_round_trip_and_validation():
    net = MLP([7, 4], activation="tanh", name="net")
    assert MLP.from_config(net.get_config()).get_config() == net.get_config()
    with pytest.raises(ValueError, match="units"):
        MLP([4, 0])
    with pytest.raises(ValueError, match="units"):
        MLP([])


@pytest.mark.parametrize("leading", [(B,), (B, T)])
def test_gaussian_head_shapes_and_positive_scale(leading):
    head = GaussianHead(4, name="head")
    # Large inputs drive the raw scale far negative: softplus must still leave scale > 0.
    inputs = tf.constant(1e3 * _rng().normal(size=leading + (D,)), tf.float32)
    loc, scale = head(inputs)
    assert tuple(loc.shape) == tuple(scale.shape) == leading + (4,)
    assert head.compute_output_shape(leading + (D,)) == (leading + (4,),) * 2
    assert float(tf.reduce_min(scale)) >= np.float32(head.min_scale) > 0
    assert np.all(np.isfinite(scale.numpy()))

    dist = head.distribution(inputs)
    assert tuple(dist.batch_shape) == leading
    assert tuple(dist.event_shape) == (4,)
    assert tuple(dist.sample().shape) == leading + (4,)
    np.testing.assert_allclose(dist.mean().numpy(), loc.numpy(), rtol=1e-6)
    np.testing.assert_allclose(dist.stddev().numpy(), scale.numpy(), rtol=1e-5)


def test_gaussian_head_config_round_trip_and_validation():
    head = GaussianHead(4, min_scale=1e-3, name="head")
    clone = GaussianHead.from_config(head.get_config())
    assert clone.get_config() == head.get_config()
    assert (clone.dim, clone.min_scale) == (4, 1e-3)
    with pytest.raises(ValueError, match="dim"):
        GaussianHead(0)
    with pytest.raises(ValueError, match="min_scale"):
        GaussianHead(3, min_scale=0.0)


def test_diag_gaussian_is_independent_normal_over_last_axis():
    loc = tf.constant(_rng().normal(size=(B, T, 4)), tf.float32)
    scale = tf.constant(_rng(1).uniform(0.1, 2.0, size=(B, T, 4)), tf.float32)
    dist = diag_gaussian(loc, scale)
    assert tuple(dist.batch_shape) == (B, T) and tuple(dist.event_shape) == (4,)
    x = tf.constant(_rng(2).normal(size=(B, T, 4)), tf.float32)
    expected = tfd.MultivariateNormalDiag(loc, scale).log_prob(x)
    np.testing.assert_allclose(dist.log_prob(x).numpy(), expected.numpy(), rtol=1e-5)


# ---- likelihoods -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_likelihood_shapes(name):
    lik = get_likelihood(name)
    assert lik.name == name
    params = tf.constant(_rng().normal(size=(B, T, lik.params_per_pixel * D)), tf.float32)
    dist = lik.distribution(params)
    assert tuple(dist.batch_shape) == (B, T)
    assert tuple(dist.event_shape) == (D,)
    x = tf.constant(_rng(1).uniform(size=(B, T, D)), tf.float32)
    if lik.binarize:
        x = tf.round(x)
    log_prob = dist.log_prob(x)
    assert tuple(log_prob.shape) == (B, T)
    assert np.all(np.isfinite(log_prob.numpy()))
    assert tuple(lik.mean(params).shape) == (B, T, D)


def test_gaussian_likelihood_has_two_params_per_pixel():
    lik = get_likelihood("gaussian")
    assert lik.params_per_pixel == 2
    assert all(LIKELIHOODS[n].params_per_pixel == 1 for n in LIKELIHOODS if n != "gaussian")
    raw = _rng().normal(size=(B, T, 2 * D)).astype("float32")
    x = _rng(1).uniform(size=(B, T, D)).astype("float32")
    loc, raw_scale = raw[..., :D], raw[..., D:]
    sigma = np.log1p(np.exp(raw_scale)) + 1e-3
    mu = 1 / (1 + np.exp(-loc))
    expected = np.sum(-0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi), -1)
    np.testing.assert_allclose(lik.distribution(tf.constant(raw)).log_prob(x).numpy(), expected,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(lik.mean(tf.constant(raw)).numpy(), mu, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_likelihood_mean_in_unit_interval(name):
    lik = get_likelihood(name)
    # Extremes and the numerically delicate neighbourhood of logit 0 (continuous Bernoulli).
    values = np.array([-80.0, -20.0, -1.0, -1e-4, 0.0, 1e-6, 1e-3, 1.0, 20.0, 80.0], "float32")
    values = np.concatenate([values, _rng().normal(scale=5.0, size=D * lik.params_per_pixel * 4 - 10)])
    params = tf.constant(values.reshape(2, 2, D * lik.params_per_pixel), tf.float32)
    mean = lik.mean(params).numpy()
    assert mean.shape == (2, 2, D)
    assert np.all(np.isfinite(mean))
    assert mean.min() >= 0.0 and mean.max() <= 1.0


def test_bce_on_grey_levels_is_the_cross_entropy():
    lik = get_likelihood("bce")
    assert not lik.binarize and get_likelihood("bernoulli").binarize
    logits = _rng().normal(scale=3.0, size=(B, T, D))
    x = _rng(1).uniform(size=(B, T, D))  # grey levels, not {0, 1}
    p = 1 / (1 + np.exp(-logits))
    cross_entropy = -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=-1)
    log_prob = lik.distribution(tf.constant(logits, tf.float32)).log_prob(tf.constant(x, tf.float32))
    np.testing.assert_allclose(-log_prob.numpy(), cross_entropy, rtol=1e-5)


def test_continuous_bernoulli_is_a_density():
    lik = get_likelihood("continuous_bernoulli")
    logits = tf.constant([[-4.0], [-0.5], [1e-3], [3.0]], tf.float32)  # 4 one-pixel "images"
    grid = np.linspace(0.0, 1.0, 2001, dtype="float32")
    dens = np.exp(lik.distribution(logits[:, None, :]).log_prob(grid[None, :, None]).numpy())
    np.testing.assert_allclose(np.trapezoid(dens, grid, axis=-1), 1.0, atol=1e-3)


def test_unknown_likelihood_names_allowed_values():
    with pytest.raises(ValueError, match="bernoulli"):
        get_likelihood("poisson")


# ---- KL weights --------------------------------------------------------------------------


KL = 7.0


def _value(t):
    return float(t.numpy()) if hasattr(t, "numpy") else float(t)


@pytest.mark.parametrize("step", [0, 50, 100, 1000])
def test_constant_weight(step):
    weight = Constant(2.5)
    assert _value(weight.penalty(KL, step)) == pytest.approx(2.5 * KL)
    assert weight.target(step) is None


@pytest.mark.parametrize("step, ramp", [(0, 0.0), (25, 0.25), (50, 0.5), (100, 1.0), (250, 1.0)])
def test_linear_warmup_weight(step, ramp):
    weight = LinearWarmup(beta=2.0, warmup_steps=100)
    # The optimizer's iteration counter is an int64 variable.
    for s in (step, tf.constant(step, tf.int64), tf.Variable(step, dtype=tf.int64)):
        assert _value(weight.penalty(KL, s)) == pytest.approx(2.0 * ramp * KL)
    assert weight.target(step) is None


def test_linear_warmup_without_warmup_is_constant():
    assert _value(LinearWarmup(beta=3.0, warmup_steps=0).penalty(KL, 0)) == pytest.approx(3.0 * KL)


@pytest.mark.parametrize("step, capacity", [(0, 0.0), (50, 10.0), (100, 20.0), (400, 20.0)])
def test_capacity_weight(step, capacity):
    weight = Capacity(gamma=10.0, c_max=20.0, capacity_steps=100)
    assert _value(weight.target(step)) == pytest.approx(capacity)
    assert _value(weight.target(tf.constant(step, tf.int64))) == pytest.approx(capacity)
    for kl in (0.0, KL, 15.0, 30.0):
        assert _value(weight.penalty(kl, step)) == pytest.approx(10.0 * abs(kl - capacity))


def test_capacity_penalty_is_differentiable_in_kl():
    weight = Capacity(gamma=10.0, c_max=20.0, capacity_steps=100)
    kl = tf.Variable(5.0)
    with tf.GradientTape() as tape:
        penalty = weight.penalty(kl, tf.constant(100, tf.int64))  # target 20 > kl
    assert float(tape.gradient(penalty, kl)) == pytest.approx(-10.0)


WEIGHTS = [Constant(0.5), LinearWarmup(beta=25.0, warmup_steps=300),
           Capacity(gamma=100.0, c_max=25.0, capacity_steps=1000)]


@pytest.mark.parametrize("weight", WEIGHTS, ids=lambda w: type(w).__name__)
def test_kl_weight_serialization_round_trip(weight):
    clone = type(weight).from_config(weight.get_config())
    assert type(clone) is type(weight) and clone.get_config() == weight.get_config()

    config = serialize(weight)
    assert config["class_name"] == type(weight).__name__
    revived = deserialize(config)
    assert type(revived) is type(weight) and revived.get_config() == weight.get_config()
    import json
    revived = deserialize(json.loads(json.dumps(config)))  # it lives in model JSON configs
    assert revived.get_config() == weight.get_config()

    keras_config = keras.saving.serialize_keras_object(weight)
    revived = keras.saving.deserialize_keras_object(keras_config)
    assert type(revived) is type(weight) and revived.get_config() == weight.get_config()

    for step in (0, 150, 5000):
        assert _value(revived.penalty(KL, step)) == pytest.approx(_value(weight.penalty(KL, step)))


def test_deserialize_accepts_numbers_and_instances_and_rejects_junk():
    assert deserialize(2).get_config() == {"beta": 2.0}
    weight = Capacity()
    assert deserialize(weight) is weight
    with pytest.raises(ValueError, match="KL schedule"):
        deserialize({"class_name": "Cosine", "config": {}})


@pytest.mark.parametrize("cls, argument", [
    (Constant, "beta"), (LinearWarmup, "beta"), (LinearWarmup, "warmup_steps"),
    (Capacity, "gamma"), (Capacity, "c_max"), (Capacity, "capacity_steps")])
def test_negative_values_rejected_naming_the_argument(cls, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        cls(**{argument: -1})


def test_kl_weight_from_flags():
    assert set(SCHEDULES) == {"constant", "warmup", "capacity"}
    assert kl_weight_from_flags("constant", 0.5).get_config() == {"beta": 0.5}
    assert kl_weight_from_flags("warmup", 5.0, warmup_steps=10).get_config() == {
        "beta": 5.0, "warmup_steps": 10}
    assert kl_weight_from_flags("capacity", 1.0, gamma=50.0, c_max=5.0, capacity_steps=7
                                ).get_config() == {"gamma": 50.0, "c_max": 5.0, "capacity_steps": 7}
    with pytest.raises(ValueError, match="constant"):
        kl_weight_from_flags("cyclic", 1.0)
