"""Where a run's time goes: PhaseTimer on a real fit with a clock the test moves."""
import keras
import numpy as np
import pytest

from dvrnn_tf.train import timing_line
from dvrnn_tf.training.phase_timer import PhaseTimer, Stopwatch, timing_report


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Tick(keras.callbacks.Callback):
    """Moves the clock as if each step call took `step` s, each validation `validation` s and
    the epoch-end work `epoch_end` s (it runs before the timer, as real callbacks do)."""

    def __init__(self, clock, step, validation, epoch_end):
        super().__init__()
        self.clock, self.step, self.validation, self.epoch_end = clock, step, validation, epoch_end

    def on_train_batch_end(self, batch, logs=None):
        self.clock.now += self.step

    def on_test_end(self, logs=None):
        self.clock.now += self.validation

    def on_epoch_end(self, epoch, logs=None):
        self.clock.now += self.epoch_end


@pytest.mark.parametrize("steps_per_execution", [1, 2])
def test_phase_timer_splits_fit_into_its_phases(steps_per_execution):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse", steps_per_execution=steps_per_execution)
    x, y = np.ones((24, 3), "float32"), np.zeros((24, 1), "float32")
    clock = FakeClock()
    timer = PhaseTimer(clock=clock)
    calls_per_epoch = 6 // steps_per_execution  # 24 examples, batch 4: 6 steps an epoch
    model.fit(x, y, batch_size=4, epochs=3, validation_data=(x, y), validation_freq=[2, 3],
              verbose=0, callbacks=[Tick(clock, step=1.0, validation=2.0, epoch_end=5.0), timer])
    seconds = timer.seconds()
    assert seconds["first_call"] == 1.0
    assert seconds["steps"] == 3 * calls_per_epoch - 1  # every call but the first
    assert seconds["validation"] == 2 * 2.0  # epochs 2 and 3 only
    assert seconds["epoch_end_callbacks"] == 3 * 5.0
    assert timer.steps == 3 * 6 - steps_per_execution

    # A validation outside fit (model.evaluate) is not counted.
    model.evaluate(x, y, verbose=0, callbacks=[timer])
    assert timer.seconds()["validation"] == 4.0


def test_timing_report_and_its_line():
    clock = FakeClock()
    watch = Stopwatch(clock=clock)
    with watch("setup"):
        clock.now += 3.0
    with watch("fit"):
        clock.now += 20.0
    with watch("setup"):  # phases of the same name add up
        clock.now += 1.0
    timer = PhaseTimer(clock=clock)
    timer._seconds.update(first_call=2.0, steps=15.0, validation=1.0, epoch_end_callbacks=2.0)
    timer.steps = 500
    report = timing_report(watch, timer)
    assert report["seconds"] == {"setup": 4.0, "fit": 20.0}
    assert report["total_seconds"] == 24.0
    assert report["ms_per_step"] == 30.0
    line = timing_line(report)
    assert line.startswith("Wall time 24.0 s: setup 4.0 s, fit 20.0 s (first call 2.0 s")
    assert "steps 15.0 s = 30.0 ms/step" in line and "epoch-end callbacks 2.0 s" in line
