"""Shared by the VRNN tests (test_vrnn_cell.py, test_vrnn_models.py, test_vrnn_training.py):
the model kinds and layouts, small models and batches, and assertions on them."""
import numpy as np
import tensorflow as tf

from dvrnn_tf.models import DisentangledVRNN, VRNN

KINDS = ("vrnn", "full", "factorized")
VARIANTS = ("full", "factorized")
# name -> (image_shape, T): sequences of images, and the rows of one 28x28 image as a sequence.
LAYOUTS = {"seq8x8": ((8, 8, 1), 8), "seq28x28": ((28, 28, 1), 8), "rows": ((1, 28, 1), 28)}
Z_DIM, F_DIM = 3, 4


def make_model(kind, layout="seq8x8", **kwargs):
    image_shape, seq_len = LAYOUTS[layout]
    kwargs = {"seq_len": seq_len, "hidden_dim": 16, "rnn_dim": 16, "z_dim": Z_DIM, "seed": 1,
              **kwargs}
    if kind == "vrnn":
        return VRNN(image_shape, **kwargs)
    return DisentangledVRNN(image_shape, variant=kind, f_dim=F_DIM, **kwargs)


def make_batch(layout="seq8x8", batch=3, seed=0):
    image_shape, seq_len = LAYOUTS[layout]
    return np.random.default_rng(seed).uniform(size=(batch, seq_len, *image_shape)).astype("float32")


def seed_state(model):
    return tf.identity(model.seed_generator.state)


def assert_close(a, b, atol=1e-6, msg=""):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol, rtol=0, err_msg=msg)


def record_decode(model, monkeypatch):
    """Wrap `model.decode` so that the codes it is given are kept in the returned list."""
    calls, decode = [], model.decode

    def recording(f, z=None):
        calls.append((tf.identity(f), None if z is None else tf.identity(z)))
        return decode(f, z)

    monkeypatch.setattr(model, "decode", recording)
    return calls

