"""The catalogue of bad inputs: each is refused with an error that names the problem, a non-zero
exit (or InvalidArgumentError / TypeError / ValueError from an endpoint), and nothing already
written is touched.

One table per family: flags, run directories, data, and tensors at every SavedModel endpoint
and at `model.predict` / `model(x)`. The command-line cases run `dvrnn_tf.train` in this
process (`cli_in_process`: absl's flag parsing, then `main`, whose return value is the exit
code) against the run directory of a finished run (`tiny_run`), whose files must keep their
bytes and mtimes; `test_the_binary_exits_non_zero` checks a few in real subprocesses.
Count: `pytest --collect-only -q tests/test_bad_inputs.py | tail -1`.
"""
import fcntl
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from reliability_helpers import ROOT, cli_env, cli_in_process, snapshot

from dvrnn_tf import checks
from dvrnn_tf.data import ImageSet, SequenceSampler, sources

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
T, H, W, C = 8, 8, 8, 1  # the tiny run's sequences: digits
MAX = checks.MAX_BATCH


def _refused(capsys, run_dir, args, words):
    """Run the CLI with args; it must exit non-zero naming `words`, leaving run_dir as it was
    (claiming a directory may add its empty `.lock` file, nothing else)."""
    before = snapshot(run_dir)
    lock = pathlib.Path(run_dir) / ".lock"
    if ".lock" not in before[0] and pathlib.Path(run_dir).exists():
        lock.touch()
        before = snapshot(run_dir)
    code, err = cli_in_process(args, capsys)
    assert code not in (0, None), err[-2000:]
    for word in words:
        assert word in err, f"{word!r} not in: {err[-2000:]}"
    after = snapshot(run_dir)
    assert after[1] == before[1], "folders of the previous run were added or removed"
    assert after[0].keys() == before[0].keys(), "files of the previous run were added/removed"
    for name, (size, mtime, data) in before[0].items():
        assert after[0][name] == (size, mtime, data), f"{name} of the previous run was touched"
    return err


# ---- flags ----------------------------------------------------------------------------------

def _flagfile(tmp_path, text):
    path = tmp_path / "bad.flags"
    path.write_text(text)
    return f"--flagfile={path}"


def _below(flag, kind):
    """A value under the flag's bound; absl names the flag, the value and the bound."""
    return [flag], [flag, f"not a {kind}"]


FLAG_CASES = {
    # unknown names
    "unknown-model": (["--model=no_such_model"], ["--model", "no_such_model", "factorized"]),
    "unknown-likelihood": (["--likelihood=poisson"], ["--likelihood", "bernoulli"]),
    "unknown-layout": (["--layout=columns"], ["--layout", "rows"]),
    "unknown-kl-schedule": (["--kl_z_schedule=cosine"], ["--kl_z_schedule", "constant"]),
    "unknown-jit-choice": (["--jit_compile=maybe"], ["--jit_compile", "auto"]),
    "unknown-flag": (["--no_such_flag=1"], ["no_such_flag"]),
    "stray-positional-argument": (["factorized"], ["Unexpected arguments: factorized"]),
    # sizes that must be positive
    "hidden_dim-zero": _below("--hidden_dim=0", "positive integer"),
    "hidden_dim-negative": _below("--hidden_dim=-16", "positive integer"),
    "rnn_dim-zero": _below("--rnn_dim=0", "positive integer"),
    "z_dim-zero": _below("--z_dim=0", "positive integer"),
    "f_dim-zero": _below("--f_dim=0", "positive integer"),
    "seq_len-zero": _below("--seq_len=0", "positive integer"),
    "batch_size-zero": _below("--batch_size=0", "positive integer"),
    "epochs-zero": _below("--epochs=0", "positive integer"),
    # counts that must not be negative
    "steps_per_epoch-negative": _below("--steps_per_epoch=-1", "non-negative"),
    "seed-negative": _below("--seed=-1", "non-negative"),
    "warmup_steps-negative": _below("--warmup_steps=-5", "non-negative"),
    # weights and rates
    "beta_z-negative": _below("--beta_z=-1", "non-negative"),
    "beta_f-negative": _below("--beta_f=-0.5", "non-negative"),
    "capacity_gamma-negative": _below("--capacity_gamma=-1", "non-negative"),
    "clip_norm-negative": _below("--clip_norm=-10", "non-negative"),
    "learning_rate-zero": (["--learning_rate=0"], ["--learning_rate", "> 0"]),
    "learning_rate-negative": _below("--learning_rate=-0.001", "non-negative"),
    "beta_z-nan": (["--beta_z=nan"], ["--beta_z=nan", "finite"]),
    "beta_f-inf": (["--beta_f=inf"], ["--beta_f=inf", "finite"]),
    "learning_rate-inf": (["--learning_rate=inf"], ["--learning_rate=inf", "finite"]),
    # not numbers at all
    "batch_size-not-an-integer": (["--batch_size=lots"], ["--batch_size", "lots"]),
    "beta_z-not-a-number": (["--beta_z=high"], ["--beta_z", "high"]),
    # contradictions
    "kl_f_schedule-for-vrnn": (["--model=vrnn", "--kl_f_schedule=warmup"],
                               ["--kl_f_schedule", "--model=vrnn"]),
    "kl_f_schedule-for-beta_vae": (["--model=beta_vae", "--kl_f_schedule=capacity"],
                                   ["--kl_f_schedule", "--model=beta_vae"]),
    "deterministic-with-xla": (["--deterministic", "--jit_compile=true"],
                               ["--deterministic", "--jit_compile=true"]),
    "rows-layout-with-seq_len": (["--layout=rows", "--seq_len=5"],
                                 ["--seq_len=5 contradicts --layout=rows", "8 rows"]),
    "seq_len-longer-than-the-data": (["--seq_len=5000"], ["seq_len=5000", "leaves no sequence"]),
    # flag files
    "flagfile-missing": (["--flagfile={tmp}/no_such.flags"], ["no_such.flags"]),
    "flagfile-with-unknown-flag": (["{flagfile:--model=vrnn\n--no_such_flag=3\n}"],
                                   ["no_such_flag"]),
    "flagfile-with-bad-value": (["{flagfile:--model=vrnn\n--seq_len=0\n}"],
                                ["--seq_len=0", "not a positive integer"]),
}


def _expand(args, tmp_path):
    out = []
    for a in args:
        if a.startswith("{flagfile:"):
            out.append(_flagfile(tmp_path, a[len("{flagfile:"):-1]))
        else:
            out.append(a.replace("{tmp}", str(tmp_path)))
    return out


@pytest.mark.parametrize("args, words", FLAG_CASES.values(), ids=FLAG_CASES.keys())
def test_bad_flags(tiny_run, tmp_path, capsys, args, words):
    run_dir, good = tiny_run
    _refused(capsys, run_dir, [*good, *_expand(args, tmp_path), f"--run_dir={run_dir}"], words)


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
    _refused(capsys, run_dir, [*good, *extra, f"--run_dir={target}"], words)
    assert snapshot(tmp_path) == before


def test_bad_run_dir_with_corrupt_config(tiny_run, tmp_path, capsys):
    """A config.json that is not JSON: a run of unknown flags, refused unless --overwrite."""
    _, good = tiny_run
    (tmp_path / "config.json").write_text("{half a file")
    (tmp_path / "metrics.json").write_text("{}\n")
    _refused(capsys, tmp_path, [*good, f"--run_dir={tmp_path}"],
             ["holds a run made with other flags", "--overwrite"])


def test_bad_run_dir_in_use(tiny_run, capsys):
    """Another process holds the directory's lock (here: another open file description)."""
    run_dir, good = tiny_run
    with open(run_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _refused(capsys, run_dir, [*good, f"--run_dir={run_dir}"],
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
    "empty-data-set-name": (["--dataset="], ["name must be"]),
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
    _refused(capsys, run_dir, [*good, *expanded, f"--data_dir={tmp_path / 'tfds'}",
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


# ---- tensors at the endpoints and at model.predict ------------------------------------------

@pytest.fixture(scope="module")
def served(tiny_run):
    """The tiny run's SavedModel and checkpoint, loaded once."""
    run_dir, _ = tiny_run
    return {"saved": tf.saved_model.load(str(run_dir / "saved_model")),
            "model": keras.models.load_model(run_dir / "checkpoints" / "last.keras")}


X = np.random.default_rng(0).uniform(size=(3, T, H, W, C)).astype("float32")
SIGNATURE = (TypeError, ValueError)  # the fixed signatures refuse a wrong rank, shape, dtype
GRAPH = tf.errors.InvalidArgumentError


def _with(x, index, value):
    x = x.copy()
    x[index] = value
    return x


# defect -> (images, errors raised at the endpoints, message); the message is the check's, or
# for a refused signature the expected spec.
IMAGE_DEFECTS = {
    "mnist-shaped": (np.zeros((2, T, 28, 28, 1), "float32"), SIGNATURE, "8, 8, 1"),
    "rank-4": (X[0], SIGNATURE, "8, 8, 1"),
    "wrong-T": (X[:, :5], SIGNATURE, "8, 8, 1"),
    "float64": (tf.constant(X, tf.float64), SIGNATURE, "float32"),
    "int32": (tf.constant(X > 0.5, tf.int32), SIGNATURE, "float32"),
    "uint8-0-to-255": ((X * 255).astype("uint8"), GRAPH, r"values must be in \[0, 1\]"),
    "nan": (_with(X, (0, 1, 2, 3, 0), np.nan), GRAPH, "must be finite"),
    "inf": (_with(X, (0, 0, 0, 0, 0), np.inf), GRAPH, "must be finite"),
    "minus-inf": (_with(X, (0, 7, 7, 7, 0), -np.inf), GRAPH, "must be finite"),
    "above-one": (_with(X, (0, 0, 0, 0, 0), 1.5), GRAPH, r"values must be in \[0, 1\]"),
    "below-zero": (_with(X, (0, 0, 0, 0, 0), -0.01), GRAPH, r"values must be in \[0, 1\]"),
    "empty-batch": (X[:0], GRAPH, "empty batch"),
    "batch-above-MAX_BATCH": (np.zeros((MAX + 1, T, H, W, C), "float32"), GRAPH,
                              f"larger than MAX_BATCH={MAX}"),
}
# Where a single sequence is expected ([1, T, H, W, C]) a batch defect is a signature error.
SINGLE = {"empty-batch": (SIGNATURE, "1, 8, 8, 8, 1"),
          "batch-above-MAX_BATCH": (SIGNATURE, "1, 8, 8, 8, 1")}
# How model.predict and model(x) (Keras: casts float64, checks shapes in `check_inputs`) differ.
KERAS = {"mnist-shaped": ((ValueError, GRAPH), r"must have shape \[batch, 8, 8, 8, 1\]"),
         "rank-4": ((ValueError, GRAPH), r"must have shape \[batch, 8, 8, 8, 1\]"),
         "wrong-T": ((ValueError, GRAPH), r"must have shape \[batch, 8, 8, 8, 1\]"),
         "int32": (TypeError, "must be float32 images"),
         "uint8-0-to-255": (TypeError, "must be float32 images")}


def _image_call(served, target, x):
    saved, model = served["saved"], served["model"]
    if target == "predict":
        return lambda: model.predict(x, verbose=0, batch_size=MAX + 1)
    if target == "call":
        return lambda: model(x)
    endpoint, arg = target.split(".")
    fn = getattr(saved, endpoint)
    ok = X[:1] if endpoint.startswith("interpolate") else X
    if endpoint == "swap":  # the other argument of the same batch size, good
        other = np.zeros(tuple(x.shape), "float32")
        return lambda: fn(x, other) if arg == "x_content" else fn(other, x)
    if arg == "x_b":
        return lambda: fn(ok, x)
    if arg == "x_a":
        return lambda: fn(x, ok)
    return lambda: fn(x)


IMAGE_TARGETS = ["reconstruct.x", "encode.x", "swap.x_content", "swap.x_style",
                 "interpolate_f.x_a", "interpolate_z.x_b", "predict", "call"]
IMAGE_CASES = [(t, d) for t in IMAGE_TARGETS for d in IMAGE_DEFECTS  # Keras casts float64
               if not (t in ("predict", "call") and d == "float64")]


@pytest.mark.parametrize("target, defect", IMAGE_CASES,
                         ids=[f"{t}-{d}" for t, d in IMAGE_CASES])
def test_bad_images(served, target, defect):
    x, errors, words = IMAGE_DEFECTS[defect]
    if target.startswith("interpolate"):
        x = x if defect in SINGLE else x[:1]
        errors, words = SINGLE.get(defect, (errors, words))
    if target in ("predict", "call"):
        errors, words = KERAS.get(defect, (errors, words))
        if target == "predict" and defect == "empty-batch":
            errors = ValueError
    with pytest.raises(errors) as e:
        _image_call(served, target, x)()
    text = str(e.value)
    assert re.search(words, text), text[:1500]
    if target.startswith("swap") and errors is GRAPH and "batch" not in defect:
        assert f"`{target.split('.')[1]}`" in text, "the message names the argument"


COUNT_DEFECTS = {
    "zero": (tf.constant(0), GRAPH, "must be >= 1"),
    "negative": (tf.constant(-3), GRAPH, "must be >= 1"),
    "above-MAX_BATCH": (tf.constant(MAX + 1), GRAPH, f"must be <= MAX_BATCH={MAX}"),
    "int32-max": (tf.constant(2 ** 31 - 1), GRAPH, f"must be <= MAX_BATCH={MAX}"),
    "int64": (tf.constant(2, tf.int64), SIGNATURE, "int32"),
    "float": (2.5, SIGNATURE, "int32"),
    "vector": (tf.constant([2, 3]), SIGNATURE, "shape=()"),
}
COUNT_CASES = [(e, d) for e in ("generate", "generate_fixed_content", "generate_fixed_style")
               for d in COUNT_DEFECTS]


@pytest.mark.parametrize("endpoint, defect", COUNT_CASES,
                         ids=[f"{e}.n-{d}" for e, d in COUNT_CASES])
def test_bad_counts(served, endpoint, defect):
    n, errors, words = COUNT_DEFECTS[defect]
    with pytest.raises(errors, match=words):
        getattr(served["saved"], endpoint)(n)


CODE_DEFECTS = {
    "f-nan": (lambda f, z: (f * np.nan, z), GRAPH, "`f` must be finite"),
    "z-inf": (lambda f, z: (f, _with(z, (0, 0, 0), np.inf)), GRAPH, "`z` must be finite"),
    "f-beyond-MAX_ABS_CODE": (lambda f, z: (f + 1e7, z), GRAPH, "`f`: codes must lie within"),
    "z-beyond-MAX_ABS_CODE": (lambda f, z: (f, z - 1e7), GRAPH, "`z`: codes must lie within"),
    "f-wrong-width": (lambda f, z: (np.zeros((3, 5), "float32"), z), SIGNATURE,
                      re.escape("shape=(None, 4)")),
    "z-wrong-T": (lambda f, z: (f, z[:, :3]), SIGNATURE, re.escape("shape=(None, 8, 2)")),
    "batch-mismatch": (lambda f, z: (f[:2], z), GRAPH, "need the same batch size"),
    "empty-batch": (lambda f, z: (f[:0], z[:0]), GRAPH, "empty batch"),
    "batch-above-MAX_BATCH": (lambda f, z: (np.zeros((MAX + 1, 4), "float32"),
                                            np.zeros((MAX + 1, T, 2), "float32")),
                              GRAPH, f"larger than MAX_BATCH={MAX}"),
}


@pytest.mark.parametrize("defect", CODE_DEFECTS, ids=[f"decode-{d}" for d in CODE_DEFECTS])
def test_bad_codes(served, defect):
    codes = served["saved"].encode(X)
    f, z = codes["f_loc"].numpy(), codes["z_loc"].numpy()
    bad, errors, words = CODE_DEFECTS[defect]
    with pytest.raises(errors, match=words):
        served["saved"].decode(*bad(f, z))


def test_good_inputs_are_served(served):
    """The control of the tables above: the same calls with good inputs work."""
    saved = served["saved"]
    for out in (saved.reconstruct(X), saved.swap(X, X[::-1]), saved.generate(tf.constant(2)),
                saved.interpolate_f(X[:1], X[1:2]), served["model"].predict(X, verbose=0)):
        out = np.asarray(out)
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    codes = saved.encode(X)
    assert saved.decode(codes["f_loc"], codes["z_loc"]).shape == (3, T, H, W, C)


# ---- the real binary ------------------------------------------------------------------------

@pytest.mark.slow  # subprocesses
def test_the_binary_exits_non_zero(tiny_run, tmp_path):
    """Cases of three families through `python -m dvrnn_tf.train` itself, all at once: exit 1,
    the problem named, no traceback; the previous run untouched, a new --run_dir not made."""
    run_dir, good = tiny_run
    before = snapshot(run_dir)
    cases = {  # name: (flags, words, run directory)
        "flag": ([_flagfile(tmp_path, "--seq_len=0\n")], "--seq_len=0", tmp_path / "new"),
        "run-dir": (["--z_dim=3"], "other flags (z_dim)", run_dir),
        "data": (["--dataset=binarized_mnist"], "no 'image' and class 'label'", tmp_path / "new"),
    }
    procs = {k: subprocess.Popen([sys.executable, "-m", "dvrnn_tf.train", *good, *args,
                                  f"--run_dir={where}"], cwd=ROOT, env=cli_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, (args, _, where) in cases.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, (name, err[-2000:])
        assert cases[name][1] in err, (name, err[-2000:])
        assert "Traceback" not in err, (name, err[-2000:])
    assert snapshot(run_dir) == before
    assert not (tmp_path / "new").exists(), "a rejected command made its run directory"
