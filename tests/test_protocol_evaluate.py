"""The field's protocol inside `python -m dvrnn_tf.evaluate`: what eval.json and the report get
for Sprites (an untrained run and an untrained judge: no training), the refusals the binary
prints, and the same judge scores for the MNIST swap and fixed content (the image judge).

The protocol's own tests (which code each test keeps, the reconstruction ceiling, the judge's
data): test_protocol.py.
"""
import json
import math

import numpy as np
import pytest

from dvrnn_tf.data import open_source
from dvrnn_tf.metrics import judge_scores as js
from dvrnn_tf.metrics import protocol
from dvrnn_tf.metrics import sequence_judge as sj
from dvrnn_tf.metrics.evaluation import EvaluationError, evaluate_run
from dvrnn_tf.metrics.judge_cache import JudgeNotGoodEnough
from shared_data import SPRITES_DIR

SPRITES = str(SPRITES_DIR)

@pytest.fixture(scope="module")
def sprites_run(tmp_path_factory):
    """A content/style model of Sprites (untrained, with the dynamics prior) saved as a run
    directory, config and checkpoint: what evaluate reads, without a training run's minute."""
    from config_helpers import config_for
    from dvrnn_tf.training import RunDir, write_json_atomic
    from dvrnn_tf.training.factory import build_model

    run = RunDir(tmp_path_factory.mktemp("runs") / "sprites")
    config = config_for("content_style", dataset="sprites", manual_dir=SPRITES, network="conv",
                        conv_channels=4, hidden_dim=16, f_dim=4, z_dim=3,
                        likelihood="gaussian_fixed", style_prior="recurrent",
                        run_dir=str(run.root))
    model = build_model(config, open_source("sprites", config.data_settings).spec())
    model(np.zeros((1, 8, 64, 64, 3), np.float32))
    run.checkpoints.mkdir(parents=True)
    model.save(run.checkpoints / "last.keras")
    write_json_atomic(run.config, config.to_dict())
    return run.root


def _tiny_judge(source, **kwargs):
    """An untrained judge of Sprites' five factors with a made-up record (no training)."""
    content, dynamics = protocol.factor_roles(source)
    factors = [sj.Factor(f.name, f.num_classes) for f in content + dynamics]
    model = sj.build_sequence_judge((64, 64, 3), 8, factors, channels=2, lstm_units=4)
    scores = {f.name: {"accuracy": 1.0, "inception_score": 9.0, "h_y_given_x": 0.0,
                       "h_y": 2.2, "n": 2664} for f in factors}
    return model, {"key": "tiny", "path": "nowhere", "recipe": kwargs, "cached": True,
                   "test_accuracy": {k: 1.0 for k in scores}, "test_scores": scores}


def test_evaluate_writes_the_protocol_into_eval_json_and_the_report(sprites_run, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setattr(protocol, "source_judge", _tiny_judge)
    result = evaluate_run(sprites_run, metrics="fixed_dynamics,fixed_content,factor_swap",
                          protocol_sequences=18, protocol_draws=2, eval_sequences=12, seed=4,
                          output_dir=str(tmp_path))
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["sequence_judge"]["key"] == "tiny"
    for test, judged in (("fixed_dynamics", ["motion"]),
                         ("fixed_content", ["body", "bottomwear", "topwear", "hair"]),
                         ("factor_swap", ["body", "bottomwear", "topwear", "hair", "motion"])):
        r = written[test]
        assert sorted(r["factors"]) == sorted(judged)      # eval.json sorts its keys
        assert r["split"] == "test" and r["seed"] == 4 and r["draws"] == 2
        assert r["num_sequences"] == 18 and r["judge"]["test_accuracy"] == {n: 1.0 for n in judged}
        for name in judged:
            assert len(r["factors"][name]["accuracy"]["values"]) == 2
            assert 1.0 <= r["factors"][name]["inception_score"]["mean"] <= 9.0
        assert written["summary"][f"{test}[{judged[0]}]"] == r["factors"][judged[0]][
            "accuracy"]["mean"]
    assert "fixed_dynamics_is[motion]" in result["summary"]
    ceiling = written["reconstruction"]["factors"]
    assert sorted(ceiling) == ["body", "bottomwear", "hair", "motion", "topwear"]
    assert written["summary"]["reconstruction[hair]"] == ceiling["hair"]["accuracy"]
    assert (tmp_path / "report.png").stat().st_size > 50_000


def test_evaluate_refuses_a_judge_below_the_bar_and_data_without_factors(sprites_run,
                                                                        monkeypatch):
    def refuse(source, **kwargs):
        raise JudgeNotGoodEnough("the sequence judge is right on 97.00% of the real test "
                                 "sequences for factor 'hair', below the 99.5% bar")

    monkeypatch.setattr(protocol, "source_judge", refuse)
    with pytest.raises(EvaluationError, match="factor 'hair', below the 99.5% bar"):
        evaluate_run(sprites_run, metrics="fixed_content", protocol_sequences=9, report=False)
    with pytest.raises(EvaluationError, match="--protocol_draws must be >= 1"):
        evaluate_run(sprites_run, metrics="fixed_content", protocol_draws=0)


def test_evaluate_names_what_a_source_without_factor_labels_lacks():
    from dvrnn_tf.metrics.evaluation import _select_metrics  # what evaluate_run asks first

    digits = open_source("digits")
    with pytest.raises(EvaluationError, match=r"^metric 'fixed_dynamics' cannot be measured on "
                       r"this run: it needs static class labels of content \(carried by f\) "
                       r"and of dynamics \(carried by z\).*; digits has class") as err:
        _select_metrics("likelihood,fixed_dynamics", "factorized", digits)
    assert "\n" not in str(err.value)
    chosen, skipped = _select_metrics("all", "factorized", digits)
    assert not set(chosen) & set(protocol.METRICS) and "likelihood" in chosen
    assert skipped["factor_swap"].startswith("needs static class labels of content")
    with pytest.raises(EvaluationError, match="'fixed_content' cannot be measured.*applies to "
                       "content_style, full, factorized, not vrnn"):
        _select_metrics("fixed_content", "vrnn", open_source("sprites", {"manual_dir": SPRITES}))


# ---- the same scores for the MNIST swap and fixed content (the image judge) ----------------------

class Replays:
    """f is the index of a real sequence; decode returns it (whatever the style), so swaps and
    fixed-content generations are real images: they score what the judge scores on them."""

    def __init__(self, x, seed=0):
        self.x, self.rng = x, np.random.default_rng(seed)

    def encode(self, x, sample=False):
        flat = self.x.reshape(len(self.x), -1)
        index = [np.flatnonzero((flat == s.ravel()).all(1))[0] for s in np.asarray(x)]
        return {"f_loc": np.asarray(index, np.float32)[:, None]}

    def swap(self, x_content, x_style):
        return x_content

    def sample_content(self, n):
        return self.rng.integers(0, len(self.x), (n, 1)).astype(np.float32)

    def decode(self, f, z=None):
        return self.x[np.asarray(f)[:, 0].astype(int)]


def test_mnist_swap_and_fixed_content_report_the_judges_softmax_scores():
    import keras
    from scipy import special

    from dvrnn_tf.metrics import disentanglement as dis
    from dvrnn_tf.metrics.judge import predict_logits

    keras.utils.set_random_seed(0)
    judge = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    rng = np.random.default_rng(0)
    x = rng.random((30, 3, 8, 8, 1)).astype(np.float32)
    y = np.arange(30) % 10
    probs = special.softmax(predict_logits(judge, x).astype(np.float64), -1).reshape(30, 3, 10)
    sub = js.class_balanced_subset(y, 5)
    expected = js.judge_scores(probs[sub].reshape(-1, 10), np.repeat(y[sub], 3))
    assert expected["n"] == 90 and 1.0 < expected["inception_score"] < 10.0

    swap = dis.swap_accuracy(Replays(x), judge, x, y, seed=5)
    assert swap["scores"] == pytest.approx(expected)
    assert swap["judge_scores_on_content"] == pytest.approx(expected)
    assert swap["accuracy"] == pytest.approx(np.mean(probs.argmax(-1) == y[:, None]))

    kept = dis.label_preservation(Replays(x), judge, x, y, num_styles=3, seed=5,
                                  num_prior_contents=7)
    scores = kept["posterior_f"]["scores"]
    for name in ("accuracy", "inception_score", "h_y_given_x", "h_y"):
        assert scores[name]["values"] == pytest.approx([expected[name]] * 3), name
        assert scores[name]["std"] == pytest.approx(0.0, abs=1e-12)
    prior = kept["prior_f"]["scores"]
    assert prior["n"] == 7 * 3 * 3 and 1.0 <= prior["inception_score"] <= 10.0
    assert math.log(prior["inception_score"]) == pytest.approx(prior["h_y"] - prior["h_y_given_x"])
