"""Timing of a model's train step and of the input pipeline."""
from __future__ import annotations

import resource
import time

import numpy as np
import tensorflow as tf


def synthetic_batch(batch_size, seq_len, image_shape, seed=0):
    """Binary images [B, T, H, W, C] (as dynamic binarization yields) and labels [B]."""
    rng = np.random.default_rng(seed)
    x = (rng.uniform(size=(batch_size, seq_len, *image_shape)) < 0.2).astype("float32")
    y = rng.integers(0, 10, size=batch_size).astype("int32")
    return tf.constant(x), tf.constant(y)


def _stats(seconds):
    seconds = np.asarray(seconds)
    return {"median_s": float(np.median(seconds)), "min_s": float(np.min(seconds)),
            "max_s": float(np.max(seconds)), "n": int(len(seconds))}


def peak_memory_reset():
    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
    except (ValueError, RuntimeError):
        pass


def peak_memory() -> dict:
    """TF's CPU allocator peak since the last reset, and the process's RSS high-water mark."""
    out = {"rss_high_water_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    try:
        out["tf_allocator_peak_bytes"] = int(
            tf.config.experimental.get_memory_info("CPU:0")["peak"])
    except (ValueError, RuntimeError):
        out["tf_allocator_peak_bytes"] = None
    return out


def time_train_steps(model, batch, steps=30, warmup=5, between=None):
    """Per-step wall times of `model`'s compiled train function on a constant batch.

    Returns {"compile_s": the first call (tracing and, with XLA, compiling), "step": stats
    over `steps` calls after `warmup` more, each divided by the model's steps_per_execution
    (the optimizer steps one call takes)}. `between(i)`, if given, runs after timed call i,
    outside the timed interval (the benchmark times its roofline there).
    """
    per_call = int(getattr(model, "steps_per_execution", 1) or 1)
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    iterator = iter(dataset)
    model.make_train_function()
    train_function = model.train_function
    start = time.perf_counter()
    float(train_function(iterator)["loss"])
    compile_s = time.perf_counter() - start
    for _ in range(warmup):
        float(train_function(iterator)["loss"])
    times = []
    for i in range(steps):
        start = time.perf_counter()
        logs = train_function(iterator)
        float(logs["loss"])
        times.append((time.perf_counter() - start) / per_call)
        if between is not None:
            between(i)
    return {"compile_s": compile_s, "step": _stats(times), "final_loss": float(logs["loss"])}


def time_pipeline(dataset, batches=50, warmup=5):
    """Sequences per second a tf.data pipeline delivers, consumed in-graph (no Python per
    element); stats are per batch."""
    iterator = iter(dataset.repeat())

    @tf.function
    def pull(n):
        total = tf.constant(0, tf.int64)
        for _ in tf.range(n):
            x = next(iterator)[0]
            total += tf.cast(tf.shape(x)[0], tf.int64)
        return total

    pull(tf.constant(warmup))
    times, count = [], 0
    for _ in range(max(1, batches // 10)):
        start = time.perf_counter()
        count += int(pull(tf.constant(10)))
        times.append((time.perf_counter() - start) / 10)
    stats = _stats(times)
    seqs_per_batch = count / (10 * len(times))
    stats["sequences_per_s"] = seqs_per_batch / stats["median_s"]
    return stats
