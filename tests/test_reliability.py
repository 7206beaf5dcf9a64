"""Interrupted, NaN-struck and crashed runs recover; writes are atomic; one trainer per directory.

Real processes (`python -m dvrnn_tf.train`) killed with SIGKILL, at seeded random times and at
chosen instants inside a write (`dvrnn_tf.faults`, driven by $DVRNN_TF_FAULTS, makes the
process wait there). The configuration is the beta-VAE, the quickest to start.
"""
import json
import random
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from reliability_helpers import (ROOT, cli_env, flag_args, run_cli, snapshot, start_cli,
                                 wait_for)

import dvrnn_tf.models  # noqa: F401  (registers the classes `load_model` needs)
from dvrnn_tf import export
from dvrnn_tf.training import TrainConfig, train
from dvrnn_tf.training.callbacks import NonFiniteLossError

BASE = dict(model="beta_vae", dataset="digits", hidden_dim=16, z_dim=2, batch_size=16,
            epochs=14, steps_per_epoch=3, seed=5, deterministic=True, figures=False,
            export=False)


def _epoch(run_dir):
    """The epoch the resume state holds (0: none yet)."""
    state = run_dir / "backup" / "state.json"
    return json.loads(state.read_text())["epoch"] if state.exists() else 0


def _weights(run_dir):
    return keras.models.load_model(run_dir / "checkpoints" / "last.keras").get_weights()


def _assert_same_run(a, b):
    wa, wb = _weights(a), _weights(b)
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ma["per_image_nats"] == mb["per_image_nats"]
    assert ma["optimizer_steps"] == mb["optimizer_steps"] == BASE["epochs"] * 3


def _kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of BASE, started at once in the background (it runs while the
    tests that compare with it kill theirs); the fixture's value waits for it."""
    root = tmp_path_factory.mktemp("reference")
    proc = start_cli([*flag_args(BASE), f"--run_dir={root / 'run'}"], root / "log.txt")

    def finished():
        proc.wait(timeout=600)
        assert proc.returncode == 0, (root / "log.txt").read_text()[-3000:]
        return root / "run"

    yield finished
    if proc.poll() is None:
        _kill(proc)


# ---- interruption ---------------------------------------------------------------------------

@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_weights(reference, tmp_path):
    """Three SIGKILLs: one at a seeded random time after a checkpoint, two inside the writing of
    the resume state (weights written but not renamed; renamed but state.json not updated).
    Each rerun of the same command resumes; the end equals the uninterrupted run bit for bit."""
    run_dir = tmp_path / "run"
    args = [*flag_args(BASE), f"--run_dir={run_dir}"]
    rng = random.Random(6)
    kills = ["random", "backup_weights_written", "backup_state_pending"]
    reached = []
    for i, how in enumerate(kills):
        start = _epoch(run_dir)
        marker = tmp_path / f"paused-{i}"
        faults = {} if how == "random" else dict(pause_at=how, marker=str(marker),
                                                 pause_skip=rng.randint(0, 1))
        proc = start_cli(args, tmp_path / f"log-{i}.txt", **faults)
        if how == "random":
            wait_for(lambda: _epoch(run_dir) > start, proc, what="a new checkpoint")
            time.sleep(rng.uniform(0.0, 1.5))  # anywhere: mid-step, -evaluation, -write
        else:
            wait_for(marker.exists, proc, what=f"the pause at {how}")
        assert proc.poll() is None, "the run finished before it could be killed"
        _kill(proc)
        reached.append(_epoch(run_dir))
    assert reached[-1] < BASE["epochs"], reached
    assert sorted(reached) == reached and reached[0] >= 1, reached
    code, out = run_cli(args)
    assert code == 0, out[-3000:]
    assert sorted(p.name for p in (run_dir / "backup").iterdir()) == [
        f"epoch-{BASE['epochs']:06d}.weights.h5", "state.json"], "debris of the kills is gone"
    _assert_same_run(reference(), run_dir)


# ---- NaN and Inf ----------------------------------------------------------------------------

@pytest.mark.slow
def test_nan_stops_the_run_naming_step_and_term_and_resume_works(reference, tmp_path):
    """A NaN put into the decoder's bias before step 8 (epoch 3, batch 2) makes nll NaN: the
    run stops there, exit 1, the last good state (epoch 2) intact; rerunning completes it."""
    run_dir = tmp_path / "run"
    args = [*flag_args(BASE), f"--run_dir={run_dir}"]
    code, out = run_cli(args, poison_step=8, poison_variable="decoder_out/bias",
                        poison_value="nan")
    assert code == 1, out[-3000:]
    assert "error: training diverged: nll=nan, loss=nan at step 8 (epoch 3, batch 2)" in out
    assert "kl_z" not in out.split("error:")[1].split(" at step")[0], "kl_z stayed finite"
    assert "Traceback" not in out
    assert _epoch(run_dir) == 2
    assert all(np.isfinite(w).all() for w in _weights(run_dir)), "the checkpoint is not poisoned"
    assert not (run_dir / "metrics.json").exists()
    code, out = run_cli(args)
    assert code == 0, out[-3000:]
    _assert_same_run(reference(), run_dir)


def test_inf_in_the_encoder_names_kl_z(tmp_path, monkeypatch):
    """The library raises NonFiniteLossError; an Inf in the posterior's scale makes kl_z Inf."""
    monkeypatch.setenv("DVRNN_TF_FAULTS", json.dumps(dict(
        poison_step=2, poison_variable="posterior/scale/bias", poison_value="inf")))
    config = TrainConfig(run_dir=str(tmp_path), **{**BASE, "epochs": 2, "deterministic": False})
    with pytest.raises(NonFiniteLossError,
                       match=r"diverged: kl_z=(inf|nan).* at step 2 \(epoch 1, batch 2\)"):
        train(config, verbose=0)
    assert _epoch(tmp_path) == 0 and not (tmp_path / "checkpoints" / "last.keras").exists()


# ---- atomic writes --------------------------------------------------------------------------

EXPORTER = textwrap.dedent("""
    import sys
    from dvrnn_tf import export
    from dvrnn_tf.models import BetaVAE
    if sys.argv[2] == "fallback":  # a system without an atomic exchange of two paths
        export._exchange = lambda a, b: False
    export.export_saved_model(BetaVAE((8, 8, 1), seq_len=8, hidden_dim=16, z_dim=2, seed=2),
                              sys.argv[1])
""")


def _beta_vae(seed):
    from dvrnn_tf.models import BetaVAE
    return BetaVAE((8, 8, 1), seq_len=8, hidden_dim=16, z_dim=2, seed=seed)


@pytest.mark.slow
def test_kill_mid_export_leaves_the_previous_saved_model(tmp_path):
    """Exports killed after writing the new archive and before it replaces the old one (and,
    where the system cannot swap two paths atomically, between the two renames)."""
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 8, 1)).astype("float32")
    previous = _beta_vae(seed=1)
    expected = previous.reconstruct(x).numpy()
    points = {"export_before_rename": "exchange", "export_between_renames": "fallback"}
    procs = {}
    for point, mode in points.items():
        path = tmp_path / point / "saved_model"
        export.export_saved_model(previous, path)
        marker = tmp_path / f"{point}.paused"
        env = cli_env(pause_at=point, marker=str(marker))
        procs[point] = (subprocess.Popen([sys.executable, "-c", EXPORTER, str(path), mode],
                                         cwd=ROOT, env=env, stderr=subprocess.PIPE), marker)
    for point, (proc, marker) in procs.items():
        wait_for(marker.exists, proc, what=f"the pause at {point}")
        _kill(proc)
    for point in points:
        path = tmp_path / point / "saved_model"
        if point == "export_between_renames":
            # The old export is whole, moved aside; the next export (or any) puts it back.
            assert not path.exists()
            export._restore_interrupted_replace(str(path))
        loaded = tf.saved_model.load(str(path))
        np.testing.assert_allclose(loaded.reconstruct(x), expected, atol=1e-5)
        # And exporting again works over the debris.
        export.export_saved_model(_beta_vae(seed=3), path)
        assert tf.saved_model.load(str(path)).reconstruct(x).shape == x.shape


def test_checkpoint_and_metrics_are_replaced_by_rename(tmp_path, monkeypatch):
    """A crash while the checkpoint or metrics.json is written leaves the previous file whole:
    the writer fails part-way here (as a kill would) and the previous bytes are still there."""
    from dvrnn_tf.training import callbacks, run_dir

    model = _beta_vae(seed=1)
    model.compile("adam")
    target = tmp_path / "checkpoints" / "last.keras"
    checkpoint = callbacks.AtomicModelCheckpoint(target)
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    checkpoint.on_epoch_end(0)
    good = target.read_bytes()

    def dies_part_way(self, filepath, **kwargs):
        open(filepath, "wb").write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "save", dies_part_way)
        with pytest.raises(KeyboardInterrupt):
            checkpoint.on_epoch_end(1)
    assert target.read_bytes() == good
    keras.models.load_model(target)
    checkpoint.on_train_begin()  # the next run clears the half-written temporary file
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.keras"]

    metrics = tmp_path / "metrics.json"
    run_dir.write_json_atomic(metrics, {"nll": 1.0})
    with monkeypatch.context() as patch:
        patch.setattr(run_dir.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk")))
        with pytest.raises(OSError):
            run_dir.write_json_atomic(metrics, {"nll": 2.0})
    assert json.loads(metrics.read_text()) == {"nll": 1.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "metrics.json"]


# ---- run-directory safety -------------------------------------------------------------------

@pytest.mark.slow
def test_second_process_into_the_same_run_dir_fails_at_once(tmp_path):
    """Two real processes: while the first trains (held at its first backup), the second is
    refused with a clear message and touches nothing; the first then completes."""
    run_dir = tmp_path / "run"
    args = [*flag_args({**BASE, "epochs": 2}), f"--run_dir={run_dir}"]
    marker, release = tmp_path / "paused", tmp_path / "go on"
    first = start_cli(args, tmp_path / "first.txt", pause_at="backup_state_pending",
                      marker=str(marker), release=str(release))
    try:
        wait_for(marker.exists, first, what="the first process to train")
        # (logs/ left out: the first process's TensorBoard writer may flush while it waits)
        before = snapshot(run_dir, exclude=("logs",))
        code, out = run_cli(args)
        assert code == 1, out[-3000:]
        assert f"--run_dir={run_dir} is in use by another training process" in out
        assert "Traceback" not in out
        assert snapshot(run_dir, exclude=("logs",)) == before
        release.touch()
        assert first.wait(timeout=300) == 0, (tmp_path / "first.txt").read_text()[-3000:]
    finally:
        if first.poll() is None:
            _kill(first)
    assert json.loads((run_dir / "metrics.json").read_text())["optimizer_steps"] == 6
