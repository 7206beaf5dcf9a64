"""The benchmark behind `python -m dvrnn_tf.bench` (see that module and
docs/performance.md): one function per measurement, and `run_benchmark` for all of them."""
import json
import os
import platform
import subprocess
import sys
import time

CONFIGS = {
    "reference": dict(hidden_dim=100, rnn_dim=100, f_dim=20, z_dim=3, seq_len=8,
                      batch_size=128),
    "large": dict(hidden_dim=512, rnn_dim=512, f_dim=20, z_dim=32, seq_len=8, batch_size=256),
    # Video: the model settings of flags/sprites.flags (its conv network, codes and prior)
    # on 64x64x3 frames, in float32 and in mixed_bfloat16 (these CPUs have AMX).
    # XLA is left out: on these CPUs it ran the conv networks 1.2-4x slower.
    "sprites": dict(flagfile="sprites", image_shape=(64, 64, 3), seq_len=8, batch_size=64,
                    precisions=("float32", "mixed_bfloat16"), xla=("off",), data="sprites"),
}
IMAGE_SHAPE = (28, 28, 1)


def config_values(sizes) -> dict:
    """A configuration's model settings: its sizes, or those of its flag file."""
    if "flagfile" not in sizes:
        return {k: v for k, v in sizes.items() if k not in ("batch_size", "seq_len")}
    from dvrnn_tf.experiments.runs_table import ROOT, parse_flag_lines

    lines = (ROOT / "flags" / f"{sizes['flagfile']}.flags").read_text().splitlines()
    return parse_flag_lines(lines)


def benchmarked_models() -> tuple:
    """Every `--model` whose family declares its step's cost (`step_costs`)."""
    from dvrnn_tf.models import registry
    return tuple(n for n in registry.model_names()
                 if callable(getattr(registry.get_family(n).model_class, "step_costs", None)))


def machine_info():
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        for key in ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache", "L3 cache",
                    "Hypervisor vendor"):
            if key in fields:
                info[key] = fields[key].strip()
        flags_ = fields.get("Flags", "").split()
        info["isa"] = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags_]
    except (OSError, subprocess.SubprocessError):
        pass
    import keras
    import tensorflow as tf
    info.update(tensorflow=tf.__version__, keras=keras.__version__,
                onednn=os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"))
    return info


def build(model_name, sizes, jit_compile, steps_per_execution=1, precision="float32"):
    import keras

    from dvrnn_tf.data import DataSpec
    from dvrnn_tf.training import TrainConfig, settings_for
    from dvrnn_tf.training.factory import build_model
    from dvrnn_tf.objectives.optimizers import FusedAdam

    taken = settings_for(model_name)
    values = {"likelihood": "bernoulli", **config_values(sizes)}
    config = TrainConfig(model=model_name,
                         **{k: v for k, v in values.items()
                            if k in taken and k not in ("model", "dataset")})
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32" if precision == "none" else precision)
    try:
        model = build_model(config, DataSpec(tuple(sizes.get("image_shape", IMAGE_SHAPE)),
                                             sizes["seq_len"]))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    model.compile(optimizer=FusedAdam(config.learning_rate),
                  jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    return model


def time_case(model_name, config_name, sizes, xla, steps, warmup, roofline_repeats,
              roofline_max_reps=256, steps_per_execution=1, precision="float32"):
    """One (model, configuration, XLA, precision) case: step timing, FLOPs, memory and the
    roofline of the step's own matmul and convolution shapes in its compute dtype, timed
    between the steps (`roofline_repeats` rounds spread over the `steps` timed calls)."""
    import keras
    import tensorflow as tf

    from dvrnn_tf.perf import flops as flops_lib
    from dvrnn_tf.perf import timing
    from dvrnn_tf.perf.roofline import Roofline

    keras.backend.clear_session()
    b = sizes["batch_size"]
    timing.peak_memory_reset()
    model = build(model_name, sizes, jit_compile=(xla == "on"),
                  steps_per_execution=steps_per_execution, precision=precision)
    batch = timing.synthetic_batch(b, sizes["seq_len"], tuple(sizes.get("image_shape",
                                                                        IMAGE_SHAPE)))
    matmuls = flops_lib.step_matmuls(model, b)
    seen = {}  # the step's peak memory, read before the roofline's operands exist

    def between(i):
        if i == 0:
            seen["memory"] = timing.peak_memory()
            seen["roofline"] = Roofline(matmuls, max_reps=roofline_max_reps,
                                        dtype=tf.dtypes.as_dtype(model.compute_dtype))
        if i % max(1, steps // roofline_repeats) == 0:
            seen["roofline"].sample()

    measured = timing.time_train_steps(model, batch, steps=steps, warmup=warmup,
                                       between=between)
    memory, roof = seen["memory"], seen["roofline"].result()
    step = measured["step"]
    total = flops_lib.total_flops(matmuls)
    return {
        "model": model_name, "config": config_name, "xla": xla, "precision": precision,
        "batch_size": b,
        "steps_per_execution": steps_per_execution,
        "seq_len": sizes["seq_len"], "compile_s": measured["compile_s"],
        "step_ms": {k: v * 1e3 for k, v in step.items() if k.endswith("_s")} | {"n": step["n"]},
        "sequences_per_s": b / step["median_s"],
        "flops_per_step": total, "flops_by_pass": flops_lib.by_pass(matmuls),
        "gflops_per_s": total / step["median_s"] / 1e9,
        "roofline_ms": {"median": roof["median_s"] * 1e3, "min": roof["min_s"] * 1e3},
        "roofline_fraction": roof["median_s"] / step["median_s"],
        "roofline_fraction_min": roof["min_s"] / step["min_s"],
        "matmul_gflops_per_s": total / roof["median_s"] / 1e9,
        "peak_memory": memory, "final_loss": measured["final_loss"],
        "roofline_shapes": roof["shapes"],
    }


def _pipeline_images(source, data_dir="", manual_dir="", n=60000):
    import numpy as np

    from dvrnn_tf.data import ImageSet, load_split

    if source == "mnist":
        return load_split("mnist", "train", data_dir=data_dir or None,
                          manual_dir=manual_dir or None)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=n)
    if source == "digits":
        digits = load_split("digits", "train")
        import tensorflow as tf
        big = tf.image.resize(digits.as_float(), IMAGE_SHAPE[:2]).numpy()
        pick = rng.integers(0, len(big), size=n)
        images = np.round(np.clip(big[pick], 0, 1) * 255).astype(np.uint8)
        labels = digits.labels[pick]
    else:
        # MNIST-like grey levels: most pixels 0, some 255, some in between.
        u = rng.uniform(size=(n, *IMAGE_SHAPE))
        images = np.where(u < 0.8, 0, np.where(u < 0.9, 255, rng.integers(1, 255, u.shape)))
        images = images.astype(np.uint8)
    return ImageSet(source, "train", images, labels.astype(np.int64), 10)


def time_pipeline(config_name, sizes, image_set, batches, sprites_dir=""):
    """The training input pipeline of a configuration alone: same-class sequences of
    `image_set` (binarized dynamically), or a config's own source (Sprites' train split)."""
    from dvrnn_tf.data import SequenceSampler, open_source
    from dvrnn_tf.perf import timing

    if sizes.get("data") == "sprites":
        sampler = open_source("sprites", {"manual_dir": sprites_dir}).split("train")
        name, binarize = "sprites", "none"
    else:
        sampler = SequenceSampler(image_set, seq_len=sizes["seq_len"], binarize="dynamic")
        name, binarize = image_set.name, "dynamic"
    ds = sampler.dataset(sizes["batch_size"], training=True)
    out = timing.time_pipeline(ds, batches=batches)
    return {"config": config_name, "data": name, "batch_size": sizes["batch_size"],
            "binarize": binarize, "sequences_per_s": out["sequences_per_s"],
            "batch_ms": {k[:-2]: v * 1e3 for k, v in out.items() if k.endswith("_s")
                         and k != "sequences_per_s"}}


_CASE_TAG = "BENCH_CASE_JSON "


def case_main(argv=None):
    """Entry point of one isolated case: `python -c ... '<json of time_case's arguments>'`."""
    args = json.loads((argv or sys.argv)[-1])
    print(_CASE_TAG + json.dumps(time_case(**args)), flush=True)


def _time_case_isolated(**kwargs):
    """`time_case` in a fresh Python process: each case starts from the same state (no
    functions, threads or allocator history of earlier cases), and its peak memory is its own."""
    code = "from dvrnn_tf.perf.benchmark import case_main; case_main()"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_CASE_TAG)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark case {kwargs} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(_CASE_TAG):])


def run_benchmark(models, configs, xla_settings, steps=30, warmup=5, roofline_repeats=15,
                  pipeline_data="synthetic", pipeline_batches=100, data_dir="", manual_dir="",
                  log=lambda *a, **k: None, roofline_max_reps=256, pipeline_images=60000,
                  isolate=True, steps_per_execution=1, sprites_dir=""):
    """The whole benchmark; `configs` maps a name to sizes (as `CONFIGS`). Returns the
    JSON payload. isolate: each (model, configuration, XLA) case in its own process."""
    started = time.time()
    results, pipelines = [], []
    for config_name, sizes in configs.items():
        cases = [(m, x, p) for m in models for x in xla_settings if x in sizes.get("xla", ("off", "on"))
                 for p in sizes.get("precisions", ("float32",))]
        for model_name, xla, precision in cases:
            case = dict(model_name=model_name, config_name=config_name, sizes=sizes, xla=xla,
                        steps=steps, warmup=warmup, roofline_repeats=roofline_repeats,
                        roofline_max_reps=roofline_max_reps,
                        steps_per_execution=steps_per_execution, precision=precision)
            r = _time_case_isolated(**case) if isolate else time_case(**case)
            log(f"{model_name} {config_name} xla={xla} {precision}: "
                f"{r['step_ms']['median_s']:.1f} ms/step, roofline "
                f"{100 * r['roofline_fraction']:.0f}%", flush=True)
            results.append(r)
    if pipeline_data != "none":
        image_set = _pipeline_images(pipeline_data, data_dir, manual_dir, n=pipeline_images)
        for config_name, sizes in configs.items():
            p = time_pipeline(config_name, sizes, image_set, pipeline_batches, sprites_dir)
            consumed = [r["sequences_per_s"] for r in results if r["config"] == config_name]
            if consumed:
                p["fastest_training_sequences_per_s"] = max(consumed)
                p["ratio_to_fastest_training"] = p["sequences_per_s"] / max(consumed)
            pipelines.append(p)
    return {"machine": machine_info(), "configs": configs, "steps": steps, "warmup": warmup,
            "steps_per_execution": steps_per_execution,
            "isolated_cases": isolate, "results": results, "pipeline": pipelines,
            "wall_s": time.time() - started}


def format_table(results, pipelines):
    lines = [f"{'model':13s} {'config':9s} {'xla':3s} {'precision':14s} {'ms/step (min-max)':>22s} "
             f"{'seq/s':>7s} {'GFLOP':>6s} {'GFLOP/s':>7s} {'roof ms':>7s} {'roof %':>6s} "
             f"{'peak MB':>7s} {'compile s':>9s}"]
    for r in results:
        s = r["step_ms"]
        peak = r["peak_memory"].get("tf_allocator_peak_bytes") or 0
        lines.append(
            f"{r['model']:13s} {r['config']:9s} {r['xla']:3s} {r.get('precision', 'float32'):14s} "
            f"{s['median_s']:8.1f} ({s['min_s']:5.1f}-{s['max_s']:6.1f}) "
            f"{r['sequences_per_s']:7.0f} {r['flops_per_step'] / 1e9:6.2f} "
            f"{r['gflops_per_s']:7.1f} {r['roofline_ms']['median']:7.1f} "
            f"{100 * r['roofline_fraction']:5.0f}% {peak / 2**20:7.0f} {r['compile_s']:9.1f}")
    for p in pipelines:
        lines.append(f"input pipeline {p['config']} ({p['data']}, B={p['batch_size']}, "
                     f"binarize={p['binarize']}): {p['sequences_per_s']:.0f} sequences/s = "
                     f"{p.get('ratio_to_fastest_training', float('nan')):.1f}x the fastest "
                     "training step's consumption")
    return "\n".join(lines)
