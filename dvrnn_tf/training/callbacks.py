"""The training run's safety callbacks: nothing half-written, nothing non-finite, is kept.

* `NonFiniteGuard` checks every loss term after every batch (keras's TerminateOnNaN looks at
  `loss` only) and the weights at each epoch's end, and stops the run with
  `NonFiniteLossError` naming the step and the terms, before anything saves the poisoned
  state (it runs ahead of the two callbacks below).
* `AtomicBackupAndRestore` is keras's BackupAndRestore made safe against a kill at any
  instant: keras writes `latest.weights.h5` in place and `training_metadata.json` after it,
  so a kill inside the first leaves a corrupt file that stops every resume, and a kill
  between the two resumes epoch e's weights as if they were epoch e-1's. Here the weights of
  epoch e go to a temporary file renamed to `epoch-<e>.weights.h5`, then `state.json`
  (itself written to a temporary file and renamed) names it; the previous weights file is
  removed only after that. At every instant `state.json` names a complete weights file.
* `AtomicModelCheckpoint` saves the `.keras` file to a temporary sibling and renames it.
"""
import json
import math
import os
import pathlib

import keras
import numpy as np

from dvrnn_tf import faults
from dvrnn_tf.training.run_dir import write_json_atomic


class NonFiniteLossError(RuntimeError):
    """Training produced NaN or Inf; the message names the step and the terms."""


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _non_finite(logs):
    bad = {k: v for k, v in (logs or {}).items()
           if isinstance(v, (int, float, np.number)) and not math.isfinite(float(v))}
    # The terms first (nll, kl_z, kl_f, ...), then the loss they add up to.
    return sorted(bad.items(), key=lambda kv: (kv[0].removeprefix("val_") == "loss", kv[0]))


def _due(callback, epoch):
    """Whether a callback saving every `callback.every` epochs saves at the end of `epoch`
    (0-based): every N-th epoch, and always the last one of the run."""
    last = (callback.params or {}).get("epochs")
    return (epoch + 1) % callback.every == 0 or (last is not None and epoch + 1 >= last)


class NonFiniteGuard(keras.callbacks.Callback):
    """Raise `NonFiniteLossError` at the first non-finite loss term or weight.

    Batch logs are the epoch's running means, so the batch whose term went non-finite is the
    one reported. Place it before any callback that saves state: an exception stops the
    callbacks after it from seeing the epoch's end.
    """

    def __init__(self, resume_hint=""):
        super().__init__()
        self._epoch = 0
        self._hint = resume_hint

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        bad = _non_finite(logs)
        if bad:
            self._stop(", ".join(f"{k}={v}" for k, v in bad),
                       f"step {self._step()} (epoch {self._epoch + 1}, batch {batch + 1})")

    def on_epoch_end(self, epoch, logs=None):
        bad = _non_finite(logs)
        if not bad:
            variables = list(self.model.weights)
            if getattr(self.model, "optimizer", None) is not None:
                variables += list(self.model.optimizer.variables)
            bad = [(v.path, "non-finite values") for v in variables
                   if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v.numpy()).all()]
        if bad:
            self._stop(", ".join(f"{k}={v}" for k, v in bad),
                       f"the end of epoch {epoch + 1} (step {self._step()})")

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def _stop(self, what, where):
        raise NonFiniteLossError(
            f"training diverged: {what} at {where}. Training stopped before saving anything "
            f"of this epoch, so the checkpoints hold the last good epoch. {self._hint}".strip())


class AtomicBackupAndRestore(keras.callbacks.Callback):
    """Back up the training state at each epoch's end; restore it when training starts.

    Like `keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False)` (the
    weights, optimizer state and the epoch reached), but a kill at any instant leaves the
    last complete backup usable (see the module docstring).
    """

    STATE = "state.json"

    def __init__(self, backup_dir, every=1):
        super().__init__()
        self.backup_dir = pathlib.Path(backup_dir)
        self.every = every

    def on_train_begin(self, logs=None):
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        state = self._read_state()
        if state is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(str(self.backup_dir / state["weights"]))
        self.model._initial_epoch = int(state["epoch"])  # what keras's BackupAndRestore sets

    def _read_state(self):
        path = self.backup_dir / self.STATE
        if path.exists():
            return json.loads(path.read_text())
        # A backup written by keras.callbacks.BackupAndRestore (run directories made before).
        legacy = self.backup_dir / "training_metadata.json"
        if legacy.exists() and (self.backup_dir / "latest.weights.h5").exists():
            return {"epoch": json.loads(legacy.read_text())["epoch"],
                    "weights": "latest.weights.h5"}
        return None

    def on_epoch_end(self, epoch, logs=None):
        if not _due(self, epoch):
            return
        name = f"epoch-{epoch + 1:06d}.weights.h5"
        tmp = self.backup_dir / f".tmp-{name}"
        self.model.save_weights(str(tmp), overwrite=True)
        _fsync(tmp)
        faults.pause("backup_weights_written")
        os.replace(tmp, self.backup_dir / name)
        faults.pause("backup_state_pending")
        write_json_atomic(self.backup_dir / self.STATE, {"epoch": epoch + 1, "weights": name})
        # Only now is the previous backup unneeded (also: debris of a killed write).
        for child in self.backup_dir.iterdir():
            if child.name not in (name, self.STATE):
                child.unlink()


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """`model.save(filepath)` at each epoch's end, through a temporary file and a rename."""

    def __init__(self, filepath, every=1):
        super().__init__()
        self.filepath = pathlib.Path(filepath)
        self.every = every

    def _temporary(self):
        return self.filepath.with_name(f".{self.filepath.stem}.tmp-{os.getpid()}.keras")

    def on_train_begin(self, logs=None):
        self.filepath.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.filepath.parent.glob(f".{self.filepath.stem}.tmp-*.keras"):
            stale.unlink()  # left by a killed process (the run directory is locked: not ours)

    def on_epoch_end(self, epoch, logs=None):
        if not _due(self, epoch):
            return
        tmp = self._temporary()
        self.model.save(str(tmp))
        _fsync(tmp)
        os.replace(tmp, self.filepath)
