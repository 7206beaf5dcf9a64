"""What the programs print: TensorFlow's own log kept off the console, tfds's progress bars
only on a terminal.

Every entry point (`python -m dvrnn_tf.train`, `.evaluate`, `.bench`, the experiments) calls
`quiet_tensorflow()` before anything imports TensorFlow. TensorFlow 2.21 logs from C++ in two
ways, and on a CPU-only machine neither says anything is wrong:

* after start-up, through its own logging, which honours `TF_CPP_MIN_LOG_LEVEL` (0 all, 1 no
  INFO, 2 no WARNING, 3 no ERROR): e.g. `E0000 ... failed call to cuInit: ... UNKNOWN ERROR
  (303)` (no GPU driver), `E0000 ... oneDNN supports DT_INT32 only on platforms with AVX-512`
  (an int32 op is left to Eigen). Level 3 by default, so these are not printed; TensorFlow's
  failures still reach the program as Python exceptions.
* while its shared libraries load (inside `import tensorflow`), through absl logging that
  nobody has initialised yet, which ignores the variable: `WARNING: All log messages before
  absl::InitializeLog() is called are written to STDERR`, `I0000 ... port.cc] oneDNN custom
  operations are on ...`, `I0000 ... cudart_stub.cc] Could not find cuda drivers ...`, once
  per library. These are filtered out of file descriptor 2 while the import runs, by the same
  level: every other line (a Python warning or traceback, a fatal error's message) passes. The
  filter is a child process, so a line written just before a crash still gets out.

It also drops tfds's WARNING "Variant folder <dir> has no dataset_info.json" when <dir> does
not exist (tfds logs it for every set it has not prepared yet). `DVRNN_TF_LOGS=1` leaves all
of these messages as TensorFlow and tfds print them; a `TF_CPP_MIN_LOG_LEVEL` set by the user is
kept (and applied to the import's lines too).
"""
import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import subprocess
import sys

ENV_VAR = "DVRNN_TF_LOGS"
DEFAULT_LEVEL = "3"

# An absl / TensorFlow C++ log line: severity, MMDD, time (before absl is initialised, the
# seconds since 1970), thread, file:line] message.
_HEADER = re.compile(rb"([IWEF])\d{4} [\d:.]+ +\d+ [^ \]]+:\d+\] ")
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}  # levels go up to 3: F is never hidden
_PRE_INIT = (b"WARNING: All log messages before absl::InitializeLog() is called are written to "
             b"STDERR")


def tf_logs_requested(environ=None) -> bool:
    """True when the user asked for TensorFlow's own messages (DVRNN_TF_LOGS=1)."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def min_log_level(environ=None) -> int:
    """TF_CPP_MIN_LOG_LEVEL as TensorFlow reads it: 0..3 (0 when unset or not a number)."""
    value = (os.environ if environ is None else environ).get("TF_CPP_MIN_LOG_LEVEL", "0")
    return min(int(value), 3) if value.strip().isdigit() else 0


def is_hidden(line: bytes, level: int) -> bool:
    """Whether a line TensorFlow writes while loading falls below log level `level`."""
    header = _HEADER.match(line)
    if header:
        return _SEVERITY[header.group(1)] < level
    # absl's notice goes with the INFO lines it announces: hidden with them.
    return level >= 1 and line.rstrip(b"\r\n") == _PRE_INIT


def quiet_tensorflow() -> bool:
    """Keep TensorFlow's own log off the console, unless DVRNN_TF_LOGS=1; returns whether it did.

    Call it first in a program, before anything imports TensorFlow (the level is read once,
    when TensorFlow loads). Sets TF_CPP_MIN_LOG_LEVEL=3 unless it is set, and filters the
    lines of `import tensorflow` by that level, whenever and by whomever it is imported.
    """
    if tf_logs_requested():
        return False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LEVEL)
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, _UnpreparedIsNoWarning) for f in absl_logger.filters):
        absl_logger.addFilter(_UnpreparedIsNoWarning())
    if "tensorflow" not in sys.modules and min_log_level() > 0 and not any(
            isinstance(f, _FilteredImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _FilteredImport("tensorflow"))
    return True


def filter_lines(level: int, source=None, sink=None) -> None:
    """Copy lines from `source` (stdin) to `sink` (stdout), bytes as they are, but those that
    `is_hidden` at `level`; each line is flushed as it comes."""
    source = sys.stdin.buffer if source is None else source
    sink = sys.stdout.buffer if sink is None else sink
    for line in source:
        if not is_hidden(line, level):
            sink.write(line)
            sink.flush()


# The filter runs in a child process: it outlives a crash of this one, so what was written
# just before still gets out. It imports nothing but this module (no site, no TensorFlow), and
# leaves Ctrl-C to its parent: it ends when the parent closes the pipe.
_CHILD = ("import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
          "sys.path.insert(0, sys.argv[1]); "
          "from dvrnn_tf.console import filter_lines; filter_lines(int(sys.argv[2]))")


@contextlib.contextmanager
def filtered_stderr(level: int):
    """Within the block, lines written to file descriptor 2 (by Python or by C++) that
    `is_hidden` at `level` are dropped; the rest reach the original stderr, in order."""
    _flush_stderr()
    try:
        original = os.dup(2)
    except OSError:  # no stderr at all: nothing to filter
        yield
        return
    try:
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        child = subprocess.Popen([sys.executable, "-I", "-S", "-c", _CHILD, package_root,
                                  str(level)], stdin=subprocess.PIPE, stdout=original)
    except OSError:
        os.close(original)
        yield
        return
    os.dup2(child.stdin.fileno(), 2)
    try:
        yield
    finally:
        _flush_stderr()
        os.dup2(original, 2)
        os.close(original)
        child.stdin.close()
        try:
            child.wait(timeout=10)  # all of the block's lines out before anything else
        except subprocess.TimeoutExpired:  # a grandchild holds the pipe: let it finish alone
            pass


def _flush_stderr():
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError, OSError):  # None (no console), closed, or broken
        pass


class _FilteredImport(importlib.abc.MetaPathFinder):
    """Finds `name` as usual, and has its loader run inside `filtered_stderr`."""

    def __init__(self, name):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once; also lets the lookup below find the real spec
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteredLoader(spec.loader)
        return spec


class _FilteredLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with filtered_stderr(min_log_level()):
            self._loader.exec_module(module)

    def __getattr__(self, name):  # get_resource_reader, is_package, ...: the real loader's
        return getattr(self._loader, name)


class _UnpreparedIsNoWarning(logging.Filter):
    """tfds's `builder.is_prepared()` logs the WARNING "Variant folder <dir> has no
    dataset_info.json" also when <dir> does not exist, i.e. for every set not prepared yet
    (tfds 4.9.10, `file_utils.is_valid_variant_dir`). Kept when <dir> exists: then it tells of
    a broken folder."""

    def filter(self, record):
        if record.msg == "Variant folder %s has no %s" and record.args:
            try:
                return os.path.exists(os.fspath(record.args[0]))
            except TypeError:  # not a local path: say it
                return True
        return True


@contextlib.contextmanager
def tfds_progress_bars():
    """tfds's progress bars (download, generating, shuffling) on a terminal, none in a log.

    Restores tfds's setting afterwards."""
    from tensorflow_datasets.core.utils import tqdm_utils

    before = getattr(tqdm_utils, "_active", True)
    tqdm_utils.display_progress_bar(before and _is_terminal(sys.stderr))
    try:
        yield
    finally:
        tqdm_utils.display_progress_bar(before)


def progress_verbosity(stream=None) -> int:
    """`fit`'s verbose for the training binary: 1 (a bar redrawn in place) on a terminal, 2 (one
    line per epoch) otherwise: a redrawn bar written to a log is every redraw on one line."""
    return 1 if _is_terminal(sys.stdout if stream is None else stream) else 2


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False
