"""Everything a training run is determined by, in one table.

`TrainConfig`'s fields are the training binary's flags: `dvrnn_tf.train` defines one absl
flag per field from the metadata here (help, bounds, allowed values), and the same metadata
validates a config built in Python, so the binary and the library reject the same values
with the same words.
"""
import dataclasses
import json
import math
import re
from dataclasses import field

from dvrnn_tf.objectives import LIKELIHOODS, SCHEDULES

MODEL_NAMES = ("vrnn", "full", "factorized", "disentangled", "beta_vae", "cvae")
JIT_CHOICES = ("auto", "true", "false")
PRECISIONS = ("none", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def _f(default, help, lower=None, choices=None, upper=None):
    return field(default=default, metadata=dict(help=help, lower=lower, upper=upper, choices=choices))


@dataclasses.dataclass
class TrainConfig:
    # what to train
    model: str = _f("factorized", "Model family.", choices=MODEL_NAMES)
    likelihood: str = _f("bernoulli", "Observation model p(x_t | .); `bernoulli` binarizes the "
                         "data dynamically and is the one whose loss is in nats.",
                         choices=tuple(LIKELIHOODS))
    hidden_dim: int = _f(100, "Width of every feature MLP.", lower=1)
    rnn_dim: int = _f(100, "GRU state size (VRNN models).", lower=1)
    z_dim: int = _f(3, "Style code size per step (the beta-VAE's latent size).", lower=1)
    f_dim: int = _f(20, "Content code size (full, factorized, disentangled).", lower=1)
    kl_z_free_bits: float = _f(0.0, "disentangled: nats per frame of KL_z that cost nothing "
                               "(free bits: keeps the style code from collapsing).", lower=0.0)
    style_sees_content: bool = _f(True, "disentangled: the style posterior is q(z_t | x_t, f) "
                                  "(else q(z_t | x_t)).")
    split_encoder: str = _f("", "CVAE: encoder layers split into one copy per class: `all`, "
                            "`none`/empty, or indices `0,1` (0 = first; 3 = the Gaussian head).")
    split_decoder: str = _f("", "CVAE: decoder layers split into one copy per class: `all`, "
                            "`none`/empty, or indices `0,1` (0 = the layer reading (y, z)).")
    # KL weights, one schedule per term
    beta_z: float = _f(1.0, "Weight of KL_z (constant or warm-up schedules).", lower=0.0)
    beta_f: float = _f(1.0, "Weight of KL_f (constant or warm-up schedules).", lower=0.0)
    kl_z_schedule: str = _f("constant", "Schedule of KL_z.", choices=tuple(SCHEDULES))
    kl_f_schedule: str = _f("constant", "Schedule of KL_f.", choices=tuple(SCHEDULES))
    warmup_steps: int = _f(1000, "Steps of the linear warm-up of a beta.", lower=0)
    capacity_gamma: float = _f(100.0, "gamma of the capacity objective gamma*|KL - C|.", lower=0.0)
    capacity_z: float = _f(5.0, "C_max of KL_z, nats per image (capacity schedule).", lower=0.0)
    capacity_f: float = _f(5.0, "C_max of KL_f, nats per image (capacity schedule).", lower=0.0)
    capacity_steps: int = _f(10000, "Steps over which C rises linearly from 0 to C_max.", lower=0)
    # data
    dataset: str = _f("digits", "`digits` (embedded, offline), `mnist`, or another tfds "
                      "image-classification set by name.")
    data_dir: str = _f("", "Where tfds keeps prepared data sets (default: tfds's own).")
    manual_dir: str = _f("", "A folder with the data set's original files, from which tfds "
                         "prepares it offline (e.g. ../shared/data/mnist).")
    layout: str = _f("sequences", "`sequences`: T same-class images; `rows`: an image's rows "
                     "are the time steps.", choices=("sequences", "rows"))
    seq_len: int = _f(8, "T, images per sequence (`rows`: must equal the image height).", lower=1)
    # optimization
    batch_size: int = _f(128, "Global batch size in sequences (split across replicas).", lower=1)
    epochs: int = _f(10, "Passes over the training sequences.", lower=1)
    steps_per_epoch: int = _f(0, "Optimizer steps per epoch; 0: one pass over the data.", lower=0)
    learning_rate: float = _f(1e-3, "Adam learning rate.", lower=0.0)
    clip_norm: float = _f(10.0, "Global gradient-norm clip before each update; 0: off.", lower=0.0)
    seed: int = _f(0, "Seeds data sampling, initialization and latent noise.", lower=0)
    jit_compile: str = _f("auto", "XLA for the train step (`auto` is off on CPU).",
                          choices=JIT_CHOICES)
    deterministic: bool = _f(False, "Enable TF op determinism (turns XLA off).")
    # speed and scale (docs/performance.md)
    steps_per_execution: int = _f(1, "Train steps per call of the compiled train function "
                                  "(fewer Python round trips; callbacks see every N-th batch).",
                                  lower=1)
    validation_freq: int = _f(1, "Validate (TensorBoard's val_ curves) after every N-th "
                              "epoch; metrics.json is measured at the end regardless.",
                              lower=1)
    checkpoint_every: int = _f(1, "Back up the training state and write checkpoints/last.keras "
                               "every N epochs (and always after the last): a kill loses at "
                               "most N epochs.", lower=1)
    mixed_precision: str = _f("none", "Keras dtype policy: `mixed_float16` (GPUs: float16 "
                              "compute, float32 weights, loss scaling) or `mixed_bfloat16` "
                              "(TPUs, recent CPUs); losses and distributions stay float32.",
                              choices=PRECISIONS)
    strategy: str = _f("default", "tf.distribute strategy: `mirrored` (local GPUs, or the "
                       "CPU's --num_cpu_devices), `multi_worker` (from TF_CONFIG), `tpu`. "
                       "--batch_size is global.", choices=STRATEGIES)
    num_cpu_devices: int = _f(0, "Split the CPU into this many logical devices (0/1: don't), "
                              "e.g. to run --strategy=mirrored on one machine.", lower=0)
    tpu: str = _f("", "--strategy=tpu: the TPU's name or grpc:// address (default: $TPU_NAME, "
                  "else the local TPU VM).")
    # outputs
    run_dir: str = _f("runs/default", "Run directory: flags, checkpoints, logs, SavedModel, figures.")
    overwrite: bool = _f(False, "Replace a run directory that was made with other flags.")
    export: bool = _f(True, "Write the SavedModel at the end.")
    figures: bool = _f(True, "Write figures (PNG and TensorBoard) at the end and per epoch.")

    def __post_init__(self):
        validate(self)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    # Fields that may change between a run and its resumption.
    RESUMABLE_CHANGES = ("epochs", "overwrite", "run_dir", "export", "figures", "data_dir",
                         "manual_dir",
                         # where and how fast, not what: a run may resume on other hardware
                         "strategy", "num_cpu_devices", "tpu", "steps_per_execution",
                         "validation_freq", "checkpoint_every")

    def identity(self) -> dict:
        """The fields that define the run: a run directory is reused only if these match."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if k not in self.RESUMABLE_CHANGES}


def validate(config: TrainConfig) -> None:
    """Raise ValueError naming the first field whose value is not allowed."""
    for f in dataclasses.fields(config):
        value, meta = getattr(config, f.name), f.metadata
        if meta.get("choices") and value not in meta["choices"]:
            raise ValueError(f"--{f.name}={value!r} is not allowed; allowed: "
                             f"{', '.join(meta['choices'])}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--{f.name}={value} is not allowed; it must be a finite number")
        if meta.get("lower") is not None and value < meta["lower"]:
            raise ValueError(f"--{f.name}={value} is not allowed; it must be >= {meta['lower']}")
    if config.learning_rate <= 0:
        raise ValueError(f"--learning_rate={config.learning_rate} is not allowed; it must be > 0")
    if not config.run_dir:
        raise ValueError("--run_dir must not be empty")
    if config.deterministic and config.jit_compile == "true":
        raise ValueError("--deterministic turns XLA off; it contradicts --jit_compile=true "
                         "(leave --jit_compile out or set it to auto or false)")
    for name in ("split_encoder", "split_decoder"):
        value = getattr(config, name)
        if not re.fullmatch(r"\s*(|none|all|-?\d+(\s*,\s*-?\d+)*)\s*", value.lower()):
            raise ValueError(f"--{name}={value!r} is not allowed; use `all`, `none` or "
                             "comma-separated layer indices such as 0,1")
        if value.strip().lower() not in ("", "none") and config.model != "cvae":
            raise ValueError(f"--{name} applies to --model=cvae, not --model={config.model}")
    if config.model in ("vrnn", "beta_vae", "cvae") and config.kl_f_schedule != "constant":
        raise ValueError("--kl_f_schedule applies to the Disentangled VRNN (--model=full or "
                         f"factorized), not --model={config.model}")
