"""The dynamics prior p(z_t | z_<t) (DSVAE) and the content/style model that uses it."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from dvrnn_tf.cells.vrnn_cell import gru_states
from dvrnn_tf.cells.style_prior import RecurrentStylePrior
from dvrnn_tf.metrics import likelihood as lik
from dvrnn_tf.models import ContentStyleVAE
from model_harness import ModelHarnessTests


def test_fused_gru_states_equal_keras_gru():
    gru = keras.layers.GRU(6, return_sequences=True)
    x = np.random.default_rng(0).normal(size=(3, 5, 4)).astype("float32")
    reference = gru(x)
    np.testing.assert_allclose(gru_states(gru, x), reference, atol=1e-5)
    np.testing.assert_allclose(gru_states(gru, np.swapaxes(x, 0, 1), time_major=True),
                               np.swapaxes(reference, 0, 1), atol=1e-5)


def test_sampled_codes_follow_the_prior_they_were_drawn_from():
    prior = RecurrentStylePrior(z_dim=3, units=8)
    prior.build()
    eps = tf.random.stateless_normal([4, 6, 3], seed=[1, 2])
    z = prior.sample(eps)
    loc, scale = prior.params(z)  # teacher-forced on the sampled path
    np.testing.assert_allclose(z, loc + scale * eps, atol=1e-5)
    # Step t's prior depends on the earlier codes: change z_1 and every later loc moves.
    moved = prior.params(tf.concat([z[:, :1] + 1.0, z[:, 1:]], 1))[0]
    np.testing.assert_allclose(moved[:, 0], loc[:, 0])
    assert np.all(np.abs(moved[:, 1:] - loc[:, 1:]).max(axis=(0, 2)) > 1e-4)
    assert np.all(scale.numpy() > 0)


def small(**kw):
    return ContentStyleVAE((6, 6, 1), seq_len=4, hidden_dim=16, f_dim=3, z_dim=2, seed=0,
                           style_prior="recurrent", **kw)


class TestRecurrentPriorModelHarness(ModelHarnessTests):
    def make_model(self):
        return small()

    def make_data(self):
        return np.random.default_rng(1).uniform(size=(4, 4, 6, 6, 1)).astype("float32")


def test_kl_and_iwae_terms_use_the_dynamics_prior():
    model = small()
    x = np.random.default_rng(2).uniform(size=(5, 4, 6, 6, 1)).astype("float32")
    eps_z = np.random.default_rng(3).normal(size=(5, 4, 2)).astype("float32")
    eps_f = np.random.default_rng(4).normal(size=(5, 3)).astype("float32")
    terms = lik.forward_terms(model, x, eps_z, eps_f)
    p_loc, p_scale = model.style_prior_params(terms["z_sample"])
    assert not np.allclose(p_loc, 0.0)  # not the standard normal
    # log p(z) under p(z_t | z_<t) on the sampled path, summed per sequence.
    expected = (-0.5 * ((terms["z_sample"] - p_loc) / p_scale) ** 2 - np.log(p_scale)
                - 0.5 * np.log(2 * np.pi)).numpy().sum(axis=(1, 2))
    np.testing.assert_allclose(terms["log_pz"][:, 0], expected, rtol=1e-4)
    assert terms["kl_z"].shape == (5, 4) and np.all(terms["kl_z"] >= 0)
    # IWAE <= -ELBO holds with the new prior too (a bound).
    report = lik.likelihood_report(model, [x], num_samples=50, chunk_size=25)
    assert report["iwae"]["nats_per_image"] <= report["neg_elbo"]["nats_per_image"] + 0.5


def test_generation_draws_style_from_the_dynamics_prior(monkeypatch):
    model = small()
    calls = []
    original = model.style_prior_net.sample
    monkeypatch.setattr(model.style_prior_net, "sample",
                        lambda eps: (calls.append(eps.shape), original(eps))[1])
    assert model.generate(3).shape == (3, 4, 6, 6, 1)
    assert model.generate_fixed_content(2).shape == (2, 4, 6, 6, 1)
    assert [tuple(s) for s in calls] == [(3, 4, 2), (2, 4, 2)]
    with pytest.raises(ValueError, match="`style_prior` must be one of normal, recurrent"):
        ContentStyleVAE((6, 6, 1), style_prior="lstm")


def test_swap_nll_scores_each_contents_codes_read_back_from_its_swap():
    model = small(swap_consistency=2.0, style_sees_content=False)
    x = np.random.default_rng(5).uniform(size=(3, 4, 6, 6, 1)).astype("float32")
    q = model.encode(x)
    f, z = q["f_sample"].numpy(), q["z_sample"].numpy()
    got = model.swap_nll(f, z, model.phi_f(f))
    # Through the public codes API: row i's content with row i-1's style, encoded again.
    partner = np.roll(z, 1, axis=0)
    read = {k: v.numpy() for k, v in model.encode(model.decode(f, partner), sample=False).items()}
    expected = (0.5 * ((f - read["f_loc"]) ** 2).sum(-1).mean() / 4
                + 0.5 * ((partner - read["z_loc"]) ** 2).sum(-1).mean())
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # The term is in the loss with its weight, and logged.
    terms = model.compute_terms(x)
    assert "swap_nll" in model.metric_names and float(terms["swap_nll"]) > 0
    plain = {k: v for k, v in terms.items() if k != "swap_nll"}
    np.testing.assert_allclose(model.total_loss(terms, 0) - small().total_loss(plain, 0),
                               2.0 * terms["swap_nll"], rtol=1e-5)
    assert "swap_nll" not in small().compute_terms(x)


def test_swap_consistency_is_refused_when_negative():
    with pytest.raises(ValueError, match="`swap_consistency` must be a finite number >= 0.*-1"):
        small(swap_consistency=-1.0)


class TestSwapConsistencyModelHarness(TestRecurrentPriorModelHarness):
    def make_model(self):
        return small(swap_consistency=0.5)
