"""Same-class image sequences (first paper, Fig. 2) and the `rows` layout, as tf.data pipelines.

Every random choice is a stateless op keyed on (seed, stream, epoch, batch index), never on
tf.data's iteration counters: a run resumed at epoch e in a fresh process sees exactly the data the
uninterrupted run saw at epoch e, and the pipeline has no Python state per element (so it works
under ``tf.distribute`` strategies).
"""
from __future__ import annotations

import math
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from dvrnn_tf.data.sources import ImageSet

# Batches made in parallel (2 on a 2-core machine, up to 8 on a large host feeding an
# accelerator), and made ahead of the consumer (see `SequenceSampler.dataset`).
_PARALLEL_BATCHES = max(2, min(8, (os.cpu_count() or 2) // 2))
_PREFETCH_BATCHES = 2 * _PARALLEL_BATCHES

LAYOUTS = ("sequences", "rows")
BINARIZE = ("none", "dynamic")
DEFAULT_SEQ_LEN = 8
# Streams folded into the seed so that choices made for different purposes never share draws.
_TRAIN, _EVAL, _EVAL_BINARY = 1, 2, 3


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _fold(key, data):
    return tf.random.experimental.stateless_fold_in(key, tf.cast(data, tf.int64))


class SequenceSampler:
    """Same-class sequences of T images (first paper Fig. 2), or the `rows` layout.

    * ``layout="sequences"``: an element is T images of ONE class, drawn independently (with
      replacement) from that class, and the class label. Over an epoch the classes are balanced
      (each appears ``num_sequences // K`` or one more times, K = classes that have images).
    * ``layout="rows"``: an element is one image whose H rows are the T = H time steps, each a
      ``(1, W, C)`` image; every image once per epoch, in an order shuffled per epoch.

    Training draws depend on (seed, epoch, batch index) only. The epoch lives in a ``tf.Variable``
    read when an iteration starts. Use ``epoch_callback()`` with ``model.fit`` (or
    ``set_epoch``): it makes epoch e's data exact, including after a resume. Without it each
    iteration takes the next epoch number when it starts, so plain
    ``model.fit(sampler.dataset(...), epochs=3)`` still sees fresh draws every epoch (but Keras
    also starts iterators it throws away, which use up numbers: only the callback makes the
    numbering equal Keras's epochs). Once ``set_epoch`` or the callback has been used, the
    sampler stops advancing by itself. With the callback, let one Keras epoch be one pass over
    ``dataset()`` (no ``.repeat()`` with ``steps_per_epoch``: a prefetched next pass could read
    the epoch before the callback sets it). Create samplers outside ``strategy.scope()``: the
    epoch variable belongs to the input pipeline on the host.

    Evaluation (``training=False``) draws depend on the seed only (the same batches on every
    call); with ``binarize="dynamic"`` each image is binarized once with a fixed seed.
    """

    def __init__(self, image_set: ImageSet, *, seq_len: int | None = None,
                 layout: str = "sequences", binarize: str = "none", seed: int = 0):
        """Args:
          image_set: images ``[N, H, W, C]`` (uint8 0..255 or float in [0, 1]) and labels ``[N]``.
          seq_len: T; default 8 for ``sequences``; for ``rows`` it is H and may be left out.
          layout: one of ``LAYOUTS``.
          binarize: ``"none"`` (grey levels) or ``"dynamic"`` (x = uniform < p, fresh per read).
          seed: the integer all draws are keyed on.
        """
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if binarize not in BINARIZE:
            raise ValueError(f"binarize must be one of {BINARIZE}, got {binarize!r}")
        self._seed = _check_int("seed", seed, 0)
        self.image_set = image_set
        images, labels = np.asarray(image_set.images), np.asarray(image_set.labels)
        if images.ndim != 4 or labels.shape != images.shape[:1] or len(labels) == 0:
            raise ValueError(f"image_set must hold images [N, H, W, C] and labels [N] with N >= 1, "
                             f"got images {images.shape} and labels {labels.shape}")
        num_classes = _check_int("image_set.num_classes", image_set.num_classes, 1)
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"labels must lie in 0..{num_classes - 1} (num_classes), got "
                             f"{labels.min()}..{labels.max()}")
        n, h, w, c = images.shape
        if layout == "rows":
            if seq_len is not None and seq_len != h:
                raise ValueError(f"seq_len={seq_len!r} disagrees with layout='rows', whose time "
                                 f"steps are the H={h} rows of each image (leave seq_len out)")
            self._seq_len, self._step_shape, self._n = h, (1, w, c), n
        else:
            seq_len = DEFAULT_SEQ_LEN if seq_len is None else seq_len
            self._seq_len = _check_int("seq_len", seq_len, 1)
            self._step_shape, self._n = (h, w, c), n // self._seq_len
            if self._n == 0:
                raise ValueError(f"seq_len={self._seq_len} leaves no sequence: the split has "
                                 f"only {n} images and an epoch holds N // seq_len sequences")
        counts = np.bincount(labels, minlength=num_classes)
        present = np.flatnonzero(counts)
        if len(present) < num_classes:
            # Not an error: e.g. emnist/letters declares 37 classes and uses 26.
            logging.warning("classes %s have no image in %s/%s; sequences are balanced over the "
                            "%d others", np.flatnonzero(counts == 0).tolist(), image_set.name,
                            image_set.split, len(present))
        self._layout, self._binarize, self._num_classes = layout, binarize, num_classes
        # Images grouped by class: class k owns order[starts[k] : starts[k] + counts[k]].
        self._order = tf.constant(np.argsort(labels, kind="stable"), tf.int64)
        self._starts = tf.constant(np.cumsum(counts) - counts, tf.int64)
        self._counts = tf.constant(counts, tf.int64)
        self._present = tf.constant(present, tf.int32)
        self._labels = tf.constant(labels, tf.int32)
        if binarize == "dynamic":
            # Bernoulli draws are the pipeline's bottleneck (Philox costs ~4 ns per 32 bits), so
            # each pixel keeps a uint16 threshold t = round(65535 p) and takes 16 random bits:
            # x = [r < t] has P(x=1) = t / 65536 (off by < 2e-5 of p), and t = 65535 forces x = 1
            # so that p = 0 and p = 1 stay exact. ~1.5x faster than comparing float uniforms.
            if images.dtype == np.uint8:
                thresholds = images.astype(np.uint16) * np.uint16(257)  # 255 * 257 = 65535
            else:
                thresholds = np.round(np.clip(images, 0, 1) * 65535.0).astype(np.uint16)
            self._images, self._scale = tf.constant(thresholds), None
        else:
            # Kept in their storage dtype (uint8 for MNIST: 47 MB, not 188 MB of float32).
            self._images = tf.constant(images)
            self._scale = 1.0 / 255.0 if images.dtype == np.uint8 else 1.0
        self._eval_binary = None  # the evaluation binarization, made on first use
        with tf.init_scope():  # eager even if built inside a tf.function
            self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="sampler_epoch")
            self._auto_advance = tf.Variable(True, trainable=False, name="sampler_auto_advance")

    image_shape = property(lambda self: self._step_shape, doc="(H, W, C) of one time step.")
    seq_len = property(lambda self: self._seq_len, doc="T, the number of time steps.")
    num_sequences = property(lambda self: self._n, doc="Elements per epoch (N//T, or N for rows).")
    num_classes = property(lambda self: self._num_classes, doc="Classes of the data set.")
    layout = property(lambda self: self._layout)
    binarize = property(lambda self: self._binarize)
    seed = property(lambda self: self._seed)

    @property
    def epoch(self) -> int:
        """The epoch the next training iteration will draw."""
        return int(self._epoch.numpy())

    def set_epoch(self, epoch: int) -> None:
        """Makes the next training iteration draw epoch ``epoch``'s data (stops auto-advance)."""
        epoch = _check_int("epoch", epoch, 0)
        self._auto_advance.assign(False)
        self._epoch.assign(epoch)

    def epoch_callback(self) -> keras.callbacks.Callback:
        """A callback whose ``on_epoch_begin(epoch)`` calls ``set_epoch(epoch)``."""
        return _EpochCallback(self)

    def steps_per_epoch(self, batch_size: int, drop_remainder: bool = False) -> int:
        """Batches per epoch: ``num_sequences / batch_size``, rounded down or up."""
        batch_size = _check_int("batch_size", batch_size, 1)
        if drop_remainder:
            return self._n // batch_size
        return math.ceil(self._n / batch_size)

    def dataset(self, batch_size: int, *, training: bool, drop_remainder: bool = False,
                steps: int | None = None) -> tf.data.Dataset:
        """One epoch of ``(x, y)`` batches.

        ``x``: float32 ``[B, T, H, W, C]`` in [0, 1] ({0, 1} when binarized); for ``rows``
        ``[B, H, 1, W, C]``. ``y``: int32 ``[B]``, the class. An epoch is one pass
        (``num_sequences`` elements; the last batch smaller unless ``drop_remainder``), or, with
        ``steps``, exactly ``steps`` full batches (more or less than one pass; classes still
        balanced, rows go through as many shuffled passes over the images as needed).

        Throughput, MNIST train, batch 128, T=8, on a 2-core Xeon shared with other jobs
        (``python -c "from dvrnn_tf.data.sequences import benchmark; benchmark()"``, in-graph
        consumer): grey levels 65k-130k sequences/s (~110k per CPU-second); binarize="dynamic"
        38k-56k sequences/s (~42k per CPU-second: the 6,272 random 16-bit draws per sequence
        dominate, so it scales with cores); rows layout, dynamic, ~250k images/s.
        """
        b = _check_int("batch_size", batch_size, 1)
        if steps is None:
            steps = self.steps_per_epoch(b, drop_remainder)
            total = steps * b if drop_remainder else self._n  # elements in the epoch
            if steps == 0:
                raise ValueError(f"batch_size={b} with drop_remainder=True leaves no batch: "
                                 f"an epoch holds {self._n} elements")
        else:
            steps = _check_int("steps", steps, 1)
            total = steps * b
        if not training:
            key = tf.constant([self._seed, _EVAL], tf.int64)
            plan = self._plan(key, total, shuffle=False)
            ds = tf.data.Dataset.range(steps).map(
                lambda i: self._batch(i, b, key, plan, binarize_now=False),
                num_parallel_calls=_PARALLEL_BATCHES, deterministic=True)
        else:
            ds = tf.data.Dataset.from_tensors(0).map(lambda _: self._start_epoch())
            ds = ds.flat_map(lambda epoch: self._epoch_plan(epoch, steps, total))
            ds = ds.map(lambda i, key, plan: self._batch(i, b, key, plan, binarize_now=True),
                        num_parallel_calls=_PARALLEL_BATCHES, deterministic=True)
            # The epoch is read at run time, so tf.data cannot count batches; tell it (Keras uses
            # the count for its progress bar and end-of-epoch logic).
            ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
        options = tf.data.Options()
        # Elements are made from in-memory tensors, not files: shard by data across workers.
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        # Fixed parallelism and buffer, no autotuning: with the training step keeping both
        # cores busy, tf.data's autotuner stalled about every other epoch's first batches for
        # ~1 s (measured: 100 MNIST epochs lost ~45 s); a batch takes ~1.3 ms to make and a
        # step ~25 ms to consume, so a fixed small pipeline stays far ahead.
        options.autotune.enabled = False
        return ds.with_options(options).prefetch(_PREFETCH_BATCHES)

    # -- pipeline pieces (all run inside tf.data functions) -----------------------------------

    def _start_epoch(self):
        """The epoch this iteration draws; advances the counter unless set_epoch is in charge.

        Advancing when an iteration *starts* (not when it completes) because Keras stops
        pulling once it has its known number of batches and then drops the iterator, so an
        end-of-data element may never run: epochs would repeat. Starting is always seen.
        """
        return tf.cond(self._auto_advance, lambda: self._epoch.assign_add(1) - 1,
                       lambda: self._epoch.read_value())

    def _epoch_plan(self, epoch, steps, total):
        """(batch index, key, plan) per batch: the per-epoch work (a shuffle) is done once, and
        batches are made by one flat parallel map (nested in flat_map, tf.data tunes it worse)."""
        key = _fold(tf.constant([self._seed, _TRAIN], tf.int64), epoch)
        plan = self._plan(key, total, shuffle=True)
        return tf.data.Dataset.range(steps).map(lambda i: (i, key, plan))

    def _plan(self, key, total: int, shuffle: bool):
        """The epoch's ``total`` elements: each sequence's class, or each row element's image."""
        if self._layout == "sequences":
            k = tf.size(self._present)
            plan = tf.gather(self._present, tf.range(total, dtype=tf.int32) % k)
            # Evaluation shuffles too (by the seed only) so that any prefix of it is balanced.
            return tf.random.experimental.stateless_shuffle(plan, seed=_fold(key, -1))
        if not shuffle:
            return tf.range(total, dtype=tf.int64) % self._n
        passes = [tf.random.experimental.stateless_shuffle(tf.range(self._n, dtype=tf.int64),
                                                           seed=_fold(key, -1 - p))
                  for p in range(-(-total // self._n))]
        return tf.concat(passes, 0)[:total]

    def _batch(self, i, b, key, plan, binarize_now: bool):
        """Batch ``i`` of an epoch: gathers a whole [B, T] block of image indices at once."""
        key = _fold(key, i)
        pick_key, binary_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
        chunk = plan[i * b:(i + 1) * b]
        if self._layout == "sequences":
            y = chunk
            cls = tf.cast(chunk, tf.int64)[:, None]
            u = tf.random.stateless_uniform([tf.size(chunk), self._seq_len], pick_key,
                                            dtype=tf.float64)
            count = tf.gather(self._counts, cls)
            within = tf.minimum(tf.cast(tf.floor(u * tf.cast(count, tf.float64)), tf.int64),
                                count - 1)
            index = tf.gather(self._order, tf.gather(self._starts, cls) + within)  # [B, T]
        else:
            index, y = chunk, tf.gather(self._labels, chunk)
        if self._binarize == "none":
            x = tf.cast(tf.gather(self._images, index), tf.float32) * self._scale
        elif binarize_now:  # training: a fresh draw each time an image is read
            x = tf.cast(_bernoulli(tf.gather(self._images, index), binary_key), tf.float32)
        else:  # evaluation: the images binarized once with a fixed seed
            x = tf.cast(tf.gather(self._eval_images(), index), tf.float32)
        if self._layout == "rows":  # [B, H, W, C] -> [B, H, 1, W, C]: each row one time step
            x = tf.expand_dims(x, 2)
        return x, y

    def _eval_images(self):
        """Every image binarized once with a fixed seed (uint8 {0, 1}), the DESIGN's test set."""
        if self._eval_binary is None:
            with tf.init_scope():
                key = tf.constant([self._seed, _EVAL_BINARY], tf.int64)
                self._eval_binary = tf.cast(_bernoulli(self._images, key), tf.uint8)
        return self._eval_binary


def _bernoulli(thresholds, key):
    """bool, same shape as the uint16 ``thresholds``: True with probability ~t / 65536."""
    n = tf.size(thresholds)
    bits = tf.random.stateless_uniform([(n + 1) // 2], key, minval=None, maxval=None,
                                       dtype=tf.uint32)
    r = tf.reshape(tf.reshape(tf.bitcast(bits, tf.uint16), [-1])[:n], tf.shape(thresholds))
    return tf.logical_or(r < thresholds, tf.equal(thresholds, 65535))


class _EpochCallback(keras.callbacks.Callback):
    """Sets the sampler's epoch at the start of each Keras epoch (exact data under resume)."""

    def __init__(self, sampler: SequenceSampler):
        super().__init__()
        self._sampler = sampler

    def on_epoch_begin(self, epoch, logs=None):
        self._sampler.set_epoch(epoch)


def benchmark(name="mnist", data_dir=None, manual_dir="../shared/data/mnist", batch_size=128):
    """Prints sequences/s (wall clock and per CPU-second) of a training epoch per setting."""
    import time

    from dvrnn_tf.data.sources import load_split

    image_set = load_split(name, "train", data_dir=data_dir, manual_dir=manual_dir)
    for layout, binarize in [("sequences", "none"), ("sequences", "dynamic"), ("rows", "dynamic")]:
        sampler = SequenceSampler(image_set, layout=layout, binarize=binarize)
        ds = sampler.dataset(batch_size, training=True).repeat(4)
        count = lambda n, xy: n + tf.shape(xy[0])[0]  # noqa: E731  # consumes in-graph
        ds.reduce(0, count)  # warm-up: traces the functions
        wall, cpu = time.perf_counter(), time.process_time()
        n = int(ds.reduce(0, count))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"{name} {layout:9s} binarize={binarize:7s} B={batch_size} T={sampler.seq_len}: "
              f"{n / wall:9.0f} sequences/s, {n / cpu:9.0f} per CPU-second")

