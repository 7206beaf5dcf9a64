"""Prepared sequence sets on disk: a folder per (source, key), built once, whole or not at all.

A generated or converted source (Sprites, Moving MNIST, the user's arrays and frame folders)
writes its three splits once into `<cache_root>/<name>-<key>/`:

  {split}-x.npy        uint8 (or float32) [N, T, H, W, C]
  {split}-labels.npz   one array per factor label, first axis N
  meta.json            what made it (`meta`), the sequence counts, every file's size
  ... extra files      e.g. the licence and attribution that must travel with the data

The key names everything the contents depend on (a recipe version, the settings, a
fingerprint of the inputs), so a changed input makes a new entry. `load` memory-maps a
split: a 1 GB set costs no copy until its pages are read.
"""
from __future__ import annotations

import json
import os
import pathlib
import time

import numpy as np

from dvrnn_tf.atomic import atomic_file
from dvrnn_tf.data.folder_cache import ensure_folder
from dvrnn_tf.data.registry import SPLITS


def default_root() -> pathlib.Path:
    """`$DVRNN_CACHE_DIR/data` or `~/.cache/dvrnn_tf/data`: where prepared sets live when no
    --data_dir is given (outside the repository; shared by runs and tests)."""
    root = os.environ.get("DVRNN_CACHE_DIR") or os.path.join("~", ".cache", "dvrnn_tf")
    return pathlib.Path(os.path.expanduser(root)).resolve() / "data"


def cache_root(data_dir: str) -> pathlib.Path:
    """The folder prepared sequence sets go to: --data_dir if given, else `default_root()`."""
    return pathlib.Path(os.path.abspath(os.path.expanduser(data_dir))) if data_dir \
        else default_root()


def _names(extra) -> list:
    return [f"{s}-{kind}" for s in SPLITS for kind in ("x.npy", "labels.npz")] + list(extra)


def _is_valid(entry: pathlib.Path) -> bool:
    """Whether `entry` is whole: meta.json, each file at its recorded size, headers right."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        if any((entry / n).stat().st_size != size for n, size in meta["files"].items()):
            return False
        if not set(_names(())) <= set(meta["files"]):
            return False
        for split in SPLITS:
            x = np.load(entry / f"{split}-x.npy", mmap_mode="r")
            if x.ndim != 5 or x.shape[0] != meta["sequences"][split]:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def ensure(entry, make_split, meta: dict, extra_files: dict | None = None) -> pathlib.Path:
    """The cache folder `entry`, built now unless it is whole already.

    make_split(split) -> (x [N, T, H, W, C], labels {name: [N, ...]}), called once per split
    (one split in memory at a time); `meta` is recorded in meta.json; `extra_files`
    {name: bytes} are written beside the data.
    """
    extra_files = dict(extra_files or {})

    def build(folder: pathlib.Path):
        start = time.perf_counter()
        counts = {}
        for split in SPLITS:
            x, labels = make_split(split)
            counts[split] = int(len(x))
            with atomic_file(folder / f"{split}-x.npy", "wb") as f:
                np.save(f, np.ascontiguousarray(x))
            with atomic_file(folder / f"{split}-labels.npz", "wb") as f:
                np.savez(f, **{k: np.asarray(v) for k, v in labels.items()})
            del x, labels
        for name, content in extra_files.items():
            with atomic_file(folder / name, "wb") as f:
                f.write(content)
        record = {**meta, "sequences": counts, "seconds": round(time.perf_counter() - start, 2),
                  "files": {n: (folder / n).stat().st_size for n in _names(extra_files)}}
        with atomic_file(folder / "meta.json") as f:
            json.dump(record, f, indent=1, sort_keys=True)

    return ensure_folder(pathlib.Path(entry), build, _is_valid)


def load(entry, split: str):
    """(x memory-mapped read-only, labels {name: array}) of one split of a whole entry."""
    entry = pathlib.Path(entry)
    x = np.load(entry / f"{split}-x.npy", mmap_mode="r")
    with np.load(entry / f"{split}-labels.npz") as z:
        labels = {name: z[name] for name in z.files}
    return x, labels


def meta(entry) -> dict:
    return json.loads((pathlib.Path(entry) / "meta.json").read_text())
