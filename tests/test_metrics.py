"""Measurement (DESIGN 4): morphometrics, variance shares, probes, the judge, swap accuracy,
style preservation on stub models, and the likelihood bounds' properties on tiny models."""
import math
import pathlib
import warnings

import keras
import numpy as np
import pytest

from dvrnn_tf.data import load_split
from dvrnn_tf.metrics import disentanglement as dis
from dvrnn_tf.metrics import probes
from dvrnn_tf.metrics import judge as judge_lib
from dvrnn_tf.metrics import likelihood as lik
from dvrnn_tf.metrics import morphometry as morph

# ---- synthetic strokes ------------------------------------------------------------------------


def bar(angle_deg=0.0, thickness=2.0, length=20, size=28):
    """A vertical bar sheared by `angle_deg` (top to the right for > 0), anti-aliased."""
    image = np.zeros((size, size))
    shear = np.tan(np.radians(angle_deg))
    top = (size - length) // 2
    for r in range(top, top + length):
        up = (top + length / 2) - r - 0.5  # height above the bar's centre, upwards positive
        left = size / 2 + shear * up - thickness / 2
        for c in range(size):
            image[r, c] = max(0.0, min(c + 1, left + thickness) - max(c, left))
    return image


@pytest.mark.parametrize("angle", [-25.0, -10.0, 0.0, 15.0, 30.0])
def test_slant_of_a_sheared_bar_is_its_angle(angle):
    measured = morph.measure_image(bar(angle, thickness=3))["slant"]
    assert math.degrees(measured) == pytest.approx(angle, abs=1.0)


def test_thicker_strokes_measure_thicker():
    values = [morph.measure_image(bar(10.0, thickness=t))["thickness"] for t in (2, 3, 4, 5)]
    assert all(b > a for a, b in zip(values, values[1:])), values
    assert values[0] == pytest.approx(2.0, rel=0.35)


def test_width_and_height_of_a_rectangle():
    image = np.zeros((28, 28, 1))
    image[5:20, 8:14] = 1.0
    m = morph.measure_image(image)
    assert (m["width"], m["height"]) == (pytest.approx(6.0, abs=0.3), pytest.approx(15.0, abs=0.3))
    assert m["slant"] == pytest.approx(0.0, abs=1e-6)
    # Slanting a bar leaves its de-slanted width and its height alone.
    s = morph.measure_image(bar(25.0, thickness=4, length=18))
    assert (s["width"], s["height"]) == (pytest.approx(4.0, abs=0.6), pytest.approx(18.0, abs=0.3))


def test_blank_images_measure_nan_and_batches_keep_their_shape():
    out = morph.measure_images(np.stack([np.zeros((2, 28, 28, 1)),
                                         np.stack([bar(0)[..., None]] * 2)]))
    assert out["slant"].shape == (2, 2)
    assert np.isnan(out["thickness"][0]).all() and np.isfinite(out["thickness"][1]).all()


# ---- variance shares -------------------------------------------------------------------------

def test_style_determined_measures_are_explained_by_style_not_class():
    rng = np.random.default_rng(0)
    styles, classes = np.meshgrid(np.arange(30), np.arange(10), indexing="ij")  # [30, 10]
    style_value = rng.normal(size=30)
    measures = {"a": style_value[styles] + 0.01 * rng.normal(size=styles.shape),
                "b": 2 * style_value[styles] ** 2 + 0.01 * rng.normal(size=styles.shape)}
    shares = morph.variance_shares({k: v.ravel() for k, v in measures.items()},
                                   {"style": styles.ravel(), "class": classes.ravel()})
    assert shares["style"]["mean"] > 0.99
    assert shares["class"]["mean"] < 0.05
    assert shares["class"]["chance"] == pytest.approx(9 / 299)
    assert shares["style"]["chance"] == pytest.approx(29 / 299)


def test_chance_level_is_the_mean_r2_of_random_groupings():
    rng = np.random.default_rng(1)
    values, groups = rng.normal(size=200), np.repeat(np.arange(20), 10)
    estimate = morph.permuted_eta_squared(values, groups, num_permutations=400, seed=2)
    assert estimate == pytest.approx(morph.chance_eta_squared(groups), rel=0.1)


def test_eta_squared_drops_nan_and_is_nan_without_variance():
    assert morph.eta_squared([1.0, 2.0, np.nan, 1.0, 2.0], [0, 1, 1, 0, 1]) == pytest.approx(1.0)
    assert math.isnan(morph.eta_squared([3.0, 3.0, 3.0], [0, 1, 2]))


# ---- probes -----------------------------------------------------------------------------------


class CodeStub:
    """encode(x) -> f carrying the class (x's first pixel), z pure noise."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)

    def encode(self, x, sample=True):
        label = np.asarray(x)[:, 0, 0, 0, 0].astype(np.int64)
        n, t = len(label), np.asarray(x).shape[1]
        f = np.eye(10)[label] * 6 + self.rng.normal(size=(n, 10))
        z = self.rng.normal(size=(n, t, 3))
        return {"f_loc": f, "f_sample": f, "z_loc": z, "z_sample": z}


def _labelled(n, seed):
    y = np.random.default_rng(seed).integers(0, 10, size=n)
    x = np.zeros((n, 2, 2, 2, 1), np.float32)
    x[:, 0, 0, 0, 0] = y
    return x, y


def test_probes_find_a_class_code_and_not_noise():
    (train_x, train_y), (test_x, test_y) = _labelled(1500, 0), _labelled(500, 1)
    out = probes.style_leakage(CodeStub(), train_x, train_y, test_x, test_y)
    assert out["f"] > 0.95
    for key in ("z_sequence", "z_frame"):
        assert abs(out[key] - 0.1) < 0.05, (key, out[key])
    assert out["chance"] == pytest.approx(probes.majority_share(test_y))


class MotionStub:
    """f carries a static class, z_t a per-frame position (x[:, t, 0, 0, 1]); nothing else."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)

    def encode(self, x, sample=True):
        x = np.asarray(x)
        label = x[:, 0, 0, 0, 0].astype(np.int64)
        f = np.eye(4)[label] * 5 + self.rng.normal(size=(len(x), 4))
        z = np.stack([x[:, :, 0, 0, 1], self.rng.normal(size=x.shape[:2])], -1)
        return {"f_loc": f, "f_sample": f, "z_loc": z, "z_sample": z}


def _moving(n, seed):
    rng = np.random.default_rng(seed)
    kind, where = rng.integers(0, 4, n), rng.uniform(size=(n, 3))
    x = np.zeros((n, 3, 1, 1, 2), np.float32)
    x[:, :, 0, 0, 0], x[:, :, 0, 0, 1] = kind[:, None], where
    return x, {"kind": kind, "where": where[..., None].astype(np.float32)}


def test_factor_probes_read_each_factor_from_the_code_that_carries_it():
    from dvrnn_tf.data import Factor

    factors = [Factor("kind", 4), Factor("where", None, per_frame=True, shape=(1,))]
    (train_x, train_y), (test_x, test_y) = _moving(800, 0), _moving(300, 1)
    out = probes.factor_probes(MotionStub(), train_x, train_y, test_x, test_y, factors)["factors"]
    kind, where = out["kind"], out["where"]
    assert kind["metric"] == "accuracy" and kind["f"] > 0.95
    assert abs(kind["z_sequence"] - kind["chance"]) < 0.1, kind
    assert where["metric"] == "r2" and where["chance"] == 0.0
    assert where["z_frame"] > 0.99 and abs(where["f"]) < 0.05, where


# ---- the judge --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def digits_judge(tmp_path_factory):
    directory = tmp_path_factory.mktemp("judges")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, info = judge_lib.load_or_train_judge("digits", judge_dir=directory, epochs=12)
    return model, {**info, "warnings": [str(w.message) for w in caught]}, directory


def test_judge_is_cached_per_dataset_and_seed(digits_judge):
    model, info, directory = digits_judge
    assert info["test_accuracy"] > 0.9, info
    assert not [w for w in info["warnings"] if "shuffle" in w], info["warnings"]  # quiet training
    assert info["path"] == str(judge_lib.judge_path("digits", 0, directory, info["key"]))
    assert pathlib.Path(info["path"]).is_file()
    again, info2 = judge_lib.load_or_train_judge("digits", judge_dir=directory, epochs=12)
    assert info2["cached"] and info2["test_accuracy"] == info["test_accuracy"]
    x = load_split("digits", "test").as_float()[:50]
    np.testing.assert_array_equal(judge_lib.predict(again, x), judge_lib.predict(model, x))
    assert judge_lib.judge_path("emnist/letters", 3, directory, "k1").name == (
        "emnist_letters-seed3-k1.keras")


class SwapStub:
    """A "model" whose swap returns the content sequence itself: real images of class A."""

    def swap(self, x_content, x_style):
        return x_content


def _digit_sequences(n=60, t=4, seed=0):
    test = load_split("digits", "test")
    images, labels = test.as_float(), np.asarray(test.labels)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=n)
    idx = np.stack([rng.choice(np.flatnonzero(labels == c), size=t) for c in y])
    return images[idx], y


def test_swap_of_real_images_scores_the_judges_own_accuracy(digits_judge):
    model, _, _ = digits_judge
    x, y = _digit_sequences()
    out = dis.swap_accuracy(SwapStub(), model, x, y)
    own = float(np.mean(judge_lib.predict(model, x) == y[:, None]))
    assert out["accuracy"] == pytest.approx(own)
    assert out["judge_accuracy_on_content"] == pytest.approx(own)
    assert out["accuracy"] > 0.85
    assert out["style_class_share"] < 0.1  # partners always have another class
    assert len(out["per_step"]) == x.shape[1]
    partner = dis.swap_pairs(y, seed=0)
    assert (y[partner] != y).all()
    # By A's class: the judge's own accuracy per class, its errors as a confusion matrix.
    pred = judge_lib.predict(model, x)
    for c in range(10):
        assert out["per_class"][c] == pytest.approx(np.mean(pred[y == c] == c)), c
    confusion = np.array(out["confusion"])
    assert confusion.sum() == pred.size and np.trace(confusion) == (pred == y[:, None]).sum()
    wrong = np.flatnonzero(pred != y[:, None])
    if len(wrong):  # the first error lands in its (true, judged) cell
        i, j = np.unravel_index(wrong[0], pred.shape)
        assert confusion[y[i], pred[i, j]] >= 1 and pred[i, j] != y[i]


def test_swap_per_class_is_none_for_a_class_no_sequence_has(digits_judge):
    model, _, _ = digits_judge
    x, y = _digit_sequences(n=20)
    keep = y != 3
    out = dis.swap_accuracy(SwapStub(), model, x[keep], y[keep])
    assert out["per_class"][3] is None and sum(map(sum, out["confusion"])) == keep.sum() * 4


# ---- style preservation on a stub whose style is the slant ---------------------------------------


class SlantStub:
    """Decodes a bar whose slant is z[..., 0] (degrees / 10), whatever the content f."""

    def encode(self, x, sample=False):
        n, t = len(x), x.shape[1]
        rng = np.random.default_rng(int(np.asarray(x).sum() * 1000) % 2**31)
        return {"f_loc": rng.normal(size=(n, 4)), "z_loc": rng.uniform(-3, 3, size=(n, t, 2))}

    def decode(self, f, z):
        z = np.asarray(z)
        out = np.zeros(z.shape[:2] + (28, 28, 1), np.float32)
        for i in range(z.shape[0]):
            for j in range(z.shape[1]):
                out[i, j, ..., 0] = bar(10 * z[i, j, 0], thickness=2.5 + 0.5 * z[i, j, 1] / 3)
        return out


def test_style_preservation_credits_the_style_source():
    rng = np.random.default_rng(0)
    x = rng.random((30, 3, 28, 28, 1)).astype(np.float32)
    y = np.arange(30) % 10
    out = dis.style_preservation(SlantStub(), x, y, num_styles=6, scale=2)
    assert out["num_images"] == 6 * 10 * 3
    assert out["style_source"]["per_measure"]["slant"] > 0.99
    assert out["style_source"]["mean"] > 0.9
    assert out["content_class"]["mean"] < 0.05
    assert out["content_class"]["chance"] == pytest.approx(9 / 179)


# ---- likelihood bounds ------------------------------------------------------------------------

KINDS = ["vrnn", "full", "factorized", "content_style", "beta_vae"]


@pytest.fixture(scope="module")
def tiny_models():
    """One briefly trained tiny model of each kind on binarized digits, and a test batch."""
    from dvrnn_tf.training.factory import build_model
    from config_helpers import config_for
    from dvrnn_tf.training.loop import make_samplers, open_data

    models = {}
    for kind in KINDS:
        config = config_for(kind, hidden_dim=32, rnn_dim=16, f_dim=4, z_dim=2, seq_len=4,
                            seed=0, run_dir="unused")
        source = open_data(config)
        train_sampler, eval_sampler = make_samplers(source)
        keras.utils.set_random_seed(0)
        model = build_model(config, source.spec())
        model.compile(keras.optimizers.Adam(3e-3))
        model.fit(train_sampler.dataset(32, training=True, steps=60), epochs=1, verbose=0,
                  shuffle=False)  # the sampler orders the data
        x = next(iter(eval_sampler.dataset(12, training=False)))[0].numpy()
        models[kind] = (model, x)
    return models


@pytest.mark.parametrize("kind", KINDS)
def test_log_densities_match_the_training_objective(tiny_models, kind, monkeypatch):
    """On the posterior-mean path -ELBO's terms equal compute_terms' (same noise: zeros)."""
    import tensorflow as tf

    model, x = tiny_models[kind]
    monkeypatch.setattr(model, "normal_noise", lambda shape: tf.zeros(shape, model.compute_dtype))
    expected = {k: float(v) for k, v in model.compute_terms(x).items()}
    terms = lik.sample_terms(model, x, mean_path=True)
    t = x.shape[1]
    assert -terms["log_px"].sum(-1).mean() / t == pytest.approx(expected["nll"], rel=1e-4)
    assert terms["kl_z"].sum(-1).mean() / t == pytest.approx(expected["kl_z"], rel=1e-3, abs=1e-5)
    if "kl_f" in expected:
        assert terms["kl_f"].mean() / t == pytest.approx(expected["kl_f"], rel=1e-3, abs=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_iwae_bound_properties(tiny_models, kind):
    """K = 1 equals the ELBO in expectation; the bound tightens with K, above the ELBO."""
    model, x = tiny_models[kind]
    draws = 40
    k1 = np.stack([lik.iwae_log_likelihood(model, x, 1, seed=s) for s in range(draws)])
    elbo = np.stack([
        (lambda t: t["log_px"].sum(-1) - t["kl_z"].sum(-1) - t["kl_f"])(
            lik.sample_terms(model, x, seed=s)) for s in range(draws)])
    diff = k1.mean(0) - elbo.mean(0)  # per sequence, expectation 0
    se = np.sqrt(k1.var(0, ddof=1) / draws + elbo.var(0, ddof=1) / draws)
    assert abs(diff.mean()) < 4 * np.sqrt((se ** 2).sum()) / len(diff) + 1e-3, (diff, se)
    bounds = {k: np.mean([lik.iwae_log_likelihood(model, x, k, chunk_size=16, seed=100 + s)
                          for s in range(4)], axis=0).mean() for k in (1, 10, 100)}
    noise = 4 * k1.mean(-1).std(ddof=1) / np.sqrt(4)
    assert bounds[10] >= bounds[1] - noise and bounds[100] >= bounds[10] - noise, bounds
    assert bounds[100] > bounds[1], bounds
    assert bounds[100] >= elbo.mean(), (bounds, elbo.mean())
    # The report: -IWAE <= -ELBO, per image, with the counts that produced it.
    report = lik.likelihood_report(model, [x], num_samples=200, chunk_size=64)
    assert report["iwae"]["nats_per_image"] <= report["neg_elbo"]["nats_per_image"] + 0.5
    assert report["iwae"]["k"] == 200 and report["num_sequences"] == len(x)
    assert report["iwae"]["bits_per_dim"] == pytest.approx(
        report["iwae"]["nats_per_image"] / (model.x_dim * math.log(2)))


def test_chunked_iwae_equals_one_big_chunk_in_distribution(tiny_models):
    model, x = tiny_models["factorized"]
    a = lik.iwae_log_likelihood(model, x, 300, chunk_size=300, seed=5)
    b = lik.iwae_log_likelihood(model, x, 300, chunk_size=7, seed=5)
    assert np.abs(a - b).mean() < 0.5, (a, b)
    with pytest.raises(ValueError, match="num_samples"):
        lik.iwae_log_likelihood(model, x, 0)


def test_active_units_count_collapsed_and_used_units():
    rng = np.random.default_rng(0)
    z_loc = np.concatenate([rng.normal(size=(100, 4, 1)), np.full((100, 4, 1), 0.3)], -1)
    kl_z = np.concatenate([np.full((100, 4, 1), 2.0), np.full((100, 4, 1), 1e-4)], -1)
    out = lik.active_units(z_loc, np.zeros((100, 0)), kl_z, np.zeros((100, 0)))
    assert out["z"]["burda"] == 1 and out["z"]["kl"] == 1 and "f" not in out


class _Reconstructs:
    def __init__(self, fn):
        self.reconstruct = fn


def test_reconstruction_fidelity_is_1_for_a_perfect_model_and_none_without_variance():
    rng = np.random.default_rng(3)
    angles, widths = rng.uniform(-25, 25, (6, 4)), rng.uniform(1.5, 4.0, (6, 4))
    x = np.zeros((6, 4, 28, 28, 1), np.float32)
    same_slant_one_width = np.zeros_like(x)
    for i in range(6):
        for j in range(4):
            x[i, j, ..., 0] = bar(angles[i, j], thickness=widths[i, j])
            same_slant_one_width[i, j, ..., 0] = bar(angles[i, j], thickness=2.5)
    perfect = dis.reconstruction_fidelity(_Reconstructs(lambda v: v), x, scale=2)
    assert perfect["num_images"] == 24
    assert perfect["r2"]["slant"] > 0.999 and perfect["r2"]["thickness"] > 0.999
    frozen = dis.reconstruction_fidelity(
        _Reconstructs(lambda v: np.broadcast_to(x[:1, :1], v.shape)), x, scale=2)
    assert frozen["r2"]["slant"] is None  # a constant output has no variance to explain
    # Reconstructions that keep the slant but not the thickness.
    kept = dis.reconstruction_fidelity(
        _Reconstructs(lambda v: same_slant_one_width[:len(v)]), x, scale=2)
    assert kept["r2"]["slant"] > 0.9 and kept["r2"]["thickness"] < 0.5, kept
