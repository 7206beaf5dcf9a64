"""Ordered sequences held in arrays (video: Sprites, Moving MNIST, the user's own), as tf.data.

Unlike the same-class sampler, which draws new sequences from single images, these sequences
are fixed: an epoch is every sequence once, in an order shuffled per (seed, epoch).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from dvrnn_tf.data import pipeline


def check_labels(labels: Mapping, factors, n: int, seq_len: int) -> None:
    """ValueError (one line) unless `labels` holds one array per factor of the shape it
    declares: [N] / [N, T] (per frame), plus the factor's trailing shape."""
    names = {f.name for f in factors}
    if set(labels) != names:
        raise ValueError(f"labels name {sorted(labels)}, the factors are {sorted(names)}")
    for f in factors:
        expected = (n, *((seq_len,) if f.per_frame else ()), *f.shape)
        if tuple(np.shape(labels[f.name])) != expected:
            raise ValueError(f"labels {f.name!r} have shape {tuple(np.shape(labels[f.name]))}, "
                             f"expected {expected} ({f.kind})")


class ArraySequences(pipeline.EpochSampler):
    """Fixed sequences x [N, T, H, W, C] (uint8 0..255 or float in [0, 1]) with factor labels.

    `dataset` yields (x float32 [B, T, H, W, C] in [0, 1] ({0, 1} when binarized),
    {factor: labels [B, ...]}): int32 for a class, float32 for a continuous factor.
    """

    def __init__(self, x: np.ndarray, labels: Mapping, factors=(), *, binarize: str = "none",
                 seed: int = 0, name: str = ""):
        super().__init__(seed)
        if binarize not in pipeline.BINARIZE:
            raise ValueError(f"binarize must be one of {pipeline.BINARIZE}, got {binarize!r}")
        if np.ndim(x) != 5 or min(np.shape(x)) < 1:
            raise ValueError(f"x must be sequences [N, T, H, W, C] of positive sizes, got "
                             f"shape {np.shape(x)}")
        n, t = int(x.shape[0]), int(x.shape[1])
        self.factors = tuple(factors)
        check_labels(labels, self.factors, n, t)
        self.name = name
        self._n, self._seq_len, self._step_shape = n, t, tuple(int(d) for d in x.shape[2:])
        self._binarize = binarize
        if binarize == "dynamic":
            self._images, self._scale = tf.constant(pipeline.bernoulli_thresholds(
                np.asarray(x))), None
        else:
            # Kept in their storage dtype: uint8 is a quarter of float32's memory.
            self._images = tf.constant(np.asarray(x))
            self._scale = 1.0 / 255.0 if x.dtype == np.uint8 else 1.0
        self._labels = {f.name: tf.constant(np.asarray(labels[f.name]),
                                            tf.int32 if f.categorical else tf.float32)
                        for f in self.factors}
        self._eval_binary = None

    binarize = property(lambda self: self._binarize)

    def examples(self, limit: int = 0):
        """`limit` sequences evenly spaced over the split (0: all), as numpy (x, labels): a
        file ordered by content (Sprites: a character's 9 motions in a row) is sampled
        across its contents, not just its first rows."""
        if not limit or limit >= self._n:
            return self.arrays()
        index = tf.constant(np.linspace(0, self._n - 1, limit).round().astype(np.int64))
        x, labels = self._batch(tf.constant(0, tf.int64), limit, None, index,
                                binarize_now=False)
        return x.numpy(), {k: v.numpy() for k, v in labels.items()}

    def _plan(self, key, total: int, shuffle: bool):
        if not shuffle:
            return tf.range(total, dtype=tf.int64) % self._n
        return pipeline.shuffled_passes(key, self._n, total)

    def _batch(self, i, b, key, plan, binarize_now: bool):
        index = plan[i * b:(i + 1) * b]
        if self._binarize == "none":
            x = tf.cast(tf.gather(self._images, index), tf.float32) * self._scale
        elif binarize_now:  # training: a fresh draw each time a sequence is read
            x = tf.cast(pipeline.bernoulli(tf.gather(self._images, index),
                                           pipeline.fold(key, i)), tf.float32)
        else:  # evaluation: the sequences binarized once with a fixed seed
            x = tf.cast(tf.gather(self._eval_images(), index), tf.float32)
        return x, {name: tf.gather(v, index) for name, v in self._labels.items()}

    def _eval_images(self):
        if self._eval_binary is None:
            with tf.init_scope():
                key = tf.constant([self._seed, pipeline.EVAL_BINARY], tf.int64)
                self._eval_binary = tf.cast(pipeline.bernoulli(self._images, key), tf.uint8)
        return self._eval_binary
