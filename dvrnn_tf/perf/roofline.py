"""A roofline measured here: how long a step's matmuls alone take at this machine's rates.

Each distinct matmul shape (with its transposes) is timed with `tf.linalg.matmul` under
`tf.function`: one function computes `reps` independent products of that shape (distinct
left operands, so that nothing is shared or folded), and the time per product is the
call's wall time divided by `reps`, median over `repeats` calls. The roofline of a step is
sum(count * time per product) over its matmuls (`dvrnn_tf.perf.flops.step_matmuls`): what
the step would take if it did nothing but its float32 matmuls, each at the rate that shape
reaches on this machine under the same runtime (oneDNN kernels, op dispatch included).
"""
from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

# Products per timed call: enough that a call lasts a few milliseconds.
_TARGET_FLOPS_PER_CALL = 2e8
_MAX_REPS = 256


def time_matmul(shape, repeats: int = 15, dtype=tf.float32, max_reps: int = _MAX_REPS) -> dict:
    """Seconds per product of `shape` = (m, k, n, transpose_a, transpose_b): median/min/max."""
    m, k, n, ta, tb = shape
    reps = int(np.clip(_TARGET_FLOPS_PER_CALL / (2.0 * m * k * n), min(4, max_reps), max_reps))
    a_shape = [k, m] if ta else [m, k]
    b_shape = [n, k] if tb else [k, n]
    a = [tf.random.stateless_normal(a_shape, seed=[i, 1], dtype=dtype) for i in range(reps)]
    b = tf.random.stateless_normal(b_shape, seed=[0, 2], dtype=dtype)

    @tf.function(jit_compile=False)
    def products(a, b):
        return [tf.linalg.matmul(x, b, transpose_a=ta, transpose_b=tb) for x in a]

    products(a, b)
    products(a, b)
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        products(a, b)  # returns once every product is computed (CPU: synchronous)
        times.append((time.perf_counter() - start) / reps)
        cpu.append((time.process_time() - start_cpu) / reps)
    flops = 2.0 * m * k * n
    return {"shape": [m, k, n, bool(ta), bool(tb)], "reps": reps,
            "median_s": float(np.median(times)), "min_s": float(np.min(times)),
            "max_s": float(np.max(times)), "cpu_s": float(np.median(cpu)),
            "gflops": flops / float(np.median(times)) / 1e9}


def roofline(matmuls, timings: dict | None = None, repeats: int = 15,
             max_reps: int = _MAX_REPS) -> dict:
    """{"median_s", "min_s": the step's matmul time (wall clock), "cpu_s": its CPU time
    (all threads); "shapes": per-shape timings}.

    `timings` (shape tuple -> `time_matmul` result) is reused and filled in, so that several
    models share one measurement of each shape.
    """
    timings = {} if timings is None else timings
    for mm in matmuls:
        if mm.shape not in timings:
            timings[mm.shape] = time_matmul(mm.shape, repeats=repeats, max_reps=max_reps)
    median = sum(mm.count * timings[mm.shape]["median_s"] for mm in matmuls)
    best = sum(mm.count * timings[mm.shape]["min_s"] for mm in matmuls)
    cpu = sum(mm.count * timings[mm.shape]["cpu_s"] for mm in matmuls)
    return {"median_s": median, "min_s": best, "cpu_s": cpu,
            "shapes": [timings[s] for s in sorted({mm.shape for mm in matmuls})]}
