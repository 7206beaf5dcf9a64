"""The regression experiment of the second paper (Fig. 3; DESIGN 3).

Codes of a trained (shared, shared) CVAE, label-dependent rotations T_y; fresh encoders
(x, y) -> z vs (x, y) -> T_y(z) and fresh decoders (y, z) -> x vs (y, T_y(z)) -> x, each pair
from the same initial weights on the same batches; loss curves and the ratio of the steps each
needs to reach the same loss.
"""
from __future__ import annotations

import os
import time

import numpy as np

from dvrnn_tf.experiments.framework import (Settings, _float_images, _write_json, load_data,
                                            model_grids, prior_codes, train_cvae)


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
    import tensorflow as tf

    from dvrnn_tf.objectives.optimizers import FusedAdam

    net = _mlp([settings.hidden_dim] * settings.num_hidden, targets.shape[-1], kind, seed)
    net.build((None, inputs.shape[-1]))
    opt = FusedAdam(settings.learning_rate)
    n, b = len(inputs), settings.batch_size
    order = np.random.default_rng([seed, 9]).integers(0, n, (settings.regression_steps, b))
    inputs, targets = tf.constant(inputs), tf.constant(targets)

    @tf.function
    def run(chunk):
        # A chunk of steps per graph call (one host round trip per chunk, not per step).
        losses = tf.TensorArray(tf.float32, size=tf.shape(chunk)[0])
        for i in tf.range(tf.shape(chunk)[0]):
            idx = chunk[i]
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
            losses = losses.write(i, loss)
        return losses.stack()

    chunk = 100
    return np.concatenate([run(tf.constant(order[i:i + chunk]))
                           for i in range(0, len(order), chunk)])


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
    from dvrnn_tf.models.families.cvae import label_transforms

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
