"""The field's scores from a judge's softmax outputs: bounds, a hand-computed case, the subset."""
import numpy as np
import pytest

from dvrnn_tf.metrics import judge_scores as js


def test_confident_even_predictions_reach_the_bounds():
    labels = np.repeat(np.arange(9), 5)
    probs = np.eye(9)[labels]                     # one-hot: confident, 5 per class
    out = js.judge_scores(probs, labels)
    assert out["inception_score"] == pytest.approx(9.0)
    assert out["h_y_given_x"] == pytest.approx(0.0, abs=1e-12)
    assert out["h_y"] == pytest.approx(np.log(9))
    assert out["accuracy"] == 1.0 and out["n"] == 45
    wrong = js.judge_scores(probs, (labels + 1) % 9)
    assert wrong["accuracy"] == 0.0 and wrong["inception_score"] == pytest.approx(9.0)
    # Unlabelled generations (a content drawn from the prior): the same scores, no accuracy.
    unlabelled = js.judge_scores(probs)
    assert unlabelled == {k: v for k, v in out.items() if k != "accuracy"}


def test_identical_predictions_score_one():
    row = np.array([0.5, 0.3, 0.2, 0.0])
    probs = np.tile(row, (7, 1))
    assert js.inception_score(probs) == pytest.approx(1.0)
    assert js.marginal_entropy(probs) == pytest.approx(js.conditional_entropy(probs))
    # A confident judge that always says the same class: IS 1 and both entropies 0.
    one = np.tile(np.eye(3)[1], (5, 1))
    assert js.inception_score(one) == pytest.approx(1.0)
    assert js.marginal_entropy(one) == 0.0 and js.conditional_entropy(one) == 0.0


def test_a_small_case_computed_by_hand():
    probs = np.array([[0.8, 0.2], [0.4, 0.6]])
    # H(y|x) = mean of the rows' entropies; p(y) = (0.6, 0.4).
    h_rows = [-(0.8 * np.log(0.8) + 0.2 * np.log(0.2)), -(0.4 * np.log(0.4) + 0.6 * np.log(0.6))]
    h_cond = (h_rows[0] + h_rows[1]) / 2
    h_marg = -(0.6 * np.log(0.6) + 0.4 * np.log(0.4))
    kl0 = 0.8 * np.log(0.8 / 0.6) + 0.2 * np.log(0.2 / 0.4)
    kl1 = 0.4 * np.log(0.4 / 0.6) + 0.6 * np.log(0.6 / 0.4)
    assert js.conditional_entropy(probs) == pytest.approx(h_cond, rel=1e-12)
    assert js.marginal_entropy(probs) == pytest.approx(h_marg, rel=1e-12)
    assert js.inception_score(probs) == pytest.approx(np.exp((kl0 + kl1) / 2), rel=1e-12)
    assert np.log(js.inception_score(probs)) == pytest.approx(h_marg - h_cond, rel=1e-9)
    out = js.judge_scores(probs, np.array([0, 0]))
    assert out["accuracy"] == 0.5


def test_float32_softmax_with_exact_zeros_is_safe():
    probs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    out = js.judge_scores(probs, np.arange(3))
    assert all(np.isfinite(out[k]) for k in ("inception_score", "h_y_given_x", "h_y"))
    assert out["inception_score"] == pytest.approx(3.0)


def test_bad_inputs_are_one_line_errors():
    for bad, match in [(np.ones(3) / 3, r"\[N, K\]"), (np.zeros((0, 3)), r"\[N, K\]"),
                       (np.array([[0.5, 0.6]]), "sum to 1"), (np.array([[np.nan, 1.0]]), "finite"),
                       (np.array([[-0.1, 1.1]]), "non-negative")]:
        with pytest.raises(ValueError, match=match) as err:
            js.inception_score(bad)
        assert "\n" not in str(err.value)
    probs = np.eye(3)
    with pytest.raises(ValueError, match=r"true_labels must be \[N\] = \[3\]"):
        js.judge_scores(probs, np.arange(4))
    with pytest.raises(ValueError, match="integers in 0..2"):
        js.judge_scores(probs, np.array([0, 1, 3]))


def test_class_balanced_subset_is_balanced_and_deterministic():
    rng = np.random.default_rng(0)
    labels = rng.choice(4, size=200, p=[0.4, 0.3, 0.2, 0.1])
    smallest = np.bincount(labels).min()
    idx = js.class_balanced_subset(labels, seed=3)
    assert np.array_equal(np.bincount(labels[idx], minlength=4), [smallest] * 4)
    assert len(np.unique(idx)) == len(idx) and np.all(np.diff(idx) > 0)
    assert np.array_equal(idx, js.class_balanced_subset(labels, seed=3))
    assert not np.array_equal(idx, js.class_balanced_subset(labels, seed=4))
    five = js.class_balanced_subset(labels, seed=0, per_class=5)
    assert np.array_equal(np.bincount(labels[five], minlength=4), [5] * 4)
    with pytest.raises(ValueError, match=f"per_class must be an integer in 1..{smallest}"):
        js.class_balanced_subset(labels, seed=0, per_class=smallest + 1)


def test_mean_and_std_over_draws():
    draws = [{"accuracy": 0.9, "n": 10, "split": "test"}, {"accuracy": 1.0, "n": 10,
                                                             "split": "test"}]
    out = js.mean_and_std(draws)
    assert set(out) == {"accuracy", "n"}
    assert out["accuracy"]["mean"] == pytest.approx(0.95)
    assert out["accuracy"]["std"] == pytest.approx(np.std([0.9, 1.0], ddof=1))
    assert out["accuracy"]["values"] == [0.9, 1.0] and out["n"]["std"] == 0.0
    assert js.mean_and_std(draws[:1])["accuracy"]["std"] is None
    with pytest.raises(ValueError, match="every draw must report the same scores"):
        js.mean_and_std([{"accuracy": 1.0}, {"h_y": 1.0}])
    with pytest.raises(ValueError, match="at least one"):
        js.mean_and_std([])
