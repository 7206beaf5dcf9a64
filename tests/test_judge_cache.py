"""What the judges share (fingerprint, key, lock), and the image judge's key and MNIST bar."""
import json
import threading
import time

import keras
import numpy as np
import pytest

from dvrnn_tf.data import load_split
from dvrnn_tf.metrics import judge as judge_lib
from dvrnn_tf.metrics import judge_cache


def _stub_judge(image_shape):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(image_shape), keras.layers.Flatten(),
                             keras.layers.Dense(10)])


def _place(dataset, judge_dir, accuracy, **load):
    """A stub judge in the cache under the key `load_or_train_judge` will look for."""
    key, recipe, _ = judge_lib.cache_key_for(dataset, seed=0, **load)
    path = judge_lib.judge_path(dataset, 0, judge_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    _stub_judge(tuple(recipe["image_shape"])).save(str(path))
    path.with_suffix(".json").write_text(json.dumps({"key": key, "test_accuracy": accuracy}))
    return path


def test_the_key_covers_settings_and_data():
    key, recipe, fingerprint = judge_lib.cache_key_for("digits", seed=0, epochs=6)
    assert (recipe["epochs"], recipe["seed"], recipe["image_shape"]) == (6, 0, [8, 8, 1])
    train, test = load_split("digits", "train"), load_split("digits", "test")
    assert fingerprint == judge_cache.data_fingerprint(train.images, train.labels, test.images,
                                                       test.labels)
    assert key == judge_cache.cache_key(judge_lib.RECIPE_VERSION, recipe, fingerprint)
    assert judge_lib.cache_key_for("digits", seed=0, epochs=6)[0] == key
    assert judge_lib.cache_key_for("digits", seed=0, epochs=7)[0] != key
    assert judge_lib.cache_key_for("digits", seed=1, epochs=6)[0] != key
    # Same name and settings, other data: another key.
    other = judge_cache.data_fingerprint(train.images[::-1], train.labels[::-1], test.images,
                                         test.labels)
    assert judge_cache.cache_key(judge_lib.RECIPE_VERSION, recipe, other) != key
    assert judge_cache.cache_key(judge_lib.RECIPE_VERSION + 1, recipe, fingerprint) != key


def test_a_judge_without_the_key_in_its_sidecar_is_not_trusted(tmp_path, monkeypatch):
    path = _place("digits", tmp_path, None)
    path.with_suffix(".json").write_text(json.dumps({"key": "another", "test_accuracy": 1.0}))
    trained = []

    def fake_train(train_set, test_set, **kwargs):
        trained.append(kwargs)
        return _stub_judge(train_set.image_shape), {"test_accuracy": 0.5}

    monkeypatch.setattr(judge_lib, "train_judge", fake_train)
    _, info = judge_lib.load_or_train_judge("digits", judge_dir=tmp_path)
    assert len(trained) == 1 and not info["cached"] and info["key"] == path.stem.split("-")[-1]
    _, info = judge_lib.load_or_train_judge("digits", judge_dir=tmp_path)
    assert len(trained) == 1 and info["cached"]  # the sidecar now carries the key


def test_mnist_judge_below_99_percent_refuses_to_judge(tmp_path, mnist_dirs):
    data_dir, manual_dir = mnist_dirs
    load = dict(data_dir=data_dir, manual_dir=manual_dir)
    _place("mnist", tmp_path, 0.985, **load)
    with pytest.raises(judge_cache.JudgeNotGoodEnough,
                       match=r"mnist judge is right on 98.5% of its test images, below the "
                             r"99% bar") as err:
        judge_lib.load_or_train_judge("mnist", judge_dir=tmp_path, **load)
    assert "\n" not in str(err.value)
    _place("mnist", tmp_path, 0.991, **load)
    model, info = judge_lib.load_or_train_judge("mnist", judge_dir=tmp_path, **load)
    assert info["cached"] and info["test_accuracy"] == 0.991
    x = np.zeros((2, 28, 28, 1), np.float32)
    assert judge_lib.predict(model, x).shape == (2,)
    # The bar is the data set's: digits has none, an explicit one applies to any set.
    _place("digits", tmp_path, 0.9)
    assert judge_lib.load_or_train_judge("digits", judge_dir=tmp_path)[1]["cached"]
    with pytest.raises(judge_cache.JudgeNotGoodEnough, match="below the 95% bar"):
        judge_lib.load_or_train_judge("digits", judge_dir=tmp_path, min_accuracy=0.95)


def test_the_fingerprint_covers_every_byte_dtype_shape_and_order():
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    fp = judge_cache.data_fingerprint(x, np.array([0, 1]))
    assert fp == judge_cache.data_fingerprint(x.copy(), np.array([0, 1]))
    assert fp == judge_cache.data_fingerprint(np.asfortranarray(x), np.array([0, 1]))
    changed = x.copy()
    changed[1, 2, 3] += 1
    assert judge_cache.data_fingerprint(changed, np.array([0, 1])) != fp
    assert judge_cache.data_fingerprint(x.astype(np.int16), np.array([0, 1])) != fp
    assert judge_cache.data_fingerprint(x.reshape(2, 12), np.array([0, 1])) != fp
    assert judge_cache.data_fingerprint(np.array([0, 1]), x) != fp
    assert judge_cache.data_fingerprint(np.zeros((0, 3))) != judge_cache.data_fingerprint(
        np.zeros((0, 4)))
    with pytest.raises(ValueError, match="dtype object"):
        judge_cache.data_fingerprint(np.array([None]))


def test_the_lock_lets_one_holder_in_at_a_time(tmp_path):
    order = []

    def hold(name):
        with judge_cache.cache_lock(tmp_path / "judge"):
            order.append(f"{name} in")
            time.sleep(0.2)
            order.append(f"{name} out")

    threads = [threading.Thread(target=hold, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
