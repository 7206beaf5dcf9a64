"""The user's own sequences: `--dataset=arrays:<file.npz|.npy>` and `--dataset=frames:<folder>`.

arrays: x [N, T, H, W, C] in a `.npy`, or under key "x" of a `.npz` beside label arrays (any
  other key: int [N] a class per sequence, int [N, T] a class per frame, float [N, ...] or
  [N, T, ...] continuous), e.g. `np.savez("data.npz", x=x, digit=digit)`.
frames: a folder with one sub-folder of frame images per sequence (natural order), and
  optionally `labels.json` {"<sequence folder>": {"<factor>": int}}.

Everything is validated on load (`dvrnn_tf.data.builders.user_sequences`: a bad file is a
one-line error naming it). The set is split once, by --data_seed, into train / validation /
test (--validation_fraction, --test_fraction) and cached under --data_dir, keyed by the
file's (or folder's) fingerprint: a later run reads the prepared split at once.
"""
import functools
import hashlib
import os

import numpy as np

from dvrnn_tf.data import sequence_cache
from dvrnn_tf.data.array_sequences import ArraySequences
from dvrnn_tf.data.builders import user_sequences
from dvrnn_tf.data.registry import SPLITS, SequenceSource, register
from dvrnn_tf.data.settings import DATA_DIR, DATA_SEED, TEST_FRACTION, VALIDATION_FRACTION
from dvrnn_tf.data.spec import DataSpec, Factor

RECIPE_VERSION = 1


def factors_of(labels: dict, seq_len: int) -> tuple:
    """The `Factor` of each label array: integer [N] static and [N, T] per-frame classes
    (classes 0..max), float arrays continuous (per frame when their second axis is T)."""
    out = []
    for name, value in sorted(labels.items()):
        value = np.asarray(value)
        per_frame = value.ndim >= 2 and value.shape[1] == seq_len
        if value.dtype.kind in "iu":
            out.append(Factor(name, int(value.max()) + 1 if value.size else 1, per_frame))
        else:
            out.append(Factor(name, None, per_frame, value.shape[2 if per_frame else 1:]))
    return tuple(out)


def _fingerprint(path: str) -> str:
    """Names, sizes and modification times of a file or of every file under a folder."""
    h = hashlib.sha256()
    if os.path.isfile(path):
        files = [path]
    else:
        files = sorted(os.path.join(d, f) for d, _, names in os.walk(path) for f in names)
    for file in files:
        st = os.stat(file)
        h.update(f"{os.path.relpath(file, path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class _UserSequences(SequenceSource):
    prefixed = True
    settings = (DATA_DIR, DATA_SEED, VALIDATION_FRACTION, TEST_FRACTION)
    metrics = ("likelihood", "probes")

    def _read(self):
        raise NotImplementedError

    @classmethod
    def check(cls, dataset, values):
        location = dataset.split(":", 1)[1]
        if not location:
            raise ValueError(f"--dataset={dataset!r} needs a path: {cls.name}:<path>")

    @functools.cached_property
    def _entry(self):
        path = os.path.abspath(os.path.expanduser(self.location))
        if not os.path.exists(path):
            raise user_sequences.SequenceFileError(
                f"--dataset={self.dataset}: {path} does not exist")
        v = self.values
        key = hashlib.sha256(
            f"{self.name}\0{RECIPE_VERSION}\0{path}\0{_fingerprint(path)}\0{v.data_seed}\0"
            f"{v.validation_fraction}\0{v.test_fraction}".encode()).hexdigest()[:16]
        entry = sequence_cache.cache_root(v.data_dir) / f"{self.name}-{key}"
        whole = {}

        def make_split(split):
            if not whole:
                x, labels = self._read(path)
                whole.update(x=x, labels=labels, index=user_sequences.seeded_split(
                    len(x), v.data_seed, v.validation_fraction, v.test_fraction))
            index = whole["index"][split]
            return whole["x"][index], {k: a[index] for k, a in whole["labels"].items()}

        meta = {"source": self.name, "path": path, "recipe_version": RECIPE_VERSION,
                "data_seed": v.data_seed, "validation_fraction": v.validation_fraction,
                "test_fraction": v.test_fraction}
        return sequence_cache.ensure(entry, make_split, meta)

    @functools.cached_property
    def _factors(self):
        x, labels = sequence_cache.load(self._entry, "train")
        every = {name: np.concatenate([sequence_cache.load(self._entry, s)[1][name]
                                       for s in SPLITS]) for name in labels}
        return factors_of(every, x.shape[1])

    def spec(self):
        x, _ = sequence_cache.load(self._entry, "train")
        return DataSpec(tuple(x.shape[2:]), int(x.shape[1]), self._factors)

    def _make_split(self, name):
        x, labels = sequence_cache.load(self._entry, name)
        return ArraySequences(x, labels, self._factors, seed=self.seed, name=name,
                              binarize="dynamic" if self.binarize else "none")


@register
class ArrayFile(_UserSequences):
    name = "arrays"
    summary = "arrays:<file.npz|.npy>: your own sequences [N, T, H, W, C] (+ label arrays)"

    def _read(self, path):
        return user_sequences.load_arrays(path)


@register
class FrameFolders(_UserSequences):
    name = "frames"
    summary = "frames:<folder>: one sub-folder of frame images per sequence"

    def _read(self, path):
        return user_sequences.load_frames(path)
