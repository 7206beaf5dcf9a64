"""A progress bar that ends where the epoch ends.

Keras 3.15's `fit` runs `steps_per_execution` steps per call of the train function and tells
the callbacks `on_train_batch_end(end_step)` with `end_step = begin_step +
steps_per_execution - 1` (`trainers/epoch_iterator.py`), whether or not the epoch had that many
steps left: with 59 steps and 8 per call, the last call starts at step 56, runs 3 steps and
reports step 63, so `ProgbarLogger` shows `64/59` (and a negative ETA) before `on_epoch_end`
settles it on `59/59`. The step counts themselves are right: the train function stops when
the epoch's data runs out.
"""
import keras


class EpochProgbarLogger(keras.callbacks.ProgbarLogger):
    """`keras.callbacks.ProgbarLogger` whose count never passes the epoch's steps.

    Handed to `fit` in `callbacks`, it replaces the default one (Keras adds its own only when
    the list holds no `ProgbarLogger`); the final line with the epoch's logs is Keras's.
    """

    def _clamp(self, batch):
        # self.target: the epoch's steps (None when unknown, e.g. an unsized dataset).
        return batch if self.target is None else min(batch, self.target - 1)

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(self._clamp(batch), logs)

    def on_test_batch_end(self, batch, logs=None):
        super().on_test_batch_end(self._clamp(batch), logs)

    def on_predict_batch_end(self, batch, logs=None):
        super().on_predict_batch_end(self._clamp(batch), logs)


def progress_callbacks(verbose, others=()):
    """[EpochProgbarLogger()] for `fit(verbose=verbose, callbacks=others + ...)`, or [] when
    `fit` shows no progress or `others` already hold a progress bar."""
    if verbose == 0 or any(isinstance(c, keras.callbacks.ProgbarLogger) for c in others):
        return []
    return [EpochProgbarLogger()]
