"""dvrnn_tf.data's image sources: digits, MNIST offline, its failure modes, the decoded-array
cache. The sequence sampler on top of them: test_sequences.py."""
import pathlib
import tempfile
import time

import numpy as np
import pytest
import tensorflow as tf

from dvrnn_tf.data import (DataUnavailableError, ImageSet, SequenceSampler, available_datasets,
                           load_split)
from dvrnn_tf.data import image_sets as sources

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def test_digits_shapes_range_and_disjoint_stratified_split():
    train, test = load_split("digits", "train"), load_split("digits", "test")
    validation = load_split("digits", "validation")
    # 20% test; 10% of the remaining 1437 (stratified) validation.
    assert (len(train), len(validation), len(test)) == (1293, 144, 360)
    for s in (train, validation, test):
        assert s.images.dtype == np.float32 and s.labels.dtype == np.int64
        assert s.image_shape == (8, 8, 1) and s.num_classes == 10
        assert 0.0 <= s.images.min() and s.images.max() == 1.0
        assert np.array_equal(s.as_float(), s.images)
        assert not s.images.flags.writeable  # the cached object is shared
    train_bytes = {img.tobytes() for img in train.images}
    held_bytes = [img.tobytes() for s in (validation, test) for img in s.images]
    assert not any(b in train_bytes for b in held_bytes)
    # Validation and test share no image either (duplicated pixels aside: digits has none).
    assert len(set(held_bytes)) == len(held_bytes)
    count = lambda s: np.bincount(s.labels, minlength=10)  # noqa: E731
    total = count(train) + count(validation) + count(test)
    assert np.all(np.abs(count(test) - 0.2 * total) <= 1)
    assert np.all(np.abs(count(validation) - 0.1 * (count(train) + count(validation))) <= 1)
    assert load_split("digits", "train") is train  # cached in-process


def test_as_float_of_uint8():
    s = ImageSet("x", "train", np.array([[[[0]], [[255]]]], np.uint8), np.array([0]), 1)
    f = s.as_float()
    assert f.dtype == np.float32 and f.ravel().tolist() == [0.0, 1.0]


def test_bad_split_and_unknown_names():
    with pytest.raises(ValueError, match="validation"):
        load_split("digits", "valid")
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
    validation = load_split("mnist", "validation", data_dir=data_dir, manual_dir=manual_dir)
    # MNIST's 60,000 training images: 6,000 (600 per class, stratified) are validation.
    assert (len(train), len(validation), len(test)) == (54000, 6000, 10000)
    assert np.all(np.abs(np.bincount(validation.labels) - 0.1 * (
        np.bincount(train.labels) + np.bincount(validation.labels))) <= 1)
    assert train.images.dtype == np.uint8 and train.image_shape == (28, 28, 1)
    assert set(np.unique(train.labels)) == set(range(10)) == set(np.unique(test.labels))
    assert train.num_classes == 10 and train.images.max() == 255
    sampler = SequenceSampler(train, seq_len=8)
    assert sampler.num_sequences == 6750 and sampler.steps_per_epoch(128) == 53
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
def test_corrupt_manual_dir(mnist_dirs, tmp_path, damage, capsys):
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
    out = capsys.readouterr().out
    if damage == "flip":  # every file there: preparation starts, offline, and says so
        assert f"Preparing 'mnist' from {manual} into" in out and "Downloading" not in out


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
