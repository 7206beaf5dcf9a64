"""What a training run is determined by: a model family, a data source, and how to train.

The values come flat (the training binary's flags, `TrainConfig(model=..., hidden_dim=...)`
in Python, a run directory's config.json) and are sorted into four groups, each checked by
the settings that declare it and handed only to the part that reads it:

  model_settings  the model family's settings (`dvrnn_tf.models.registry`)
  data_settings   the sequence source's settings (`dvrnn_tf.data.registry`)
  training        optimization, seeding, speed and scale (`TRAINING_SETTINGS` below)
  outputs         where and what a run writes (`OUTPUT_SETTINGS`)

A value given for a setting that the chosen model or source does not take is an error that
names the models or sources taking it.
"""
from __future__ import annotations

import json

from dvrnn_tf.data import registry as sources
from dvrnn_tf.models import registry as families
from dvrnn_tf.settings import Setting, Values, resolve

JIT_CHOICES = ("auto", "true", "false")
PRECISIONS = ("none", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")

MODEL = Setting("model", "factorized", "Model family (see the README's model list).")
DATASET = Setting("dataset", "digits", "Sequence source: `digits` (embedded, offline), "
                  "`mnist` or another tfds image-classification set by name (same-class "
                  "sequences), `sprites`, `moving_mnist`, `arrays:<file.npz|.npy>`, "
                  "`frames:<folder>`.")
TRAINING_SETTINGS = (
    Setting("batch_size", 128, "Global batch size in sequences (split across replicas).",
            lower=1),
    Setting("epochs", 10, "Passes over the training sequences.", lower=1),
    Setting("steps_per_epoch", 0, "Optimizer steps per epoch; 0: one pass over the data.",
            lower=0),
    Setting("learning_rate", 1e-3, "Adam learning rate.", lower=0.0),
    Setting("lr_decay_epochs", 0, "Cosine-decay the learning rate over this many epochs, then "
            "hold it at --lr_final_fraction of --learning_rate; 0: constant.", lower=0),
    Setting("lr_final_fraction", 0.01, "Where --lr_decay_epochs ends, as a fraction of "
            "--learning_rate.", lower=0.0, upper=1.0),
    Setting("clip_norm", 10.0, "Global gradient-norm clip before each update; 0: off.",
            lower=0.0),
    Setting("seed", 0, "Seeds data sampling, initialization and latent noise.", lower=0),
    Setting("jit_compile", "auto", "XLA for the train step (`auto` is off on CPU).",
            choices=JIT_CHOICES),
    Setting("deterministic", False, "Enable TF op determinism (turns XLA off)."),
    # speed and scale (docs/performance.md)
    Setting("steps_per_execution", 1, "Train steps per call of the compiled train function "
            "(fewer Python round trips; callbacks see every N-th batch).", lower=1),
    Setting("validation_freq", 1, "Validate (TensorBoard's val_ curves) after every N-th "
            "epoch; metrics.json is measured at the end regardless.", lower=1),
    Setting("checkpoint_every", 1, "Back up the training state and write "
            "checkpoints/last.keras every N epochs (and always after the last): a kill loses "
            "at most N epochs.", lower=1),
    Setting("mixed_precision", "none", "Keras dtype policy: `mixed_float16` (GPUs: float16 "
            "compute, float32 weights, loss scaling) or `mixed_bfloat16` (TPUs, recent CPUs); "
            "losses and distributions stay float32.", choices=PRECISIONS),
    Setting("strategy", "default", "tf.distribute strategy: `mirrored` (local GPUs, or the "
            "CPU's --num_cpu_devices), `multi_worker` (from TF_CONFIG), `tpu`. --batch_size "
            "is global.", choices=STRATEGIES),
    Setting("num_cpu_devices", 0, "Split the CPU into this many logical devices (0/1: don't), "
            "e.g. to run --strategy=mirrored on one machine.", lower=0),
    Setting("tpu", "", "--strategy=tpu: the TPU's name or grpc:// address (default: "
            "$TPU_NAME, else the local TPU VM)."),
)
OUTPUT_SETTINGS = (
    Setting("run_dir", "runs/default", "Run directory: flags, checkpoints, logs, SavedModel, "
            "figures."),
    Setting("overwrite", False, "Replace a run directory that was made with other flags."),
    Setting("export", True, "Write the SavedModel at the end."),
    Setting("figures", True, "Write figures (PNG and TensorBoard) at the end and per epoch."),
)
# Settings that may change between a run and its resumption: where and how fast, not what
# (a run may resume on other hardware, or be told to run longer).
RESUMABLE_CHANGES = ("epochs", "overwrite", "run_dir", "export", "figures", "data_dir",
                     "manual_dir", "strategy", "num_cpu_devices", "tpu",
                     "steps_per_execution", "validation_freq", "checkpoint_every")


def all_settings() -> tuple:
    """Every setting of every part: what the training binary makes flags of."""
    from dvrnn_tf.settings import unique
    return unique((MODEL, DATASET, *TRAINING_SETTINGS, *OUTPUT_SETTINGS,
                   *families.all_settings(), *sources.all_settings()))


def _settings(model: str, dataset: str) -> tuple:
    family = families.get_family(model)
    source = sources.source_class(dataset)
    return (MODEL, DATASET, *family.settings, *source.settings, *TRAINING_SETTINGS,
            *OUTPUT_SETTINGS)


def settings_for(model: str, dataset: str = DATASET.default) -> tuple:
    """Names of every setting a run of `--model=model --dataset=dataset` takes."""
    return tuple(s.name for s in _settings(model, dataset))


class TrainConfig:
    """A training run's settings, sorted into model, data, training and output groups.

    TrainConfig(model="factorized", dataset="digits", **values): every value is checked now
    (ValueError naming the flag: a bad value, or a setting the chosen model or source does
    not take); settings not given take their defaults.
    """

    def __init__(self, model: str = MODEL.default, dataset: str = DATASET.default, **values):
        self.model = families.canonical_name(model)
        self.dataset = DATASET.check(dataset).strip()
        family = families.get_family(self.model)
        own = settings_for(self.model, self.dataset)
        stray = [name for name in values if name not in own]
        if stray:
            raise ValueError(_not_taken(stray, self.model, self.dataset))
        self.model_settings = resolve(family.settings, values)
        self.data_settings = sources.source_values(self.dataset, values)
        self.training = resolve(TRAINING_SETTINGS, values)
        self.outputs = resolve(OUTPUT_SETTINGS, values)
        self._check()
        if family.check is not None:
            family.check(self.model, self.model_settings, None)

    def _check(self):
        t = self.training
        if t.learning_rate <= 0:
            raise ValueError(f"--learning_rate={t.learning_rate} is not allowed; it must be > 0")
        if not self.outputs.run_dir:
            raise ValueError("--run_dir must not be empty")
        if t.deterministic and t.jit_compile == "true":
            raise ValueError("--deterministic turns XLA off; it contradicts --jit_compile=true "
                             "(leave --jit_compile out or set it to auto or false)")

    def __getattr__(self, name):
        # The run-wide settings read as attributes (config.seed, config.run_dir, ...); the
        # model's and the data's only through their groups.
        if name.startswith("_") or name in ("model_settings", "data_settings", "training",
                                             "outputs"):
            raise AttributeError(name)  # not set yet (the constructor raised)
        for group in ("training", "outputs"):
            values = self.__dict__.get(group)
            if values is not None and name in values:
                return values[name]
        raise AttributeError(f"TrainConfig has no {name!r}; model settings are in "
                             "config.model_settings, data settings in config.data_settings")

    def to_dict(self) -> dict:
        """Every value, flat: config.json, flags.txt and `TrainConfig(**d)` agree."""
        return {"model": self.model, "dataset": self.dataset, **self.model_settings,
                **self.data_settings, **self.training, **self.outputs}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes) -> TrainConfig:
        """A copy with some values changed (checked like a new config)."""
        values = {**self.to_dict(), **changes}
        return TrainConfig(**values)

    def identity(self) -> dict:
        """The values that define the run: a run directory is reused only if these match."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUMABLE_CHANGES}

    def identity_beyond_defaults(self) -> dict:
        """`identity()` without the settings at their defaults (model and data set kept): what
        a setting added to the package later, at its default, leaves unchanged."""
        defaults = {s.name: s.default for s in _settings(self.model, self.dataset)}
        return {k: v for k, v in self.identity().items()
                if k in ("model", "dataset") or k not in defaults or v != defaults[k]}

    @classmethod
    def from_dict(cls, raw: dict) -> TrainConfig:
        """A config from a run directory's config.json; values of settings the run's model
        or source does not take (an older, flat config.json held every flag) are dropped."""
        model, dataset = raw.get("model", MODEL.default), raw.get("dataset", DATASET.default)
        own = set(settings_for(model, dataset)) - {"model", "dataset"}
        return cls(model=model, dataset=dataset, **{k: v for k, v in raw.items() if k in own})

    def __eq__(self, other):
        return isinstance(other, TrainConfig) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"TrainConfig({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"


def _not_taken(names, model: str, dataset: str) -> str:
    """Why `--name` (each of `names`) cannot be given with this model and data set."""
    reasons = []
    for name in names:
        if families.users_of(name):
            reasons.append(f"--{name} applies to --model={', '.join(families.users_of(name))}, "
                           f"not --model={model}")
        elif sources.users_of(name):
            reasons.append(f"--{name} applies to --dataset={', '.join(sources.users_of(name))}"
                           f", not --dataset={dataset}")
        else:
            reasons.append(f"unknown setting --{name}")
    return "; ".join(reasons)


def validate(config: TrainConfig) -> None:
    """Re-check a config (its constructor already did): ValueError naming the first flag."""
    TrainConfig(**config.to_dict())


__all__ = ["DATASET", "MODEL", "OUTPUT_SETTINGS", "RESUMABLE_CHANGES", "TRAINING_SETTINGS",
           "TrainConfig", "Values", "all_settings", "settings_for", "validate"]
