"""Benchmark: `python -m dvrnn_tf.bench [--out=bench.json]`.

For each model, configuration and XLA setting: one training step's median time after
warm-up (with min and max), sequences per second, analytic FLOPs per step
(`dvrnn_tf.perf.flops`), achieved GFLOP/s, peak memory, and the step's matmul roofline
measured in the same run, a call of each shape at a time between the timed steps
(`dvrnn_tf.perf.roofline.Roofline`): roofline fraction = roofline time / step time (1.0
would mean the step does nothing but its matmuls, at the rates they reach here). Also the
input pipeline alone (`SequenceSampler.dataset`, binarize="dynamic") in sequences per
second, next to what training consumes.

Configurations: `reference` is the first paper's code (x 784, features and GRU 100, f 20,
z 3, T 8, batch 128 sequences, Bernoulli); `large` has hidden and GRU 512, z 32, batch 256;
`sprites` is video: 64x64x3 frames, T 8, the conv network and codes of flags/sprites.flags,
in float32 and mixed_bfloat16 (the roofline then times bfloat16 products).
Training data are synthetic binary sequences (a constant batch: the step is timed, not the
pipeline, which is timed on its own).
"""
import json
import os
import sys

from dvrnn_tf.console import quiet_tensorflow  # noqa: E402

quiet_tensorflow()  # before TensorFlow loads; DVRNN_TF_LOGS=1 shows its own log

from absl import app, flags  # noqa: E402

from dvrnn_tf.perf.benchmark import (CONFIGS, benchmarked_models, format_table,  # noqa: E402
                                     run_benchmark)

flags.DEFINE_list("models", [], "Models to time (default: every model that declares its "
                  "step's cost).")
flags.DEFINE_list("configs", list(CONFIGS), f"Configurations: {', '.join(CONFIGS)}.")
flags.DEFINE_list("xla", ["off", "on"], "XLA settings to time: off (jit_compile=False), "
                  "on (jit_compile=True).")
flags.DEFINE_integer("steps", 30, "Timed calls of the train function per case.",
                     lower_bound=1)
flags.DEFINE_integer("steps_per_execution", 1, "Optimizer steps per call (as training's "
                     "--steps_per_execution); times are reported per optimizer step.",
                     lower_bound=1)
flags.DEFINE_integer("warmup", 5, "Untimed steps after the first (compiling) one.",
                     lower_bound=0)
flags.DEFINE_integer("roofline_repeats", 15, "Timed calls per matmul or convolution shape, "
                     "spread between the --steps timed steps.", lower_bound=1)
flags.DEFINE_enum("pipeline_data", "synthetic", ["synthetic", "digits", "mnist", "none"],
                  "Images the input pipeline is timed on (`none`: skip it). digits is "
                  "8x8, so it is resized to 28x28 to keep the reference shapes.")
flags.DEFINE_integer("pipeline_batches", 100, "Batches the input pipeline is timed on.",
                     lower_bound=10)
flags.DEFINE_string("data_dir", "", "tfds data_dir for --pipeline_data=mnist.")
flags.DEFINE_string("manual_dir", "", "tfds manual_dir for --pipeline_data=mnist.")
flags.DEFINE_string("sprites_dir", os.path.join(os.path.dirname(__file__), "..", "..",
                                                 "shared", "data", "sprites"),
                    "The Sprites sheets (the `sprites` configuration's input pipeline).")
flags.DEFINE_string("out", "", "Write the results as JSON here.")
flags.DEFINE_bool("isolate", True, "Time each (model, configuration, XLA) case in a fresh "
                  "process (same starting state for every case; per-case peak memory).")

FLAGS = flags.FLAGS


def main(argv):
    del argv
    models = FLAGS.models or list(benchmarked_models())
    for name in models:
        if name not in benchmarked_models():
            raise app.UsageError(f"--models: unknown {name!r}; allowed: "
                                 f"{', '.join(benchmarked_models())}")
    for name in FLAGS.configs:
        if name not in CONFIGS:
            raise app.UsageError(f"--configs: unknown {name!r}; allowed: {', '.join(CONFIGS)}")
    for name in FLAGS.xla:
        if name not in ("on", "off"):
            raise app.UsageError(f"--xla: unknown {name!r}; allowed: on, off")
    payload = run_benchmark(
        models, {name: CONFIGS[name] for name in FLAGS.configs}, FLAGS.xla,
        steps=FLAGS.steps, warmup=FLAGS.warmup, roofline_repeats=FLAGS.roofline_repeats,
        pipeline_data=FLAGS.pipeline_data, pipeline_batches=FLAGS.pipeline_batches,
        data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir, log=print,
        isolate=FLAGS.isolate, steps_per_execution=FLAGS.steps_per_execution,
        sprites_dir=os.path.abspath(FLAGS.sprites_dir))
    print(format_table(payload["results"], payload["pipeline"]))
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            json.dump(payload, f, indent=2)
        print(f"wrote {FLAGS.out}")
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
