"""dvrnn_tf.data's SequenceSampler: same-class sequences, epochs, binarization, layouts, Keras
and tf.distribute. The image sources beneath it: test_data_sources.py."""
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from dvrnn_tf.data import BINARIZE, LAYOUTS, ImageSet, SequenceSampler, load_split

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


def test_pipelines_do_not_autotune():
    """Autotuning stalled epochs' first batches by ~1 s while training kept the cores busy
    (docs/performance.md): training and evaluation pipelines run with fixed parallelism."""
    sampler = SequenceSampler(load_split("digits", "train"), seq_len=4, binarize="dynamic")
    for training in (True, False):
        ds = sampler.dataset(8, training=training, steps=3)
        assert ds.options().autotune.enabled is False
        assert [x.shape[0] for x, _ in ds] == [8, 8, 8]
