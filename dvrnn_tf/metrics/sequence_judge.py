"""The field's judge (DESIGN 6): a classifier of whole sequences, a softmax head per static factor.

A convolutional frame encoder (stride-2 4x4 convolutions, applied to every frame), a
bidirectional LSTM over the frames' features, their mean over time, and one softmax head per
factor (named after it). Trained with full supervision on a source's train split; it judges
generated sequences only if it is right on >= 99.5% of the real test sequences for every
factor (`load_or_train_sequence_judge` raises `JudgeNotGoodEnough` otherwise).

What it judges are decoder means: slightly blurred, colours a little off, contrast pulled
toward the mean (a VAE's mean regresses to the average of what the codes leave uncertain), a
little noise where a decoder is unsure. Training therefore sees half of its sequences as they
are and half after `judge_data.augment_sequences`, so it judges both real and decoded
sequences without losing accuracy on real ones. There is no spatial shift or flip: Sprites' characters are
centred and a left/right flip would change the direction a character faces (its motion label).

Its input pipeline and the augmentation: `dvrnn_tf.metrics.judge_data`.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import re
import time

import keras
import numpy as np

from dvrnn_tf.metrics import judge_cache
from dvrnn_tf.metrics.judge_data import sequence_dataset
from dvrnn_tf.metrics.judge_cache import JudgeNotGoodEnough, data_fingerprint
from dvrnn_tf.metrics.judge_scores import judge_scores

# Bump when the architecture, the augmentation or the training recipe changes.
RECIPE_VERSION = 1
MIN_ACCURACY = 0.995
DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 64
LEARNING_RATE = 1e-3
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


@dataclasses.dataclass(frozen=True)
class Factor:
    """A labelled factor: `num_classes` classes, per sequence (or per frame, not judged)."""

    name: str
    num_classes: int
    per_frame: bool = False


def judged_factors(factors) -> tuple:
    """The factors this judge can judge: static (not per-frame) ones with classes."""
    return tuple(f for f in factors if not getattr(f, "per_frame", False)
                 and getattr(f, "num_classes", None) is not None)


def check_factors(factors) -> tuple:
    """factors as a tuple, checked: non-empty, static, categorical, distinct valid names."""
    factors = tuple(factors or ())
    if not factors:
        raise ValueError("factors is empty: the judge needs at least one static factor with "
                         "classes, e.g. Factor('motion', 9)")
    seen = set()
    for f in factors:
        name, k = getattr(f, "name", None), getattr(f, "num_classes", None)
        if not isinstance(name, str) or not _NAME.match(name) or name in seen:
            raise ValueError(f"factor names must be distinct words (letters, digits, _ . -), "
                             f"got {name!r}")
        if getattr(f, "per_frame", False):
            raise ValueError(f"factor {name!r} is per-frame: the judge has one head per static "
                             f"factor; leave it out (see judged_factors)")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
            raise ValueError(f"factor {name!r} needs num_classes >= 2 to be judged, got {k!r}")
        seen.add(name)
    return factors


def _check_positive(name, value, kind=int):
    """value as a positive int (kind int) or a positive finite float (kind float)."""
    types = (int, np.integer) if kind is int else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, types) or not 0 < value < math.inf:
        what = "integer" if kind is int else "number"
        raise ValueError(f"`{name}` must be a positive {what}, got {value!r}")
    return kind(value)


def build_sequence_judge(image_shape, seq_len: int, factors, channels: int = 32,
                         lstm_units: int = 128) -> keras.Model:
    """The judge: inputs float32 [N, T, H, W, C] in [0, 1] -> {factor name: probs [N, K]}.

    Stride-2 4x4 convolutions (channels, 2x, 4x, 4x, ...) until the frame is about 4 pixels
    wide (4 layers for 64x64, 2 for 16x16), a dense frame feature of `lstm_units`, a
    bidirectional LSTM of `lstm_units` per direction, the mean of its outputs over time, and
    one softmax layer per factor.
    """
    factors = check_factors(factors)
    seq_len, channels, lstm_units = (_check_positive(n, v) for n, v in (
        ("seq_len", seq_len), ("channels", channels), ("lstm_units", lstm_units)))
    shape = tuple(int(d) for d in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"`image_shape` must be (H, W, C) of positive sizes, got {image_shape!r}")
    num_convs = max(1, int(math.log2(max(1, min(shape[:2]) // 4))))
    frame = [keras.Input(shape)]
    for i in range(num_convs):
        frame += [keras.layers.Conv2D(channels * 2 ** min(i, 2), 4, strides=2, padding="same"),
                  keras.layers.LeakyReLU(0.2)]
    frame += [keras.layers.Flatten(), keras.layers.Dense(lstm_units, activation="relu")]
    inputs = keras.Input((seq_len,) + shape, name="frames")
    h = keras.layers.TimeDistributed(keras.Sequential(frame, name="frame_encoder"))(inputs)
    h = keras.layers.Bidirectional(keras.layers.LSTM(lstm_units, return_sequences=True))(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    outputs = {f.name: keras.layers.Dense(int(f.num_classes), activation="softmax",
                                          name=f.name)(h) for f in factors}
    return keras.Model(inputs, outputs, name="sequence_judge")


# ---- data ------------------------------------------------------------------------------------

def _check_sequences(name, x, frame_shape=None) -> np.ndarray:
    x = x if isinstance(x, np.ndarray) else np.asarray(x)
    if x.ndim != 5 or x.shape[0] == 0:
        raise ValueError(f"{name} must be non-empty sequences [N, T, H, W, C], got shape "
                         f"{x.shape}")
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be uint8 (0..255) or float in [0, 1], got {x.dtype}")
    if frame_shape is not None and tuple(x.shape[1:]) != tuple(frame_shape):
        raise ValueError(f"{name} has sequences of shape {x.shape[1:]}, the judge's are "
                         f"{tuple(frame_shape)}")
    return x


def _label_matrix(name, labels, factors, n) -> np.ndarray:
    """labels {factor name: [N] ints} -> int64 [N, F] in the factors' order, checked."""
    if not isinstance(labels, dict):
        raise ValueError(f"{name} must be a dict {{factor name: [N] class labels}}, got "
                         f"{type(labels).__name__}")
    columns = []
    for f in factors:
        if f.name not in labels:
            raise ValueError(f"{name} has no labels for factor {f.name!r}; it has "
                             f"{sorted(labels)}")
        y = np.asarray(labels[f.name])
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{name}[{f.name!r}] must be [{n}] integers (one per sequence), "
                             f"got {y.dtype} {y.shape}")
        if y.min() < 0 or y.max() >= f.num_classes:
            raise ValueError(f"{name}[{f.name!r}] must lie in 0..{f.num_classes - 1}, got "
                             f"{y.min()}..{y.max()}")
        columns.append(y.astype(np.int64))
    return np.stack(columns, axis=1)


# ---- training and judging ----------------------------------------------------------------------

def train_sequence_judge(x_train, labels_train, x_val, labels_val, factors, *, seed: int,
                         epochs: int = DEFAULT_EPOCHS, batch_size: int = DEFAULT_BATCH_SIZE,
                         channels: int = 32, lstm_units: int = 128, augment: bool = True,
                         learning_rate: float = LEARNING_RATE, verbose=0):
    """Train a judge with full supervision; -> (model, history {metric: [per epoch]}).

    x_*: [N, T, H, W, C] uint8 or float in [0, 1]; labels_*: {factor name: [N] ints}.
    x_val / labels_val may be None (no validation during training). Adam with a cosine decay
    to 5% of `learning_rate`; the loss is the sum of the factors' cross-entropies.
    """
    factors = check_factors(factors)
    names = [f.name for f in factors]
    epochs, batch_size = _check_positive("epochs", epochs), _check_positive("batch_size",
                                                                            batch_size)
    learning_rate = _check_positive("learning_rate", learning_rate, float)
    x_train = _check_sequences("x_train", x_train)
    y_train = _label_matrix("labels_train", labels_train, factors, len(x_train))
    val = None
    if x_val is not None:
        x_val = _check_sequences("x_val", x_val, x_train.shape[1:])
        y_val = _label_matrix("labels_val", labels_val, factors, len(x_val))
        val = sequence_dataset(x_val, y_val, names, batch_size)
    keras.utils.set_random_seed(int(seed))
    model = build_sequence_judge(x_train.shape[2:], x_train.shape[1], factors, channels,
                                 lstm_units)
    steps = math.ceil(len(x_train) / batch_size)
    lr = keras.optimizers.schedules.CosineDecay(learning_rate, max(1, epochs * steps), alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss={n: keras.losses.SparseCategoricalCrossentropy() for n in names},
                  metrics={n: ["accuracy"] for n in names})
    train = sequence_dataset(x_train, y_train, names, batch_size, shuffle_seed=seed,
                             augment_seed=seed if augment else None)
    history = model.fit(train, validation_data=val, epochs=epochs, shuffle=False,
                        verbose=verbose)
    return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}


def judge_predict(model, x, batch_size: int = 256) -> dict:
    """{factor name: probs [N, K]} for sequences x [N, T, H, W, C] (uint8, or float in [0, 1]).

    Floats are clipped to [0, 1] (a Gaussian decoder's mean can stray outside; a viewer sees
    it clipped). Read batch by batch: x is never copied whole.
    """
    x = _check_sequences("x", x, model.input_shape[1:])
    batch_size = _check_positive("batch_size", batch_size)
    parts = []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        if xb.dtype == np.uint8:
            xb = xb.astype(np.float32) / np.float32(255.0)
        else:
            if not np.all(np.isfinite(xb)):
                raise ValueError("x holds NaN or infinite values; the judge reads pixels in "
                                 "[0, 1]")
            xb = np.clip(xb.astype(np.float32, copy=False), 0.0, 1.0)
        parts.append(model.predict_on_batch(xb))
    return {name: np.concatenate([np.asarray(p[name]) for p in parts]) for name in parts[0]}


def judge_real_scores(model, x, labels, factors, batch_size: int = 256) -> dict:
    """{factor name: `judge_scores.judge_scores`} of the judge on real sequences x.

    On real test sequences these are the protocol's ceilings: no generation scores a higher
    IS or a lower H(y|x) than the judge gives the data itself.
    """
    factors = check_factors(factors)
    y = _label_matrix("labels", labels, factors, len(x))
    probs = judge_predict(model, x, batch_size)
    return {f.name: judge_scores(probs[f.name], y[:, k]) for k, f in enumerate(factors)}


# ---- the cache ---------------------------------------------------------------------------------

def judge_key(recipe: dict, data_fingerprint: str) -> str:
    """The cache key of a judge: RECIPE_VERSION, `recipe` (architecture and training settings,
    seed) and the fingerprint of its data; 16 hex digits."""
    return judge_cache.cache_key(RECIPE_VERSION, recipe, data_fingerprint)


def _bar_check(info: dict, min_accuracy: float) -> None:
    name, acc = min(info["test_accuracy"].items(), key=lambda kv: kv[1])
    if acc < min_accuracy:
        raise JudgeNotGoodEnough(
            f"the sequence judge is right on {acc:.2%} of the real test sequences for factor "
            f"{name!r}, below the {min_accuracy:.1%} bar: it refuses to judge "
            f"(judge {info['path']})")


def _key_inputs(x_train, labels_train, x_val, labels_val, x_test, labels_test, factors, *,
                seed, epochs, batch_size, channels, lstm_units, augment, learning_rate):
    """(recipe, data fingerprint) of a judge, every input checked."""
    x_train = _check_sequences("x_train", x_train)
    frame_shape = x_train.shape[1:]
    x_test = _check_sequences("x_test", x_test, frame_shape)
    arrays = [x_train, _label_matrix("labels_train", labels_train, factors, len(x_train))]
    if x_val is not None:
        x_val = _check_sequences("x_val", x_val, frame_shape)
        arrays += [x_val, _label_matrix("labels_val", labels_val, factors, len(x_val))]
    arrays += [x_test, _label_matrix("labels_test", labels_test, factors, len(x_test))]
    recipe = {"image_shape": list(frame_shape[1:]), "seq_len": int(frame_shape[0]),
              "factors": [[f.name, int(f.num_classes)] for f in factors],
              "channels": _check_positive("channels", channels),
              "lstm_units": _check_positive("lstm_units", lstm_units), "seed": int(seed),
              "epochs": _check_positive("epochs", epochs),
              "batch_size": _check_positive("batch_size", batch_size),
              "learning_rate": _check_positive("learning_rate", learning_rate, float),
              "augment": bool(augment), "validation": x_val is not None}
    return recipe, data_fingerprint(*arrays)


def load_or_train_sequence_judge(cache_dir, x_train, labels_train, x_val, labels_val, x_test,
                                 labels_test, factors, *, seed: int = 0,
                                 epochs: int = DEFAULT_EPOCHS,
                                 batch_size: int = DEFAULT_BATCH_SIZE, channels: int = 32,
                                 lstm_units: int = 128, augment: bool = True,
                                 learning_rate: float = LEARNING_RATE,
                                 min_accuracy: float = MIN_ACCURACY, verbose=0):
    """The judge of these data and settings, trained and cached on first use; -> (model, info).

    Cached as ``<cache_dir>/<key>/judge.keras`` with ``judge.json`` beside it (the key's inputs,
    each factor's accuracy and scores on the real test sequences, the training time). The key covers
    RECIPE_VERSION, the settings, the seed and a fingerprint of all six arrays (`judge_key`).
    A lock keeps two processes from training one judge at once; files are written whole.
    Raises JudgeNotGoodEnough (one line) when a factor's test accuracy is below
    `min_accuracy`; a judge below the bar stays cached, so asking again refuses at once.
    """
    factors = check_factors(factors)
    recipe, fingerprint = _key_inputs(x_train, labels_train, x_val, labels_val, x_test,
                                      labels_test, factors, seed=seed, epochs=epochs,
                                      batch_size=batch_size, channels=channels,
                                      lstm_units=lstm_units, augment=augment,
                                      learning_rate=learning_rate)
    key = judge_key(recipe, fingerprint)
    folder = pathlib.Path(cache_dir).expanduser().resolve() / key
    path, sidecar = folder / "judge.keras", folder / "judge.json"
    with judge_cache.cache_lock(folder):
        info = judge_cache.read_json(sidecar)
        model = None
        if info is not None and info.get("key") == key and path.exists():
            try:
                model = keras.models.load_model(str(path), compile=False)
            except (OSError, ValueError):
                model = None  # unreadable: train again
        if model is None:
            start = time.perf_counter()
            model, history = train_sequence_judge(
                x_train, labels_train, x_val, labels_val, factors, seed=seed, epochs=epochs,
                batch_size=batch_size, channels=channels, lstm_units=lstm_units,
                augment=augment, learning_rate=learning_rate, verbose=verbose)
            seconds = time.perf_counter() - start
            scores = judge_real_scores(model, x_test, labels_test, factors)
            info = {"key": key, "recipe_version": RECIPE_VERSION, "recipe": recipe,
                    "data_fingerprint": fingerprint, "train_seconds": seconds,
                    "test_accuracy": {k: v["accuracy"] for k, v in scores.items()},
                    "test_scores": scores,
                    "train_sequences": int(len(x_train)), "test_sequences": int(len(x_test)),
                    "val_sequences": int(len(x_val)) if x_val is not None else 0,
                    "history": history}
            folder.mkdir(parents=True, exist_ok=True)
            judge_cache.save_model_atomic(model, path)
            judge_cache.write_json(sidecar, info)  # last: a judge without it is not trusted
            info = {**info, "cached": False}
        else:
            info = {**info, "cached": True}
    info = {**info, "path": str(path), "min_accuracy": float(min_accuracy)}
    _bar_check(info, min_accuracy)
    return model, info
