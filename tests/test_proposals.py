"""The first paper's proposals in the models (issue 15): content priors as a setting of the
Disentangled VRNN and the content/style VAE, attention over content slots, the IWAE proposal
with the new posteriors, the concepts metric in evaluate, and every new setting's `.keras`
and SavedModel round trips."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from dvrnn_tf import export
from dvrnn_tf.metrics import likelihood as lik
from dvrnn_tf.models import ContentStyleVAE, DisentangledVRNN
from model_harness import ModelHarnessTests
from vrnn_helpers import record_decode

tfd = tfp.distributions
SHAPE, T, F, Z = (6, 6, 1), 4, 3, 2
PRIORS = ("gaussian", "dirichlet", "stick_breaking")


def dvrnn(variant="factorized", prior="gaussian", attention="none", **kwargs):
    args = dict(seq_len=T, hidden_dim=12, rnn_dim=10, z_dim=Z, f_dim=F, seed=0,
                content_prior=prior, content_attention=attention) | kwargs
    return DisentangledVRNN(SHAPE, variant=variant, **args)


def content_style(prior="gaussian", **kwargs):
    args = dict(seq_len=T, hidden_dim=12, f_dim=F, z_dim=Z, seed=0, content_prior=prior,
                kl_z_free_bits=0.2) | kwargs
    return ContentStyleVAE(SHAPE, **args)


# Every new setting, on the family it belongs to: (name, factory).
MODELS = {
    "factorized_dirichlet": lambda: dvrnn(prior="dirichlet", dirichlet_concentration=0.5),
    "full_stick_slots": lambda: dvrnn("full", "stick_breaking", "slots",
                                      stick_breaking_alpha=2.0),
    "factorized_slots": lambda: dvrnn(attention="slots"),
    "cs_dirichlet": lambda: content_style("dirichlet"),
    "cs_stick": lambda: content_style("stick_breaking"),
}


def data(b=5, seed=0):
    return (np.random.default_rng(seed).uniform(size=(b, T, *SHAPE)) < 0.4).astype("float32")


# ---- attention --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["full", "factorized"])
def test_attention_weights_are_distributions_whose_gradients_reach_the_content_encoder(variant):
    keras.utils.set_random_seed(0)  # the initial weights: how far the states move the weights
    model = dvrnn(variant, "dirichlet", "slots")
    x = data()
    # At initialization the scores are near 0 (weights near uniform); sharpen the query's
    # projection so that what the query does to the weights is visible.
    query = model.attention.attention.query_dense.kernel
    query.assign(query * 30.0)
    weights = model.attention_weights(x).numpy()
    assert weights.shape == (5, T, T) and weights.min() >= 0
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    # h_0 = 0 queries nothing (uniform at t = 1); later states move the weights.
    np.testing.assert_allclose(weights[:, 0], 1.0 / T, atol=1e-6)
    # Over 200 initializations the largest move was 0.002-0.08 (float32 noise: ~1e-7).
    assert np.abs(weights[:, 1:] - 1.0 / T).max() > 1e-3
    encoder = model.content_rnn.trainable_weights
    with tf.GradientTape(persistent=True) as tape:
        nll = model.compute_terms(x)["nll"]  # f reaches the decoder only through attention
        mass_on_first_slot = tf.reduce_sum(model.attention_weights(x)[:, :, 0])
    for target in (nll, mass_on_first_slot):
        grads = tape.gradient(target, encoder)
        assert all(g is not None and float(tf.norm(g)) > 0 for g in grads)
    with pytest.raises(ValueError, match="content_attention"):
        dvrnn(attention="states")
    with pytest.raises(ValueError, match="slots"):
        dvrnn().attention_weights(x)


def test_slot_codes_change_what_each_step_decodes():
    # The decoder of step t reads the slots through the attention: changing one slot changes
    # the images, and one code [n, f_dim] fills every slot.
    model = dvrnn(prior="dirichlet", attention="slots")
    f = model.sample_content(2)
    z = tf.zeros([2, T, Z])
    assert tuple(f.shape) == (2, T, F)
    changed = tf.concat([f[:, :1], tf.tile(tf.constant([[[1.0, 0.0, 0.0]]]), [2, T - 1, 1])], 1)
    assert float(tf.reduce_max(tf.abs(model.decode(f, z) - model.decode(changed, z)))) > 1e-6
    np.testing.assert_allclose(model.decode(f[:, 0], z).numpy(),
                               model.decode(tf.repeat(f[:, :1], T, axis=1), z).numpy(),
                               atol=1e-6)


# ---- KL, samples, the simplex -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["factorized_dirichlet", "full_stick_slots", "cs_dirichlet",
                                  "cs_stick", "factorized_gaussian"])
def test_training_kl_equals_the_models_own_monte_carlo_estimate(name):
    # compute_terms' KL_f (analytic or the series) against the mean of log q(u) - log p(u) over
    # samples of the IWAE proposal: the KL, the sampler and both densities agree.
    model = MODELS.get(name, lambda: dvrnn())()
    x = data(4)
    kl = float(model.compute_terms(x)["kl_f"]) * T  # per sequence
    n = 2000
    terms = lik.sample_terms(model, np.repeat(x, n // 4, axis=0), seed=3)
    diff = (terms["log_qf"] - terms["log_pf"])[:, 0]
    se = diff.std() / np.sqrt(len(diff))
    assert abs(diff.mean() - kl) < 4 * se + 1e-3 * (1 + kl), (diff.mean(), kl, se)
    np.testing.assert_allclose(terms["kl_f"].mean(), kl, rtol=1e-4)


@pytest.mark.parametrize("prior", ["gaussian", "dirichlet"])
def test_kl_is_tfds_kl_between_the_models_distributions(prior):
    model = content_style(prior)
    x = data()
    params = model.content_params(tf.reduce_mean(model.phi_x(model.flatten_frames(x)), 1)[:, None])
    q, p = model.f_prior.posterior(params), model.f_prior.prior([5])
    if prior == "dirichlet":  # the model's KL is float64 (its lgamma terms cancel); tfd's too
        q, p = (tfd.Dirichlet(tf.cast(d.concentration, tf.float64)) for d in (q, p))
    expected = tfd.kl_divergence(q, p)
    np.testing.assert_allclose(model.content_kl(params).numpy(), expected.numpy(), rtol=1e-5)


@pytest.mark.parametrize("name", ["factorized_dirichlet", "full_stick_slots", "cs_stick"])
def test_codes_lie_on_the_simplex_and_generation_draws_from_the_prior(name, monkeypatch):
    model = MODELS[name]()
    x = data(3)
    codes = model.encode(x)
    for key in ("f_loc", "f_sample"):
        f = codes[key].numpy()
        assert f.min() >= 0, key
        np.testing.assert_allclose(f.sum(-1), 1.0, atol=1e-5, err_msg=key)
    assert codes["f_scale"].numpy().min() > 0
    calls = record_decode(model, monkeypatch)
    model.generate(64)
    model.generate_fixed_style(2)
    model.interpolate(x[:1], x[1:2], steps=5)
    prior_f, _ = calls[0]
    for f, _ in calls:
        f = f.numpy()
        assert f.min() >= 0
        np.testing.assert_allclose(f.sum(-1), 1.0, atol=1e-5)
    # Prior draws: the prior's mean (Dirichlet: uniform; sticks: E[pi_k] from Beta(1, alpha)).
    mean = prior_f.numpy().reshape(-1, F).mean(0)
    if model.content_prior_kind == "dirichlet":
        expected = np.full(F, 1.0 / F)
    else:
        alpha = model.stick_breaking_alpha
        v = 1.0 / (1.0 + alpha)
        expected = np.array([v, (1 - v) * v, (1 - v) ** 2])
    np.testing.assert_allclose(mean, expected, atol=0.12)
    # Interpolation: convex combinations of the two means, ends included.
    a, b = (model.encode(v, sample=False)["f_loc"].numpy()[0] for v in (x[:1], x[1:2]))
    line = calls[-1][0].numpy()
    np.testing.assert_allclose(line[0], a, atol=1e-5)
    np.testing.assert_allclose(line[-1], b, atol=1e-5)
    np.testing.assert_allclose(line[2], (a + b) / 2, atol=1e-5)


def test_encoded_scale_is_the_posterior_standard_deviation():
    model = dvrnn(prior="stick_breaking")
    x = data(2)
    q = model.encode(x, sample=False)
    feats = model.phi_x(model.flatten_frames(x))
    params = model.content_params(feats)
    draws = model.f_prior.sample(tuple(tf.repeat(p[None], 20000, 0) for p in params), seed=5)
    np.testing.assert_allclose(q["f_loc"].numpy(), draws.numpy().mean(0), atol=6e-3)
    np.testing.assert_allclose(q["f_scale"].numpy(), draws.numpy().std(0), atol=6e-3)


# ---- the IWAE bound -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["factorized_dirichlet", "full_stick_slots", "cs_stick"])
def test_iwae_is_a_bound_with_the_new_posteriors(name):
    """K = 1 equals the ELBO in expectation (the proposal is the posterior the KL is of); the
    bound rises with K; -IWAE <= -ELBO."""
    model = MODELS[name]()
    x = data(6, seed=1)
    draws = 20
    k1 = np.stack([lik.iwae_log_likelihood(model, x, 1, seed=s) for s in range(draws)])
    elbo = np.stack([(lambda t: t["log_px"].sum(-1) - t["kl_z"].sum(-1) - t["kl_f"])(
        lik.sample_terms(model, x, seed=s)) for s in range(draws)])
    se = np.sqrt(k1.var(0, ddof=1) / draws + elbo.var(0, ddof=1) / draws)
    assert abs((k1.mean(0) - elbo.mean(0)).mean()) < 4 * np.sqrt((se ** 2).sum()) / len(x) + 1e-3
    k100 = lik.iwae_log_likelihood(model, x, 100, chunk_size=50, seed=7)
    assert k100.mean() > k1.mean() and k100.mean() >= elbo.mean()
    report = lik.likelihood_report(model, [x], num_samples=50, chunk_size=50)
    assert report["iwae"]["nats_per_image"] <= report["neg_elbo"]["nats_per_image"] + 0.2
    assert model.content_prior_kind in report["iwae"]["proposal"]


# ---- settings, saving, export ---------------------------------------------------------------------


def test_settings_reach_the_models_and_bad_values_are_refused():
    from dvrnn_tf.training import TrainConfig
    from dvrnn_tf.training.factory import build_model
    from dvrnn_tf.data.spec import DataSpec

    spec = DataSpec(SHAPE, T)
    for model, extra in (("factorized", {"content_attention": "slots", "rnn_dim": 8}),
                         ("content_style", {})):
        config = TrainConfig(model=model, dataset="digits", f_dim=4, hidden_dim=8,
                             content_prior="stick_breaking", stick_breaking_alpha=2.5, **extra)
        built = build_model(config, spec)
        assert built.content_prior_kind == "stick_breaking"
        assert built.stick_breaking_alpha == 2.5
        assert built.get_config()["content_prior"] == "stick_breaking"
    assert build_model(TrainConfig(model="full", dataset="digits", content_attention="slots",
                                   hidden_dim=8, rnn_dim=8), spec).content_slots == T
    with pytest.raises(ValueError, match="f_dim"):
        TrainConfig(model="factorized", dataset="digits", f_dim=1, content_prior="dirichlet")
    with pytest.raises(ValueError, match="content_prior"):
        TrainConfig(model="content_style", dataset="digits", content_prior="beta")
    with pytest.raises(ValueError, match="content_attention"):
        TrainConfig(model="content_style", dataset="digits", content_attention="slots")
    with pytest.raises(ValueError, match="dirichlet_concentration"):
        dvrnn(prior="dirichlet", dirichlet_concentration=0.0)


def _harness(name, run_eagerly=False):
    """The shared harness (config round trip, fit step, `.keras` reload) on MODELS[name]."""
    return type(f"Harness[{name}]", (ModelHarnessTests,), {
        "run_eagerly": run_eagerly, "make_model": lambda self: MODELS[name](),
        "make_data": lambda self: data(6)})


TestHarnessFactorizedDirichlet = _harness("factorized_dirichlet")
TestHarnessFullStickSlots = _harness("full_stick_slots", run_eagerly=True)
TestHarnessContentStyleStick = _harness("cs_stick", run_eagerly=True)
TestHarnessContentStyleDirichlet = _harness("cs_dirichlet", run_eagerly=True)


class TestHarnessConvSlots(ModelHarnessTests):
    run_eagerly = True

    def make_model(self):
        return DisentangledVRNN((8, 8, 1), variant="factorized", seq_len=T, hidden_dim=12,
                               rnn_dim=10, z_dim=Z, f_dim=F, seed=0, content_attention="slots",
                               content_prior="dirichlet", network="conv", conv_channels=4,
                               conv_layers=2)

    def make_data(self):
        return (np.random.default_rng(0).uniform(size=(4, T, 8, 8, 1)) < 0.4).astype("float32")



# Between them every new setting: slots, stick-breaking (Disentangled VRNN), Dirichlet
# (content/style model); the exporter's code is the same for every model.
@pytest.mark.parametrize("name", ["full_stick_slots", "cs_dirichlet"])
def test_saved_model_endpoints(name, tmp_path):
    model = MODELS[name]()
    x = data(3)
    names = export.export_saved_model(model, tmp_path / name)
    assert {"encode", "decode", "generate", "swap", "interpolate_f"} <= set(names)
    loaded = tf.saved_model.load(str(tmp_path / name))
    np.testing.assert_allclose(loaded.reconstruct(x).numpy(), model.reconstruct(x).numpy(),
                               atol=1e-5)
    codes = loaded.encode(x)
    f = codes["f_loc"].numpy()
    np.testing.assert_allclose(f.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(loaded.decode(codes["f_loc"], codes["z_loc"]).numpy(),
                               model.decode(codes["f_loc"], codes["z_loc"]).numpy(), atol=1e-5)
    a, b = loaded.generate(tf.constant(2)).numpy(), loaded.generate(tf.constant(2)).numpy()
    assert a.shape == (2, T, *SHAPE) and np.abs(a - b).max() > 0  # fresh draws of the prior
    assert loaded.interpolate_f(x[:1], x[1:2]).shape[0] == export.INTERPOLATION_STEPS


# ---- the concepts metric in evaluate ------------------------------------------------------------


def test_evaluate_measures_concepts_of_every_model_with_f(tmp_path):
    from config_helpers import config_for
    from dvrnn_tf.metrics import clustering
    from dvrnn_tf.metrics.evaluation import EvalOptions, applies_to, evaluate_run, summarize
    from dvrnn_tf.training import train

    assert set(applies_to("concepts")) == {"full", "factorized", "content_style"}
    run_dir = tmp_path / "run"
    train(config_for("factorized", run_dir=str(run_dir), dataset="digits", hidden_dim=16,
                     rnn_dim=16, f_dim=5, epochs=1, steps_per_epoch=2, export=False,
                     figures=False, content_prior="stick_breaking", content_attention="slots"),
          verbose=0)
    options = EvalOptions(metrics="concepts", eval_sequences=40, probe_sequences=60)
    result = evaluate_run(run_dir, options, output_dir=str(tmp_path / "eval"))
    concepts = result["concepts"]
    assert concepts["kind"] == "stick_breaking" and concepts["method"] == "argmax"
    assert concepts["test_split"] == "test" and concepts["num_test"] == 40
    assert 0 < concepts["accuracy"] <= 1 and 0 <= concepts["nmi"] <= 1
    # The same numbers from the model's codes directly: argmax of the slots' mean f.
    from dvrnn_tf.data import open_source
    from dvrnn_tf.metrics.evaluation import load_run

    config, model = load_run(run_dir)
    source = open_source("digits", config.data_settings, seed=config.seed, binarize=True)
    x, labels = source.split("test").examples(40)
    f = model.encode(x, sample=False)["f_loc"].numpy().mean(axis=1)
    y = labels["class"]
    assert concepts["accuracy"] == pytest.approx(
        clustering.clustering_accuracy(f.argmax(-1), y))
    assert concepts["nmi"] == pytest.approx(clustering.nmi(f.argmax(-1), y))
    summary = summarize(result)
    assert summary["cluster_accuracy"] == concepts["accuracy"]
    assert summary["cluster_nmi"] == concepts["nmi"]
    kmeans = clustering.concept_report(
        model.encode(source.split("train").examples(60)[0], sample=False)["f_loc"].numpy()
        .mean(axis=1), f, y, "gaussian", 10)
    assert summary["cluster_accuracy_kmeans"] == pytest.approx(kmeans["accuracy"])


@pytest.mark.parametrize("name", ["factorized_dirichlet", "full_stick_slots", "cs_stick"])
def test_flop_count_equals_the_traced_graph(name):
    # step_costs of the new heads and of the attention (in the loop for *full*) against the
    # matmuls TensorFlow traces for one training step.
    from dvrnn_tf.perf import flops

    model = MODELS[name]()
    passes = flops.by_pass(flops.step_matmuls(model, 5))
    traced = flops.traced_matmul_flops(model, 5)
    assert traced["forward"] == passes["forward"]
    assert traced["backward"] == passes["grad_weights"] + passes["grad_inputs"]
