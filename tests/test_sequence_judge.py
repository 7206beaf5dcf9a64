"""The field's sequence judge on a small synthetic video problem: it learns, it is cached under a
key of its settings and data, it refuses to judge below the bar, it scores real sequences."""
import json
import math

import numpy as np
import pytest
import tensorflow as tf

from dvrnn_tf.metrics import judge_data
from dvrnn_tf.metrics import judge_scores as js
from dvrnn_tf.metrics import sequence_judge as sj

FACTORS = (sj.Factor("colour", 3), sj.Factor("background", 3), sj.Factor("motion", 3))
COLOURS = np.array([[0.9, 0.15, 0.15], [0.15, 0.85, 0.2], [0.2, 0.3, 0.95]])
# Small and quick, yet a judge that learns all three factors (100% within 6 epochs).
SETTINGS = dict(seed=0, epochs=6, batch_size=16, channels=32, lstm_units=64,
                learning_rate=3e-3)


def synthetic_videos(n, seed, t=4, size=16):
    """uint8 [n, t, size, size, 3]: a 4x4 square of one of 3 colours over one of 3
    backgrounds (plain, horizontal or vertical stripes), moving left, staying or moving right
    (3 px a frame), at a random place; with pixel noise. Labels {factor: [n]}."""
    rng = np.random.default_rng(seed)
    colour, background, motion = (rng.integers(0, 3, n) for _ in range(3))
    stripes = ((np.arange(size) // 4) % 2) * 0.25
    bg = np.full((n, size, size, 3), 0.1)
    bg[background == 1] += stripes[:, None, None]
    bg[background == 2] += stripes[None, :, None]
    step = (motion - 1) * 3
    x0 = rng.integers(np.maximum(0, -step * (t - 1)), size - 4 - np.maximum(0, step * (t - 1)) + 1)
    y0 = rng.integers(0, size - 3, n)
    xs = x0[:, None] + step[:, None] * np.arange(t)                            # [n, t]
    cols, rows = np.arange(size), np.arange(size)
    in_x = (cols >= xs[..., None]) & (cols < xs[..., None] + 4)                # [n, t, W]
    in_y = (rows >= y0[:, None]) & (rows < y0[:, None] + 4)                    # [n, H]
    mask = in_y[:, None, :, None, None] & in_x[:, :, None, :, None]            # [n, t, H, W, 1]
    c = np.clip(COLOURS[colour] + rng.uniform(-0.08, 0.08, (n, 3)), 0, 1)
    x = np.where(mask, c[:, None, None, None, :], bg[:, None])
    x = np.clip(x + rng.normal(0, 0.03, x.shape), 0, 1)
    return (x * 255).round().astype(np.uint8), {"colour": colour, "background": background,
                                                "motion": motion}


@pytest.fixture(scope="module")
def data():
    return {"train": synthetic_videos(720, 0), "val": synthetic_videos(120, 1),
            "test": synthetic_videos(240, 2)}


def _args(data, **replace):
    parts = {**data, **replace}
    return [*parts["train"], *parts["val"], *parts["test"], FACTORS]


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    cache = tmp_path_factory.mktemp("sequence_judges")
    model, info = sj.load_or_train_sequence_judge(cache, *_args(data), **SETTINGS)
    return cache, model, info


def test_the_judge_learns_every_factor_and_records_its_key(trained):
    cache, model, info = trained
    assert not info["cached"]
    assert all(acc >= sj.MIN_ACCURACY for acc in info["test_accuracy"].values()), info
    assert set(model.output_names) == {"colour", "background", "motion"}
    sidecar = json.loads((cache / info["key"] / "judge.json").read_text())
    assert sidecar["test_accuracy"] == info["test_accuracy"]
    assert sidecar["train_seconds"] > 0 and sidecar["recipe_version"] == sj.RECIPE_VERSION
    assert sidecar["recipe"]["epochs"] == 6 and sidecar["recipe"]["seq_len"] == 4
    assert info["key"] == sj.judge_key(sidecar["recipe"], sidecar["data_fingerprint"])


def test_the_cached_judge_is_reused_without_training(trained, data, monkeypatch):
    cache, model, info = trained
    files = cache / info["key"]
    stamps = {p.name: p.stat().st_mtime_ns for p in files.iterdir()}

    def must_not_train(*args, **kwargs):
        raise AssertionError("a cached judge was trained again")

    monkeypatch.setattr(sj, "train_sequence_judge", must_not_train)
    again, info2 = sj.load_or_train_sequence_judge(cache, *_args(data), **SETTINGS)
    assert info2["cached"] and info2["key"] == info["key"]
    assert {p.name: p.stat().st_mtime_ns for p in files.iterdir()} == stamps
    x = data["test"][0][:32]
    for name, probs in sj.judge_predict(again, x).items():
        np.testing.assert_allclose(probs, sj.judge_predict(model, x)[name], atol=1e-6)


def test_the_key_changes_with_the_data_and_the_settings(trained, data, monkeypatch):
    cache, model, info = trained
    calls = []
    monkeypatch.setattr(sj, "train_sequence_judge",
                        lambda *args, **kwargs: calls.append(kwargs) or (model, {}))
    x = data["train"][0].copy()
    x[17, 2, 5, 5, 1] ^= 1                                 # one pixel of one frame
    loose = dict(SETTINGS, min_accuracy=0.0)  # the changed test label costs the judge a point
    keys = {sj.load_or_train_sequence_judge(cache, *_args(data, train=(x, data["train"][1])),
                                            **loose)[1]["key"]}
    labels = {**data["test"][1], "motion": data["test"][1]["motion"].copy()}
    labels["motion"][0] = (labels["motion"][0] + 1) % 3     # one test label
    keys.add(sj.load_or_train_sequence_judge(cache, *_args(data, test=(data["test"][0], labels)),
                                             **loose)[1]["key"])
    for setting in (dict(epochs=7), dict(seed=1), dict(channels=16), dict(augment=False)):
        keys.add(sj.load_or_train_sequence_judge(cache, *_args(data),
                                                 **{**loose, **setting})[1]["key"])
    assert len(keys) == 6 and info["key"] not in keys and len(calls) == 6
    assert len({c["seed"] for c in calls}) == 2
    # The same values in another memory layout: the same fingerprint.
    assert sj.data_fingerprint(np.asfortranarray(x)) == sj.data_fingerprint(x)


def test_real_test_sequences_as_generations_score_the_judges_accuracy(trained, data):
    _, model, info = trained
    x, labels = data["test"]
    probs = sj.judge_predict(model, x, batch_size=50)
    as_float = sj.judge_predict(model, x.astype(np.float32) / 255, batch_size=64)
    for f in FACTORS:
        np.testing.assert_allclose(as_float[f.name], probs[f.name], atol=1e-5)
        scores = js.judge_scores(probs[f.name], labels[f.name])
        assert scores["accuracy"] == pytest.approx(info["test_accuracy"][f.name])
        idx = js.class_balanced_subset(labels[f.name], seed=0)
        balanced = js.judge_scores(probs[f.name][idx], labels[f.name][idx])
        assert balanced["n"] == 3 * np.bincount(labels[f.name]).min()
        assert balanced["h_y"] == pytest.approx(math.log(3), abs=0.01)  # right and balanced
        assert balanced["inception_score"] == pytest.approx(
            math.exp(balanced["h_y"] - balanced["h_y_given_x"]))
        assert 2.0 < balanced["inception_score"] <= 3.0, balanced
        assert scores == pytest.approx(info["test_scores"][f.name])   # the judge's ceilings


def test_a_judge_below_the_bar_refuses_to_judge(data, tmp_path, monkeypatch):
    def untrained(x_train, labels_train, x_val, labels_val, factors, **kwargs):
        return sj.build_sequence_judge((16, 16, 3), 4, factors, channels=4, lstm_units=4), {}

    monkeypatch.setattr(sj, "train_sequence_judge", untrained)   # a judge at chance level
    args = (*data["train"], None, None, *data["test"], FACTORS)
    with pytest.raises(sj.JudgeNotGoodEnough,
                       match=r"for factor '\w+', below the 99.5% bar: it refuses") as err:
        sj.load_or_train_sequence_judge(tmp_path, *args, **SETTINGS)
    assert "\n" not in str(err.value)
    monkeypatch.setattr(sj, "train_sequence_judge", None)  # cached: refused again at once
    with pytest.raises(sj.JudgeNotGoodEnough):
        sj.load_or_train_sequence_judge(tmp_path, *args, **SETTINGS)
    _, info = sj.load_or_train_sequence_judge(tmp_path, *args, **SETTINGS, min_accuracy=0.0)
    assert info["cached"] and info["val_sequences"] == 0
    assert min(info["test_accuracy"].values()) < 0.6


def test_bad_inputs_are_one_line_errors(data, tmp_path):
    x, labels = data["train"]
    cases = [
        (dict(factors=()), "factors is empty"),
        (dict(labels=dict(colour=labels["colour"])), "no labels for factor 'background'"),
        (dict(labels={**labels, "motion": labels["motion"][:-1]}), r"must be \[720\] integers"),
        (dict(labels={**labels, "motion": labels["motion"] + 3}), r"must lie in 0..2"),
        (dict(x=x[:, 0]), r"sequences \[N, T, H, W, C\]"),
        (dict(factors=(sj.Factor("pos", 4, per_frame=True),)), "'pos' is per-frame"),
        (dict(factors=(sj.Factor("a/b", 3),)), "distinct words"),
        (dict(factors=(sj.Factor("one", 1),)), "num_classes >= 2"),
        (dict(epochs=0), "`epochs` must be a positive integer, got 0"),
        (dict(learning_rate=-1.0), "`learning_rate` must be a positive number"),
    ]
    for case, match in cases:
        factors = case.pop("factors", FACTORS)
        args = (case.pop("x", x), case.pop("labels", labels), None, None, *data["test"], factors)
        with pytest.raises(ValueError, match=match) as err:
            sj.load_or_train_sequence_judge(tmp_path, *args, **{**SETTINGS, **case})
        assert "\n" not in str(err.value)
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written
    model = sj.build_sequence_judge((16, 16, 3), 4, FACTORS[:1], channels=4, lstm_units=4)
    with pytest.raises(ValueError, match=r"shape \(4, 8, 8, 3\), the judge's are"):
        sj.judge_predict(model, np.zeros((2, 4, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="NaN or infinite"):
        sj.judge_predict(model, np.full((2, 4, 16, 16, 3), np.nan, np.float32))


class SourceFactor:
    """A factor as a data source describes it (the data package's Factor has more fields)."""

    def __init__(self, name, num_classes, per_frame=False, shape=()):
        self.name, self.num_classes, self.per_frame, self.shape = (name, num_classes,
                                                                   per_frame, shape)


def test_judged_factors_are_the_static_ones_with_classes():
    source = [SourceFactor("digit", 10), SourceFactor("position", None, True, (2,)),
              SourceFactor("phase", 4, per_frame=True)]
    assert [f.name for f in sj.judged_factors(source)] == ["digit"]
    model = sj.build_sequence_judge((16, 16, 3), 4, sj.judged_factors(source), channels=4,
                                    lstm_units=4)
    probs = sj.judge_predict(model, np.zeros((3, 4, 16, 16, 3), np.uint8))
    assert probs["digit"].shape == (3, 10)
    np.testing.assert_allclose(probs["digit"].sum(-1), 1.0, rtol=1e-5)


def test_the_pipeline_reads_rows_by_index_and_augments_half(data):
    x, labels = data["val"]
    y = np.stack([labels[f.name] for f in FACTORS], 1)
    names = [f.name for f in FACTORS]
    batches = list(judge_data.sequence_dataset(x, y, names, 32))
    np.testing.assert_allclose(np.concatenate([b[0] for b in batches]), x / 255.0, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([b[1]["motion"] for b in batches]),
                                  labels["motion"])
    shuffled = list(judge_data.sequence_dataset(x, y, names, 32, shuffle_seed=0))
    got = np.concatenate([b[0] for b in shuffled]).reshape(len(x), -1)
    assert not np.allclose(got, x.reshape(len(x), -1) / 255.0)            # reordered,
    np.testing.assert_allclose(np.sort(got.sum(1)), np.sort(x.reshape(len(x), -1).sum(1) / 255.0),
                               rtol=1e-5)                                # every row once
    frames = tf.constant(x[:64] / 255.0, tf.float32)
    out = judge_data.augment_sequences(frames, tf.constant([3, 4], tf.int64)).numpy()
    same = np.all(out == frames.numpy(), axis=(1, 2, 3, 4))
    assert 0.3 < same.mean() < 0.7                            # half kept as they are
    assert out.min() >= 0 and out.max() <= 1
    changed = np.abs(out[~same] - frames.numpy()[~same]).mean()
    assert 0.005 < changed < 0.1, changed                     # changed, yet a little
    again = judge_data.augment_sequences(frames, tf.constant([3, 4], tf.int64)).numpy()
    np.testing.assert_array_equal(out, again)
