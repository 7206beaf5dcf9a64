"""tf.distribute, mixed precision and the strategy flags (issue 7; docs/performance.md).

Strategies that need logical devices or TF_CONFIG run in fresh processes
(tests/distribute_worker.py): both must be set before TensorFlow initializes.
"""
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from dvrnn_tf.training import TrainConfig, train
from dvrnn_tf.training.distribute import StrategyError, configure_cpu_devices

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = str(ROOT / "tests" / "distribute_worker.py")
TINY = dict(model="factorized", dataset="digits", hidden_dim=16, rnn_dim=16, f_dim=4, z_dim=2,
            batch_size=16, figures=False, export=False)


def run_worker(args, env=None, timeout=600):
    return subprocess.Popen([sys.executable, WORKER, json.dumps(args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})


def results_of(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-4000:]
    line = [ln for ln in out.splitlines() if ln.startswith("RESULTS ")][-1]
    return json.loads(line[len("RESULTS "):])


def load_weights(path):
    with np.load(path) as f:
        return [f[k] for k in f.files]


class History(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.losses = []

    def on_epoch_end(self, epoch, logs=None):
        self.losses.append(float(logs["loss"]))


# ---- flags ---------------------------------------------------------------------------------


def test_strategy_flags_are_validated():
    for field, bad in (("strategy", "horovod"), ("mixed_precision", "float8")):
        with pytest.raises(ValueError, match=f"--{field}='{bad}' is not allowed"):
            TrainConfig(**{field: bad})
    with pytest.raises(ValueError, match="--num_cpu_devices"):
        TrainConfig(num_cpu_devices=-1)
    # Where and how fast a run trains may change when it resumes; its numerics may not.
    base = TrainConfig().identity()
    assert TrainConfig(strategy="mirrored", num_cpu_devices=2,
                       steps_per_execution=4).identity() == base
    assert TrainConfig(mixed_precision="mixed_bfloat16").identity() != base


def test_logical_devices_after_tensorflow_started_are_refused():
    import tensorflow as tf

    tf.constant(0)  # TensorFlow has initialized its devices
    have = len(tf.config.list_logical_devices("CPU"))
    configure_cpu_devices(have)  # what there already is: fine
    with pytest.raises(StrategyError, match="fresh process"):
        configure_cpu_devices(have + 2)


def test_tpu_strategy_fails_with_a_clear_error(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "dvrnn_tf.train", "--strategy=tpu", "--dataset=digits",
         f"--run_dir={run_dir}"], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "error: --strategy=tpu: no TPU could be reached" in proc.stderr, proc.stderr[-3000:]
    assert "--tpu=" in proc.stderr and "Traceback" not in proc.stderr
    assert not run_dir.exists(), "nothing is written before the strategy exists"


# ---- mixed precision -------------------------------------------------------------------------


def test_mixed_float16_trains_on_cpu(tmp_path):
    """The GPU path (float16 compute, float32 weights, loss scaling), run on the CPU."""
    history = History()
    payload = train(TrainConfig(**TINY, epochs=2, steps_per_epoch=3,
                                mixed_precision="mixed_float16", run_dir=str(tmp_path)),
                    callbacks=[history], verbose=0)
    losses = history.losses
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert all(np.isfinite(v) for v in payload["per_image_nats"].values())
    # The policy held inside the run only: the library leaves the process as it found it.
    assert keras.mixed_precision.global_policy().name == "float32"
    model = keras.models.load_model(tmp_path / "checkpoints" / "last.keras")
    assert model.dtype_policy.name == "mixed_float16"
    assert all(w.dtype == "float32" for w in model.trainable_weights)
    # Keras wrapped the optimizer; the clip still applies (to the unscaled gradient).
    assert type(model.optimizer).__name__ == "LossScaleOptimizer"
    assert model.optimizer.inner_optimizer.global_clipnorm == 10.0


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_low_and_keeps_losses_float32(policy):
    from dvrnn_tf.models import DisentangledVRNN

    with _policy(policy):
        model = DisentangledVRNN((8, 8, 1), hidden_dim=8, rnn_dim=8, z_dim=2, f_dim=3, seed=0)
        model.compile(keras.optimizers.Adam(3e-3), run_eagerly=True)
    x = np.random.default_rng(0).uniform(size=(4, 8, 8, 8, 1)).astype("float32")
    low = policy.removeprefix("mixed_")
    assert model.compute_dtype == low and model.reconstruct(x).dtype.name == low
    terms = model.compute_terms(x, training=True)
    assert {k: v.dtype.name for k, v in terms.items()} == {
        "nll": "float32", "kl_z": "float32", "kl_f": "float32"}
    losses = [float(model.train_step(tf.constant(x))["loss"]) for _ in range(4)]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses


class _policy:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(self.name)

    def __exit__(self, *exc):
        keras.mixed_precision.set_global_policy(self.previous)


# ---- strategies ------------------------------------------------------------------------------


def test_mirrored_on_two_cpu_devices_equals_one_device(tmp_path):
    """--batch_size is global: two replicas of 8 take the steps one device takes on 16."""
    config = dict(TINY, epochs=1, steps_per_epoch=3, num_cpu_devices=2)
    results = results_of(run_worker({
        "config": config, "out": str(tmp_path),
        "runs": {"default": {"run_dir": str(tmp_path / "default")},
                 "mirrored": {"run_dir": str(tmp_path / "mirrored"), "strategy": "mirrored"}}}))
    one, two = results["default"], results["mirrored"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    assert one["steps"] == two["steps"] == 3
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    for a, b in zip(load_weights(one["weights"]), load_weights(two["weights"]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert (tmp_path / "mirrored" / "checkpoints" / "last.keras").exists()


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.mark.slow
def test_multi_worker_two_processes_keep_identical_weights(tmp_path):
    run_dir = tmp_path / "run"
    temp_before = set(pathlib.Path(tempfile.gettempdir()).glob("dvrnn_worker-1_*"))
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    args = {"config": dict(TINY, epochs=3, steps_per_epoch=3, strategy="multi_worker",
                           run_dir=str(run_dir)),
            "out": str(tmp_path), "runs": {"mw": {}}}
    procs = [run_worker(args, env={"TF_CONFIG": json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": i}})}) for i in range(2)]
    try:
        chief, worker = (results_of(p, timeout=900)["mw"] for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert chief["replicas"] == worker["replicas"] == 2
    assert chief["steps"] == worker["steps"] == 9
    assert chief["losses"] == worker["losses"]  # metrics are aggregated across workers
    assert chief["losses"][-1] < chief["losses"][0], chief["losses"]
    for a, b in zip(load_weights(chief["weights"]), load_weights(worker["weights"]),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    # Only the chief (worker 0) wrote the run directory; the other worker's went away.
    for name in ("config.json", "metrics.json", "checkpoints/last.keras", "backup/state.json"):
        assert (run_dir / name).exists(), name
    assert set(pathlib.Path(tempfile.gettempdir()).glob("dvrnn_worker-1_*")) == temp_before
