"""Where a training run's wall time goes, measured while it runs.

`PhaseTimer` is a Keras callback that splits `fit` into the training steps (input-pipeline
waits included: a step that waits for its batch is slower), the validations, and the epoch-end
work of the other callbacks (backups, `.keras` checkpoints, figures, TensorBoard). `train`
adds the phases around `fit` (set-up, final evaluation, figures, export) and writes them all to
`metrics.json` under "timing", so a slow run says why.
"""
import time

import keras


class PhaseTimer(keras.callbacks.Callback):
    """Seconds of `fit` per phase, summed over epochs: `seconds()` -> {"first_call",
    "steps", "validation", "epoch_end_callbacks"}, and `steps` (the optimizer steps timed in
    "steps"). "first_call" is the run's first call of the training function: tracing (and, with
    XLA, compiling) plus its steps, kept apart so that "steps" is the steady state.

    Must be the *last* callback of the list: Keras runs callbacks in order, so its
    `on_epoch_end` sees the end of every other callback's epoch-end work. An epoch's steps run
    from its `on_epoch_begin` to its last `on_train_batch_end` (with `steps_per_execution` = k,
    Keras reports every k steps; the last report ends the epoch's steps either way).
    """

    def __init__(self, clock=time.perf_counter):
        super().__init__()
        self._clock = clock
        self._seconds = {"first_call": 0.0, "steps": 0.0, "validation": 0.0,
                         "epoch_end_callbacks": 0.0}
        self.steps = 0
        self._first_call_done = False
        self._steps_in_first_call = 0
        self._epoch_start = self._last_batch = self._test_start = None
        self._validation_this_epoch = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._last_batch = self._clock()
        self._validation_this_epoch = 0.0

    def on_train_batch_end(self, batch, logs=None):
        now = self._clock()
        if not self._first_call_done:
            self._first_call_done = True
            self._seconds["first_call"] = now - self._epoch_start
            self._steps_in_first_call = batch + 1  # Keras numbers the call by its last step
            self._epoch_start = now
        self._last_batch = now

    def on_test_begin(self, logs=None):
        self._test_start = self._clock()

    def on_test_end(self, logs=None):
        if self._epoch_start is None or self._test_start is None:
            return  # an evaluate() outside fit
        self._validation_this_epoch += self._clock() - self._test_start
        self._test_start = None

    def on_epoch_end(self, epoch, logs=None):
        if self._epoch_start is None:
            return
        now = self._clock()
        self._seconds["steps"] += self._last_batch - self._epoch_start
        self._seconds["validation"] += self._validation_this_epoch
        self._seconds["epoch_end_callbacks"] += max(
            0.0, now - self._last_batch - self._validation_this_epoch)
        self.steps += int((self.params or {}).get("steps") or 0) - self._steps_in_first_call
        self._steps_in_first_call = 0
        self._epoch_start = None

    def seconds(self) -> dict:
        return dict(self._seconds)


class Stopwatch:
    """Named wall-clock phases: `with watch("evaluation"): ...`; `watch.seconds` is a dict."""

    def __init__(self, clock=time.perf_counter):
        self._clock = clock
        self.seconds = {}

    def __call__(self, name):
        return _Phase(self, name)


class _Phase:
    def __init__(self, watch, name):
        self._watch, self._name = watch, name

    def __enter__(self):
        self._start = self._watch._clock()
        return self

    def __exit__(self, *exc):
        elapsed = self._watch._clock() - self._start
        self._watch.seconds[self._name] = self._watch.seconds.get(self._name, 0.0) + elapsed
        return False


def timing_report(stopwatch: Stopwatch, phase_timer: PhaseTimer) -> dict:
    """The run's "timing" entry: each phase in seconds, `fit` split by the PhaseTimer, and the
    mean milliseconds per optimizer step of the steps' phase."""
    fit = phase_timer.seconds()
    phases = dict(stopwatch.seconds)
    report = {"seconds": phases, "fit_phases_seconds": fit,
              "timed_steps": phase_timer.steps,
              "ms_per_step": (1000.0 * fit["steps"] / phase_timer.steps
                              if phase_timer.steps else None)}
    report["total_seconds"] = sum(phases.values())
    return report
