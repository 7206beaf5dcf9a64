"""The second paper's experimental framework (Shu et al.; DESIGN 3), as a library: the core.

Every experiment trains small conditional VAEs (`dvrnn_tf.models.CVAE`, single images: T = 1)
on a labelled image set, draws the class-by-style grid mu_p(i, z_j) (the paper's Fig. 2), and
scores it (`dvrnn_tf.experiments.scoring`). Each returns a JSON-able dict and writes its
figures (PNG) and `<name>.json` into an output directory.

This module holds what they share: `Settings`, the data (`load_data`, `labelled_dataset`),
training a CVAE (`train_cvae`), the grid's style codes and grids (`prior_codes`,
`model_grids`), and the figures and JSON files. The experiments themselves:

* `dvrnn_tf.experiments.grid_experiments`: `bias`, `layer_split`, `competition` (and
  `competition_run`, one condition under one transform), each judged by its scored grids.
* `dvrnn_tf.experiments.regression`: `regression` (Fig. 3), the step ratio of regressions onto
  a disentangled code and onto its label-dependent rotation.
* `dvrnn_tf.experiments.win_rates`: competition (and regression) over many seeds, resumable,
  with Wilson intervals.

Layer numbering is the CVAE's: with `num_hidden` = 3 both networks have 4 layers 0..3; the
encoder's last layer l is 3, so "encoder layer l-3" is 0; the decoder's first layer l is 0, so
"decoder layer l+3" is 3.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import numpy as np

CONDITIONS = ("standard", "masked", "encoder_split", "decoder_split")
TRANSFORM_KINDS = ("rotation", "reflection")
STEPS_PER_EXECUTION = 50


@dataclasses.dataclass
class Settings:
    """What every experiment is determined by (besides the seed). The defaults are the small,
    fast MNIST setting used for the win rates."""
    dataset: str = "mnist"
    data_dir: str = ""
    manual_dir: str = ""
    hidden_dim: int = 256
    z_dim: int = 8
    num_hidden: int = 3
    label_every_layer: bool = True  # onehot(y) into every layer (CVAE's label_every_layer)
    steps: int = 1500           # optimizer steps per CVAE
    batch_size: int = 64
    learning_rate: float = 1e-3
    num_styles: int = 20        # grid columns: prior samples z_j
    morph_scale: int = 4        # Morpho-MNIST upscaling of each cell before measuring
    regression_steps: int = 1500
    regression_images: int = 10000
    max_train_images: int = 0   # 0: the whole training split

    def to_dict(self):
        return dataclasses.asdict(self)


# ---- data and training ---------------------------------------------------------------------

def load_data(settings: Settings):
    """(train ImageSet, test ImageSet)."""
    from dvrnn_tf.data import load_split

    load = dict(data_dir=settings.data_dir or None, manual_dir=settings.manual_dir or None)
    train = load_split(settings.dataset, "train", **load)
    test = load_split(settings.dataset, "test", **load)
    return train, test


def _float_images(image_set, limit=0):
    images = np.asarray(image_set.images)
    labels = np.asarray(image_set.labels, np.int32)
    if limit:
        images, labels = images[:limit], labels[:limit]
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    return images.astype(np.float32), labels


def labelled_dataset(images, labels, batch_size: int, seed: int):
    """Endless (x [B, 1, H, W, C] binarized afresh each read, y [B] int32) batches."""
    import tensorflow as tf

    n = len(images)
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    ds = ds.shuffle(min(n, 20000), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size, drop_remainder=True).enumerate()
    key = tf.constant([seed, 11], tf.int64)

    def binarize(i, xy):
        x, y = xy
        u = tf.random.stateless_uniform(tf.shape(x), tf.random.experimental.stateless_fold_in(
            key, i))
        return tf.cast(u < x, tf.float32)[:, None], y

    return ds.map(binarize, num_parallel_calls=2).prefetch(2)


def train_cvae(settings: Settings, train_set, seed: int, **model_kwargs):
    """A CVAE trained for settings.steps steps; -> (model, info dict).

    model_kwargs reach `CVAE` (split_encoder, split_decoder, mask_label, label_transform, ...).
    """
    import keras

    from dvrnn_tf.models import CVAE
    from dvrnn_tf.objectives.optimizers import FusedAdam

    keras.utils.set_random_seed(seed)
    images, labels = _float_images(train_set, settings.max_train_images)
    model_kwargs.setdefault("transform_seed", seed)
    model = CVAE(train_set.image_shape, num_classes=train_set.num_classes, seq_len=1,
                 hidden_dim=settings.hidden_dim, z_dim=settings.z_dim,
                 num_hidden=settings.num_hidden, label_every_layer=settings.label_every_layer,
                 seed=seed, **model_kwargs)
    # Steps run up to STEPS_PER_EXECUTION at a time in one graph call and Adam is one kernel per
    # variable: the same updates as step-by-step Keras Adam, in about half the time (a split
    # layer's ten kernel copies are updated every step).
    model.compile(optimizer=FusedAdam(settings.learning_rate),
                  steps_per_execution=math.gcd(STEPS_PER_EXECUTION, settings.steps))
    ds = labelled_dataset(images, labels, settings.batch_size, seed)
    start, cpu = time.perf_counter(), time.process_time()
    history = model.fit(ds, epochs=1, steps_per_epoch=settings.steps, verbose=0,
                        shuffle=False).history
    info = {"steps": settings.steps, "train_seconds": time.perf_counter() - start,
            "train_cpu_seconds": time.process_time() - cpu,
            "final_epoch_mean": {k: float(v[-1]) for k, v in history.items()},
            "model": {k: v for k, v in model.get_config().items()
                      if k in ("split_encoder", "split_decoder", "mask_label", "label_transform",
                               "transform_seed", "hidden_dim", "z_dim", "num_hidden",
                               "label_every_layer")}}
    return model, info


def prior_codes(z_dim: int, num: int, seed: int):
    """The grid's style sources z_1..z_num ~ N(0, I), fixed by the seed: [num, z_dim]."""
    return np.random.default_rng([seed, 5]).standard_normal((num, z_dim)).astype(np.float32)


def model_grids(model, z):
    """{"mu_p": grid, "mu_p_prime": grid}, each [K, J, H, W, C] (the second only with a
    label transform)."""
    grids = {"mu_p": np.asarray(model.grid(z))}
    if model.transforms is not None:
        grids["mu_p_prime"] = np.asarray(model.grid(z, transformed=True))
    return grids


# ---- figures --------------------------------------------------------------------------------

def _write_json(path, payload):
    from dvrnn_tf.atomic import atomic_file

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_file(path) as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=_json_default)
        f.write("\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _score_line(score):
    label = score.get("label_preservation")
    label = "-" if label is None else f"{label:.2f}"
    return (f"label {label}  style R2 {score['style_r2']:.2f} (chance "
            f"{score['style_chance']:.2f})  class R2 {score['class_r2']:.2f}"
            f"{'  DISENTANGLED' if score['disentangled'] else ''}")


def grids_figure(panels, path, columns=None):
    """panels: [(title, grid [K, J, H, W, C], score or None)] drawn side by side (or in rows of
    `columns`) with their scores under the titles; written as a PNG."""
    from matplotlib.figure import Figure

    from dvrnn_tf.figures import image_grid

    n = len(panels)
    cols = columns or n
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(4.2 * cols, 2.6 * rows + 0.4), dpi=110)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (title, grid, score) in zip(axes, panels):
        ax.imshow(image_grid(grid, pad=1), interpolation="nearest")
        text = title if score is None else f"{title}\n{_score_line(score)}"
        ax.set_title(text, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[n:]:
        ax.axis("off")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    return path


def _save_grid(grid, path):
    from dvrnn_tf.figures import image_grid
    image_grid(grid, path)
    return path
