"""The training library behind `python -m dvrnn_tf.train` (which only parses flags)."""
from dvrnn_tf.training.config import TrainConfig, settings_for, validate
from dvrnn_tf.training.run_dir import RunDir, RunDirError, write_json_atomic

__all__ = ["RunDir", "RunDirError", "TrainConfig", "settings_for", "train", "validate",
           "write_json_atomic"]


def train(config, callbacks=(), verbose="auto", started=None):
    """Run `config` end to end (see `dvrnn_tf.training.loop.train`)."""
    from dvrnn_tf.training.loop import train as _train
    return _train(config, callbacks=callbacks, verbose=verbose, started=started)
