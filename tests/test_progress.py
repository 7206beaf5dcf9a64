"""The progress bar `fit` shows never counts past the epoch's steps (dvrnn_tf.training.progress).

A tiny real Keras model is fitted with each steps_per_execution on step counts it divides and
does not divide; what the bar is told (every `Progbar.update`) and what it prints are checked.
"""
import math
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.utils import progbar

from dvrnn_tf.training.progress import EpochProgbarLogger, progress_callbacks

EPOCHS = 2
BAR = re.compile(r"\x1b\[1m *(\d+)/(\d+)\x1b\[0m")  # the count as Progbar prints it, bold


@pytest.fixture
def updates(monkeypatch):
    """Every Progbar.update as (epoch's bar, current, target, finalize), in order."""
    seen = []
    update = progbar.Progbar.update

    def record(self, current, values=None, finalize=None):
        seen.append((self, current, self.target, finalize))  # the bar itself: ids get reused
        return update(self, current, values, finalize)

    monkeypatch.setattr(progbar.Progbar, "update", record)
    return seen


def _fit(steps, steps_per_execution, callbacks):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(steps, 3)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=steps_per_execution)
    model.fit(ds, epochs=EPOCHS, verbose=1, callbacks=callbacks, shuffle=False)
    return model


def _per_bar(updates):
    bars = []  # [(bar, [(current, target, finalize), ...])] in order
    for bar, current, target, finalize in updates:
        if not bars or bars[-1][0] is not bar:
            bars.append((bar, []))
        bars[-1][1].append((current, target, finalize))
    return [calls for _, calls in bars]


# Each steps_per_execution on one step count it divides and one it does not (1 divides all).
CASES = [(1, 5), (7, 14), (7, 59), (8, 16), (8, 59), (16, 32), (16, 59)]


@pytest.mark.parametrize("spe, steps", CASES, ids=[f"spe{s}-steps{n}" for s, n in CASES])
def test_bar_ends_where_the_epoch_ends(updates, capsys, spe, steps):
    model = _fit(steps, spe, progress_callbacks(verbose=1))
    assert int(model.optimizer.iterations.numpy()) == EPOCHS * steps  # every step ran
    bars = _per_bar(updates)
    assert len(bars) == EPOCHS
    calls = math.ceil(steps / spe)
    expected = [min((i + 1) * spe, steps) for i in range(calls)]
    for bar in bars:
        assert all(target == steps for _, target, _ in bar)
        assert [c for c, _, final in bar if not final] == expected
        assert bar[-1] == (steps, steps, True)  # Keras's final line, with the epoch's logs
    out = capsys.readouterr().out
    printed = BAR.findall(out)
    assert printed and all(int(a) <= int(b) == steps for a, b in printed)
    assert printed[-1] == (str(steps), str(steps))
    last = re.split(r"[\r\n]", out.rstrip())[-1]
    assert "loss:" in last.rsplit(f"{steps}/{steps}", 1)[-1]  # the final line has the logs


def test_keras_default_bar_counts_past_the_epoch(updates):
    """The cause, seen with Keras's own ProgbarLogger: 59 steps, 8 per call -> 64/59. Should
    this fail, Keras has fixed it and EpochProgbarLogger is no longer needed."""
    _fit(59, 8, [])
    shown = [c for bar in _per_bar(updates) for c, _, final in bar if not final]
    assert max(shown) == 64


def test_callbacks_to_add():
    assert progress_callbacks(verbose=0) == []
    assert [type(c) for c in progress_callbacks("auto")] == [EpochProgbarLogger]
    assert progress_callbacks(1, others=[keras.callbacks.ProgbarLogger()]) == []
