"""Sequence sources: each declares, in its own module, what central code needs to know of it.

A source module (one file in `dvrnn_tf/data/sources/`) defines a `SequenceSource` subclass
and registers it: its `--dataset` name, the settings it takes (its flags), its splits and its
factor labels, and which evaluation metrics its data supports. Central code asks
`open_source(dataset, values)` for the source and never tests a data set's name.

Every source has the splits train, validation and test, deterministic given the run's seed.
Hyper-parameters are chosen on validation; test is read only for the numbers reported.
"""
from __future__ import annotations

from collections.abc import Mapping

from dvrnn_tf.settings import Setting, Values, resolve, unique

SPLITS = ("train", "validation", "test")


class SequenceSource:
    """Base class of a source of image sequences, bound to its setting values.

    Class attributes a source declares:
      name: the `--dataset` value (a prefixed source such as `arrays` is named
        `arrays:<path>`, the part after the colon being its `location`).
      prefixed: whether the name takes a `:<location>`.
      fallback: the source of every `--dataset` value no other source claims (the
        tensorflow-datasets image-classification sets); at most one.
      settings: the `Setting`s it takes.
      metrics: the `dvrnn_tf.evaluate` metrics its data supports.
      summary: one line for the README and --help.

    An instance gives `spec()` (frame shape, T, factor labels) and `split(name)`, an object
    with `image_shape`, `seq_len`, `factors`, `num_sequences`, `steps_per_epoch(batch_size)`,
    `dataset(batch_size, *, training, steps=None)` yielding `(x [B, T, H, W, C] float32,
    {factor: labels})`, `epoch_callback()` and `arrays(limit)` (numpy, for evaluation).
    """

    name: str = ""
    prefixed: bool = False
    fallback: bool = False
    settings: tuple = ()
    metrics: tuple = ()
    summary: str = ""

    def __init__(self, dataset: str, values: Values, *, seed: int = 0,
                 binarize: bool = False):
        self.dataset = dataset
        self.location = dataset.split(":", 1)[1] if self.prefixed else None
        self.values = values
        self.seed = int(seed)
        self.binarize = bool(binarize)
        self._splits = {}

    @classmethod
    def accepts(cls, dataset: str) -> bool:
        if cls.prefixed:
            return dataset.startswith(cls.name + ":")
        return dataset == cls.name

    @classmethod
    def check(cls, dataset: str, values: Values) -> None:
        """Refuse, before any work, a `--dataset` value or settings that cannot work
        (ValueError, one line); cheap (no data is read)."""

    def applicable_metrics(self) -> tuple:
        """The evaluation metrics this source's data supports with its settings."""
        return tuple(self.metrics)

    def why_not(self, metric: str) -> str:
        """Why `metric` does not apply to this data (for the evaluator's messages)."""
        return (f"needs data this source lacks: {self.dataset} supports "
                f"{', '.join(self.applicable_metrics())}")

    def spec(self):
        """`dvrnn_tf.data.DataSpec` of the sequences (may read the data's header)."""
        raise NotImplementedError

    def split(self, name: str):
        """The split `name` (train, validation or test), made once per source object."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
        if name not in self._splits:
            self._splits[name] = self._make_split(name)
        return self._splits[name]

    def _make_split(self, name: str):
        raise NotImplementedError


_SOURCES: list[type] = []


def register(source: type) -> type:
    """Class decorator: make `source` answer to its `--dataset` name."""
    if any(s.name == source.name for s in _SOURCES):
        raise TypeError(f"--dataset source {source.name!r} registered twice")
    if source.fallback and any(s.fallback for s in _SOURCES):
        raise TypeError("two fallback sources")
    unique(source.settings)
    _SOURCES.append(source)
    return source


def _loaded():
    import dvrnn_tf.data.sources  # noqa: F401  # registers every source on import
    return _SOURCES


def source_class(dataset: str) -> type:
    """The source class that answers to `--dataset=dataset`."""
    if not isinstance(dataset, str) or not dataset.strip():
        raise ValueError(f"--dataset={dataset!r} is not allowed; {dataset_help()}")
    sources = _loaded()
    named = [s for s in sources if not s.fallback and s.accepts(dataset)]
    if named:
        return named[0]
    prefix = dataset.split(":", 1)[0]
    if any(s.prefixed and s.name == prefix for s in sources):  # e.g. "arrays" without a path
        raise ValueError(f"--dataset={dataset!r} needs a location: {prefix}:<path>")
    fallback = [s for s in sources if s.fallback]
    if not fallback:
        raise ValueError(f"--dataset={dataset!r} is not allowed; {dataset_help()}")
    return fallback[0]


def dataset_help() -> str:
    return "allowed: " + ", ".join(_display(s) for s in sorted(_loaded(),
                                                                key=lambda s: s.fallback))


def all_settings() -> tuple[Setting, ...]:
    """Every source's settings, one per name (what the training binary makes flags of)."""
    return unique(s for src in _loaded() for s in src.settings)


def _display(source: type) -> str:
    if source.fallback:
        return "digits, mnist or a tfds image-classification set"
    return f"{source.name}:<path>" if source.prefixed else source.name


def users_of(setting_name: str) -> tuple:
    """The `--dataset` values (as a user writes them) whose source takes `setting_name`."""
    return tuple(_display(s) for s in _loaded() if any(x.name == setting_name
                                                        for x in s.settings))


def source_values(dataset: str, given: Mapping) -> Values:
    """The setting values of `dataset`'s source from `given` (defaults for the rest)."""
    cls = source_class(dataset)
    values = resolve(cls.settings, given)
    cls.check(dataset, values)
    return values


def open_source(dataset: str, values: Mapping | None = None, *, seed: int = 0,
                binarize: bool = False) -> SequenceSource:
    """The source of `--dataset=dataset` with its setting values (defaults for the rest);
    `binarize`: Bernoulli-binarize pixels (dynamically in training, once for evaluation)."""
    cls = source_class(dataset)
    values = values if isinstance(values, Values) else source_values(dataset, values or {})
    return cls(dataset, values, seed=seed, binarize=binarize)
