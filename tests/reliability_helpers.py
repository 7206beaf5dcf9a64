"""Helpers of the reliability tests: test_bad_inputs_*.py, test_reliability.py and
test_fuzz_endpoints.py.

The catalogue of bad inputs: each is refused with an error that names the problem, a non-zero
exit (or InvalidArgumentError / TypeError / ValueError from an endpoint), and nothing already
written is touched. One table per family, in three modules: flags (test_bad_inputs_flags.py),
run directories and data (test_bad_inputs_files.py), and tensors at every SavedModel endpoint
and at `model.predict` / `model(x)` (test_bad_inputs_tensors.py).
Count: `pytest --collect-only -q tests/test_bad_inputs_*.py | tail -1`.

The command-line cases run `dvrnn_tf.train` in this process (`cli_in_process`: absl's flag
parsing, then `main`, whose return value is the exit code) against the run directory of a
finished run (`tiny_run`), whose files must keep their bytes and mtimes (`refused`).
"""
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The run of the `tiny_run` fixture (conftest.py).
TINY_RUN = dict(model="factorized", dataset="digits", hidden_dim=16, rnn_dim=16, f_dim=4,
                z_dim=2, seq_len=8, batch_size=16, epochs=1, steps_per_epoch=2, seed=0,
                figures=False, export=True)


def flag_args(config):
    """Command-line flags for a dict of TrainConfig fields."""
    return [(f"--{k}" if v else f"--no{k}") if isinstance(v, bool) else f"--{k}={v}"
            for k, v in config.items()]


def snapshot(root, exclude=()):
    """({relative path: (size, mtime_ns, bytes)} of every file under `root`, [its folders]),
    leaving out the top-level entries named in `exclude`."""
    root = pathlib.Path(root)
    paths = [p for p in sorted(root.rglob("*")) if p.relative_to(root).parts[0] not in exclude]
    files = {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
             for p in paths if p.is_file()}
    return files, [str(p.relative_to(root)) for p in paths if p.is_dir()]


def cli_in_process(args, capsys):
    """(exit code, stderr) of `python -m dvrnn_tf.train *args`, run in this process.

    The same steps as absl's `app.run`: `parse_flags_with_usage` (which prints the flag error
    and exits 1), then `main`, whose return value is the exit code.
    """
    from absl import app, flags

    import dvrnn_tf.train as cli

    capsys.readouterr()
    flags.FLAGS.unparse_flags()
    try:
        argv = app.parse_flags_with_usage(["dvrnn_tf.train", *args])
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    except app.UsageError as e:  # what app.run does with it
        print(f"FATAL Flags parsing error: {e}", file=sys.stderr)
        code = e.exitcode
    finally:
        flags.FLAGS.unparse_flags()
    return code, capsys.readouterr().err


def refused(capsys, run_dir, args, words):
    """Run the CLI with args (in this process, `cli_in_process`); it must exit non-zero naming
    `words`, leaving run_dir as it was (claiming a directory may add its empty `.lock` file,
    nothing else). The catalogue of bad inputs (test_bad_inputs_*.py) asserts through this."""
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


def cli_env(**faults):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("DVRNN_TF_FAULTS", None)
    if faults:
        env["DVRNN_TF_FAULTS"] = json.dumps(faults)
    return env


def start_cli(args, log_path, **faults):
    """`python -m dvrnn_tf.train *args` started in the background, output into log_path."""
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", "dvrnn_tf.train", *args], cwd=ROOT,
                                env=cli_env(**faults), stdout=log, stderr=subprocess.STDOUT)


def run_cli(args, timeout=300, **faults):
    """(exit code, stdout + stderr) of `python -m dvrnn_tf.train *args` in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "dvrnn_tf.train", *args], cwd=ROOT,
                          env=cli_env(**faults), capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def wait_for(condition, proc=None, timeout=240, what="condition"):
    """Poll until condition() is true; fail if `proc` ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
