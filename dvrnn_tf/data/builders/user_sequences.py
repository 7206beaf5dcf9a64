"""The user's own ordered image sequences: arrays in ``.npy``/``.npz`` files, folders of frames.

A sequence set is ``(x, labels)``:

* ``x``: ``[N, T, H, W, C]``, ``uint8`` in 0..255 or ``float32`` in [0, 1], C = 1 (grey) or 3 (RGB);
* ``labels``: a dict factor name -> array whose first axis is N: ``int64 [N]`` (a class per
  sequence), ``int64 [N, T]`` (a class per frame), or ``float32 [N, ...]`` (continuous values).

Everything is checked on load; a bad file raises ``SequenceFileError`` with one line naming the
file (and key, or frame), what was wrong and what is allowed. ``seeded_split`` cuts any such set
into train / validation / test.
"""
from __future__ import annotations

import os
import zipfile
import zlib

import numpy as np

from dvrnn_tf.data.builders.frame_folders import load_frames
from dvrnn_tf.data.builders.sequence_errors import SequenceFileError
from dvrnn_tf.data.builders.sequence_errors import fail as _fail
from dvrnn_tf.data.builders.sequence_errors import first_line as _first_line

__all__ = ["CHANNELS", "SequenceFileError", "check_labels", "check_pixels", "load_arrays",
           "load_frames", "seeded_split"]

CHANNELS = (1, 3)
_CHUNK_BYTES = 64 << 20  # NaN/range checks and casts walk big arrays in pieces of this size
_CORRUPT = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


# ---------------------------------------------------------------------------------------------
# Arrays


def load_arrays(path) -> tuple[np.ndarray, dict]:
    """Loads sequences ``x [N, T, H, W, C]`` and optional labels from a ``.npy`` or ``.npz`` file.

    * ``.npy``: one array, the sequences; memory-mapped (a uint8 or float32 file is returned as a
      read-only view of the file, so a file larger than memory can be used).
    * ``.npz``: key ``"x"`` holds the sequences; every other key is a label array named by its
      key (a Python identifier, it becomes a factor name). Save with ``np.savez(path, x=x,
      digit=digit)``.

    Pixels: ``uint8``; ``float16/32/64`` finite and in [0, 1] (returned as float32); any other
    integer type with values in 0..255 (returned as uint8). ``bool`` is refused (0/1 or 0/255
    would be a guess).
    Labels: integer (or bool) ``[N]`` or ``[N, T]``, values >= 0, returned as int64; float
    ``[N, ...]``, finite, returned as float32. Strings and objects are refused.

    Returns:
      ``(x, labels)``.

    Raises:
      SequenceFileError: a missing, unreadable, truncated or corrupt file, or contents that break
        a rule above; the one-line message names the file, the key and what is allowed.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise _fail(path, "no such file; expected a .npy or .npz file of sequences [N, T, H, W, C]")
    if not os.path.isfile(path):
        raise _fail(path, "is not a file; expected a .npy or .npz file of sequences")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npy":
        x, raw_labels = _read_npy(path), {}
    elif suffix == ".npz":
        x, raw_labels = _read_npz(path)
    else:
        raise _fail(path, f"unknown file type {suffix or '(no extension)'!r}; expected .npy "
                          "(one array x) or .npz (key 'x' plus label arrays)")
    x = check_pixels(x, path=path, key="x" if suffix == ".npz" else None)
    labels = {name: check_labels(value, x.shape[:2], path=path, key=name)
              for name, value in raw_labels.items()}
    return x, labels


def _read_npy(path) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise _fail(path, f"cannot be read ({_first_line(e)})") from e
    if not magic:
        raise _fail(path, "is empty (0 bytes); expected an array saved with np.save(path, x)")
    if magic != b"\x93NUMPY":
        raise _fail(path, "is not a NumPy .npy file (no .npy header); save with np.save(path, x)")
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except _CORRUPT as e:
        raise _load_error(path, e, None) from e
    return np.asarray(x)  # a plain ndarray view of the read-only memory map


def _load_error(path, error: BaseException, key: str | None) -> SequenceFileError:
    text = str(error)
    if isinstance(error, ValueError) and ("pickle" in text or "Python objects" in text):
        return _fail(path, "holds Python objects (dtype object); only numeric arrays are "
                           "allowed", key)
    return _fail(path, f"truncated or corrupt {'member' if key else 'file'} "
                       f"({_first_line(error)})", key)


def _read_npz(path) -> tuple[np.ndarray, dict]:
    try:
        archive = np.load(path, allow_pickle=False)
    except _CORRUPT as e:
        raise _fail(path, f"truncated or corrupt .npz file ({_first_line(e)}); save with "
                          "np.savez(path, x=x, <label>=...)") from e
    with archive:
        keys = list(archive.files)
        if "x" not in keys:
            raise _fail(path, f"no key 'x' (keys: {keys}); save the sequences [N, T, H, W, C] "
                              "with np.savez(path, x=x, <label>=...)")
        for key in keys:
            if not key.isidentifier():
                raise _fail(path, "label keys must be Python identifiers (they become factor "
                                  "names), e.g. 'digit' or 'hair_colour'", key)
        arrays = {key: _read_member(archive, path, key) for key in keys}
    return arrays.pop("x"), arrays


def _read_member(archive, path, key: str) -> np.ndarray:
    try:
        value = archive[key]
    except _CORRUPT as e:
        raise _load_error(path, e, key) from e
    if not isinstance(value, np.ndarray):
        raise _fail(path, "is not a .npy array inside the .npz archive", key)
    return value


def _chunks(array: np.ndarray):
    """Slices along the first axis of about ``_CHUNK_BYTES`` each."""
    row_bytes = max(1, array[:1].nbytes)
    step = max(1, _CHUNK_BYTES // row_bytes)
    for start in range(0, array.shape[0], step):
        yield slice(start, start + step)


def _float_stats(array: np.ndarray) -> tuple[int, int, float, float]:
    """(non-finite count, count outside [0, 1], min and max of the finite values)."""
    bad = outside = 0
    low, high = np.inf, -np.inf
    for piece in _chunks(array):
        chunk = np.asarray(array[piece])
        finite = np.isfinite(chunk)
        bad += int(chunk.size - np.count_nonzero(finite))
        values = chunk[finite] if bad else chunk.reshape(-1)
        if values.size:
            low, high = min(low, float(values.min())), max(high, float(values.max()))
            outside += int(np.count_nonzero((values < 0) | (values > 1)))
    return bad, outside, low, high


def _int_range(array: np.ndarray) -> tuple[int, int]:
    low, high = None, None
    for piece in _chunks(array):
        chunk = np.asarray(array[piece])
        lo, hi = int(chunk.min()), int(chunk.max())
        low = lo if low is None else min(low, lo)
        high = hi if high is None else max(high, hi)
    return low, high


def _cast(array: np.ndarray, dtype) -> np.ndarray:
    out = np.empty(array.shape, dtype)
    for piece in _chunks(array):
        out[piece] = array[piece]
    return out


def _check_shape(x: np.ndarray, path, key) -> None:
    if x.ndim == 4:
        raise _fail(path, f"x is 4-D {list(x.shape)}; sequences must be [N, T, H, W, C] "
                          "(for grey frames add a channel axis: x[..., None])", key)
    if x.ndim != 5:
        raise _fail(path, f"x has {x.ndim} axes {list(x.shape)}; sequences must be "
                          "[N, T, H, W, C]", key)
    for name, size in zip("NTHWC", x.shape):
        if size < 1:
            raise _fail(path, f"x has {name} = 0 (shape {list(x.shape)}); every axis of "
                              "[N, T, H, W, C] must be >= 1", key)
    if x.shape[-1] not in CHANNELS:
        hint = "; drop alpha with x[..., :3]" if x.shape[-1] == 4 else ""
        raise _fail(path, f"x has C = {x.shape[-1]} channels; allowed: 1 (grey) or 3 "
                          f"(RGB){hint}", key)


def check_pixels(x, *, path="<array>", key: str | None = "x") -> np.ndarray:
    """Checks sequences ``[N, T, H, W, C]``; returns uint8 or float32 (no copy when already so).

    Raises ``SequenceFileError`` naming ``path``/``key`` when a rule of ``load_arrays`` is broken.
    """
    if not isinstance(x, np.ndarray):
        raise _fail(path, f"x is a {type(x).__name__}, expected a numpy array", key)
    kind = x.dtype.kind
    if kind == "b":
        raise _fail(path, "x is bool; store uint8 0..255 (x.astype(np.uint8) * 255) or float "
                          "in [0, 1]", key)
    if kind not in "uif":
        raise _fail(path, f"x has dtype {x.dtype}; allowed: uint8 0..255, float in [0, 1], or "
                          "another integer type with values in 0..255", key)
    _check_shape(x, path, key)
    if kind == "f":
        bad, outside, low, high = _float_stats(x)
        if bad or outside:
            found = " and ".join(part for count, part in
                                 ((bad, f"{bad} NaN/Inf values"),
                                  (outside, f"{outside} values outside [0, 1]")) if count)
            span = f"{low:g}..{high:g}" if low <= high else "none finite"
            raise _fail(path, f"x ({x.dtype}) has {found} (finite range {span}); float pixels "
                              "must be finite and in [0, 1]", key)
        return x if x.dtype == np.float32 else _cast(x, np.float32)
    if x.dtype == np.uint8:
        return x
    low, high = _int_range(x)
    if low < 0 or high > 255:
        raise _fail(path, f"x ({x.dtype}) has values in {low}..{high}; integer pixels must be "
                          "in 0..255 (or store float in [0, 1])", key)
    return _cast(x, np.uint8)


def check_labels(value, leading: tuple[int, int], *, path="<array>", key: str = "label"):
    """Checks one label array against x's ``(N, T)``; returns int64 or float32 labels."""
    n, t = (int(d) for d in leading)
    what = f"labels {key!r}"
    if not isinstance(value, np.ndarray):
        raise _fail(path, f"{what} is a {type(value).__name__}, expected a numpy array")
    kind = value.dtype.kind
    if kind not in "buif":
        raise _fail(path, f"{what} has dtype {value.dtype}; labels must be integer classes "
                          "(int, bool) or continuous values (float); no strings or objects")
    if value.ndim == 0 or value.shape[0] != n:
        rows = "no first axis" if value.ndim == 0 else f"{value.shape[0]} rows"
        raise _fail(path, f"{what} has {rows}, x has {n} sequences; labels need one row "
                          "per sequence")
    if kind == "f":
        cast = value.astype(np.float32)
        bad = int(cast.size - np.count_nonzero(np.isfinite(cast)))
        if bad:
            raise _fail(path, f"{what} has {bad} NaN/Inf values (or too large for float32); "
                              "float labels must be finite")
        return cast
    if value.ndim > 2 or (value.ndim == 2 and value.shape[1] != t):
        raise _fail(path, f"{what} has shape {list(value.shape)}, x has T = {t} frames; "
                          f"integer labels must be [N] (per sequence) or [N, T] = [{n}, {t}] "
                          "(per frame)")
    if value.size and kind != "b":
        low, high = int(value.min()), int(value.max())
        if low < 0:
            count = int(np.count_nonzero(value < 0))
            raise _fail(path, f"{what} has {count} negative values (min {low}); class labels "
                              "must be >= 0")
        if high > np.iinfo(np.int64).max:
            raise _fail(path, f"{what} has values up to {high}; class labels must fit int64")
    return value.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Splits


def _check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not 0 < value < 1:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def _half_up(value: float) -> int:
    return int(np.floor(value + 0.5))


def seeded_split(n, seed, validation_fraction=0.1, test_fraction=0.1) -> dict[str, np.ndarray]:
    """Cuts ``range(n)`` into ``"train"``, ``"validation"`` and ``"test"`` index arrays.

    A permutation from ``np.random.default_rng(seed)``: its first ``round(n * test_fraction)``
    indices are test, the next ``round(n * validation_fraction)`` validation, the rest train
    (halves round up; each split gets at least 1). Test is cut first so that it depends only on
    ``(n, seed, test_fraction)``: tuning the validation fraction never moves a test sequence.

    Returns:
      dict split name -> sorted int64 indices; disjoint, together exactly ``range(n)``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 3:
        raise ValueError(f"n must be an integer >= 3 (one sequence per split at least), got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    val = _check_fraction("validation_fraction", validation_fraction)
    test = _check_fraction("test_fraction", test_fraction)
    if val + test >= 1:
        raise ValueError(f"validation_fraction + test_fraction must be < 1 (train needs the "
                         f"rest), got {val} + {test} = {val + test}")
    n = int(n)
    n_test, n_val = max(1, _half_up(n * test)), max(1, _half_up(n * val))
    while n - n_test - n_val < 1:  # tiny n: give train its one sequence from the larger split
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    order = np.random.default_rng(int(seed)).permutation(n).astype(np.int64)
    return {"train": np.sort(order[n_test + n_val:]),
            "validation": np.sort(order[n_test:n_test + n_val]),
            "test": np.sort(order[:n_test])}
