"""Labelled image sets as in-memory numpy arrays.

Two sources:

* ``digits``: the 1,797 8x8 handwritten digits shipped inside scikit-learn. Needs no network and no
  files: the default that works everywhere.
* ``mnist`` and any other tensorflow-datasets image-classification builder with an ``image`` and a
  ``label`` feature (``fashion_mnist``, ``kmnist``, ``emnist/balanced``, ``svhn_cropped``, ...).
  Offline, tfds prepares a set from its original files in ``manual_dir`` (it checks their sha256).

``load_split`` never sits in tfds's minutes-long download retry: when a set is not prepared and
its files are not at hand, it probes the download host for a few seconds and raises
``DataUnavailableError`` naming the ``--manual_dir`` / ``--data_dir`` flags that fix it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import os
import pathlib
import socket
import threading
import urllib.parse
import urllib.request

import numpy as np

from dvrnn_tf.console import tfds_progress_bars
from dvrnn_tf.data import array_cache

SPLITS = ("train", "validation", "test")
# A set without a validation split of its own gives one from its train split: this share of
# each class, always the same images (the split must never change between runs).
VALIDATION_FRACTION = 0.1
_VALIDATION_SPLIT_SEED = 0
DIGITS = "digits"
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_SPLIT_SEED = 0  # fixed: the digits train/test split must never change between runs
_PROBE_TIMEOUT_S = 2.5
_DEFAULT_HOST = ("storage.googleapis.com", 443)  # where tfds keeps most of its mirrors


class DataUnavailableError(RuntimeError):
    """A data set cannot be had (not prepared, files missing or corrupt, no network)."""


@dataclasses.dataclass(frozen=True, eq=False)
class ImageSet:
    """One split of a labelled image set, held in memory (arrays are read-only).

    Attributes:
      name: the data set's name as given to ``load_split`` (``"digits"``, ``"mnist"``, ...).
      split: ``"train"``, ``"validation"`` or ``"test"``.
      images: ``[N, H, W, C]``; ``uint8`` in 0..255 for tfds sets (a quarter of the memory of
        floats), ``float32`` in [0, 1] for ``digits`` (its 17 grey levels are not multiples of
        1/255). Use ``as_float()`` for float32 in [0, 1] whatever the storage.
      labels: ``[N]`` int64 in ``0..num_classes-1``.
      num_classes: the number of classes of the data set (some may have no image in a split).
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image."""
        return tuple(int(d) for d in self.images.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def as_float(self) -> np.ndarray:
        """float32 ``[N, H, W, C]`` in [0, 1] (a new array for uint8 storage)."""
        if self.images.dtype == np.uint8:
            return self.images.astype(np.float32) / np.float32(255.0)
        return self.images.astype(np.float32, copy=False)


def _validate_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def _norm_dir(path) -> str | None:
    return None if path is None else os.path.abspath(os.path.expanduser(os.fspath(path)))


def load_split(name: str, split: str, *, data_dir: str | None = None,
               manual_dir: str | None = None) -> ImageSet:
    """Loads one split of a labelled image set into memory (cached per process).

    Args:
      name: ``"digits"``, ``"mnist"`` or a tfds image-classification builder name, optionally with
        a config (``"emnist/balanced"``).
      split: ``"train"``, ``"validation"`` or ``"test"``. A set without a validation split of
        its own (MNIST, digits, most tfds sets) gives VALIDATION_FRACTION of each class of its
        train split, always the same images, as validation, and the rest as train.
      data_dir: where tfds keeps (or will write) prepared data sets; tfds's default when None.
      manual_dir: a folder with the data set's original files (e.g. MNIST's four ``.gz`` files),
        used to prepare it without a network. Defaults to ``<data_dir>/downloads/manual``.

    Returns:
      An ``ImageSet`` with images ``[N, H, W, C]`` and labels ``[N]``.

    Raises:
      ValueError: bad ``split``, unknown ``name``, or a set that is not labelled image data.
      DataUnavailableError: the set is not prepared and cannot be prepared here.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be 'digits', 'mnist' or a tfds image-classification "
                         f"builder name, got {name!r}")
    return _load_cached(name.strip(), _validate_split(split), _norm_dir(data_dir),
                        _norm_dir(manual_dir))


@functools.lru_cache(maxsize=16)
def _load_cached(name, split, data_dir, manual_dir) -> ImageSet:
    image_set = _load_digits(split) if name == DIGITS else _load_tfds(name, split, data_dir,
                                                                      manual_dir)
    # The same object is handed to every caller: make sure none of them can edit it.
    image_set.images.setflags(write=False)
    image_set.labels.setflags(write=False)
    return image_set


def carve_validation(train: ImageSet, split: str) -> ImageSet:
    """The "train" or "validation" part of a train split: VALIDATION_FRACTION of each class
    (stratified, a fixed seed) is validation, the rest train."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(train))
    rest, held = train_test_split(index, test_size=VALIDATION_FRACTION, stratify=train.labels,
                                  random_state=_VALIDATION_SPLIT_SEED)
    idx = np.sort(held if split == "validation" else rest)
    return ImageSet(train.name, split, train.images[idx], train.labels[idx], train.num_classes)


def _load_digits(split: str) -> ImageSet:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    index = np.arange(len(bunch.target))
    train_idx, test_idx = train_test_split(index, test_size=_DIGITS_TEST_FRACTION,
                                           stratify=bunch.target, random_state=_DIGITS_SPLIT_SEED)
    idx = np.sort(test_idx if split == "test" else train_idx)
    images = (bunch.images[idx] / 16.0).astype(np.float32)[..., None]  # 0..16 -> [0, 1]
    image_set = ImageSet(DIGITS, split, images, bunch.target[idx].astype(np.int64), 10)
    return image_set if split == "test" else carve_validation(image_set, split)


@functools.lru_cache(maxsize=1)
def _tfds_builder_names() -> frozenset:
    import tensorflow_datasets as tfds

    # with_community_datasets=False: the community index lives on GCS (a network call).
    return frozenset(tfds.list_builders(with_community_datasets=False))


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown data set {name!r}: expected 'digits', 'mnist' or a tfds "
                      f"image-classification builder (see dvrnn_tf.data.available_datasets())")


def _load_tfds(name: str, split: str, data_dir, manual_dir) -> ImageSet:
    import tensorflow_datasets as tfds

    if name.split("/")[0].split(":")[0] not in _tfds_builder_names():
        raise _unknown(name)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except ValueError as e:  # DatasetNotFoundError, or a config that does not exist
        raise ValueError(f"{_unknown(name)} ({str(e).splitlines()[0]})") from e
    features = builder.info.features
    label = features["label"] if "label" in features else None
    if "image" not in features or not isinstance(label, tfds.features.ClassLabel):
        raise ValueError(f"data set {name!r} has no 'image' and class 'label' features "
                         f"({sorted(features.keys())}): it is not labelled image classification")
    shape, dtype = features["image"].shape, np.dtype(features["image"].np_dtype)
    if None in shape or dtype != np.uint8:
        raise ValueError(f"data set {name!r} has {dtype} images of shape {shape}; only uint8 "
                         "images of one fixed size can be stacked into sequences")
    if not builder.is_prepared():
        builder = _prepare_once(builder, name, data_dir, manual_dir)
    if split != "test" and "validation" not in builder.info.splits:
        return carve_validation(_read_tfds_split(builder, name, "train"), split)
    return _read_tfds_split(builder, name, split)


def _read_tfds_split(builder, name: str, split: str) -> ImageSet:
    import tensorflow_datasets as tfds

    if split not in builder.info.splits:
        raise ValueError(f"data set {name!r} has no split {split!r} "
                         f"(it has {sorted(builder.info.splits.keys())})")
    cached = array_cache.load(builder.data_dir, split)
    if cached is None:
        arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        cached = (np.asarray(arrays["image"], np.uint8), np.asarray(arrays["label"], np.int64))
        array_cache.save(builder.data_dir, split, *cached)
    images, labels = cached
    return ImageSet(name, split, images, labels,
                    int(builder.info.features["label"].num_classes))


def _fix_hint(name: str) -> str:
    example = " (e.g. ../shared/data/mnist)" if name == "mnist" else ""
    return (f"Pass --manual_dir=<a folder with the original files of {name!r}>{example}, or "
            f"--data_dir=<the folder where a prepared copy lives>, or run once with a network.")


def _prepare_once(builder, name: str, data_dir, manual_dir):
    """The builder, prepared by this process or by another one that held the lock first: two
    processes preparing one data set into one data_dir would both build it, and the second
    rename fails (tfds has no lock of its own)."""
    import tensorflow_datasets as tfds

    from dvrnn_tf.data.folder_cache import locked

    root = pathlib.Path(os.fspath(builder.data_dir)).parent  # <data_dir>/<name>[/<config>]
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / ".prepare.lock"):
        if builder.is_prepared():  # another process prepared it while this one waited
            return tfds.builder(name, data_dir=data_dir)
        _prepare(builder, name, data_dir, manual_dir)
    return builder


def _prepare(builder, name: str, data_dir, manual_dir) -> None:
    """Runs tfds's download_and_prepare, refusing within seconds when it could only hang."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

    root = getattr(builder, "_data_dir_root", None) or data_dir or "~/tensorflow_datasets"
    look_in = manual_dir or os.path.join(os.fspath(root), "downloads", "manual")
    if manual_dir is not None and not os.path.isdir(manual_dir):
        raise DataUnavailableError(f"--manual_dir={manual_dir} is not a folder. "
                                   + _fix_hint(name))
    url_infos = builder.url_infos or {}
    missing = {}
    for url, info in url_infos.items():
        path = os.path.join(look_in, info.filename or "")
        if not info.filename or not os.path.isfile(path):
            missing[url] = info
        elif info.size is not None and os.path.getsize(path) != int(info.size):
            # Cheaper and clearer than letting tfds hash a truncated file.
            raise DataUnavailableError(
                f"{path} has {os.path.getsize(path)} bytes, {name!r} expects {int(info.size)}: "
                f"the file is truncated or corrupt. Replace it in --manual_dir with the original.")
    # Builders with no registered URLs and manual instructions read only manual_dir: no network.
    manual_only = not url_infos and getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
    if (missing or not url_infos) and not manual_only:
        hosts = {_host_port(url) for url in missing} or {_DEFAULT_HOST}
        down = sorted(f"{h}:{p}" for h, p in hosts if not network_reachable(h, p))
        if down:
            files = ", ".join(sorted(i.filename or u for u, i in missing.items())) or "unknown"
            raise DataUnavailableError(
                f"data set {name!r} is not prepared in data_dir={data_dir or root}, its files "
                f"({files}) are not in {look_in}, and the download host ({', '.join(down)}) is "
                f"unreachable. " + _fix_hint(name))
    config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    # Every file already in manual_dir: nothing is downloaded, but tfds prints "Downloading
    # and preparing dataset Unknown size ..." to stdout; say what happens instead.
    offline = manual_dir is not None and not missing
    banner = contextlib.redirect_stdout(io.StringIO()) if offline else contextlib.nullcontext()
    if offline:
        print(f"Preparing {name!r} from {manual_dir} into {builder.data_dir} (once)", flush=True)
    try:
        with tfds_progress_bars(), banner:
            builder.download_and_prepare(download_config=config)
    except NonMatchingChecksumError as e:
        bad = [i.filename for i in url_infos.values() if i.filename and i.filename in str(e)]
        raise DataUnavailableError(
            f"{', '.join(bad) or 'a file'} in {look_in} does not have the checksum tfds expects "
            f"for {name!r}: it is corrupt or not the original. Replace it in --manual_dir. "
            f"(tfds: {str(e).splitlines()[0]})") from e


def _host_port(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy:  # the download goes through the proxy: that is what must answer
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def network_reachable(host: str, port: int, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to ``host:port`` opens within ``timeout`` seconds.

    Runs in a daemon thread because name resolution ignores socket timeouts and can hang.
    """
    result = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


@functools.lru_cache(maxsize=1)
def _image_classification_builders() -> tuple:
    import tensorflow_datasets as tfds

    names = []
    for n in sorted(_tfds_builder_names()):
        try:
            cls = tfds.builder_cls(n)
            tags = cls.get_metadata().tags if hasattr(cls, "get_metadata") else []
        except Exception:  # pylint: disable=broad-except  # builders needing absent extras
            continue
        if ".image_classification." in cls.__module__ or "ml.task.image-classification" in tags:
            names.append(n)
    return tuple(names)


def available_datasets() -> list[str]:
    """``"digits"``, ``"mnist"``, then the installed tfds image-classification builders.

    The tfds names are candidates by category; a few (e.g. detection-like sets filed under image
    classification, or sets whose images vary in size) are refused by ``load_split``.
    """
    return [DIGITS, "mnist"] + [n for n in _image_classification_builders() if n != "mnist"]
