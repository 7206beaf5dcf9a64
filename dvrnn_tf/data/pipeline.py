"""What every sequence pipeline shares: epochs keyed on the seed, binarization, tf.data plumbing.

Every random choice is a stateless op keyed on (seed, stream, epoch, batch index), never on
tf.data's iteration counters: a run resumed at epoch e in a fresh process sees exactly the data
the uninterrupted run saw at epoch e, and the pipeline has no Python state per element (so it
works under ``tf.distribute`` strategies). A subclass says what an epoch holds (`_plan`) and how
a batch is made from it (`_batch`); `EpochSampler.dataset` does the rest.
"""
from __future__ import annotations

import math
import os

import keras
import numpy as np
import tensorflow as tf

# Batches made in parallel (2 on a 2-core machine, up to 8 on a large host feeding an
# accelerator), and made ahead of the consumer (see `EpochSampler.dataset`).
PARALLEL_BATCHES = max(2, min(8, (os.cpu_count() or 2) // 2))
PREFETCH_BATCHES = 2 * PARALLEL_BATCHES
BINARIZE = ("none", "dynamic")
# Streams folded into the seed so that choices made for different purposes never share draws.
TRAIN, EVAL, EVAL_BINARY = 1, 2, 3


def check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def fold(key, data):
    return tf.random.experimental.stateless_fold_in(key, tf.cast(data, tf.int64))


def bernoulli_thresholds(images: np.ndarray) -> np.ndarray:
    """uint16 thresholds t = round(65535 p) of pixels p in [0, 1] (uint8 p = v / 255).

    Bernoulli draws are a pipeline's bottleneck (Philox costs ~4 ns per 32 bits), so each pixel
    keeps a threshold and takes 16 random bits: x = [r < t] has P(x=1) = t / 65536 (off by
    < 2e-5 of p), and t = 65535 forces x = 1 so that p = 0 and p = 1 stay exact. ~1.5x faster
    than comparing float uniforms.
    """
    if images.dtype == np.uint8:
        return images.astype(np.uint16) * np.uint16(257)  # 255 * 257 = 65535
    return np.round(np.clip(images, 0, 1) * 65535.0).astype(np.uint16)


def bernoulli(thresholds, key):
    """bool, same shape as the uint16 ``thresholds``: True with probability ~t / 65536."""
    n = tf.size(thresholds)
    bits = tf.random.stateless_uniform([(n + 1) // 2], key, minval=None, maxval=None,
                                       dtype=tf.uint32)
    r = tf.reshape(tf.reshape(tf.bitcast(bits, tf.uint16), [-1])[:n], tf.shape(thresholds))
    return tf.logical_or(r < thresholds, tf.equal(thresholds, 65535))


def shuffled_passes(key, n: int, total: int):
    """`total` indices: as many passes over range(n) as needed, each in its own order."""
    passes = [tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64),
                                                       seed=fold(key, -1 - p))
              for p in range(-(-total // n))]
    return tf.concat(passes, 0)[:total]


class EpochSampler:
    """Base of the samplers: epoch state, `dataset`, `arrays`, steps per epoch.

    Training draws depend on (seed, epoch, batch index) only. The epoch lives in a
    ``tf.Variable`` read when an iteration starts. Use ``epoch_callback()`` with ``model.fit``
    (or ``set_epoch``): it makes epoch e's data exact, including after a resume. Without it
    each iteration takes the next epoch number when it starts, so plain
    ``model.fit(sampler.dataset(...), epochs=3)`` still sees fresh draws every epoch (but Keras
    also starts iterators it throws away, which use up numbers: only the callback makes the
    numbering equal Keras's epochs). Once ``set_epoch`` or the callback has been used, the
    sampler stops advancing by itself. With the callback, let one Keras epoch be one pass over
    ``dataset()`` (no ``.repeat()`` with ``steps_per_epoch``: a prefetched next pass could read
    the epoch before the callback sets it). Create samplers outside ``strategy.scope()``: the
    epoch variable belongs to the input pipeline on the host.

    Evaluation (``training=False``) draws depend on the seed only (the same batches on every
    call); with ``binarize="dynamic"`` each image is binarized once with a fixed seed.

    A subclass sets ``_seed``, ``_n`` (elements per epoch), ``_seq_len``, ``_step_shape`` and
    implements ``_plan(key, total, shuffle)`` and ``_batch(i, b, key, plan, binarize_now)``.
    """

    def __init__(self, seed: int):
        self._seed = check_int("seed", seed, 0)
        with tf.init_scope():  # eager even if built inside a tf.function
            self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="sampler_epoch")
            self._auto_advance = tf.Variable(True, trainable=False, name="sampler_auto_advance")

    image_shape = property(lambda self: self._step_shape, doc="(H, W, C) of one time step.")
    seq_len = property(lambda self: self._seq_len, doc="T, the number of time steps.")
    num_sequences = property(lambda self: self._n, doc="Elements per epoch.")
    seed = property(lambda self: self._seed)

    @property
    def epoch(self) -> int:
        """The epoch the next training iteration will draw."""
        return int(self._epoch.numpy())

    def set_epoch(self, epoch: int) -> None:
        """Makes the next training iteration draw epoch ``epoch``'s data (stops auto-advance)."""
        epoch = check_int("epoch", epoch, 0)
        self._auto_advance.assign(False)
        self._epoch.assign(epoch)

    def epoch_callback(self) -> keras.callbacks.Callback:
        """A callback whose ``on_epoch_begin(epoch)`` calls ``set_epoch(epoch)``."""
        return _EpochCallback(self)

    def steps_per_epoch(self, batch_size: int, drop_remainder: bool = False) -> int:
        """Batches per epoch: ``num_sequences / batch_size``, rounded down or up."""
        batch_size = check_int("batch_size", batch_size, 1)
        if drop_remainder:
            return self._n // batch_size
        return math.ceil(self._n / batch_size)

    def dataset(self, batch_size: int, *, training: bool, drop_remainder: bool = False,
                steps: int | None = None) -> tf.data.Dataset:
        """One epoch of batches (what a subclass's `_batch` makes).

        An epoch is one pass (``num_sequences`` elements; the last batch smaller unless
        ``drop_remainder``), or, with ``steps``, exactly ``steps`` full batches (more or less
        than one pass).
        """
        b = check_int("batch_size", batch_size, 1)
        if steps is None:
            steps = self.steps_per_epoch(b, drop_remainder)
            total = steps * b if drop_remainder else self._n  # elements in the epoch
            if steps == 0:
                raise ValueError(f"batch_size={b} with drop_remainder=True leaves no batch: "
                                 f"an epoch holds {self._n} elements")
        else:
            steps = check_int("steps", steps, 1)
            total = steps * b
        if not training:
            key = tf.constant([self._seed, EVAL], tf.int64)
            plan = self._plan(key, total, shuffle=False)
            ds = tf.data.Dataset.range(steps).map(
                lambda i: self._batch(i, b, key, plan, binarize_now=False),
                num_parallel_calls=PARALLEL_BATCHES, deterministic=True)
        else:
            ds = tf.data.Dataset.from_tensors(0).map(lambda _: self._start_epoch())
            ds = ds.flat_map(lambda epoch: self._epoch_plan(epoch, steps, total))
            ds = ds.map(lambda i, key, plan: self._batch(i, b, key, plan, binarize_now=True),
                        num_parallel_calls=PARALLEL_BATCHES, deterministic=True)
            # The epoch is read at run time, so tf.data cannot count batches; tell it (Keras
            # uses the count for its progress bar and end-of-epoch logic).
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
        return ds.with_options(options).prefetch(PREFETCH_BATCHES)

    def arrays(self, limit: int = 0, batch_size: int = 256):
        """The first `limit` evaluation elements (0: all) as numpy: (x, labels)."""
        xs, labels, count = [], [], 0
        for x, y in self.dataset(batch_size, training=False):
            xs.append(x.numpy())
            labels.append(tf.nest.map_structure(lambda t: t.numpy(), y))
            count += len(xs[-1])
            if limit and count >= limit:
                break
        x = np.concatenate(xs)[:limit or None]
        y = tf.nest.map_structure(lambda *parts: np.concatenate(parts)[:limit or None], *labels)
        return x, y

    def examples(self, limit: int = 0):
        """`limit` evaluation elements spread over the split (0: all), as numpy (x, labels):
        what figures and evaluation measures read. Here the first `limit` (a sampler whose
        evaluation order is already shuffled); an ordered one spreads them (`ArraySequences`)."""
        return self.arrays(limit)

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
        key = fold(tf.constant([self._seed, TRAIN], tf.int64), epoch)
        plan = self._plan(key, total, shuffle=True)
        return tf.data.Dataset.range(steps).map(lambda i: (i, key, plan))

    def _plan(self, key, total: int, shuffle: bool):
        raise NotImplementedError

    def _batch(self, i, b, key, plan, binarize_now: bool):
        raise NotImplementedError


class _EpochCallback(keras.callbacks.Callback):
    """Sets the sampler's epoch at the start of each Keras epoch (exact data under resume)."""

    def __init__(self, sampler: EpochSampler):
        super().__init__()
        self._sampler = sampler

    def on_epoch_begin(self, epoch, logs=None):
        self._sampler.set_epoch(epoch)
