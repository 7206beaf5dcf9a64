"""Shared fixtures: where MNIST's original files are, and where tfds may prepare it.

MNIST is never downloaded by the tests: they read the four original files from
``../shared/data/mnist`` (or ``$DVRNN_MNIST_DIR``) and let tfds prepare them offline
into a cache outside the tracked tree.
"""
import fcntl
import os
import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _mnist_manual_dir() -> pathlib.Path:
    return pathlib.Path(
        os.environ.get("DVRNN_MNIST_DIR", ROOT.parent / "shared" / "data" / "mnist")
    ).resolve()


@pytest.fixture(scope="session")
def mnist_dirs():
    """(data_dir, manual_dir) for an offline ``load_split("mnist", ...)``.

    Fails, never skips, when the shared files are missing: CI must not pass
    without having trained on real MNIST.
    """
    manual_dir = _mnist_manual_dir()
    if not (manual_dir / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"MNIST's original files are not in {manual_dir}; set DVRNN_MNIST_DIR")
    data_dir = pathlib.Path(
        os.environ.get("DVRNN_DATA_DIR", ROOT / ".cache" / "tensorflow_datasets")
    ).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return str(data_dir), str(manual_dir)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """(run_dir, flags) of a finished tiny training run (digits, the factorized Disentangled
    VRNN, exported), read by the bad-input catalogue and the endpoint fuzzing; trained once
    per pytest run, each worker's a copy (a test holds its lock). `flags` replay it on the
    command line."""
    from reliability_helpers import TINY_RUN, flag_args

    from dvrnn_tf.training import TrainConfig, train

    def build(run_dir):
        train(TrainConfig(run_dir=str(run_dir), **TINY_RUN), verbose=0)

    run_dir = tmp_path_factory.mktemp("tiny_run") / "run"
    shutil.copytree(built_once(tmp_path_factory, "tiny_run", build), run_dir, symlinks=True)
    return run_dir, flag_args(TINY_RUN)


def built_once(tmp_path_factory, name, build) -> pathlib.Path:
    """The folder `build(folder)` fills, built once for the whole pytest run: under xdist the
    first worker to take the lock builds it in the run's shared temporary root and the others
    wait for it. A worker that changes it copies it first (the folder is shared)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # basetemp is <root>/popen-gwN under xdist
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder)
            done.touch()
    return folder
