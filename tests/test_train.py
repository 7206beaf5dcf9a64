"""The training binary and library: flags, run directory, resume, outputs, real MNIST."""
import json
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from config_helpers import applicable
from shared_data import ROOT, SPRITES_DIR
from dvrnn_tf.training import RunDirError, TrainConfig, train

TINY = dict(hidden_dim=16, rnn_dim=16, f_dim=4, z_dim=2, batch_size=16, figures=False,
            export=False)


def run_cli(*args, timeout=120):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "dvrnn_tf.train", *args], capture_output=True,
                          text=True, timeout=timeout)
    return proc, time.monotonic() - start


class History(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.logs = []

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))


# ---- flags --------------------------------------------------------------------------------

# The command line's bad flags: tests/test_bad_inputs_flags.py (the catalogue of bad inputs).


def test_config_rejects_what_the_flags_reject():
    with pytest.raises(ValueError, match="--seq_len=-1"):
        TrainConfig(seq_len=-1)
    with pytest.raises(ValueError, match="--likelihood='poisson'.*bernoulli"):
        TrainConfig(likelihood="poisson")


def test_rows_layout_contradicting_seq_len_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--seq_len=5 contradicts --layout=rows"):
        train(TrainConfig(dataset="digits", layout="rows", seq_len=5, epochs=1,
                          run_dir=str(tmp_path), **TINY), verbose=0)


def test_learning_rate_decays_over_its_epochs_and_is_kept_by_the_checkpoint(tmp_path):
    """Cosine from --learning_rate to --lr_final_fraction of it over --lr_decay_epochs, then
    held; the schedule is saved with the model."""
    from dvrnn_tf.training.loop import learning_rate

    config = TrainConfig(learning_rate=1e-3, lr_decay_epochs=2, lr_final_fraction=0.1)
    schedule = learning_rate(config, steps_per_epoch=5)
    lr = [float(schedule(step)) for step in (0, 5, 10, 30)]
    np.testing.assert_allclose(lr, [1e-3, 1e-3 * (0.1 + 0.9 * 0.5), 1e-4, 1e-4], rtol=1e-5)
    assert learning_rate(TrainConfig(learning_rate=2e-3), steps_per_epoch=5) == 2e-3
    assert TrainConfig(lr_decay_epochs=2).identity() != TrainConfig().identity()

    train(TrainConfig(dataset="digits", epochs=3, steps_per_epoch=2, learning_rate=1e-3,
                      lr_decay_epochs=2, lr_final_fraction=0.1, run_dir=str(tmp_path), **TINY),
          verbose=0)
    model = keras.models.load_model(tmp_path / "checkpoints" / "last.keras")
    assert int(model.optimizer.iterations.numpy()) == 6
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-4, rel=1e-5)


# ---- run directory --------------------------------------------------------------------------

def test_run_dir_with_other_flags_is_refused_unless_overwrite(tmp_path):
    base = dict(model="vrnn", dataset="digits", epochs=1, steps_per_epoch=2,
                run_dir=str(tmp_path), **applicable("vrnn", **TINY))
    train(TrainConfig(**base), verbose=0)
    metrics_before = (tmp_path / "metrics.json").read_text()
    with pytest.raises(RunDirError, match="other flags.*z_dim.*--overwrite"):
        train(TrainConfig(**{**base, "z_dim": 3}), verbose=0)
    assert (tmp_path / "metrics.json").read_text() == metrics_before, "nothing was touched"
    train(TrainConfig(**{**base, "z_dim": 3, "overwrite": True}), verbose=0)
    assert json.loads((tmp_path / "config.json").read_text())["z_dim"] == 3


# ---- resume ---------------------------------------------------------------------------------

class Interrupt(keras.callbacks.Callback):
    """Stops training after `epoch` epochs, as a killed process would (after the backup)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def _weights(run_dir):
    return keras.models.load_model(run_dir / "checkpoints" / "last.keras").get_weights()


# ---- end to end ---------------------------------------------------------------------------

@pytest.mark.slow
def test_training_on_real_mnist_lowers_the_held_out_loss(tmp_path, mnist_dirs):
    data_dir, manual_dir = mnist_dirs
    history = History()
    payload = train(TrainConfig(model="vrnn", dataset="mnist", data_dir=data_dir,
                                manual_dir=manual_dir, hidden_dim=64, rnn_dim=64, epochs=3,
                                steps_per_epoch=25, batch_size=32, figures=False, export=False,
                                run_dir=str(tmp_path)), verbose=0, callbacks=[history])
    val = [e["val_loss"] for e in history.logs]
    assert val[-1] < val[0] - 10, val
    assert payload["num_sequences"] == 750 and payload["split"] == "validation"
    nats = payload["per_image_nats"]
    assert payload["neg_elbo_per_image"] == pytest.approx(nats["nll"] + nats["kl_z"])
    assert 60 < nats["nll"] < 300  # binarized MNIST after a few steps: far from 0 and from 543
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["per_image_nats"] == nats


@pytest.mark.slow
def test_cli_writes_every_output_and_prints_where(tmp_path):
    run_dir = tmp_path / "demo"
    proc, elapsed = run_cli("--flagfile=flags/demo.flags", "--epochs=1", "--steps_per_epoch=2",
                      f"--run_dir={run_dir}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ["config.json", "flags.txt", "metrics.json", "samples.png",
                 "checkpoints/last.keras", "saved_model/saved_model.pb",
                 "figures/swap.png", "figures/fixed_style.png", "figures/fixed_content.png"]:
        assert (run_dir / name).stat().st_size > 0, name
    for printed in ["flags.txt", "metrics.json", "checkpoints", "logs", "saved_model",
                    "samples.png", "figures/swap.png"]:
        assert str(run_dir / printed) in proc.stdout, printed
    assert list((run_dir / "logs").rglob("events.out.tfevents.*"))
    # Where the time went, start-up (TensorFlow's import) included, in the JSON and printed.
    timing = json.loads((run_dir / "metrics.json").read_text())["timing"]
    assert set(timing["seconds"]) == {"startup", "setup", "fit", "evaluation", "figures",
                                      "export"}
    assert 0 < sum(timing["seconds"].values()) <= elapsed
    assert f"Wall time {timing['total_seconds']:.1f} s: startup" in proc.stdout
    # Written to a log, not a terminal: one line per epoch, no bar redrawn in place.
    epoch_line = next(line for line in proc.stdout.splitlines() if line.startswith("2/2 - "))
    assert "val_loss" in epoch_line and "\x1b[" not in proc.stdout and "\r" not in proc.stdout
    # The resolved flags replay the run.
    flags = (run_dir / "flags.txt").read_text()
    assert "--model=content_style" in flags and "--dataset=digits" in flags


def test_checkpoint_every_and_validation_freq(tmp_path):
    """Backups every 2 epochs (and after the last), validation every 2: an interrupted run
    resumes from the last backup and still equals the uninterrupted one. (Backups every
    epoch, resumed after real kills: test_reliability's killed-run test.)"""
    config = dict(model="factorized", dataset="digits", epochs=5, steps_per_epoch=2,
                  deterministic=True, seed=1, checkpoint_every=2, validation_freq=2, **TINY)
    history = History()
    payload = train(TrainConfig(run_dir=str(tmp_path / "straight"), **config), verbose=0,
                    callbacks=[history])
    timing = payload["timing"]
    assert set(timing["seconds"]) == {"setup", "fit", "evaluation"}  # no figures, no export
    assert timing["timed_steps"] == 5 * 2 - 1, "all steps but the first call's"
    fit_phases = timing["fit_phases_seconds"]
    assert all(v >= 0 for v in fit_phases.values())
    assert sum(fit_phases.values()) <= timing["seconds"]["fit"]
    assert timing["ms_per_step"] == pytest.approx(1000 * fit_phases["steps"] / 9)
    assert ["val_loss" in logs for logs in history.logs] == [False, True, False, True, False]
    state = json.loads((tmp_path / "straight" / "backup" / "state.json").read_text())
    assert state["epoch"] == 5, "the last epoch is always backed up"
    with pytest.raises(KeyboardInterrupt):  # stops at the end of epoch 3: backup of epoch 2
        train(TrainConfig(run_dir=str(tmp_path / "resumed"), **config), verbose=0,
              callbacks=[Interrupt(3)])
    state = json.loads((tmp_path / "resumed" / "backup" / "state.json").read_text())
    assert state["epoch"] == 2
    history = History()
    train(TrainConfig(run_dir=str(tmp_path / "resumed"), **config), verbose=0,
          callbacks=[history])
    assert len(history.logs) == 3, "epochs 3, 4 and 5 are run again"
    for a, b in zip(_weights(tmp_path / "straight"), _weights(tmp_path / "resumed"),
                    strict=True):
        np.testing.assert_array_equal(a, b)



def _flag_file_values(path):
    """{flag: text} of a flag file and the files it includes, as absl expands them."""
    from absl import flags

    args = flags.FLAGS.read_flags_from_files([f"--flagfile={path}"], force_gnu=False)
    return dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "flags").glob("*.flags")))
def test_every_shipped_flag_file_makes_a_config_its_model_takes(name, monkeypatch):
    """Each flags/*.flags parses with the binary's flags and builds a `TrainConfig` (every
    setting applies to its model and data set), with the values the file says."""
    from absl import flags

    from dvrnn_tf.models.registry import canonical_name
    from dvrnn_tf.train import config_from_flags

    monkeypatch.chdir(ROOT)  # a flag file names the files it includes from the checkout's root
    path = f"flags/{name}.flags"
    given = _flag_file_values(path)
    assert given, f"{path} sets no flag"
    extra = [f"--manual_dir={SPRITES_DIR}"] if given.get("dataset") == "sprites" else []
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(["dvrnn_tf.train", f"--flagfile={path}", *extra])
        values = config_from_flags().to_dict()
    finally:
        flags.FLAGS.unparse_flags()
    given["model"] = canonical_name(given["model"])  # --model=disentangled is content_style
    for flag, text in given.items():
        assert str(values[flag]) == str(flags.FLAGS[flag].parser.parse(text)), (flag, text)
