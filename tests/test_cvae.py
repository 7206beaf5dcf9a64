"""The conditional VAE of the second paper (DESIGN 3): split layers, transforms, the harness."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from dvrnn_tf.layers import SplitDense
from dvrnn_tf.models import CVAE, get_family
from dvrnn_tf.models.families.cvae import label_transforms, parse_split
from model_harness import ModelHarnessTests

K = 10


def labelled_batch(b=4, t=2, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.random((b, t, 8, 8, 1)) < 0.4).astype(np.float32)
    y = np.array([0, 3, 3, 9, 5, 1][:b], np.int32)
    return x, y


def tiny(**kwargs):
    kwargs = {"num_classes": K, "seq_len": 2, "hidden_dim": 16, "z_dim": 3, "seed": 0, **kwargs}
    return CVAE((8, 8, 1), **kwargs)


class TestCVAEHarness(ModelHarnessTests):
    """Split encoder layer, split decoder, rotation: the most machinery at once."""

    def make_model(self):
        return tiny(split_encoder="0", split_decoder="all", label_transform="rotation",
                    transform_seed=3)

    def make_data(self):
        return labelled_batch()

    def outputs(self, model, data):
        x, y = data
        return {"reconstruct": model.reconstruct(x, y), "classify": model.classify(x),
                "grid": model.grid(np.ones((2, 3), np.float32), transformed=True)}


def test_split_dense_gradient_reaches_only_the_copy_of_the_class():
    layer = SplitDense(5, num_classes=4, activation="relu", name="split")
    layer.build((None, 3))
    x = tf.random.stateless_normal([12, 3], [0, 1])
    y = tf.constant([0, 1, 2, 3] * 3)
    for cls in range(4):
        with tf.GradientTape() as tape:
            out = layer(x, y)
            loss = tf.reduce_sum(tf.square(out) * tf.cast(y == cls, tf.float32)[:, None])
        gk, gb = tape.gradient(loss, [layer.kernel, layer.bias])
        norms = np.abs(gk.numpy()).sum(axis=(1, 2)) + np.abs(gb.numpy()).sum(axis=1)
        assert norms[cls] > 0
        assert np.all(np.delete(norms, cls) == 0), f"class {cls}: {norms}"
    # Each example goes through its own copy: the same as an ordinary Dense with that kernel.
    for k in range(4):
        rows = np.flatnonzero(y.numpy() == k)
        expected = np.maximum(x.numpy()[rows] @ layer.kernel.numpy()[k] + layer.bias.numpy()[k], 0)
        np.testing.assert_allclose(layer(x, y).numpy()[rows], expected, rtol=1e-5, atol=1e-6)
    # Leading axes are kept; a class index outside 0..K-1 is an error.
    assert layer(tf.zeros([2, 6, 3]), tf.zeros([2, 6], tf.int32)).shape == (2, 6, 5)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        layer(x, tf.fill([12], 4))
    assert SplitDense.from_config(layer.get_config()).get_config() == layer.get_config()


def test_split_cvae_trains_one_copy_per_class():
    model = tiny(split_encoder="all", split_decoder="all")
    x, _ = labelled_batch()
    y = np.full([4], 3, np.int32)  # a batch of class 3 only
    with tf.GradientTape() as tape:
        terms = model.compute_terms(x, training=True, y=y)
        loss = terms["nll"] + terms["kl_z"]
    split = [v for v in model.trainable_variables]
    assert len(split) == 16  # 4 encoder + 4 decoder layers, kernel and bias each
    for v, g in zip(split, tape.gradient(loss, split)):
        per_copy = np.abs(g.numpy()).reshape(K, -1).sum(axis=1)
        assert per_copy[3] > 0 and np.all(np.delete(per_copy, 3) == 0), v.path
    # Shared layers: the whole kernel is one copy; split ones carry K copies.
    shared = tiny(split_decoder=[0, -1])
    shapes = {v.path.split("/")[1]: tuple(v.shape) for v in shared.trainable_variables
              if v.path.endswith("kernel")}
    assert shapes["encoder_0"] == (64 + K, 16) and shapes["decoder_0"] == (K, 3 + K, 16)
    # onehot(y) enters every layer (label_every_layer), or only the first.
    assert shapes["decoder_3"] == (K, 16 + K, 64) and shapes["decoder_1"] == (16 + K, 16)
    first_only = tiny(label_every_layer=False)
    shapes = {v.path.split("/")[1]: tuple(v.shape) for v in first_only.trainable_variables
              if v.path.endswith("kernel")}
    assert shapes["encoder_0"] == (64 + K, 16) and shapes["encoder_1"] == (16, 16)
    assert shapes["decoder_0"] == (3 + K, 16) and shapes["decoder_3"] == (16, 64)


def test_parse_split():
    assert parse_split("", 4) == () and parse_split("none", 4) == () and parse_split(None, 4) == ()
    assert parse_split("all", 4) == (0, 1, 2, 3)
    assert parse_split("2, 0", 4) == (0, 2) and parse_split([-1], 4) == (3,)
    for bad in ("4", "x", "0,,a"):
        with pytest.raises(ValueError):
            parse_split(bad, 4)
    with pytest.raises(ValueError, match="mask_label"):
        tiny(mask_label=True, split_encoder="0")


def test_label_transforms():
    rot = label_transforms("rotation", K, 5, seed=7)
    assert rot.shape == (K, 5, 5)
    for m in rot:
        np.testing.assert_allclose(m @ m.T, np.eye(5), atol=1e-10)
        assert np.linalg.det(m) == pytest.approx(1.0)
    assert not np.allclose(rot[0], rot[1])  # distinct per class
    np.testing.assert_array_equal(rot, label_transforms("rotation", K, 5, seed=7))
    assert not np.allclose(rot, label_transforms("rotation", K, 5, seed=8))
    ref = label_transforms("reflection", K, 3)
    for i in range(K):  # T_i = (-1)^{1[i < 5]} I
        np.testing.assert_array_equal(ref[i], (-1.0) ** (i < 5) * np.eye(3))
    assert label_transforms("none", K, 3) is None
    with pytest.raises(ValueError):
        label_transforms("shear", K, 3)


def test_transformed_decoder_and_methods():
    model = tiny(label_transform="rotation", transform_seed=1)
    x, y = labelled_batch()
    z = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    mats = label_transforms("rotation", K, 3, seed=1)
    tz = np.einsum("bij,btj->bti", mats[y], z).astype(np.float32)
    np.testing.assert_allclose(model.decode_transformed(z, y).numpy(),
                               model.decode(tz, y).numpy(), atol=1e-5)
    # The ELBO path decodes T_y(z): reconstruct = mu_p(y, T_y(mu_q)).
    loc = model.encode(x, y)["z_loc"]
    np.testing.assert_allclose(model.reconstruct(x, y).numpy(),
                               model.decode_transformed(loc, y).numpy(), atol=1e-6)
    assert model.grid(z[:, 0]).shape == (K, 4, 8, 8, 1)
    assert model.grid(z[:, 0], classes=[2, 5]).shape == (2, 4, 8, 8, 1)
    scores = model.elbo_per_class(x)
    assert scores.shape == (4, K)
    np.testing.assert_array_equal(model.classify(x).numpy(), np.argmax(scores.numpy(), -1))
    assert model.generate(3).shape == (3, 2, 8, 8, 1)
    assert model(x).shape == x.shape  # call: labels inferred
    with pytest.raises(ValueError, match="labels"):
        model.compute_terms(x)
    with pytest.raises(ValueError, match="labelled batches"):
        model.terms_from_data(x)
    assert get_family("cvae").model_class is CVAE


def test_masked_encoder_ignores_the_label():
    model = tiny(mask_label=True)
    x, _ = labelled_batch()
    a = model.encode(x, np.zeros(4, np.int32))["z_loc"].numpy()
    b = model.encode(x, np.full(4, 7, np.int32))["z_loc"].numpy()
    np.testing.assert_array_equal(a, b)
    assert tuple(model.encoder_layers[0].kernel.shape) == (64, 16)
    assert tuple(model.encoder_layers[1].kernel.shape) == (16, 16)  # y in no encoder layer


def test_train_config_and_factory():
    from dvrnn_tf.training import TrainConfig
    from dvrnn_tf.training.factory import build_model

    config = TrainConfig(model="cvae", split_encoder="all", split_decoder="0,3", hidden_dim=8,
                         z_dim=2)
    from dvrnn_tf.data import DataSpec, Factor

    model = build_model(config, DataSpec((8, 8, 1), 2, (Factor("class", 7),)))
    assert model.num_classes == 7
    assert model.split_encoder == (0, 1, 2, 3) and model.split_decoder == (0, 3)
    for bad in (dict(model="cvae", split_encoder="first"),
                dict(model="beta_vae", split_decoder="all")):
        with pytest.raises(ValueError, match="split_"):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="needs data with a 'class' label"):
        build_model(config, DataSpec((8, 8, 1), 2, (Factor("motion", 9),)))


def test_export_labelled_endpoints(tmp_path):
    from dvrnn_tf.export import export_saved_model

    model = tiny(split_decoder="all", label_transform="reflection")
    names = export_saved_model(model, str(tmp_path / "sm"))
    assert {"reconstruct", "encode", "generate", "decode", "reconstruct_given_label",
            "encode_given_label", "elbo_per_class"} <= set(names)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    x, y = labelled_batch()
    np.testing.assert_allclose(loaded.reconstruct_given_label(x, y).numpy(),
                               model.reconstruct(x, y).numpy(), atol=1e-5)
    z = np.zeros((4, 2, 3), np.float32)
    np.testing.assert_allclose(loaded.decode(z, y).numpy(), model.decode(z, y).numpy(),
                               atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded.decode(z, np.full(4, K, np.int32))
    keras.backend.clear_session()
