"""Fault injection for the reliability tests; inert unless $DVRNN_TF_FAULTS is set.

The tests kill processes at chosen instants and poison training, through the real code paths:
`DVRNN_TF_FAULTS` holds a JSON object with any of

  pause_at, pause_seconds, pause_skip, marker, release:
      at the point `pause_at` of a `pause(point)` call (after `pause_skip` earlier passes),
      create the file `marker` and wait `pause_seconds` (default 600) or until the file
      `release` exists, so that the test can SIGKILL the process exactly there. Points:
      "backup_weights_written" and "backup_state_pending" (dvrnn_tf.training.callbacks),
      "export_before_rename" and "export_between_renames" (dvrnn_tf.export).
  poison_step, poison_value, poison_variable:
      before optimizer step `poison_step` (1-based), fill the first model weight whose path
      contains `poison_variable` with `poison_value` ("nan" or "inf").

Nothing here runs in a normal process: `pause` returns at once and `callbacks()` is empty.
"""
import json
import os
import pathlib
import time

ENV = "DVRNN_TF_FAULTS"
_passes = {}


def _spec():
    raw = os.environ.get(ENV)
    return json.loads(raw) if raw else {}


def pause(point):
    spec = _spec()
    if spec.get("pause_at") != point:
        return
    _passes[point] = _passes.get(point, 0) + 1
    if _passes[point] <= int(spec.get("pause_skip", 0)):
        return
    if spec.get("marker"):
        pathlib.Path(spec["marker"]).write_text(f"{point} {os.getpid()}\n")
    deadline = time.monotonic() + float(spec.get("pause_seconds", 600))
    release = pathlib.Path(spec["release"]) if spec.get("release") else None
    while time.monotonic() < deadline and not (release and release.exists()):
        time.sleep(0.05)


def callbacks():
    """Keras callbacks that inject the faults $DVRNN_TF_FAULTS asks for (usually none)."""
    spec = _spec()
    if "poison_step" not in spec:
        return []
    import keras

    class Poison(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) + 1 != int(spec["poison_step"]):
                return
            wanted = spec.get("poison_variable", "")
            var = next(v for v in self.model.trainable_weights if wanted in v.path)
            value = float(spec.get("poison_value", "nan"))
            var.assign(keras.ops.full(var.shape, value, var.dtype))

    return [Poison()]
