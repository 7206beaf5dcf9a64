"""Bad tensors at every SavedModel endpoint and at `model.predict` / `model(x)`: images, counts
and codes, and the control that serves good inputs.

Part of the catalogue of bad inputs (what every case must show: reliability_helpers.py).
"""
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from dvrnn_tf import checks

T, H, W, C = 8, 8, 8, 1  # the tiny run's sequences: digits
MAX = checks.MAX_BATCH


# ---- tensors at the endpoints and at model.predict ------------------------------------------

@pytest.fixture(scope="module")
def served(tiny_run):
    """The tiny run's SavedModel and checkpoint, loaded once."""
    run_dir, _ = tiny_run
    return {"saved": tf.saved_model.load(str(run_dir / "saved_model")),
            "model": keras.models.load_model(run_dir / "checkpoints" / "last.keras")}


X = np.random.default_rng(0).uniform(size=(3, T, H, W, C)).astype("float32")
SIGNATURE = (TypeError, ValueError)  # the fixed signatures refuse a wrong rank, shape, dtype
GRAPH = tf.errors.InvalidArgumentError


def _with(x, index, value):
    x = x.copy()
    x[index] = value
    return x


# defect -> (images, errors raised at the endpoints, message); the message is the check's, or
# for a refused signature the expected spec.
IMAGE_DEFECTS = {
    "mnist-shaped": (np.zeros((2, T, 28, 28, 1), "float32"), SIGNATURE, "8, 8, 1"),
    "rank-4": (X[0], SIGNATURE, "8, 8, 1"),
    "wrong-T": (X[:, :5], SIGNATURE, "8, 8, 1"),
    "float64": (tf.constant(X, tf.float64), SIGNATURE, "float32"),
    "int32": (tf.constant(X > 0.5, tf.int32), SIGNATURE, "float32"),
    "uint8-0-to-255": ((X * 255).astype("uint8"), GRAPH, r"values must be in \[0, 1\]"),
    "nan": (_with(X, (0, 1, 2, 3, 0), np.nan), GRAPH, "must be finite"),
    "inf": (_with(X, (0, 0, 0, 0, 0), np.inf), GRAPH, "must be finite"),
    "minus-inf": (_with(X, (0, 7, 7, 7, 0), -np.inf), GRAPH, "must be finite"),
    "above-one": (_with(X, (0, 0, 0, 0, 0), 1.5), GRAPH, r"values must be in \[0, 1\]"),
    "below-zero": (_with(X, (0, 0, 0, 0, 0), -0.01), GRAPH, r"values must be in \[0, 1\]"),
    "empty-batch": (X[:0], GRAPH, "empty batch"),
    "batch-above-MAX_BATCH": (np.zeros((MAX + 1, T, H, W, C), "float32"), GRAPH,
                              f"larger than MAX_BATCH={MAX}"),
}
# Where a single sequence is expected ([1, T, H, W, C]) a batch defect is a signature error.
SINGLE = {"empty-batch": (SIGNATURE, "1, 8, 8, 8, 1"),
          "batch-above-MAX_BATCH": (SIGNATURE, "1, 8, 8, 8, 1")}
# How model.predict and model(x) (Keras: casts float64, checks shapes in `check_inputs`) differ.
KERAS = {"mnist-shaped": ((ValueError, GRAPH), r"must have shape \[batch, 8, 8, 8, 1\]"),
         "rank-4": ((ValueError, GRAPH), r"must have shape \[batch, 8, 8, 8, 1\]"),
         "wrong-T": ((ValueError, GRAPH), r"must have shape \[batch, 8, 8, 8, 1\]"),
         "int32": (TypeError, "must be float32 images"),
         "uint8-0-to-255": (TypeError, "must be float32 images")}


def _image_call(served, target, x):
    saved, model = served["saved"], served["model"]
    if target == "predict":
        return lambda: model.predict(x, verbose=0, batch_size=MAX + 1)
    if target == "call":
        return lambda: model(x)
    endpoint, arg = target.split(".")
    fn = getattr(saved, endpoint)
    ok = X[:1] if endpoint.startswith("interpolate") else X
    if endpoint == "swap":  # the other argument of the same batch size, good
        other = np.zeros(tuple(x.shape), "float32")
        return lambda: fn(x, other) if arg == "x_content" else fn(other, x)
    if arg == "x_b":
        return lambda: fn(ok, x)
    if arg == "x_a":
        return lambda: fn(x, ok)
    return lambda: fn(x)


IMAGE_TARGETS = ["reconstruct.x", "encode.x", "swap.x_content", "swap.x_style",
                 "interpolate_f.x_a", "interpolate_z.x_b", "predict", "call"]
IMAGE_CASES = [(t, d) for t in IMAGE_TARGETS for d in IMAGE_DEFECTS  # Keras casts float64
               if not (t in ("predict", "call") and d == "float64")]


@pytest.mark.parametrize("target, defect", IMAGE_CASES,
                         ids=[f"{t}-{d}" for t, d in IMAGE_CASES])
def test_bad_images(served, target, defect):
    x, errors, words = IMAGE_DEFECTS[defect]
    if target.startswith("interpolate"):
        x = x if defect in SINGLE else x[:1]
        errors, words = SINGLE.get(defect, (errors, words))
    if target in ("predict", "call"):
        errors, words = KERAS.get(defect, (errors, words))
        if target == "predict" and defect == "empty-batch":
            errors = ValueError
    with pytest.raises(errors) as e:
        _image_call(served, target, x)()
    text = str(e.value)
    assert re.search(words, text), text[:1500]
    if target.startswith("swap") and errors is GRAPH and "batch" not in defect:
        assert f"`{target.split('.')[1]}`" in text, "the message names the argument"


COUNT_DEFECTS = {
    "zero": (tf.constant(0), GRAPH, "must be >= 1"),
    "negative": (tf.constant(-3), GRAPH, "must be >= 1"),
    "above-MAX_BATCH": (tf.constant(MAX + 1), GRAPH, f"must be <= MAX_BATCH={MAX}"),
    "int32-max": (tf.constant(2 ** 31 - 1), GRAPH, f"must be <= MAX_BATCH={MAX}"),
    "int64": (tf.constant(2, tf.int64), SIGNATURE, "int32"),
    "float": (2.5, SIGNATURE, "int32"),
    "vector": (tf.constant([2, 3]), SIGNATURE, "shape=()"),
}
COUNT_CASES = [(e, d) for e in ("generate", "generate_fixed_content", "generate_fixed_style")
               for d in COUNT_DEFECTS]


@pytest.mark.parametrize("endpoint, defect", COUNT_CASES,
                         ids=[f"{e}.n-{d}" for e, d in COUNT_CASES])
def test_bad_counts(served, endpoint, defect):
    n, errors, words = COUNT_DEFECTS[defect]
    with pytest.raises(errors, match=words):
        getattr(served["saved"], endpoint)(n)


CODE_DEFECTS = {
    "f-nan": (lambda f, z: (f * np.nan, z), GRAPH, "`f` must be finite"),
    "z-inf": (lambda f, z: (f, _with(z, (0, 0, 0), np.inf)), GRAPH, "`z` must be finite"),
    "f-beyond-MAX_ABS_CODE": (lambda f, z: (f + 1e7, z), GRAPH, "`f`: codes must lie within"),
    "z-beyond-MAX_ABS_CODE": (lambda f, z: (f, z - 1e7), GRAPH, "`z`: codes must lie within"),
    "f-wrong-width": (lambda f, z: (np.zeros((3, 5), "float32"), z), SIGNATURE,
                      re.escape("shape=(None, 4)")),
    "z-wrong-T": (lambda f, z: (f, z[:, :3]), SIGNATURE, re.escape("shape=(None, 8, 2)")),
    "batch-mismatch": (lambda f, z: (f[:2], z), GRAPH, "need the same batch size"),
    "empty-batch": (lambda f, z: (f[:0], z[:0]), GRAPH, "empty batch"),
    "batch-above-MAX_BATCH": (lambda f, z: (np.zeros((MAX + 1, 4), "float32"),
                                            np.zeros((MAX + 1, T, 2), "float32")),
                              GRAPH, f"larger than MAX_BATCH={MAX}"),
}


@pytest.mark.parametrize("defect", CODE_DEFECTS, ids=[f"decode-{d}" for d in CODE_DEFECTS])
def test_bad_codes(served, defect):
    codes = served["saved"].encode(X)
    f, z = codes["f_loc"].numpy(), codes["z_loc"].numpy()
    bad, errors, words = CODE_DEFECTS[defect]
    with pytest.raises(errors, match=words):
        served["saved"].decode(*bad(f, z))


def test_good_inputs_are_served(served):
    """The control of the tables above: the same calls with good inputs work."""
    saved = served["saved"]
    for out in (saved.reconstruct(X), saved.swap(X, X[::-1]), saved.generate(tf.constant(2)),
                saved.interpolate_f(X[:1], X[1:2]), served["model"].predict(X, verbose=0)):
        out = np.asarray(out)
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    codes = saved.encode(X)
    assert saved.decode(codes["f_loc"], codes["z_loc"]).shape == (3, T, H, W, C)
