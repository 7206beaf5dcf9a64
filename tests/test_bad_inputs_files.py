"""Bad run directories and bad data: data sets, MNIST's files, image sets given to the library.

Part of the catalogue of bad inputs (what every case must show: reliability_helpers.py).

The command-line cases run the binary in this process against a finished run
(`cli_in_process`, `refused`).
"""
import fcntl
import pathlib

import numpy as np
import pytest
from reliability_helpers import refused, snapshot

from dvrnn_tf.data import ImageSet, SequenceSampler
from dvrnn_tf.data import image_sets as sources

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


# ---- run directories -------------------------------------------------------------------------

def _regular_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a folder\n")
    return path


RUN_DIR_CASES = {
    "under-a-regular-file": (lambda tmp, run: _regular_file(tmp) / "run",
                             ["cannot be created or written", "Not a directory"]),
    "is-a-regular-file": (lambda tmp, run: _regular_file(tmp),
                          ["cannot be created or written", "File exists"]),
    "inside-proc": (lambda tmp, run: pathlib.Path("/proc/dvrnn_run"),
                    ["--run_dir=/proc/dvrnn_run", "cannot be created or written"]),
    "made-with-other-flags": (lambda tmp, run: run,
                              ["holds a run made with other flags (z_dim)", "--overwrite"]),
}


@pytest.mark.parametrize("where, words", RUN_DIR_CASES.values(), ids=RUN_DIR_CASES.keys())
def test_bad_run_dir(tiny_run, tmp_path, capsys, where, words):
    run_dir, good = tiny_run
    target = where(tmp_path, run_dir)
    before = snapshot(tmp_path)
    extra = ["--z_dim=3"] if target == run_dir else []
    refused(capsys, run_dir, [*good, *extra, f"--run_dir={target}"], words)
    assert snapshot(tmp_path) == before


def test_bad_run_dir_with_corrupt_config(tiny_run, tmp_path, capsys):
    """A config.json that is not JSON: a run of unknown flags, refused unless --overwrite."""
    _, good = tiny_run
    (tmp_path / "config.json").write_text("{half a file")
    (tmp_path / "metrics.json").write_text("{}\n")
    refused(capsys, tmp_path, [*good, f"--run_dir={tmp_path}"],
            ["holds a run made with other flags", "--overwrite"])


def test_bad_run_dir_in_use(tiny_run, capsys):
    """Another process holds the directory's lock (here: another open file description)."""
    run_dir, good = tiny_run
    with open(run_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused(capsys, run_dir, [*good, f"--run_dir={run_dir}"],
                ["is in use by another training process"])


# ---- data ---------------------------------------------------------------------------------------

def _mnist_copy(tmp_path, good, damage):
    """A manual_dir with three of MNIST's files linked and the fourth damaged (or missing)."""
    manual = tmp_path / "manual"
    manual.mkdir()
    for name in MNIST_FILES[:3]:
        (manual / name).symlink_to(pathlib.Path(good) / name)
    data = (pathlib.Path(good) / MNIST_FILES[3]).read_bytes()
    if damage == "truncate":
        (manual / MNIST_FILES[3]).write_bytes(data[:1000])
    elif damage == "flip":  # the same size: only tfds's sha256 catches it
        (manual / MNIST_FILES[3]).write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    return manual


DATA_CASES = {
    "unknown-data-set": (["--dataset=no_such_set"], ["unknown data set 'no_such_set'"]),
    "unknown-data-set-config": (["--dataset=emnist/nope"], ["unknown data set 'emnist/nope'"]),
    "empty-data-set-name": (["--dataset="], ["--dataset=''", "allowed: ", "mnist"]),
    "data-set-without-labels": (["--dataset=binarized_mnist"],
                                ["'binarized_mnist' has no 'image' and class 'label'"]),
    "data-set-of-varying-image-sizes": (["--dataset=cats_vs_dogs"],
                                        ["(None, None, 3)", "one fixed size"]),
    "manual_dir-not-a-folder": (["--dataset=mnist", "--manual_dir={tmp}/nowhere"],
                                ["--manual_dir", "nowhere", "is not a folder"]),
    "mnist-file-truncated": (["--dataset=mnist", "--manual_dir={manual:truncate}"],
                             [MNIST_FILES[3], "truncated or corrupt", "--manual_dir"]),
    "mnist-file-corrupt": (["--dataset=mnist", "--manual_dir={manual:flip}"],
                           [MNIST_FILES[3], "checksum", "--manual_dir"]),
    "mnist-file-missing-offline": (["--dataset=mnist", "--manual_dir={manual:missing}"],
                                   [MNIST_FILES[3], "unreachable", "--manual_dir"]),
}


@pytest.mark.parametrize("args, words", DATA_CASES.values(), ids=DATA_CASES.keys())
def test_bad_data(tiny_run, tmp_path, capsys, monkeypatch, request, args, words):
    run_dir, good = tiny_run
    expanded = []
    for a in args:
        if "{manual:" in a:
            damage = a.split("{manual:")[1].rstrip("}")
            _, mnist_manual = request.getfixturevalue("mnist_dirs")
            a = f"--manual_dir={_mnist_copy(tmp_path, mnist_manual, damage)}"
            # The missing file would be downloaded if this machine had a network: pretend not.
            monkeypatch.setattr(sources, "network_reachable", lambda *a, **k: False)
        expanded.append(a.replace("{tmp}", str(tmp_path)))
    # A data dir of its own: tfds must prepare (and so check) the files here.
    refused(capsys, run_dir, [*good, *expanded, f"--data_dir={tmp_path / 'tfds'}",
                              f"--run_dir={run_dir}"], words)


LIBRARY_DATA_CASES = {
    "image-set-with-no-labels": (
        lambda: SequenceSampler(ImageSet("x", "train", np.zeros((5, 2, 2, 1), np.uint8),
                                         np.zeros((0,), np.int64), 10)),
        ValueError, "labels"),
    "image-set-with-out-of-range-labels": (
        lambda: SequenceSampler(ImageSet("x", "train", np.zeros((5, 2, 2, 1), np.uint8),
                                         np.full((5,), 12, np.int64), 10)),
        ValueError, "labels must lie in 0..9"),
    "image-set-of-single-images-not-a-stack": (
        lambda: SequenceSampler(ImageSet("x", "train", np.zeros((5, 2, 2), np.uint8),
                                         np.zeros((5,), np.int64), 10)),
        ValueError, r"images \[N, H, W, C\]"),
}


@pytest.mark.parametrize("make, error, words", LIBRARY_DATA_CASES.values(),
                         ids=LIBRARY_DATA_CASES.keys())
def test_bad_data_in_the_library(make, error, words):
    with pytest.raises(error, match=words):
        make()
