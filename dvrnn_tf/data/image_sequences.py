"""Same-class image sequences (first paper, Fig. 2) and the `rows` layout, as tf.data pipelines.

The sequences are drawn from single labelled images (`ImageSet`), afresh every epoch; epochs,
seeds and binarization work as for every sampler (`dvrnn_tf.data.pipeline`).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from absl import logging

from dvrnn_tf.data.image_sets import ImageSet
from dvrnn_tf.data.spec import Factor
from dvrnn_tf.data.pipeline import (BINARIZE, EVAL_BINARY, EpochSampler, bernoulli,
                                    bernoulli_thresholds, check_int, fold, shuffled_passes)

LAYOUTS = ("sequences", "rows")
DEFAULT_SEQ_LEN = 8


class SequenceSampler(EpochSampler):
    """Same-class sequences of T images (first paper Fig. 2), or the `rows` layout.

    * ``layout="sequences"``: an element is T images of ONE class, drawn independently (with
      replacement) from that class, and the class label. Over an epoch the classes are balanced
      (each appears ``num_sequences // K`` or one more times, K = classes that have images).
    * ``layout="rows"``: an element is one image whose H rows are the T = H time steps, each a
      ``(1, W, C)`` image; every image once per epoch, in an order shuffled per epoch.

    Epochs, seeds, ``epoch_callback`` and evaluation draws work as for every sampler
    (`dvrnn_tf.data.pipeline.EpochSampler`).
    """

    def __init__(self, image_set: ImageSet, *, seq_len: int | None = None,
                 layout: str = "sequences", binarize: str = "none", seed: int = 0,
                 label_key: str | None = None):
        """Args:
          image_set: images ``[N, H, W, C]`` (uint8 0..255 or float in [0, 1]) and labels ``[N]``.
          seq_len: T; default 8 for ``sequences``; for ``rows`` it is H and may be left out.
          layout: one of ``LAYOUTS``.
          binarize: ``"none"`` (grey levels) or ``"dynamic"`` (x = uniform < p, fresh per read).
          seed: the integer all draws are keyed on.
          label_key: None: batches are (x, y); a name: (x, {label_key: y}), the labels of
            every sequence source (`dvrnn_tf.data.registry`).
        """
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if binarize not in BINARIZE:
            raise ValueError(f"binarize must be one of {BINARIZE}, got {binarize!r}")
        super().__init__(seed)
        self._label_key = label_key
        self.image_set = image_set
        images, labels = np.asarray(image_set.images), np.asarray(image_set.labels)
        if images.ndim != 4 or labels.shape != images.shape[:1] or len(labels) == 0:
            raise ValueError(f"image_set must hold images [N, H, W, C] and labels [N] with N >= 1, "
                             f"got images {images.shape} and labels {labels.shape}")
        num_classes = check_int("image_set.num_classes", image_set.num_classes, 1)
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
            self._seq_len = check_int("seq_len", seq_len, 1)
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
            self._images, self._scale = tf.constant(bernoulli_thresholds(images)), None
        else:
            # Kept in their storage dtype (uint8 for MNIST: 47 MB, not 188 MB of float32).
            self._images = tf.constant(images)
            self._scale = 1.0 / 255.0 if images.dtype == np.uint8 else 1.0
        self._eval_binary = None  # the evaluation binarization, made on first use

    num_classes = property(lambda self: self._num_classes, doc="Classes of the data set.")

    @property
    def factors(self) -> tuple:
        """The one factor label: the class (named `label_key`, "class" without one)."""
        return (Factor(self._label_key or "class", self._num_classes),)
    layout = property(lambda self: self._layout)
    binarize = property(lambda self: self._binarize)

    def dataset(self, batch_size: int, *, training: bool, drop_remainder: bool = False,
                steps: int | None = None) -> tf.data.Dataset:
        """One epoch of ``(x, y)`` batches (``(x, {label_key: y})`` with a ``label_key``).

        ``x``: float32 ``[B, T, H, W, C]`` in [0, 1] ({0, 1} when binarized); for ``rows``
        ``[B, H, 1, W, C]``. ``y``: int32 ``[B]``, the class. An epoch is one pass
        (``num_sequences`` elements; the last batch smaller unless ``drop_remainder``), or, with
        ``steps``, exactly ``steps`` full batches (more or less than one pass; classes still
        balanced, rows go through as many shuffled passes over the images as needed).

        Throughput, MNIST train, batch 128, T=8, on a 2-core Xeon shared with other jobs
        (``python -c "from dvrnn_tf.data.image_sequences import benchmark; benchmark()"``,
        in-graph consumer): grey levels 65k-130k sequences/s (~110k per CPU-second);
        binarize="dynamic" 38k-56k sequences/s (~42k per CPU-second: the 6,272 random 16-bit
        draws per sequence dominate, so it scales with cores); rows layout, dynamic, ~250k
        images/s.
        """
        return super().dataset(batch_size, training=training, drop_remainder=drop_remainder,
                               steps=steps)

    def _plan(self, key, total: int, shuffle: bool):
        """The epoch's ``total`` elements: each sequence's class, or each row element's image."""
        if self._layout == "sequences":
            k = tf.size(self._present)
            plan = tf.gather(self._present, tf.range(total, dtype=tf.int32) % k)
            # Evaluation shuffles too (by the seed only) so that any prefix of it is balanced.
            return tf.random.experimental.stateless_shuffle(plan, seed=fold(key, -1))
        if not shuffle:
            return tf.range(total, dtype=tf.int64) % self._n
        return shuffled_passes(key, self._n, total)

    def _batch(self, i, b, key, plan, binarize_now: bool):
        """Batch ``i`` of an epoch: gathers a whole [B, T] block of image indices at once."""
        key = fold(key, i)
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
            x = tf.cast(bernoulli(tf.gather(self._images, index), binary_key), tf.float32)
        else:  # evaluation: the images binarized once with a fixed seed
            x = tf.cast(tf.gather(self._eval_images(), index), tf.float32)
        if self._layout == "rows":  # [B, H, W, C] -> [B, H, 1, W, C]: each row one time step
            x = tf.expand_dims(x, 2)
        return x, (y if self._label_key is None else {self._label_key: y})

    def _eval_images(self):
        """Every image binarized once with a fixed seed (uint8 {0, 1}), the DESIGN's test set."""
        if self._eval_binary is None:
            with tf.init_scope():
                key = tf.constant([self._seed, EVAL_BINARY], tf.int64)
                self._eval_binary = tf.cast(bernoulli(self._images, key), tf.uint8)
        return self._eval_binary


def benchmark(name="mnist", data_dir=None, manual_dir="../shared/data/mnist", batch_size=128):
    """Prints sequences/s (wall clock and per CPU-second) of a training epoch per setting."""
    import time

    from dvrnn_tf.data.image_sets import load_split

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

