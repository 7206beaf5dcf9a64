"""What the programs print (dvrnn_tf.console): TensorFlow loads without a line that reads like
a failure, DVRNN_TF_LOGS=1 brings its messages back, real errors always show, tfds's progress
bars only on a terminal."""
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from dvrnn_tf import console

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lines TensorFlow 2.21 writes on this CPU-only machine (copied from a run), and others.
PRE_INIT = ("WARNING: All log messages before absl::InitializeLog() is called are written to "
            "STDERR\n")
INFO = ("I0000 00:00:1796158660.469414    4685 port.cc:153] oneDNN custom operations are on. "
        "You may see slightly different numerical results ...\n")
WARNING = "W1201 20:57:52.247697 140561602911104 file_utils.py:394] Variant folder ...\n"
ERROR = ("E0000 00:00:1796158671.376337    4685 cuda_platform.cc:52] failed call to cuInit: "
         "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n")
FATAL = "F0000 00:00:1796158671.376337    4685 cpu_feature_guard.cc:1] The TensorFlow ...\n"
OTHERS = ["Traceback (most recent call last):\n", "ValueError: I0000 is not a log line\n",
          "<string>:1: UserWarning: a Python warning\n", "error: --epochs must be >= 1\n",
          "I0000 a line that only starts like one\n", "partial line, no newline"]


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_hidden_by_level(level):
    # absl's notice goes with the INFO lines it announces.
    severities = {INFO: 0, WARNING: 1, ERROR: 2, FATAL: 3, PRE_INIT: 0}
    for line, severity in severities.items():
        assert console.is_hidden(line.encode(), level) == (severity < level), line
    for line in OTHERS:
        assert not console.is_hidden(line.encode(), level), line


def test_filtered_stderr_keeps_everything_else_in_order(capfd):
    lines = [PRE_INIT, OTHERS[0], INFO, ERROR, OTHERS[1], FATAL, OTHERS[2], WARNING, OTHERS[3]]
    with console.filtered_stderr(3):
        for line in lines:
            os.write(2, line.encode())  # as C++ writes: to the file descriptor
    os.write(2, b"after the block\n")
    err = capfd.readouterr().err
    assert err == "".join([OTHERS[0], OTHERS[1], FATAL, OTHERS[2], OTHERS[3]]) + \
        "after the block\n"


def _run(code, **env):
    environ = {k: v for k, v in os.environ.items()
               if k not in ("TF_CPP_MIN_LOG_LEVEL", console.ENV_VAR)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                            env={**environ, "PYTHONPATH": ROOT, **env}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_what_was_written_before_a_crash_gets_out():
    proc = _run(f"""
        import os
        from dvrnn_tf.console import filtered_stderr
        with filtered_stderr(3):
            os.write(2, {INFO.encode()!r})
            os.write(2, {FATAL.encode()!r})
            os.abort()
    """)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert err == FATAL


LOAD = """
    from dvrnn_tf.console import quiet_tensorflow
    quiet_tensorflow()
    import sys
    import tensorflow as tf
    print(int(tf.constant(1) + 1))  # devices initialised: no GPU driver here
    import warnings
    warnings.warn("a Python warning still shows")
    raise RuntimeError("a real error still shows")
"""


@pytest.mark.slow  # two fresh interpreters import TensorFlow (in parallel)
def test_tensorflow_loads_quietly_unless_asked():
    quiet, loud = _run(LOAD), _run(LOAD, DVRNN_TF_LOGS="1")
    (quiet_out, quiet_err), (loud_out, loud_err) = quiet.communicate(180), loud.communicate(180)
    assert quiet_out == loud_out == "2\n"
    for err in (quiet_err, loud_err):
        assert "UserWarning: a Python warning still shows" in err
        assert "RuntimeError: a real error still shows" in err.splitlines()[-1]
    log_lines = [ln for ln in loud_err.splitlines(keepends=True)
                 if console.is_hidden(ln.encode(), 3)]
    assert log_lines, "TensorFlow printed nothing of its own here: the quiet check proves nothing"
    assert [ln for ln in quiet_err.splitlines(keepends=True)
            if console.is_hidden(ln.encode(), 3)] == [], quiet_err  # no I, W or E line


@pytest.fixture
def restore_console_state(monkeypatch):
    """No trace of an earlier quiet_tensorflow() (importing dvrnn_tf.train calls it) during
    the test; the process as it was after it."""
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv(console.ENV_VAR, raising=False)
    absl = logging.getLogger("absl")
    filters, meta_path = list(absl.filters), list(sys.meta_path)
    absl.filters[:] = [f for f in filters if not isinstance(f, console._UnpreparedIsNoWarning)]
    sys.meta_path[:] = [f for f in meta_path if not isinstance(f, console._FilteredImport)]
    yield
    absl.filters[:], sys.meta_path[:] = filters, meta_path


def test_levels_set_kept_or_left_alone(restore_console_state, monkeypatch):
    assert console.quiet_tensorflow() and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")  # the user's own choice is kept
    assert console.quiet_tensorflow() and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    monkeypatch.setenv(console.ENV_VAR, "1")
    assert not console.quiet_tensorflow() and "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    for value, asked in [("0", False), ("", False), ("no", False), ("true", True)]:
        assert console.tf_logs_requested({console.ENV_VAR: value}) == asked
    for value, level in [("", 0), ("x", 0), ("2", 2), ("7", 3)]:  # 3 and above: F still shows
        assert console.min_log_level({"TF_CPP_MIN_LOG_LEVEL": value}) == level


def test_an_unprepared_set_is_no_warning(restore_console_state, tmp_path, caplog):
    import tensorflow_datasets as tfds

    builder = tfds.builder("mnist", data_dir=str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="absl"):
        assert not builder.is_prepared()
    assert "has no dataset_info.json" in caplog.text  # what tfds does by itself
    caplog.clear()
    console.quiet_tensorflow()
    with caplog.at_level(logging.WARNING, logger="absl"):
        assert not builder.is_prepared()
        builder.data_path.mkdir(parents=True)  # a folder there but no data set: still said
        assert not builder.is_prepared()
    assert caplog.text.count("has no dataset_info.json") == 1
    assert str(builder.data_path) in caplog.text


class _Stream:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty

    def write(self, text):
        return len(text)

    def flush(self):
        pass


@pytest.mark.parametrize("tty", [True, False])
def test_tfds_progress_bars_on_a_terminal_only(monkeypatch, tty):
    from tensorflow_datasets.core.utils import tqdm_utils

    monkeypatch.setattr(sys, "stderr", _Stream(tty))
    for enabled_before in (True, False):
        tqdm_utils.display_progress_bar(enabled_before)
        with console.tfds_progress_bars():
            bar = tqdm_utils.tqdm(range(3), disable=True)
            assert isinstance(bar, tqdm_utils.EmptyTqdm) == (not (tty and enabled_before))
        assert isinstance(tqdm_utils.tqdm(range(3), disable=True),
                          tqdm_utils.EmptyTqdm) == (not enabled_before)  # restored
    tqdm_utils.display_progress_bar(True)


@pytest.mark.parametrize("tty", [True, False])
def test_training_progress_is_a_bar_on_a_terminal_and_a_line_per_epoch_in_a_log(tty):
    assert console.progress_verbosity(_Stream(tty)) == (1 if tty else 2)
