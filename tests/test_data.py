"""dvrnn_tf.data: image sources (digits, MNIST offline, failure modes) and sequence sampling."""
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from dvrnn_tf.data import (BINARIZE, LAYOUTS, DataUnavailableError, ImageSet, SequenceSampler,
                           available_datasets, load_split)
from dvrnn_tf.data import sources

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(xa, xb) and np.array_equal(ya, yb)
                                    for (xa, ya), (xb, yb) in zip(a, b))


def indexed_set(counts=(13, 7, 20, 11), hw=2):
    """uint8 images whose first two pixels spell their own index, so a batch can be traced back."""
    labels = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    labels = np.random.default_rng(0).permutation(labels).astype(np.int64)
    images = np.zeros((len(labels), hw, hw, 1), np.uint8)
    images[:, 0, 0, 0] = np.arange(len(labels)) % 256
    images[:, 0, 1, 0] = np.arange(len(labels)) // 256
    return ImageSet("indexed", "train", images, labels, len(counts))


def source_index(x):
    """[B, T, H, W, 1] grey floats of an indexed_set -> [B, T] source indices."""
    k = np.rint(x * 255).astype(np.int64)
    return k[..., 0, 0, 0] + 256 * k[..., 0, 1, 0]


# -- sources -------------------------------------------------------------------------------------

def test_digits_shapes_range_and_disjoint_stratified_split():
    train, test = load_split("digits", "train"), load_split("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    for s in (train, test):
        assert s.images.dtype == np.float32 and s.labels.dtype == np.int64
        assert s.image_shape == (8, 8, 1) and s.num_classes == 10
        assert 0.0 <= s.images.min() and s.images.max() == 1.0
        assert np.array_equal(s.as_float(), s.images)
        assert not s.images.flags.writeable  # the cached object is shared
    train_bytes = {img.tobytes() for img in train.images}
    assert not any(img.tobytes() in train_bytes for img in test.images)
    total = np.bincount(train.labels, minlength=10) + np.bincount(test.labels, minlength=10)
    assert np.all(np.abs(np.bincount(test.labels, minlength=10) - 0.2 * total) <= 1)
    assert load_split("digits", "train") is train  # cached in-process


def test_as_float_of_uint8():
    s = ImageSet("x", "train", np.array([[[[0]], [[255]]]], np.uint8), np.array([0]), 1)
    f = s.as_float()
    assert f.dtype == np.float32 and f.ravel().tolist() == [0.0, 1.0]


def test_bad_split_and_unknown_names():
    with pytest.raises(ValueError, match="validation"):
        load_split("digits", "validation")
    with pytest.raises(ValueError, match="no_such_set"):
        load_split("no_such_set", "train")
    with pytest.raises(ValueError, match="emnist/nope"):
        load_split("emnist/nope", "train", data_dir=tempfile.mkdtemp())
    with pytest.raises(ValueError, match="not labelled image classification"):
        load_split("celeb_a", "train", data_dir=tempfile.mkdtemp())


def test_available_datasets():
    names = available_datasets()
    assert names[:2] == ["digits", "mnist"]
    assert {"fashion_mnist", "kmnist", "emnist", "svhn_cropped"} <= set(names)


@pytest.mark.slow
def test_mnist_offline(mnist_dirs):
    data_dir, manual_dir = mnist_dirs
    train = load_split("mnist", "train", data_dir=data_dir, manual_dir=manual_dir)
    test = load_split("mnist", "test", data_dir=data_dir, manual_dir=manual_dir)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.images.dtype == np.uint8 and train.image_shape == (28, 28, 1)
    assert set(np.unique(train.labels)) == set(range(10)) == set(np.unique(test.labels))
    assert train.num_classes == 10 and train.images.max() == 255
    sampler = SequenceSampler(train, seq_len=8)
    assert sampler.num_sequences == 7500 and sampler.steps_per_epoch(128) == 59
    x, y = next(iter(sampler.dataset(128, training=True)))
    assert x.shape == (128, 8, 28, 28, 1) and y.dtype == tf.int32
    x, _ = next(iter(SequenceSampler(test, layout="rows").dataset(16, training=False)))
    assert x.shape == (16, 28, 1, 28, 1)


def _assert_fast_unavailable(data_dir):
    start = time.monotonic()
    with pytest.raises(DataUnavailableError) as err:
        load_split("mnist", "train", data_dir=data_dir, manual_dir=None)
    assert time.monotonic() - start < 15
    assert "--manual_dir" in str(err.value) and "--data_dir" in str(err.value)


def test_no_network_fails_fast_simulated(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "network_reachable", lambda *a, **k: False)
    _assert_fast_unavailable(str(tmp_path))


def test_no_network_fails_fast_real_probe(tmp_path):
    if sources.network_reachable("storage.googleapis.com", 443):
        pytest.skip("this machine reaches the MNIST host: the real path would download")
    _assert_fast_unavailable(str(tmp_path))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_manual_dir(mnist_dirs, tmp_path, damage):
    _, good = mnist_dirs
    manual = tmp_path / "manual"
    manual.mkdir()
    for name in MNIST_FILES[:3]:
        (manual / name).symlink_to(pathlib.Path(good) / name)
    data = (pathlib.Path(good) / MNIST_FILES[3]).read_bytes()
    # truncate: caught by size; flip: same size, caught by tfds's sha256 check.
    data = data[:1000] if damage == "truncate" else data[:-1] + bytes([data[-1] ^ 0xFF])
    (manual / MNIST_FILES[3]).write_bytes(data)
    with pytest.raises(DataUnavailableError, match=MNIST_FILES[3]) as err:
        load_split("mnist", "test", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual))
    assert "--manual_dir" in str(err.value)


# -- sequences -----------------------------------------------------------------------------------

def test_every_sequence_one_class_and_classes_balanced():
    s = indexed_set()
    sampler = SequenceSampler(s, seq_len=5)
    assert sampler.num_sequences == len(s) // 5 and sampler.image_shape == (2, 2, 1)
    for training in (True, False):
        got = batches(sampler.dataset(4, training=training))
        assert [len(y) for _, y in got] == [4] * 2 + [2]  # partial batch kept
        x = np.concatenate([b[0] for b in got])
        y = np.concatenate([b[1] for b in got])
        assert x.shape == (10, 5, 2, 2, 1) and x.dtype == np.float32 and y.dtype == np.int32
        assert np.all(s.labels[source_index(x)] == y[:, None])
        counts = np.bincount(y, minlength=4)
        assert counts.max() - counts.min() <= 1
    assert len(batches(sampler.dataset(4, training=True, drop_remainder=True))) == 2


def test_steps_fix_the_epoch_length():
    s = indexed_set()  # 51 images, classes of 13, 7, 20, 11
    for layout, n in (("sequences", 6), ("rows", 51)):
        sampler = SequenceSampler(s, layout=layout)
        assert sampler.num_sequences == n
        for steps in (1, 5, 40):  # less than, about, more than one pass
            for training in (True, False):
                ds = sampler.dataset(4, training=training, steps=steps)
                assert ds.cardinality() == steps
                got = batches(ds)
                assert [len(y) for _, y in got] == [4] * steps
                y = np.concatenate([y for _, y in got])
                if layout == "sequences":
                    counts = np.bincount(y, minlength=4)
                    assert counts.max() - counts.min() <= 1
                else:
                    idx = np.concatenate([source_index(x[:, :, 0]) for x, _ in got])
                    assert np.array_equal(s.labels[idx], y)
                    full = len(idx) // 51 * 51  # every complete pass shows every image once
                    assert np.all(np.bincount(idx[:full], minlength=51) == full // 51)
    with pytest.raises(ValueError, match="steps.*0"):
        sampler.dataset(4, training=True, steps=0)


def test_draws_cover_the_class_and_vary_within_sequence():
    s = indexed_set(counts=(6, 6))
    sampler = SequenceSampler(s, seq_len=2)
    seen, ds = set(), sampler.dataset(6, training=True)
    for _ in range(15):  # auto-advance: a new epoch each pass over the same dataset
        for x, _ in batches(ds):
            seen.update(source_index(x).ravel().tolist())
    assert seen == set(range(12))  # with replacement, uniformly over each class's images


def test_determinism_resume_and_fresh_epochs():
    s = indexed_set()
    a, b = SequenceSampler(s, seed=3), SequenceSampler(s, seed=3)
    a.set_epoch(2)
    b.epoch_callback().on_epoch_begin(2)  # a resumed process: the callback sets the epoch
    assert same(batches(a.dataset(3, training=True)), batches(b.dataset(3, training=True)))
    b.set_epoch(3)
    assert not same(batches(a.dataset(3, training=True)), batches(b.dataset(3, training=True)))
    assert not same(batches(SequenceSampler(s, seed=4).dataset(3, training=True)),
                    batches(SequenceSampler(s, seed=3).dataset(3, training=True)))
    ev = [batches(a.dataset(3, training=False)) for _ in range(2)]
    assert same(*ev) and same(ev[0], batches(SequenceSampler(s, seed=3).dataset(3, training=False)))


def test_auto_advance_without_callback_and_callback_exact():
    s = indexed_set()
    plain = SequenceSampler(s)
    runs = [batches(plain.dataset(4, training=True)) for _ in range(3)]
    assert plain.epoch == 3 and not same(runs[0], runs[1]) and not same(runs[1], runs[2])
    # Like Keras: the callback sets epoch e before each epoch's iteration, in any process.
    trained = SequenceSampler(s)
    callback = trained.epoch_callback()
    seen = {}
    for epoch in range(5):
        callback.on_epoch_begin(epoch)
        seen[epoch] = batches(trained.dataset(4, training=True))
    assert same(seen[0], runs[0]) and same(seen[2], runs[2])  # auto numbering matches epochs
    resumed = SequenceSampler(s)
    resumed.epoch_callback().on_epoch_begin(3)
    assert same(batches(resumed.dataset(4, training=True)), seen[3])
    assert same(batches(resumed.dataset(4, training=True)), seen[3])  # callback in charge


def test_dynamic_binarization():
    train = load_split("digits", "train")
    sampler = SequenceSampler(train, binarize="dynamic", layout="rows", seed=1)
    grey = SequenceSampler(train, layout="rows", seed=1)
    sampler.set_epoch(0)
    grey.set_epoch(0)
    x0, xg = (np.concatenate([b[0] for b in batches(s.dataset(500, training=True))])
              for s in (sampler, grey))
    assert set(np.unique(x0)) == {0.0, 1.0}
    assert abs(x0.mean() - xg.mean()) < 0.01  # E[x] = p; 92k pixels -> sd ~0.0015
    assert np.all(x0[xg == 0] == 0) and np.all(x0[xg == 1] == 1)  # p = 0 and 1 stay exact
    sampler.set_epoch(1)
    x1 = np.concatenate([b[0] for b in batches(sampler.dataset(500, training=True))])
    assert not np.array_equal(x0, x1)
    ev = [np.concatenate([b[0] for b in batches(sampler.dataset(100, training=False))])
          for _ in range(2)]
    assert np.array_equal(*ev) and set(np.unique(ev[0])) == {0.0, 1.0}
    # Evaluation rows come in the split's order: each image binarized from its own grey levels.
    xe = np.concatenate([b[0] for b in batches(grey.dataset(100, training=False))])
    assert np.array_equal(xe[:, :, 0], train.images) and np.all(ev[0][xe == 0] == 0)


def test_evaluation_binarization_is_per_image_and_fixed():
    s = ImageSet("half", "test", np.full((40, 3, 3, 1), 128, np.uint8),
                 np.arange(40) % 2, 2)
    first = batches(SequenceSampler(s, seq_len=4, binarize="dynamic").dataset(5, training=False))
    again = batches(SequenceSampler(s, seq_len=4, binarize="dynamic").dataset(5, training=False))
    assert same(first, again)
    assert 0.3 < np.concatenate([b[0] for b in first]).mean() < 0.7


def test_rows_layout_shapes():
    digits = load_split("digits", "test")
    sampler = SequenceSampler(digits, layout="rows")
    assert sampler.seq_len == 8 and sampler.image_shape == (1, 8, 1)
    assert sampler.num_sequences == len(digits)
    x, y = next(iter(sampler.dataset(32, training=True)))
    assert x.shape == (32, 8, 1, 8, 1) and y.shape == (32,)
    with pytest.raises(ValueError, match=r"seq_len=5.*H=8"):
        SequenceSampler(digits, layout="rows", seq_len=5)


def test_rows_training_order_shuffled_per_epoch_and_complete():
    s = indexed_set()
    sampler = SequenceSampler(s, layout="rows")
    orders = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        got = batches(sampler.dataset(8, training=True))
        idx = np.concatenate([source_index(x[:, :, 0]) for x, _ in got])
        assert sorted(idx) == list(range(len(s)))
        assert np.array_equal(np.concatenate([y for _, y in got]), s.labels[idx])
        orders.append(idx)
    assert not np.array_equal(*orders)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(seq_len=0), "seq_len.*>= 1.*0"),
    (dict(layout="cols"), "layout.*'cols'"),
    (dict(binarize="static"), "binarize.*'static'"),
    (dict(seq_len=100), "seq_len=100"),
])
def test_argument_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        SequenceSampler(indexed_set(), **kwargs)


def test_batch_size_and_epoch_errors():
    sampler = SequenceSampler(indexed_set())
    with pytest.raises(ValueError, match="batch_size.*0"):
        sampler.dataset(0, training=True)
    with pytest.raises(ValueError, match="batch_size=64"):
        sampler.dataset(64, training=True, drop_remainder=True)
    with pytest.raises(ValueError, match="epoch.*-1"):
        sampler.set_epoch(-1)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1"):
        SequenceSampler(ImageSet("x", "train", np.zeros((4, 2, 2, 1), np.uint8),
                                 np.array([0, 1, 2, 0]), 2))


def test_class_without_images_is_skipped_not_drawn():
    s = indexed_set(counts=(10, 0, 10))
    y = np.concatenate([b[1] for b in batches(SequenceSampler(s, seq_len=2).dataset(4,
                                                                                   training=True))])
    assert set(y) == {0, 2} and abs(np.sum(y == 0) - np.sum(y == 2)) <= 1


def test_keras_fit_with_epoch_callback():
    sampler = SequenceSampler(load_split("digits", "train"), binarize="dynamic")
    model = keras.Sequential([keras.Input((8, 8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(sampler.dataset(32, training=True), epochs=2, verbose=0,
                        callbacks=[sampler.epoch_callback()], shuffle=False,
                        validation_data=sampler.dataset(64, training=False))
    assert len(history.history["loss"]) == 2 and sampler.epoch == 1
    # Without the callback every epoch still starts a new epoch number (fresh draws).
    plain = SequenceSampler(load_split("digits", "train"))
    model.fit(plain.dataset(32, training=True), epochs=3, verbose=0, shuffle=False)
    assert plain.epoch >= 3


@pytest.mark.slow
def test_mirrored_strategy_two_replicas():
    script = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from dvrnn_tf.data import SequenceSampler, load_split
sampler = SequenceSampler(load_split("digits", "train"), binarize="dynamic")
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
for training in (True, False):
    n = 0
    for x, y in strategy.experimental_distribute_dataset(sampler.dataset(32, training=training)):
        parts = strategy.experimental_local_results(x)
        assert len(parts) == 2 and all(p.shape[1:] == (8, 8, 8, 1) for p in parts)
        n += sum(int(p.shape[0]) for p in parts)
    assert n == sampler.num_sequences, n
print("OK")
"""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    root = pathlib.Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_constants():
    assert LAYOUTS == ("sequences", "rows") and BINARIZE == ("none", "dynamic")


def test_decoded_arrays_cache(tmp_path):
    from dvrnn_tf.data import array_cache

    prepared = tmp_path / "mnist" / "3.0.1"
    prepared.mkdir(parents=True)
    (prepared / "mnist-train.tfrecord-00000-of-00001").write_bytes(b"records")
    images = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    labels = np.array([3, 7], np.int64)
    assert array_cache.load(str(prepared), "train") is None  # nothing saved yet
    assert array_cache.save(str(prepared), "train", images, labels)
    got_images, got_labels = array_cache.load(str(prepared), "train")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert array_cache.load(str(prepared), "test") is None  # per split
    assert not list((prepared / array_cache.CACHE_DIR).glob("*.tmp"))
    # The data set prepared again (a file changes): the entry no longer applies.
    (prepared / "mnist-train.tfrecord-00000-of-00001").write_bytes(b"other records")
    assert array_cache.load(str(prepared), "train") is None
    # A half-written entry (labels lost) is no entry.
    array_cache.save(str(prepared), "train", images, labels)
    for path in (prepared / array_cache.CACHE_DIR).glob("*-labels.npy"):
        path.write_bytes(b"\x93NUMPY broken")
    assert array_cache.load(str(prepared), "train") is None
    # A data directory that cannot be written: nothing saved, no error.
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / array_cache.CACHE_DIR).write_text("a file where the folder would go")
    assert array_cache.save(str(blocked), "train", images, labels) is False


def test_mnist_from_the_decoded_cache_equals_tfds(mnist_dirs):
    import tensorflow_datasets as tfds

    data_dir, manual_dir = mnist_dirs
    load_split("mnist", "test", data_dir=data_dir, manual_dir=manual_dir)  # prepares, saves
    sources._load_cached.cache_clear()
    cached = load_split("mnist", "test", data_dir=data_dir, manual_dir=manual_dir)
    builder = tfds.builder("mnist", data_dir=data_dir)
    assert list(pathlib.Path(builder.data_dir, "dvrnn_tf_arrays").glob("test-*-images.npy"))
    decoded = tfds.as_numpy(builder.as_dataset(split="test", batch_size=-1))
    np.testing.assert_array_equal(cached.images, decoded["image"])
    np.testing.assert_array_equal(cached.labels, decoded["label"])
    assert cached.images.dtype == np.uint8 and cached.labels.dtype == np.int64


def test_pipelines_do_not_autotune():
    """Autotuning stalled epochs' first batches by ~1 s while training kept the cores busy
    (docs/performance.md): training and evaluation pipelines run with fixed parallelism."""
    sampler = SequenceSampler(load_split("digits", "train"), seq_len=4, binarize="dynamic")
    for training in (True, False):
        ds = sampler.dataset(8, training=training, steps=3)
        assert ds.options().autotune.enabled is False
        assert [x.shape[0] for x, _ in ds] == [8, 8, 8]
