"""Model families: each declares, in its own module, what central code needs to know of it.

A family module (one file in `dvrnn_tf/models/families/`) defines its model class(es) and
ends with `register(ModelFamily(...))`: its `--model` names, the settings it takes, how a
model is built from them, and which evaluation metrics apply. Its FLOP count and its IWAE
proposal are methods of the model class (`step_costs`, `posterior_terms`,
`iwae_proposal`), beside the code they describe. The training binary, the evaluator and
the benchmark ask this registry; none of them tests a model's name.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from dvrnn_tf.settings import Setting, Values, unique


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """One family of models.

    names: the `--model` values it answers to (e.g. "full" and "factorized": two variants
      of one class); the name is passed to `build`.
    model_class: the Keras model class (its instances are recognised by `family_of`).
    settings: the settings it takes (its flags); `build` gets their values only.
    build: build(name, values, data, *, seed, clip_norm) -> the model, for a
      `dvrnn_tf.data.DataSpec` `data` (frame shape, T, factor labels).
    metrics: names of the `dvrnn_tf.evaluate` metrics that apply to its models.
    check: check(name, values, data) -> None; raises ValueError (one line naming the flag)
      for a combination of values that cannot be built. Called before any work.
    aliases: {old --model value: name}, accepted with the meaning they had.
    analyses: analyses(model, splits, out_dir, seed) -> dict, extra outputs of a finished
      training run (the beta-VAE's latent-space study); None for most families.
    summary: one line for the README and --help.
    """

    names: tuple
    model_class: type
    settings: tuple
    build: Callable
    metrics: tuple
    check: Callable | None = None
    aliases: Mapping = dataclasses.field(default_factory=dict)
    analyses: Callable | None = None
    summary: str = ""


_FAMILIES: list[ModelFamily] = []


def register(family: ModelFamily) -> ModelFamily:
    taken = {n for f in _FAMILIES for n in (*f.names, *f.aliases)}
    clash = taken & {*family.names, *family.aliases}
    if clash:
        raise TypeError(f"--model name(s) {sorted(clash)} registered twice")
    unique(family.settings)  # one declaration per name
    _FAMILIES.append(family)
    return family


def _loaded():
    import dvrnn_tf.models.families  # noqa: F401  # registers every family on import
    return _FAMILIES


def model_names() -> tuple:
    """Every `--model` value, in registration order (aliases left out)."""
    return tuple(n for f in _loaded() for n in f.names)


def canonical_name(name: str) -> str:
    """The `--model` value `name` stands for (an alias resolved), or ValueError."""
    for f in _loaded():
        if name in f.names:
            return name
        if name in f.aliases:
            return f.aliases[name]
    raise ValueError(f"--model={name!r} is not allowed; allowed: {', '.join(model_names())}")


def get_family(name: str) -> ModelFamily:
    """The family of the `--model` value `name` (or of an alias of it)."""
    name = canonical_name(name)
    return next(f for f in _loaded() if name in f.names)


def family_of(model) -> ModelFamily:
    """The family whose class `model` is an instance of (the most derived match)."""
    matches = [f for f in _loaded() if isinstance(model, f.model_class)]
    if not matches:
        raise ValueError(f"{type(model).__name__} belongs to no registered model family "
                         f"(families: {', '.join(model_names())})")
    return max(matches, key=lambda f: len(f.model_class.__mro__))


def all_settings() -> tuple[Setting, ...]:
    """Every family's settings, one per name (what the training binary makes flags of)."""
    return unique(s for f in _loaded() for s in f.settings)


def users_of(setting_name: str) -> tuple:
    """The `--model` values whose family takes `setting_name`."""
    return tuple(n for f in _loaded() if any(s.name == setting_name for s in f.settings)
                 for n in f.names)


def build_model(name: str, values: Values, data, *, seed=None, clip_norm=10.0):
    """The model of `--model=name` with its family's setting `values`, for `data`."""
    family = get_family(name)
    return family.build(canonical_name(name), values, data, seed=seed, clip_norm=clip_norm)
