"""Train a model: `python -m dvrnn_tf.train --model=factorized --flagfile=flags/factorized.flags`.

One flag per setting of the model families, the sequence sources and the training loop
(`dvrnn_tf.training.config.all_settings`; see `--helpfull`). Only the flags a run gives are
passed on: one that the chosen model or data set does not take is an error, and bounds and
allowed values are checked before any work is done.
"""
import sys
import time

# Start-up (importing TensorFlow, ...) counts in the run's timing (metrics.json "timing").
_STARTED = time.perf_counter()

from dvrnn_tf.console import quiet_tensorflow  # noqa: E402

quiet_tensorflow()  # before TensorFlow loads; DVRNN_TF_LOGS=1 shows its own log

from absl import app, flags, logging  # noqa: E402

from dvrnn_tf.training.config import TrainConfig, all_settings  # noqa: E402

FLAGS = flags.FLAGS


def _define_flags():
    for s in all_settings():
        if s.choices:
            flags.DEFINE_enum(s.name, s.default, list(s.choices), s.help)
        elif s.type is bool:
            flags.DEFINE_bool(s.name, s.default, s.help)
        elif s.type is int:
            flags.DEFINE_integer(s.name, s.default, s.help, lower_bound=s.lower,
                                 upper_bound=s.upper)
        elif s.type is float:
            flags.DEFINE_float(s.name, s.default, s.help, lower_bound=s.lower,
                               upper_bound=s.upper)
        else:
            flags.DEFINE_string(s.name, s.default, s.help)


_define_flags()


def config_from_flags() -> TrainConfig:
    """The config of the flags given (on the command line or in a --flagfile); the others
    take their defaults."""
    given = {s.name: FLAGS[s.name].value for s in all_settings() if FLAGS[s.name].present}
    return TrainConfig(**given)


def main(argv):
    if not FLAGS["verbosity"].present:  # absl logs INFO to stderr by default
        logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        config = config_from_flags()
    except ValueError as e:  # before any work: nothing has been read or written
        print(f"error: {e}", file=sys.stderr)
        return 1
    from dvrnn_tf.console import progress_verbosity
    from dvrnn_tf.data import DataUnavailableError
    from dvrnn_tf.training import RunDirError, train
    from dvrnn_tf.training.callbacks import NonFiniteLossError
    try:
        payload = train(config, verbose=progress_verbosity(), started=_STARTED)
    except (ValueError, DataUnavailableError, RunDirError, NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    _print_outputs(config, payload)
    return 0


def _print_outputs(config, payload):
    from dvrnn_tf.training import RunDir
    from dvrnn_tf.training.loop import _abspath

    run = RunDir(_abspath(config.run_dir))
    terms = ", ".join(f"{k}={v:.3f}" for k, v in payload["per_image_nats"].items())
    print(f"\nHeld-out ({payload['split']}, {payload['num_sequences']} sequences), nats per frame: "
          f"{terms}; -ELBO {payload['neg_elbo_per_image']:.3f} "
          f"({payload['bits_per_dim']:.4f} bits/dim)")
    print(f"Run directory: {run.root}")
    for label, path in [("resolved flags", run.flags), ("metrics", run.metrics),
                        ("checkpoints", run.checkpoints), ("resume state", run.backup),
                        ("TensorBoard logs", run.logs), ("SavedModel", run.saved_model)]:
        print(f"  {label:17s} {path}")
    for name, path in payload.get("figures", {}).items():
        print(f"  {'figure ' + name:17s} {path}")
    print(f"  (tensorboard --logdir {run.logs})")
    print(timing_line(payload.get("timing")))


def timing_line(timing) -> str:
    """One line: where the run's wall time went (metrics.json "timing")."""
    if not timing:
        return ""
    seconds, fit = timing["seconds"], timing["fit_phases_seconds"]
    per_step = timing.get("ms_per_step")
    steps = f"{fit['steps']:.1f} s" + (f" = {per_step:.1f} ms/step" if per_step else "")
    fit_detail = (f" (first call {fit['first_call']:.1f} s, steps {steps}, validation "
                  f"{fit['validation']:.1f} s, epoch-end callbacks "
                  f"{fit['epoch_end_callbacks']:.1f} s)")
    parts = [f"{name} {value:.1f} s" + (fit_detail if name == "fit" else "")
             for name, value in seconds.items()]
    return f"Wall time {timing['total_seconds']:.1f} s: " + ", ".join(parts)


if __name__ == "__main__":
    app.run(main)
