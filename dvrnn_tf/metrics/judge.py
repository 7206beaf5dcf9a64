"""The judge (DESIGN 4): a small Keras CNN per data set that classifies generated images.

Cached as ``<judge_dir>/<dataset>-seed<k>-<key>.keras`` with a ``.json`` sidecar (its test
accuracy, the training time, the key's inputs). The key (`cache_key_for`) covers the recipe
version, the architecture (image shape, classes), the training settings (epochs, batch size),
the seed and a fingerprint of the train and test arrays (`judge_cache.data_fingerprint`): a
judge trained with other settings, or on data of the same name prepared differently, is
another judge. The default ``judge_dir`` is ``$DVRNN_CACHE_DIR/judges``, else
``~/.cache/dvrnn_tf/judges``: outside the repository, shared by every run and test on the
machine.

The models decode *mean* images (grey, blurry), not binary samples, so the judge is trained on a
mix of what it will see: grey levels, Bernoulli-binarized images and blurred images, each with a
random shift of up to 2 pixels (10% of the side for small images). On MNIST it must be right on
>= 99% of the test images (`MIN_ACCURACY`), or `load_or_train_judge` refuses to hand it out
(`JudgeNotGoodEnough`).
"""
from __future__ import annotations

import os
import pathlib
import time

import keras
import numpy as np
import tensorflow as tf

from dvrnn_tf.metrics.judge_cache import (JudgeNotGoodEnough, cache_key, cache_lock,
                                          data_fingerprint, read_json, save_model_atomic,
                                          write_json)

# Bump when the architecture or the training recipe changes: cached judges of another version
# are retrained instead of being trusted.
RECIPE_VERSION = 1
DEFAULT_EPOCHS = 6
BATCH_SIZE = 128
MIN_MNIST_ACCURACY = 0.99
# The share of its test split a data set's judge must get right before it judges anything.
MIN_ACCURACY = {"mnist": MIN_MNIST_ACCURACY}


def default_judge_dir() -> pathlib.Path:
    """``$DVRNN_CACHE_DIR/judges`` or ``~/.cache/dvrnn_tf/judges``."""
    root = os.environ.get("DVRNN_CACHE_DIR") or os.path.join("~", ".cache", "dvrnn_tf")
    return pathlib.Path(os.path.expanduser(root)).resolve() / "judges"


def judge_path(dataset: str, seed: int = 0, judge_dir=None, key: str | None = None
               ) -> pathlib.Path:
    """Where a judge of `dataset` trained with `seed` is cached: ``<dataset>-seed<k>-<key>.keras``.

    key: `cache_key_for`'s; without it, the path every such judge's name starts with.
    """
    safe = dataset.replace("/", "_").replace(":", "_")
    root = pathlib.Path(judge_dir).expanduser().resolve() if judge_dir else default_judge_dir()
    return root / (f"{safe}-seed{int(seed)}" + (f"-{key}" if key else "") + ".keras")


def build_judge(image_shape, num_classes: int) -> keras.Model:
    """The CNN: two 3x3 conv blocks (32, 64 filters), max-pooling, dropout, a 128-unit layer.

    Images smaller than 16 pixels (the 8x8 digits) are pooled once, larger ones twice.
    Input: float32 [N, H, W, C] in [0, 1]; output: class logits [N, num_classes].
    """
    h, w, _ = image_shape
    pools = 2 if min(h, w) >= 16 else 1
    layers = [keras.Input(tuple(image_shape))]
    for i, filters in enumerate((32, 64)):
        layers += [keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
                   keras.layers.Conv2D(filters, 3, padding="same", activation="relu")]
        if i < pools:
            layers.append(keras.layers.MaxPooling2D())
    layers += [keras.layers.Flatten(), keras.layers.Dropout(0.3),
               keras.layers.Dense(128, activation="relu"), keras.layers.Dropout(0.3),
               keras.layers.Dense(num_classes)]
    return keras.Sequential(layers, name="judge")


def _gaussian_kernel(sigma):
    r = tf.range(-2, 3, dtype=tf.float32)
    k = tf.exp(-0.5 * (r / sigma) ** 2)
    k = k / tf.reduce_sum(k)
    return k


def augment(x, seed):
    """A training batch as the judge should see it: x [B, H, W, C] in [0, 1].

    Each image becomes, with equal odds, itself (grey), a Bernoulli binarization, or a blur
    (Gaussian, sigma uniform in [0.5, 1.0] pixels). `train_judge` then shifts each image by a
    random whole number of pixels (up to 2, or 10% of the side for small images).
    """
    b = tf.shape(x)[0]
    c = x.shape[3]
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    choice = tf.random.stateless_uniform([b, 1, 1, 1], seeds[0], maxval=3, dtype=tf.int32)
    binary = tf.cast(tf.random.stateless_uniform(tf.shape(x), seeds[1]) < x, x.dtype)
    sigma = tf.random.stateless_uniform([], seeds[2], 0.5, 1.0)
    k = _gaussian_kernel(sigma)
    kernel_h = tf.tile(tf.reshape(k, [5, 1, 1, 1]), [1, 1, c, 1])
    kernel_w = tf.tile(tf.reshape(k, [1, 5, 1, 1]), [1, 1, c, 1])
    blurred = tf.nn.depthwise_conv2d(x, kernel_h, [1, 1, 1, 1], "SAME")
    blurred = tf.nn.depthwise_conv2d(blurred, kernel_w, [1, 1, 1, 1], "SAME")
    blurred = tf.clip_by_value(blurred / tf.maximum(tf.reduce_max(blurred, [1, 2, 3],
                                                                  keepdims=True), 1e-6)
                               * tf.reduce_max(x, [1, 2, 3], keepdims=True), 0.0, 1.0)
    return tf.where(choice == 0, x, tf.where(choice == 1, binary, blurred))


def train_judge(train_set, test_set, *, seed: int = 0, epochs: int = DEFAULT_EPOCHS,
                batch_size: int = BATCH_SIZE, verbose=0):
    """Train a judge on `train_set` (an `ImageSet`); returns (model, info dict).

    info: test accuracy on grey and on binarized test images, epochs, train seconds, sizes.
    """
    keras.utils.set_random_seed(seed)
    x = train_set.as_float()
    y = np.asarray(train_set.labels, np.int64)
    model = build_judge(train_set.image_shape, train_set.num_classes)
    steps = int(np.ceil(len(x) / batch_size))
    lr = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=max(1, epochs * steps),
                                                alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    base = tf.constant([seed, 7], tf.int64)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed,
                                                               reshuffle_each_iteration=True)
    h, w = train_set.image_shape[:2]
    shift = keras.layers.RandomTranslation(max(1, min(2, round(0.1 * h))) / h,
                                           max(1, min(2, round(0.1 * w))) / w,
                                           fill_mode="constant", interpolation="nearest",
                                           seed=seed)
    ds = ds.batch(batch_size).enumerate().map(
        lambda i, xy: (shift(augment(xy[0], tf.random.experimental.stateless_fold_in(base, i)),
                             training=True), xy[1]),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    start = time.perf_counter()
    model.fit(ds, epochs=epochs, verbose=verbose, shuffle=False)  # ds shuffles itself
    seconds = time.perf_counter() - start
    info = {"dataset": train_set.name, "seed": int(seed), "epochs": int(epochs),
            "train_seconds": seconds, "train_images": int(len(x)),
            "recipe_version": RECIPE_VERSION, **evaluate_judge(model, test_set, seed=seed)}
    return model, info


def evaluate_judge(model, test_set, seed: int = 0) -> dict:
    """Accuracy of `model` on `test_set` as grey levels and binarized once with `seed`."""
    x = test_set.as_float()
    y = np.asarray(test_set.labels)
    binary = (np.random.default_rng(seed).random(x.shape) < x).astype(np.float32)
    return {"test_split": test_set.split, "test_images": int(len(x)),
            "test_accuracy": float(np.mean(predict(model, x) == y)),
            "test_accuracy_binarized": float(np.mean(predict(model, binary) == y))}


def predict_logits(model, images, batch_size: int = 1024) -> np.ndarray:
    """Class logits [N, K] for images [..., H, W, C] flattened to [N, H, W, C]."""
    images = np.asarray(images, np.float32)
    flat = images.reshape((-1,) + images.shape[-3:])
    if len(flat) == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    out = [np.asarray(model(flat[i:i + batch_size], training=False))
           for i in range(0, len(flat), batch_size)]
    return np.concatenate(out)


def predict(model, images, batch_size: int = 1024) -> np.ndarray:
    """The judged class of each image: images [..., H, W, C] -> int64 [...]."""
    images = np.asarray(images, np.float32)
    labels = predict_logits(model, images, batch_size).argmax(-1)
    return labels.reshape(images.shape[:-3]).astype(np.int64)


def judge_info(path) -> dict | None:
    """The sidecar JSON of a cached judge, or None."""
    return read_json(str(path)[:-len(".keras")] + ".json")


def _percent(share: float) -> str:
    return f"{100 * share:.4g}%"


def cache_key_for(dataset: str, *, seed: int = 0, epochs: int = DEFAULT_EPOCHS, data_dir=None,
                  manual_dir=None):
    """(key, recipe, data fingerprint) of the judge `load_or_train_judge` would use.

    Loads both splits of `dataset` (from the process's cache when already loaded) to
    fingerprint them; the recipe holds the architecture's inputs and the training settings.
    """
    from dvrnn_tf.data import load_split

    load = dict(data_dir=data_dir or None, manual_dir=manual_dir or None)
    train, test = load_split(dataset, "train", **load), load_split(dataset, "test", **load)
    recipe = {"dataset": train.name, "image_shape": list(train.image_shape),
              "num_classes": int(train.num_classes), "seed": int(seed), "epochs": int(epochs),
              "batch_size": BATCH_SIZE}
    fingerprint = data_fingerprint(train.images, train.labels, test.images, test.labels)
    return cache_key(RECIPE_VERSION, recipe, fingerprint), recipe, fingerprint


def _check_bar(dataset: str, info: dict, min_accuracy) -> None:
    bar = MIN_ACCURACY.get(dataset) if min_accuracy is None else min_accuracy
    accuracy = info.get("test_accuracy")
    if bar is not None and (accuracy is None or accuracy < bar):
        got = "no recorded test accuracy" if accuracy is None else (
            f"right on {_percent(accuracy)} of its test images")
        raise JudgeNotGoodEnough(f"the {dataset} judge is {got}, below the {_percent(bar)} "
                                 f"bar: it refuses to judge (judge {info.get('path')})")


def load_or_train_judge(dataset: str, *, seed: int = 0, judge_dir=None, data_dir=None,
                        manual_dir=None, epochs: int = DEFAULT_EPOCHS, verbose=0,
                        min_accuracy: float | None = None):
    """The cached judge of `dataset`, trained (and cached) on first use; -> (model, info).

    The cache key (`cache_key_for`) covers the recipe, the settings, the seed and the data; a
    cached judge whose sidecar does not carry that key, or whose file cannot be read, is
    trained again. data_dir / manual_dir reach `dvrnn_tf.data.load_split`.
    Raises JudgeNotGoodEnough (one line) when the judge's test accuracy is below
    `min_accuracy` (default: `MIN_ACCURACY` of the data set, 99% for MNIST, none for others);
    a judge below the bar stays cached, so asking again refuses at once.
    """
    from dvrnn_tf.data import load_split

    key, recipe, fingerprint = cache_key_for(dataset, seed=seed, epochs=epochs,
                                             data_dir=data_dir, manual_dir=manual_dir)
    path = judge_path(dataset, seed, judge_dir, key)
    with cache_lock(path):
        info, model = judge_info(path), None
        if info is not None and info.get("key") == key and path.exists():
            try:
                model = keras.models.load_model(str(path), compile=False)
                info = {**info, "cached": True}
            except (OSError, ValueError):
                model = None  # unreadable: train again
        if model is None:
            load = dict(data_dir=data_dir or None, manual_dir=manual_dir or None)
            model, info = train_judge(load_split(dataset, "train", **load),
                                      load_split(dataset, "test", **load), seed=seed,
                                      epochs=epochs, verbose=verbose)
            info = {**info, "key": key, "recipe": recipe, "data_fingerprint": fingerprint}
            save_model_atomic(model, path)
            write_json(path.with_suffix(".json"), info)  # last: a judge without it is not trusted
            info = {**info, "cached": False}
    info = {**info, "path": str(path)}
    _check_bar(recipe["dataset"], info, min_accuracy)
    return model, info
