"""Forward+backward time of the convolutional frame encoder + decoder (one training step's
network work, no optimizer), float32 vs mixed_bfloat16, with and without XLA, beside the
step's analytic FLOPs (`step_costs`) and its float32 roofline (`dvrnn_tf.perf.roofline`).

    PYTHONPATH=. python scripts/bench_frame_networks.py            # 64x64x3, 128 frames
    XLA_FLAGS=--xla_cpu_use_onednn=true PYTHONPATH=. python scripts/bench_frame_networks.py \
        --xla=on --roofline_repeats=0                              # XLA with oneDNN kernels

The loss is the `bce` NLL of the frames under the decoder's logits (what a model's
reconstruction term runs); gradients are taken for every weight, none for the images.
"""
import argparse
import json
import math
import time

import keras
import numpy as np
import tensorflow as tf

from dvrnn_tf.layers.frame_networks import frame_decoder, frame_encoder
from dvrnn_tf.objectives import get_likelihood
from dvrnn_tf.perf.roofline import roofline


def _step_function(enc, dec, jit):
    weights = enc.trainable_variables + dec.trainable_variables
    nll = get_likelihood("bce").nll

    @tf.function(jit_compile=jit)
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.cast(nll(dec(enc(x)), x), tf.float32))
        return loss, tape.gradient(loss, weights)

    return step


def time_case(image_shape, rows, channels, layers, hidden, policy, jit, steps):
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        enc = frame_encoder("conv", image_shape, hidden, channels, layers)
        dec = frame_decoder("conv", image_shape, 1, channels, layers)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    enc.build((None, math.prod(image_shape)))
    dec.build((None, hidden))
    x = tf.cast(tf.random.stateless_uniform([rows, math.prod(image_shape)], [0, 1]) < 0.2,
                tf.float32)
    step = _step_function(enc, dec, jit)
    start = time.perf_counter()
    float(step(x)[0])
    compile_s = time.perf_counter() - start
    float(step(x)[0])
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        float(step(x)[0])
        times.append(time.perf_counter() - start)
    records = enc.step_costs(rows, input_grad=False) + dec.step_costs(rows)
    return {"channels": channels, "policy": policy, "xla": jit, "compile_s": compile_s,
            "median_ms": 1e3 * float(np.median(times)), "min_ms": 1e3 * float(np.min(times)),
            "gflop": sum(r.flops for r in records) / 1e9}, records


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image_shape", default="64,64,3")
    parser.add_argument("--rows", type=int, default=16 * 8, help="frames per step (B*T)")
    parser.add_argument("--channels", default="16,32")
    parser.add_argument("--conv_layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--policies", default="float32,mixed_bfloat16")
    parser.add_argument("--xla", default="off,on")
    parser.add_argument("--roofline_repeats", type=int, default=5, help="0: no roofline")
    args = parser.parse_args()
    image_shape = tuple(int(s) for s in args.image_shape.split(","))
    results, timings = [], {}
    for channels in (int(c) for c in args.channels.split(",")):
        roof = None
        for policy in args.policies.split(","):
            for jit in (x == "on" for x in args.xla.split(",")):
                r, records = time_case(image_shape, args.rows, channels, args.conv_layers,
                                       args.hidden, policy, jit, args.steps)
                if roof is None and args.roofline_repeats:
                    roof = roofline(records, timings, repeats=args.roofline_repeats, max_reps=4)
                r["roofline_f32_ms"] = 1e3 * roof["median_s"] if roof else float("nan")
                r["gflops_per_s"] = r["gflop"] / (r["median_ms"] / 1e3)
                results.append(r)
                print(f"channels {channels:3d} {policy:15s} xla {'on ' if jit else 'off'} "
                      f"{r['median_ms']:8.1f} ms (min {r['min_ms']:.1f}) "
                      f"{r['gflop']:.2f} GFLOP {r['gflops_per_s']:6.1f} GFLOP/s "
                      f"roofline(f32) {r['roofline_f32_ms']:.1f} ms "
                      f"compile {r['compile_s']:.1f} s", flush=True)
    print(json.dumps({"args": vars(args), "results": results,
                      "roofline_shapes": list(timings.values())}, default=str))


if __name__ == "__main__":
    main()
