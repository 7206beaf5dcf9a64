"""What the judges share: a fingerprint of their data, a cache key, a lock, whole-file writes and
the refusal to judge below the accuracy bar.

Both judges (`judge`, the image judge; `sequence_judge`, the field's video judge) are cached
under a key that covers everything that makes them what they are: their recipe version, their
architecture and training settings, their seed and a fingerprint of the data they were trained
and tested on (two data sets of the same name, or one prepared again differently, never share a
judge).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import tempfile

import numpy as np

from dvrnn_tf.atomic import atomic_file

# Rows hashed per update: bounds the copy a non-contiguous array costs to about 64 MB.
_CHUNK_BYTES = 64 << 20


class JudgeNotGoodEnough(RuntimeError):
    """A judge whose accuracy on real test data is below its bar: it refuses to judge."""


def data_fingerprint(*arrays) -> str:
    """A sha256 (32 hex digits) of the arrays' dtypes, shapes and every byte, in order.

    A full hash, not a strided sample: measured on these machines, sha256 reads 800 MB (Sprites'
    8,100 x 8 x 64 x 64 x 3 uint8 train sequences) in 0.8 s, less than loading the data costs,
    and a sample would miss a data set regenerated in the rows it skips. The same values in
    another dtype (uint8 vs float32) are another fingerprint.
    """
    h = hashlib.sha256()
    for i, array in enumerate(arrays):
        a = np.asarray(array)
        if a.dtype.hasobject:
            raise ValueError(f"data_fingerprint: array {i} has dtype object; numeric arrays only")
        h.update(f"{i}:{a.dtype.str}:{a.shape};".encode())
        if a.size == 0:
            continue
        if a.ndim == 0:
            a = a.reshape(1)
        step = max(1, _CHUNK_BYTES // max(1, a[:1].nbytes))
        for start in range(0, a.shape[0], step):
            # A view when the array is C-contiguous (no copy); a bounded copy otherwise.
            h.update(np.ascontiguousarray(a[start:start + step]).data)
    return h.hexdigest()[:32]


def cache_key(recipe_version: int, recipe: dict, fingerprint: str) -> str:
    """A 16-hex-digit key of (recipe version, recipe settings, data fingerprint).

    `recipe` must be JSON-serializable; the key is independent of its keys' order.
    """
    text = json.dumps({"recipe_version": int(recipe_version), "recipe": recipe,
                       "data": str(fingerprint)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def cache_lock(path):
    """Hold an exclusive lock on ``<path>.lock``: two processes never train one judge at once."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def save_model_atomic(model, path) -> None:
    """`model.save` to a temporary ``.keras`` sibling, renamed to `path` when complete."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".keras")
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path, data: dict) -> None:
    """Write `data` as indented JSON, whole or not at all."""
    with atomic_file(path) as f:
        f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path) -> dict | None:
    """The JSON object in `path`, or None when it is missing or unreadable."""
    try:
        data = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
