"""The sequence judge's input pipeline and its augmentation (`dvrnn_tf.metrics.sequence_judge`).

The arrays may be large (8,100 Sprites train sequences of 8 x 64 x 64 x 3 uint8 are 800 MB):
tf.data reads batches out of the numpy array by index (`tf.numpy_function`), never a copy of
the array in the graph, and uint8 is scaled to [0, 1] per batch.
"""
import numpy as np
import tensorflow as tf

_PARALLEL_BATCHES = 2  # fixed, no autotuning (see dvrnn_tf.data.pipeline)
_AUGMENTED_SHARE = 0.5


def _to_float(x):
    """A batch as float32 in [0, 1] (uint8 / 255; floats clipped)."""
    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) / 255.0
    return tf.clip_by_value(tf.cast(x, tf.float32), 0.0, 1.0)


def _blur(x, sigma: float = 1.2):
    """Separable 5-tap Gaussian blur of frames [B, H, W, C]."""
    r = tf.range(-2.0, 3.0)
    k = tf.exp(-0.5 * (r / sigma) ** 2)
    k = k / tf.reduce_sum(k)
    c = x.shape[-1]
    x = tf.nn.depthwise_conv2d(x, tf.tile(tf.reshape(k, [5, 1, 1, 1]), [1, 1, c, 1]),
                               [1, 1, 1, 1], "SAME")
    return tf.nn.depthwise_conv2d(x, tf.tile(tf.reshape(k, [1, 5, 1, 1]), [1, 1, c, 1]),
                                  [1, 1, 1, 1], "SAME")


def augment_sequences(x, seed):
    """x [B, T, H, W, C] in [0, 1] -> the same, half of it made to look decoded.

    Each sequence draws once (all its frames alike, as a decoder blurs them alike): with odds
    1/2 it is kept; otherwise it is blurred (a mix of itself, one and two passes of a sigma
    1.2 px Gaussian: blur up to sigma ~1.7 px), its contrast pulled toward its mean colour by
    a factor in [0.8, 1], each channel scaled by [0.92, 1.08] and shifted by [-0.04, 0.04],
    Gaussian noise of sd in [0, 0.03] added, and the result clipped to [0, 1].
    seed: int64 [2], a stateless seed.
    """
    shape = tf.shape(x)
    b, c = shape[0], x.shape[-1]
    s = tf.unstack(tf.random.experimental.stateless_split(seed, 7))
    per_seq = [b, 1, 1, 1, 1]
    frames = tf.reshape(x, tf.concat([[-1], shape[2:]], 0))
    once = _blur(frames)
    twice = tf.reshape(_blur(once), shape)
    once = tf.reshape(once, shape)
    a = tf.random.stateless_uniform(per_seq, s[0], 0.0, 2.0)
    y = tf.where(a < 1.0, (1 - a) * x + a * once, (2 - a) * once + (a - 1) * twice)
    mean = tf.reduce_mean(y, axis=[1, 2, 3], keepdims=True)
    y = mean + tf.random.stateless_uniform(per_seq, s[1], 0.8, 1.0) * (y - mean)
    y = (y * tf.random.stateless_uniform([b, 1, 1, 1, c], s[2], 0.92, 1.08)
         + tf.random.stateless_uniform([b, 1, 1, 1, c], s[3], -0.04, 0.04))
    y = y + tf.random.stateless_uniform(per_seq, s[4], 0.0, 0.03) * (
        tf.random.stateless_normal(shape, s[5]))
    keep = tf.random.stateless_uniform(per_seq, s[6]) >= _AUGMENTED_SHARE
    return tf.where(keep, x, tf.clip_by_value(y, 0.0, 1.0))


def sequence_dataset(x, y, names, batch_size: int, *, shuffle_seed=None, augment_seed=None):
    """A tf.data pipeline of (x [B, T, H, W, C] float32, {name: labels [B]}) from numpy arrays.

    x stays in numpy (uint8 or float; a memmap works): each batch's rows are gathered by a
    `tf.numpy_function`, so the graph never holds the array. shuffle_seed: reshuffle every
    epoch with it; augment_seed: apply `augment_sequences` (stateless, per batch index).
    """
    n = len(x)
    ds = tf.data.Dataset.range(n)
    if shuffle_seed is not None:
        ds = ds.shuffle(n, seed=int(shuffle_seed), reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).enumerate()

    def gather(idx):
        idx = np.sort(idx)  # the batch is a set; sorted rows read faster (memmaps, caches)
        return x[idx], y[idx]

    def load(step, idx):
        xb, yb = tf.numpy_function(gather, [idx], [tf.as_dtype(x.dtype), tf.int64],
                                   stateful=False)
        xb.set_shape((None,) + tuple(x.shape[1:]))
        yb.set_shape((None, y.shape[1]))
        xb = _to_float(xb)
        if augment_seed is not None:
            base = tf.constant([int(augment_seed), 11], tf.int64)
            xb = augment_sequences(xb, tf.random.experimental.stateless_fold_in(base, step))
        return xb, {name: yb[:, k] for k, name in enumerate(names)}

    options = tf.data.Options()
    options.autotune.enabled = False
    ds = ds.map(load, num_parallel_calls=_PARALLEL_BATCHES, deterministic=True)
    return ds.with_options(options).prefetch(_PARALLEL_BATCHES)
