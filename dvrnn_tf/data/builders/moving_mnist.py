"""Moving MNIST: digits bouncing over a canvas, as tfds's ``image_as_moving_sequence`` makes them.

Every random choice (which digits, start positions, directions) is drawn by a numpy Generator
seeded by ``seed``, so no TF random op runs: the same arguments give the same bytes in any process,
on any number of cores.

``tfds.video.moving_sequence.image_as_moving_sequence`` makes every digit path, given its start
and velocity; it pads one frame at a time, so 10,000 two-digit sequences of 20 frames take
tens of seconds on two cores, once: the sources cache what this makes.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from tensorflow.python.util import deprecation

MAX_DIGITS = 2
# Sequences gathered per batch of the tf.data pipeline.
_CHUNK = 256


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_digits(images, labels, size: int) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3) \
            or min(images.shape) < 1:
        raise ValueError(f"images must be uint8 [M, H, W, C] with C 1 or 3 (e.g. MNIST's "
                         f"[M, 28, 28, 1]), got {images.dtype} {list(images.shape)}")
    if max(images.shape[1:3]) > size:
        raise ValueError(f"size must be at least the digit's height and width "
                         f"{list(images.shape[1:3])}, got {size}")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.shape != images.shape[:1]:
        raise ValueError(f"labels must be integer [M] with M = {images.shape[0]} (one per image), "
                         f"got {labels.dtype} {list(labels.shape)}")
    return images, labels.astype(np.int64)


def make_moving_mnist(images, labels, num_sequences, seq_len=20, num_digits=2, seed=0, size=64,
                      speed=0.1) -> tuple[np.ndarray, dict]:
    """Sequences of ``num_digits`` digits moving with constant speed, bouncing off the walls.

    Per sequence, each digit is drawn (with replacement) from ``images``, with a start position
    uniform in [0, 1]^2 and a velocity of a uniformly random direction and length ``speed``, in
    coordinates where 0 and 1 are the digit touching the top/left and bottom/right walls: a
    digit of H x W moves ``speed * (size - H)`` pixels per step along a vertical path (and
    ``speed * (size - W)`` along a horizontal one) and stays fully inside the canvas. Digits are
    combined by a pixel-wise maximum.

    Args:
      images: ``uint8 [M, H, W, C]`` (MNIST: ``[M, 28, 28, 1]``), H and W at most ``size``.
      labels: ``int [M]`` the images' classes.
      num_sequences: N >= 1.
      seq_len: T >= 1 frames per sequence.
      num_digits: 1 or 2 digits per sequence.
      seed: integer >= 0; everything drawn depends on it alone.
      size: the canvas's height and width.
      speed: the normalized distance moved per step (>= 0).

    Returns:
      ``(x, labels)``: x ``uint8 [N, T, size, size, C]``; labels ``"digit_k"`` ``int64 [N]`` the
      class of digit k, and ``"position_k"`` ``float32 [N, T, 2]`` its (row, column) position in
      [0, 1] per frame: its top-left pixel is at ``round(position * (size - (H, W)))``.
    """
    n = _check_int("num_sequences", num_sequences, 1)
    seq_len = _check_int("seq_len", seq_len, 1)
    size = _check_int("size", size, 1)
    seed = _check_int("seed", seed, 0)
    if isinstance(num_digits, bool) or num_digits not in range(1, MAX_DIGITS + 1):
        raise ValueError(f"num_digits must be 1 or 2, got {num_digits!r}")
    if isinstance(speed, bool) or not isinstance(speed, (int, float, np.integer, np.floating)) \
            or not math.isfinite(speed) or speed < 0:
        raise ValueError(f"speed must be a finite number >= 0, got {speed!r}")
    images, labels = _check_digits(images, labels, size)

    rng = np.random.default_rng(seed)
    which = rng.integers(0, images.shape[0], size=(n, num_digits))
    start = rng.uniform(0.0, 1.0, size=(n, num_digits, 2)).astype(np.float32)
    angle = rng.uniform(0.0, 2 * math.pi, size=(n, num_digits))
    velocity = (speed * np.stack([np.cos(angle), np.sin(angle)], -1)).astype(np.float32)

    x, positions = moving_digits(images, which, start, velocity, seq_len, size)
    factors = {f"digit_{k}": labels[which[:, k]] for k in range(num_digits)}
    factors.update({f"position_{k}": positions[:, k] for k in range(num_digits)})
    return x, factors


def moving_digits(images: np.ndarray, which: np.ndarray, start: np.ndarray,
                  velocity: np.ndarray, seq_len: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The frames tfds's ``image_as_moving_sequence`` makes, for given digits, starts and
    velocities (one call per digit path, in a parallel, ordered tf.data map).

    Args:
      images: ``uint8 [M, H, W, C]`` (checked by the caller).
      which: ``int [N, D]`` indices into ``images``: the digits of each sequence.
      start: ``float32 [N, D, 2]`` start positions in [0, 1] (row, column).
      velocity: ``float32 [N, D, 2]`` normalized velocities (row, column).
      seq_len: T; size: the canvas's height and width (at least H and W).

    Returns:
      x ``uint8 [N, T, size, size, C]`` (digits combined by a pixel-wise maximum) and positions
      ``float32 [N, D, T, 2]``.
    """
    from tensorflow_datasets.video.moving_sequence import image_as_moving_sequence

    n, num_digits = which.shape
    digits = tf.constant(images)

    def one_path(index, first, speed):
        moving = image_as_moving_sequence(tf.gather(digits, index), sequence_length=seq_len,
                                          output_size=(size, size), velocity=speed,
                                          start_position=first)
        return moving.image_sequence, moving.trajectory

    paths = tf.data.Dataset.from_tensor_slices((which.reshape(-1), start.reshape(-1, 2),
                                                velocity.reshape(-1, 2)))
    # tfds's map_fn call uses an argument TensorFlow has deprecated: not this user's concern.
    with deprecation.silence():
        paths = paths.map(one_path, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    sequences = (paths.batch(num_digits)  # the digits of one sequence
                 .map(lambda frames, path: (tf.reduce_max(frames, 0), path))
                 .batch(_CHUNK).prefetch(2))
    x = np.empty((n, seq_len, size, size, images.shape[-1]), np.uint8)
    positions = np.empty((n, num_digits, seq_len, 2), np.float32)
    done = 0
    for frames, path in sequences:
        x[done:done + len(frames)], positions[done:done + len(frames)] = frames, path
        done += len(frames)
    return x, positions
