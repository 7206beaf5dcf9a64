"""Sequence sources: the registry, ordered sequences in arrays, and each source's splits."""
import json
import re

import numpy as np
import pytest
import tensorflow as tf

from dvrnn_tf.data import DataSpec, Factor, open_source, registry
from dvrnn_tf.data.array_sequences import ArraySequences
from dvrnn_tf.training import TrainConfig

from shared_data import SPRITES_DIR

SPRITES = SPRITES_DIR


def _toy(n=10, t=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, t, 4, 4, 1), dtype=np.uint8)
    labels = {"kind": np.arange(n) % 3, "where": rng.random((n, t, 2)).astype(np.float32)}
    factors = (Factor("kind", 3), Factor("where", None, per_frame=True, shape=(2,)))
    return x, labels, factors


def _epoch(sampler, batch_size=4, **kw):
    xs, kinds = [], []
    for x, y in sampler.dataset(batch_size, training=True, **kw):
        xs.append(x.numpy())
        kinds.append(y["kind"].numpy())
    return np.concatenate(xs), np.concatenate(kinds)


def test_an_epoch_is_every_sequence_once_in_a_seeded_order_with_its_labels():
    x, labels, factors = _toy()
    sampler = ArraySequences(x, labels, factors, seed=3)
    sampler.set_epoch(0)
    a, kinds = _epoch(sampler)
    assert a.shape == (10, 3, 4, 4, 1) and a.dtype == np.float32
    as_bytes = np.round(a * 255).astype(np.uint8)
    order = [int(np.argmax([np.array_equal(row, s) for s in x])) for row in as_bytes]
    assert sorted(order) == list(range(10)) and order != list(range(10))  # shuffled, once
    np.testing.assert_array_equal(kinds, labels["kind"][order])  # labels travel with x
    sampler.set_epoch(0)
    np.testing.assert_array_equal(_epoch(sampler)[0], a)  # epoch 0 again: the same order
    sampler.set_epoch(1)
    assert not np.array_equal(_epoch(sampler)[0], a)
    other = ArraySequences(x, labels, factors, seed=4)
    other.set_epoch(0)
    assert not np.array_equal(_epoch(other)[0], a)
    # More steps than one pass: a second pass in its own order; every batch full.
    more, _ = _epoch(sampler, steps=4)
    assert more.shape[0] == 16


def test_evaluation_order_binarization_and_arrays():
    x, labels, factors = _toy()
    sampler = ArraySequences(x, labels, factors, binarize="dynamic", seed=0)
    held, y = sampler.arrays()
    assert set(np.unique(held)) <= {0.0, 1.0}
    np.testing.assert_array_equal(y["kind"], labels["kind"])  # in order
    np.testing.assert_allclose(y["where"], labels["where"])
    again, _ = sampler.arrays(limit=7)
    np.testing.assert_array_equal(again, held[:7])  # binarized once, with a fixed seed
    # Fresh Bernoulli draws in training, with the pixel's probability.
    sampler.set_epoch(0)
    drawn, _ = _epoch(sampler)
    sampler.set_epoch(1)
    assert not np.array_equal(drawn, _epoch(sampler)[0])


@pytest.mark.parametrize("change, message", [
    (dict(labels={"kind": np.zeros(9)}), "labels name"),
    (dict(labels={"kind": np.zeros(9), "where": np.zeros((10, 3, 2))}), "expected (10,)"),
    (dict(x=np.zeros((10, 3, 4, 4))), "[N, T, H, W, C]"),
    (dict(binarize="sometimes"), "binarize"),
])
def test_array_sequences_refuse_what_does_not_fit(change, message):
    x, labels, factors = _toy()
    args = {"x": x, "labels": labels, "binarize": "none", **change}
    with pytest.raises(ValueError, match=re.escape(message)):
        ArraySequences(args["x"], args["labels"], factors, binarize=args["binarize"])


def test_registry_names_every_source_and_sorts_their_flags():
    help_text = registry.dataset_help()
    for name in ("sprites", "moving_mnist", "arrays:<path>", "frames:<path>", "mnist"):
        assert name in help_text
    assert registry.source_class("fashion_mnist").fallback
    with pytest.raises(ValueError, match="needs a location: arrays:<path>"):
        registry.source_class("arrays")
    with pytest.raises(ValueError, match="--moving_mnist_digits applies to --dataset="
                                         "moving_mnist, not --dataset=mnist"):
        TrainConfig(dataset="mnist", moving_mnist_digits=1)
    with pytest.raises(ValueError, match="--dataset=sprites is generated .* --manual_dir"):
        TrainConfig(dataset="sprites")
    config = TrainConfig(dataset="sprites", manual_dir="x", sprites_validation_characters=50)
    assert dict(config.data_settings) == {"manual_dir": "x", "data_dir": "",
                                          "sprites_validation_characters": 50}


def test_user_arrays_are_split_once_cached_and_described(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 5, 8, 8, 3), dtype=np.uint8)
    digit, step = rng.integers(0, 4, 40), rng.integers(0, 2, (40, 5))
    np.savez(tmp_path / "data.npz", x=x, digit=digit, step=step,
             pos=rng.random((40, 5, 2)).astype(np.float32))
    values = {"data_dir": str(tmp_path / "cache"), "validation_fraction": 0.2}
    source = open_source(f"arrays:{tmp_path / 'data.npz'}", values, seed=0)
    spec = source.spec()
    assert spec == DataSpec((8, 8, 3), 5, (Factor("digit", 4), Factor("pos", None, True, (2,)),
                                           Factor("step", 2, True)))
    splits = {s: source.split(s) for s in registry.SPLITS}
    assert {s: v.num_sequences for s, v in splits.items()} == {"train": 28, "validation": 8,
                                                               "test": 4}
    seen = np.concatenate([splits[s].arrays()[0] for s in registry.SPLITS])
    seen = np.round(seen * 255).astype(np.uint8)
    assert sorted(r.tobytes() for r in seen) == sorted(r.tobytes() for r in x)  # a partition
    entry, = (tmp_path / "cache").glob("arrays-*")
    stamp = {p.name: p.stat().st_mtime_ns for p in entry.iterdir()}
    again = open_source(f"arrays:{tmp_path / 'data.npz'}", values, seed=5)
    assert again.split("test").num_sequences == 4  # from the cache: nothing rewritten
    assert {p.name: p.stat().st_mtime_ns for p in entry.iterdir()} == stamp
    assert json.loads((entry / "meta.json").read_text())["validation_fraction"] == 0.2
    other = open_source(f"arrays:{tmp_path / 'data.npz'}", {**values, "data_seed": 1})
    assert not np.array_equal(other.split("test").arrays()[0], splits["test"].arrays()[0])


def test_frame_folders_source(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    root = tmp_path / "clips"
    frames = rng.integers(0, 256, (12, 4, 6, 6), dtype=np.uint8)
    for i, clip in enumerate(frames):
        (root / f"clip{i}").mkdir(parents=True)
        for t, frame in enumerate(clip):
            Image.fromarray(frame, "L").save(root / f"clip{i}" / f"{t}.png")
    (root / "labels.json").write_text(json.dumps({f"clip{i}": {"odd": i % 2}
                                                  for i in range(12)}))
    source = open_source(f"frames:{root}", {"data_dir": str(tmp_path / "cache")})
    assert source.spec() == DataSpec((6, 6, 1), 4, (Factor("odd", 2),))
    x, y = source.split("train").arrays()
    assert len(x) == 10 and x.shape[1:] == (4, 6, 6, 1)
    for clip, label in zip(x, y["odd"]):  # pixels and labels come back together
        i = next(i for i in range(12) if np.array_equal(frames[i], np.round(clip[..., 0] * 255)))
        assert label == i % 2


def test_sprites_source_splits_and_labels(tmp_path):
    source = open_source("sprites", {"manual_dir": str(SPRITES)}, seed=0)
    assert source.spec().image_shape == (64, 64, 3) and source.spec().seq_len == 8
    counts = {s: source.split(s).num_sequences for s in registry.SPLITS}
    assert counts == {"train": 8100, "validation": 900, "test": 2664}
    x, y = source.split("test").arrays(18)
    np.testing.assert_array_equal(y["motion"], np.tile(np.arange(9), 2))
    np.testing.assert_array_equal(y["motion"], 3 * y["action"] + y["direction"])
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1 and x.shape[-1] == 3
    batch = next(iter(source.split("train").dataset(4, training=True)))
    assert set(batch[1]) == {"body", "bottomwear", "topwear", "hair", "action", "direction",
                             "motion"}
    assert batch[1]["motion"].dtype == tf.int32


def test_moving_mnist_source_is_deterministic_per_data_seed(tmp_path, mnist_dirs):
    data_dir, manual_dir = mnist_dirs
    values = dict(manual_dir=manual_dir, data_dir=data_dir, moving_mnist_sequences=20,
                  seq_len=5, moving_mnist_digits=1)
    source = open_source("moving_mnist", values)
    assert source.spec() == DataSpec((64, 64, 1), 5, (
        Factor("digit_0", 10), Factor("position_0", None, True, (2,))))
    x, y = source.split("validation").arrays()
    assert x.shape == (2, 5, 64, 64, 1) and y["position_0"].shape == (2, 5, 2)
    again = open_source("moving_mnist", values, seed=9).split("validation").arrays()[0]
    np.testing.assert_array_equal(again, x)  # the run's seed does not change the data
    other = open_source("moving_mnist", {**values, "data_seed": 1})
    assert not np.array_equal(other.split("validation").arrays()[0], x)
