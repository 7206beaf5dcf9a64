"""A roofline measured here: how long a step's matmuls and convolutions alone take at this
machine's rates.

Each distinct matmul shape (with its transposes) is timed with `tf.linalg.matmul` under
`tf.function`: one function computes `reps` independent products of that shape (distinct
left operands, so that nothing is shared or folded), and the time per product is the
call's wall time divided by `reps`, median over `repeats` calls. Each distinct convolution
shape (`dvrnn_tf.layers.costs.Conv.shape`: a forward Conv2D, a Conv2DBackpropFilter or a
Conv2DBackpropInput, the last also what a transposed convolution runs) is timed the same
way: `reps` runs of that op on distinct images (or gradients) with one shared kernel (or
gradient). The roofline of a step is sum(count * time per run) over its records
(`dvrnn_tf.perf.flops.step_matmuls`, the layers' `step_costs`): what the step would take if
it did nothing but its matmuls and convolutions (in the step's compute dtype), each at the rate
that shape reaches on this machine under the same runtime (oneDNN kernels, op dispatch
included).

`Roofline` times the shapes a call each at a time, between the step's own timed calls (the
benchmark's way): this machine's speed drifts by tens of percent within minutes, and a step
timed first with its roofline timed after it measured 71% in one run and 81% in the next.
"""
from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

# Products per timed call: enough that a call lasts a few milliseconds.
_TARGET_FLOPS_PER_CALL = 2e8
_MAX_REPS = 256


def _reps(flops, max_reps):
    return int(np.clip(_TARGET_FLOPS_PER_CALL / flops, min(4, max_reps), max_reps))


def _stats(times, cpu, reps, flops) -> dict:
    return {"reps": reps, "median_s": float(np.median(times)), "min_s": float(np.min(times)),
            "max_s": float(np.max(times)), "cpu_s": float(np.median(cpu)),
            "gflops": flops / float(np.median(times)) / 1e9}


class _ShapeTimer:
    """One shape's traced call (`reps` runs of its op), warmed up, and its timed calls."""

    def __init__(self, call, reps, flops):
        self.call, self.reps, self.flops = call, reps, flops
        self.times, self.cpu = [], []
        call()  # tracing
        call()  # warm-up

    def time_once(self):
        start, start_cpu = time.perf_counter(), time.process_time()
        self.call()  # returns once every run is computed (CPU: synchronous)
        self.times.append((time.perf_counter() - start) / self.reps)
        self.cpu.append((time.process_time() - start_cpu) / self.reps)

    def stats(self) -> dict:
        """Median/min/max wall and median CPU seconds per run."""
        return _stats(self.times, self.cpu, self.reps, self.flops)


def _timed(shape, timer, repeats) -> dict:
    """`_named(shape)` with the stats of `repeats` timed calls of `timer`."""
    for _ in range(repeats):
        timer.time_once()
    return {**_named(shape), **timer.stats()}


def _named(shape) -> dict:
    if _is_conv(shape):
        return {"shape": list(shape), "op": shape[0]}
    return {"shape": [*shape[:3], bool(shape[3]), bool(shape[4])]}


def time_matmul(shape, repeats: int = 15, dtype=tf.float32, max_reps: int = _MAX_REPS) -> dict:
    """Seconds per product of `shape` = (m, k, n, transpose_a, transpose_b): median/min/max."""
    return _timed(shape, _matmul_timer(shape, dtype, max_reps), repeats)


def _matmul_timer(shape, dtype, max_reps) -> _ShapeTimer:
    m, k, n, ta, tb = shape
    flops = 2.0 * m * k * n
    reps = _reps(flops, max_reps)
    a_shape = [k, m] if ta else [m, k]
    b_shape = [n, k] if tb else [k, n]
    a = [tf.random.stateless_normal(a_shape, seed=[i, 1], dtype=dtype) for i in range(reps)]
    b = tf.random.stateless_normal(b_shape, seed=[0, 2], dtype=dtype)

    @tf.function(jit_compile=False)
    def products(a, b):
        return [tf.linalg.matmul(x, b, transpose_a=ta, transpose_b=tb) for x in a]

    return _ShapeTimer(lambda: products(a, b), reps, flops)


def _conv_run(op, big, kernel, strides):
    """(run(varying, shared), varying operand's shape, shared operand's shape) of `op`."""
    small = [big[0], -(-big[1] // strides[1]), -(-big[2] // strides[2]), kernel[3]]
    if op == "Conv2D":
        return (lambda x, f: tf.nn.conv2d(x, f, strides, "SAME")), big, kernel
    if op == "Conv2DBackpropInput":
        return (lambda dy, f: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=big, filter=f, out_backprop=dy, strides=strides,
            padding="SAME")), small, kernel
    if op == "Conv2DBackpropFilter":
        return (lambda x, dy: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=kernel, out_backprop=dy, strides=strides,
            padding="SAME")), big, small
    raise ValueError(f"unknown convolution op {op!r}; allowed: Conv2D, Conv2DBackpropFilter, "
                     "Conv2DBackpropInput")


def time_conv(shape, repeats: int = 15, dtype=tf.float32, max_reps: int = _MAX_REPS) -> dict:
    """Seconds per run of `shape` = (op, batch, big_h, big_w, big_c, small_c, kernel, stride)
    (`Conv.shape`; "SAME" padding, channels last): median/min/max."""
    return _timed(shape, _conv_timer(shape, dtype, max_reps), repeats)


def _conv_timer(shape, dtype, max_reps) -> _ShapeTimer:
    op, batch, h, w, c_big, c_small, k, s = shape
    big, kernel, strides = [batch, h, w, c_big], [k, k, c_big, c_small], [1, s, s, 1]
    flops = 2.0 * batch * -(-h // s) * -(-w // s) * k * k * c_big * c_small
    reps = _reps(flops, max_reps)
    one, varying_shape, shared_shape = _conv_run(op, big, kernel, strides)
    varying = [tf.random.stateless_normal(varying_shape, seed=[i, 1], dtype=dtype)
               for i in range(reps)]
    shared = tf.random.stateless_normal(shared_shape, seed=[0, 2], dtype=dtype)

    @tf.function(jit_compile=False)
    def runs(varying, shared):
        return [one(v, shared) for v in varying]

    return _ShapeTimer(lambda: runs(varying, shared), reps, flops)


def _timer(shape, dtype, max_reps) -> _ShapeTimer:
    return (_conv_timer if _is_conv(shape) else _matmul_timer)(shape, dtype, max_reps)


def _is_conv(shape) -> bool:
    return isinstance(shape[0], str)


def roofline(records, timings: dict | None = None, repeats: int = 15,
             max_reps: int = _MAX_REPS, dtype=tf.float32) -> dict:
    """{"median_s", "min_s": the step's matmul and convolution time (wall clock), "cpu_s":
    its CPU time (all threads); "shapes": per-shape timings, matmuls then convolutions}.

    `records`: `MatMul`s and `Conv`s (`dvrnn_tf.layers.costs`); `dtype`: the compute dtype
    they run in (bfloat16 for a mixed_bfloat16 step). `timings` (shape tuple -> `time_matmul`
    /`time_conv` result) is reused and filled in, so that several models share one
    measurement of each shape (of one dtype).
    """
    timings = {} if timings is None else timings
    for rec in records:
        if rec.shape not in timings:
            timings[rec.shape] = _timed(rec.shape, _timer(rec.shape, dtype, max_reps),
                                        repeats)
    return _summed(records, timings)


def _summed(records, timings) -> dict:
    median = sum(rec.count * timings[rec.shape]["median_s"] for rec in records)
    best = sum(rec.count * timings[rec.shape]["min_s"] for rec in records)
    cpu = sum(rec.count * timings[rec.shape]["cpu_s"] for rec in records)
    shapes = {rec.shape for rec in records}
    ordered = (sorted(s for s in shapes if not _is_conv(s))
               + sorted(s for s in shapes if _is_conv(s)))
    return {"median_s": median, "min_s": best, "cpu_s": cpu,
            "shapes": [timings[s] for s in ordered]}


class Roofline:
    """The roofline of `records` (as `roofline`), timed in rounds: `sample()` times one call
    of every shape, meant to run between the step's own timed calls so that the step and its
    roofline are measured under the same (drifting) load; `result()` is `roofline`'s dict."""

    def __init__(self, records, dtype=tf.float32, max_reps: int = _MAX_REPS):
        self.records = list(records)
        self._timers = {}
        for rec in self.records:  # traced and warmed up now, outside any timed interval
            if rec.shape not in self._timers:
                self._timers[rec.shape] = _timer(rec.shape, dtype, max_reps)

    def sample(self):
        for timer in self._timers.values():
            timer.time_once()

    def result(self) -> dict:
        if not all(t.times for t in self._timers.values()):
            raise ValueError("Roofline.result() before any sample()")
        return _summed(self.records, {shape: {**_named(shape), **timer.stats()}
                                      for shape, timer in self._timers.items()})
