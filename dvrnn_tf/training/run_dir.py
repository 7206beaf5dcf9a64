"""The run directory: what a training run writes, and the rules that keep it consistent.

Layout (all under `run_dir`):
  config.json, flags.txt   the resolved configuration (flags.txt replays it: --flagfile=...)
  backup/                  the resume state (training.callbacks.AtomicBackupAndRestore):
                           rerunning the same command resumes here
  checkpoints/last.keras   the model after the latest epoch (`keras.models.load_model`)
  logs/                    TensorBoard: scalars per loss term, image grids per epoch
  saved_model/             the SavedModel with named endpoints
  figures/                 PNG figures;  metrics.json: held-out loss terms per image (nats)
config.json, flags.txt, metrics.json, the checkpoint, the resume state and the SavedModel
are written to a temporary sibling and renamed into place, so a process killed at any
instant leaves each one's previous version whole.
"""
import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import pathlib
import shutil

from dvrnn_tf.atomic import atomic_file


class RunDirError(RuntimeError):
    """A run directory that cannot be used as asked; the message says why and what to do."""


def write_json_atomic(path, payload) -> None:
    """Write JSON to a temporary sibling, then rename: readers never see half a file."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def write_text_atomic(path, text: str) -> None:
    """Write text to a temporary sibling, then rename: readers never see half a file."""
    with atomic_file(path) as f:
        f.write(text)


def config_to_flagfile(config) -> str:
    """--name=value lines that reproduce `config` with `python -m dvrnn_tf.train --flagfile=`."""
    lines = []
    for name, value in config.to_dict().items():
        if isinstance(value, bool):
            lines.append(f"--{name}" if value else f"--no{name}")
        else:
            lines.append(f"--{name}={value}")
    return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class RunDir:
    root: pathlib.Path

    config = property(lambda self: self.root / "config.json")
    flags = property(lambda self: self.root / "flags.txt")
    backup = property(lambda self: self.root / "backup")
    checkpoints = property(lambda self: self.root / "checkpoints")
    logs = property(lambda self: self.root / "logs")
    saved_model = property(lambda self: self.root / "saved_model")
    figures = property(lambda self: self.root / "figures")
    metrics = property(lambda self: self.root / "metrics.json")
    lock_file = property(lambda self: self.root / ".lock")

    @contextlib.contextmanager
    def claim(self, config):
        """Create or reuse the directory for `config`, holding an exclusive lock while open.

        Refuses a directory made with other flags unless config.overwrite, and one that
        another process is training into.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            lock = open(self.lock_file, "a")
        except OSError as e:
            raise RunDirError(f"--run_dir={self.root} cannot be created or written: "
                              f"{e.strerror}. Choose a writable --run_dir.") from None
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EACCES):
                    raise RunDirError(
                        f"--run_dir={self.root} is in use by another training process; wait "
                        "for it to finish or choose another --run_dir.") from None
                raise
            self._check_or_reset(config)
            for d in (self.backup, self.checkpoints, self.logs, self.figures):
                d.mkdir(exist_ok=True)
            write_json_atomic(self.config, config.to_dict())
            write_text_atomic(self.flags, config_to_flagfile(config))
            yield self
        finally:
            lock.close()

    def _check_or_reset(self, config):
        if not self.config.exists():
            return
        try:
            previous = json.loads(self.config.read_text())
        except (OSError, ValueError):
            previous = None
        if not isinstance(previous, dict):
            previous = None  # not a config at all: a run of unknown flags
        else:
            try:  # through TrainConfig: a setting added since the run was made takes its default
                previous = type(config).from_dict(previous).to_dict()
            except (OSError, TypeError, ValueError):
                pass  # not a config this package reads: compared as it is
        current = config.identity()
        differs = previous is None or {
            k: previous.get(k) for k in current} != current
        if not differs:
            return
        if not config.overwrite:
            changed = sorted(k for k in current if previous is None or previous.get(k) != current[k])
            raise RunDirError(
                f"--run_dir={self.root} holds a run made with other flags ({', '.join(changed)}); "
                "pass --overwrite to replace it, or choose another --run_dir.")
        for child in self.root.iterdir():
            if child.name == self.lock_file.name:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
