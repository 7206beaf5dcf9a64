"""The second paper's experimental framework (Shu et al.; DESIGN 3), as a library.

Every experiment trains small conditional VAEs (`dvrnn_tf.models.CVAE`, single images: T = 1)
on a labelled image set, draws the class-by-style grid mu_p(i, z_j) (the paper's Fig. 2), and
scores it (`dvrnn_tf.experiments.scoring`). Each returns a JSON-able dict and writes its
figures (PNG) and `<name>.json` into an output directory.

* `bias`: (shared, shared), (split enc, shared dec), (shared enc, split dec), (split, split).
* `regression`: codes of a trained (shared, shared) CVAE, label-dependent rotations T_y; fresh
  encoders (x, y) -> z vs (x, y) -> T_y(z) and fresh decoders (y, z) -> x vs (y, T_y(z)) -> x,
  each pair from the same initial weights on the same batches; loss curves and the ratio of
  the steps each needs to reach the same loss.
* `layer_split`: the encoder split while decoder layer l + k is split (k = 0..3), and the
  decoder split while encoder layer l - k is split (appendix A, Fig. 4).
* `competition`: x -> omega_q -> T_y -> omega_p under four conditions (standard, y masked from
  the encoder, encoder layer l-3 split, decoder layer l+3 split), for rotations and for the
  reflection; who wins is decided from the scores of mu_p's and mu'_p's grids.
* `win_rates`: competition (and regression) over many seeds, resumable, with Wilson intervals.

Layer numbering is the CVAE's: with `num_hidden` = 3 both networks have 4 layers 0..3; the
encoder's last layer l is 3, so "encoder layer l-3" is 0; the decoder's first layer l is 0, so
"decoder layer l+3" is 3.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

BIAS_CONFIGS = {  # name -> (split_encoder, split_decoder)
    "shared_shared": ("none", "none"),
    "split_enc": ("all", "none"),
    "split_dec": ("none", "all"),
    "split_split": ("all", "all"),
}
CONDITIONS = ("standard", "masked", "encoder_split", "decoder_split")
TRANSFORM_KINDS = ("rotation", "reflection")


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

    keras.utils.set_random_seed(seed)
    images, labels = _float_images(train_set, settings.max_train_images)
    model_kwargs.setdefault("transform_seed", seed)
    model = CVAE(train_set.image_shape, num_classes=train_set.num_classes, seq_len=1,
                 hidden_dim=settings.hidden_dim, z_dim=settings.z_dim,
                 num_hidden=settings.num_hidden, label_every_layer=settings.label_every_layer,
                 seed=seed, **model_kwargs)
    model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate))
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
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


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


# ---- experiments ------------------------------------------------------------------------------

def _scored_model(settings, train_set, seed, judge, z, **kwargs):
    from dvrnn_tf.experiments.scoring import score_grid

    model, info = train_cvae(settings, train_set, seed, **kwargs)
    grids = model_grids(model, z)
    scores = {k: score_grid(g, judge, scale=settings.morph_scale) for k, g in grids.items()}
    return model, info, grids, scores


def bias(settings: Settings, seed: int, judge, out_dir, data=None) -> dict:
    """Fig. 2: the four (encoder, decoder) split settings, each grid scored."""
    train_set, _ = data or load_data(settings)
    z = prior_codes(settings.z_dim, settings.num_styles, seed)
    result = {"experiment": "bias", "seed": seed, "settings": settings.to_dict(), "runs": {}}
    panels = []
    for name, (enc, dec) in BIAS_CONFIGS.items():
        _, info, grids, scores = _scored_model(settings, train_set, seed, judge, z,
                                               split_encoder=enc, split_decoder=dec)
        png = _save_grid(grids["mu_p"], os.path.join(out_dir, f"bias_{name}.png"))
        result["runs"][name] = {"split_encoder": enc, "split_decoder": dec, "train": info,
                                "score": scores["mu_p"], "grid_png": png}
        panels.append((f"{name} (enc {enc}, dec {dec})", grids["mu_p"], scores["mu_p"]))
    result["figure"] = grids_figure(panels, os.path.join(out_dir, "bias.png"), columns=2)
    _write_json(os.path.join(out_dir, "bias.json"), result)
    return result


def layer_split(settings: Settings, seed: int, judge, out_dir, data=None) -> dict:
    """Appendix A, Fig. 4: encoder split + decoder layer l+k split (top), decoder split +
    encoder layer l-k split (bottom), k = 0..3 (fewer when the networks are shallower)."""
    train_set, _ = data or load_data(settings)
    z = prior_codes(settings.z_dim, settings.num_styles, seed)
    layers = settings.num_hidden + 1
    result = {"experiment": "layer_split", "seed": seed, "settings": settings.to_dict(),
              "encoder_split": {}, "decoder_split": {}}
    panels = []
    for k in range(min(4, layers)):
        _, info, grids, scores = _scored_model(settings, train_set, seed, judge, z,
                                               split_encoder="all", split_decoder=[k])
        result["encoder_split"][f"decoder_l+{k}"] = {"decoder_layer": k, "train": info,
                                                     "score": scores["mu_p"]}
        panels.append((f"enc split, dec layer l+{k} split", grids["mu_p"], scores["mu_p"]))
    for k in range(min(4, layers)):
        layer = layers - 1 - k
        _, info, grids, scores = _scored_model(settings, train_set, seed, judge, z,
                                               split_encoder=[layer], split_decoder="all")
        result["decoder_split"][f"encoder_l-{k}"] = {"encoder_layer": layer, "train": info,
                                                     "score": scores["mu_p"]}
        panels.append((f"dec split, enc layer l-{k} split", grids["mu_p"], scores["mu_p"]))
    result["figure"] = grids_figure(panels, os.path.join(out_dir, "layer_split.png"),
                                    columns=min(4, layers))
    _write_json(os.path.join(out_dir, "layer_split.json"), result)
    return result


def condition_kwargs(condition: str, num_hidden: int) -> dict:
    """CVAE arguments of a competition condition."""
    layers = num_hidden + 1
    if condition == "standard":
        return {}
    if condition == "masked":
        return {"mask_label": True}
    if condition == "encoder_split":  # encoder layer l - 3, l = the last layer
        return {"split_encoder": [max(0, layers - 4)]}
    if condition == "decoder_split":  # decoder layer l + 3, l = the first layer
        return {"split_decoder": [min(layers - 1, 3)]}
    raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")


def competition_run(settings: Settings, seed: int, judge, condition: str, transform: str,
                    data=None, out_dir=None) -> dict:
    """One competition: train x -> omega_q -> T_y -> omega_p, score mu_p's and mu'_p's grids,
    decide the winner. Writes `competition_<transform>_<condition>.png` when out_dir is given."""
    from dvrnn_tf.experiments.scoring import decide_winner

    if transform not in TRANSFORM_KINDS:
        raise ValueError(f"transform must be one of {TRANSFORM_KINDS}, got {transform!r}")
    train_set, _ = data or load_data(settings)
    z = prior_codes(settings.z_dim, settings.num_styles, seed)
    start, cpu = time.perf_counter(), time.process_time()
    _, info, grids, scores = _scored_model(
        settings, train_set, seed, judge, z, label_transform=transform,
        **condition_kwargs(condition, settings.num_hidden))
    result = {"experiment": "competition", "seed": seed, "condition": condition,
              "transform": transform, "train": info, "score_mu_p": scores["mu_p"],
              "score_mu_p_prime": scores["mu_p_prime"],
              "winner": decide_winner(scores["mu_p"], scores["mu_p_prime"])}
    if out_dir is not None:
        result["figure"] = grids_figure(
            [(f"mu_p ({transform}, {condition})", grids["mu_p"], scores["mu_p"]),
             (f"mu'_p = mu_p(y, T_y z); winner: {result['winner']}", grids["mu_p_prime"],
              scores["mu_p_prime"])],
            os.path.join(out_dir, f"competition_{transform}_{condition}.png"), columns=1)
    result["seconds"] = time.perf_counter() - start
    result["cpu_seconds"] = time.process_time() - cpu
    return result


def competition(settings: Settings, seed: int, judge, out_dir, data=None,
                conditions=CONDITIONS, transforms=TRANSFORM_KINDS) -> dict:
    """Appendix B, Figs. 5 and 6: every condition under each transform."""
    data = data or load_data(settings)
    result = {"experiment": "competition", "seed": seed, "settings": settings.to_dict(),
              "runs": {}}
    for transform in transforms:
        for condition in conditions:
            run = competition_run(settings, seed, judge, condition, transform, data=data,
                                  out_dir=out_dir)
            result["runs"][f"{transform}/{condition}"] = run
    _write_json(os.path.join(out_dir, "competition.json"), result)
    return result


# ---- regression (Fig. 3) ----------------------------------------------------------------------

def _mlp(units, out_units, name, seed):
    import keras

    init = lambda i: keras.initializers.GlorotUniform(seed=seed * 100 + i)  # noqa: E731
    layers = [keras.layers.Dense(u, activation="relu", kernel_initializer=init(i))
              for i, u in enumerate(units)]
    layers.append(keras.layers.Dense(out_units, kernel_initializer=init(len(units))))
    return keras.Sequential(layers, name=name)


def _fit_regression(kind, inputs, targets, settings, seed):
    """Train a fresh network (same init for a given seed) on inputs -> targets with Adam;
    kind "encoder": mean squared error summed over z; "decoder": Bernoulli cross-entropy
    summed over pixels (targets binary). -> per-step training losses [steps]."""
    import keras
    import tensorflow as tf

    net = _mlp([settings.hidden_dim] * settings.num_hidden, targets.shape[-1], kind, seed)
    net.build((None, inputs.shape[-1]))
    opt = keras.optimizers.Adam(settings.learning_rate)
    n, b = len(inputs), settings.batch_size
    order = np.random.default_rng([seed, 9]).integers(0, n, (settings.regression_steps, b))
    inputs, targets = tf.constant(inputs), tf.constant(targets)

    @tf.function
    def step(idx):
        x, t = tf.gather(inputs, idx), tf.gather(targets, idx)
        with tf.GradientTape() as tape:
            out = net(x, training=True)
            if kind == "encoder":
                loss = tf.reduce_mean(tf.reduce_sum(tf.square(out - t), -1))
            else:
                loss = tf.reduce_mean(tf.reduce_sum(
                    tf.nn.sigmoid_cross_entropy_with_logits(labels=t, logits=out), -1))
        grads = tape.gradient(loss, net.trainable_variables)
        opt.apply(grads, net.trainable_variables)
        return loss

    return np.array([float(step(tf.constant(i))) for i in order])


def smooth(losses, window: int = 50):
    """Trailing moving average (the first values average what exists so far)."""
    losses = np.asarray(losses, np.float64)
    c = np.cumsum(np.insert(losses, 0, 0.0))
    idx = np.arange(1, len(losses) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def steps_to_reach(curve, target) -> int | None:
    """The first step (1-based) at which the curve is <= target, or None."""
    hit = np.flatnonzero(np.asarray(curve) <= target)
    return int(hit[0]) + 1 if len(hit) else None


def compare_curves(disentangled, entangled, window: int = 50, fraction: float = 0.9) -> dict:
    """Steps each (smoothed) curve needs to reach the same loss.

    The common target is `fraction` (90%) of the way from the initial loss down to the worse
    of the two final losses, so both curves reach it; ratio = entangled steps / disentangled
    steps (> 1: the disentangled problem is learned faster).
    """
    d, e = smooth(disentangled, window), smooth(entangled, window)
    start = max(d[0], e[0])
    worse_final = max(d[-1], e[-1])
    target = start - fraction * (start - worse_final)
    sd, se = steps_to_reach(d, target), steps_to_reach(e, target)
    return {"target_loss": float(target), "steps_disentangled": sd, "steps_entangled": se,
            "ratio": (se / sd) if sd and se else None,
            "final_disentangled": float(d[-1]), "final_entangled": float(e[-1]),
            "window": window, "fraction": fraction}


def regression(settings: Settings, seed: int, out_dir=None, data=None, base_model=None,
               judge=None) -> dict:
    """Fig. 3: regressions onto a disentangled code z and onto its rotation T_y(z).

    The codes come from `base_model` or a (shared, shared) CVAE trained here; with a judge its
    grid is scored (`base_model_score`: is the code it gives really disentangled?).
    """
    from dvrnn_tf.experiments.scoring import score_grid
    from dvrnn_tf.models.cvae import label_transforms

    train_set, _ = data or load_data(settings)
    start, cpu = time.perf_counter(), time.process_time()
    info = None
    if base_model is None:
        base_model, info = train_cvae(settings, train_set, seed)
    base_score = None
    if judge is not None:
        grid = model_grids(base_model, prior_codes(settings.z_dim, settings.num_styles, seed))
        base_score = score_grid(grid["mu_p"], judge, scale=settings.morph_scale)
    images, labels = _float_images(train_set, settings.regression_images)
    rng = np.random.default_rng([seed, 13])
    x = (rng.random(images.shape) < images).astype(np.float32).reshape(len(images), -1)
    codes = base_model.encode(x.reshape((len(x), 1) + train_set.image_shape), labels)
    z = np.asarray(codes["z_sample"])[:, 0]
    mats = label_transforms("rotation", train_set.num_classes, settings.z_dim, seed)
    tz = np.einsum("nij,nj->ni", mats[labels], z).astype(np.float32)
    onehot = np.eye(train_set.num_classes, dtype=np.float32)[labels]
    curves = {
        "encoder_disentangled": _fit_regression("encoder", np.concatenate([x, onehot], 1), z,
                                                settings, seed),
        "encoder_entangled": _fit_regression("encoder", np.concatenate([x, onehot], 1), tz,
                                             settings, seed),
        "decoder_disentangled": _fit_regression("decoder", np.concatenate([z, onehot], 1), x,
                                                settings, seed),
        "decoder_entangled": _fit_regression("decoder", np.concatenate([tz, onehot], 1), x,
                                             settings, seed),
    }
    result = {"experiment": "regression", "seed": seed, "settings": settings.to_dict(),
              "base_model_train": info, "base_model_score": base_score,
              "num_examples": int(len(x)),
              "encoder": compare_curves(curves["encoder_disentangled"],
                                        curves["encoder_entangled"]),
              "decoder": compare_curves(curves["decoder_disentangled"],
                                        curves["decoder_entangled"]),
              "curves": {k: v.tolist() for k, v in curves.items()},
              "loss": {"encoder": "squared error summed over z, mean over the batch",
                       "decoder": "Bernoulli cross-entropy summed over pixels (nats)"}}
    result["seconds"] = time.perf_counter() - start
    result["cpu_seconds"] = time.process_time() - cpu
    if out_dir is not None:
        result["figure"] = regression_figure(curves, result,
                                             os.path.join(out_dir, "regression.png"))
        _write_json(os.path.join(out_dir, "regression.json"), result)
    return result


def regression_figure(curves, result, path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4), dpi=110)
    for ax, kind in zip(fig.subplots(1, 2), ("encoder", "decoder")):
        cmp = result[kind]
        for name, style in (("disentangled", "-"), ("entangled", "--")):
            ax.plot(smooth(curves[f"{kind}_{name}"]), style,
                    label=f"{name} (reaches target in {cmp[f'steps_{name}']} steps)")
        ax.axhline(cmp["target_loss"], color="grey", lw=0.6)
        ratio = "n/a" if cmp["ratio"] is None else f"{cmp['ratio']:.2f}"
        ax.set_title(f"{kind}: entangled / disentangled steps = {ratio}", fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (moving average)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    return path
