"""Cache folders built whole or not at all, once, even by several processes at a time."""
from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import shutil
import tempfile
import uuid


@contextlib.contextmanager
def locked(path):
    """An exclusive advisory lock (fcntl.flock) on the file `path`, held for the block."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_folder(entry, build, is_valid) -> pathlib.Path:
    """The folder `entry`, built by `build(folder)` unless `is_valid(entry)` already.

    `build` fills a temporary sibling, renamed to `entry` when whole, so a killed build leaves
    no entry a later call would trust. A lock file beside it serialises the builders of one
    entry: the second waits, then finds the first's entry. Leftovers of killed builds and an
    invalid (damaged) entry are removed.
    """
    entry = pathlib.Path(entry)
    if is_valid(entry):
        return entry
    parent = entry.parent
    parent.mkdir(parents=True, exist_ok=True)
    with locked(parent / f".{entry.name}.lock"):
        if is_valid(entry):
            return entry
        for stale in [*parent.glob(f".{entry.name}.tmp-*"), *parent.glob(f".{entry.name}.old-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        tmp = pathlib.Path(tempfile.mkdtemp(dir=parent, prefix=f".{entry.name}.tmp-"))
        try:
            build(tmp)
            for path in tmp.iterdir():  # mkstemp/mkdtemp make owner-only files; share them
                path.chmod(0o644)
            tmp.chmod(0o755)
            if entry.exists():
                old = parent / f".{entry.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(entry, old)
                shutil.rmtree(old, ignore_errors=True)
            os.rename(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # nothing left there once renamed
    return entry
