"""One training run: data, model, `fit` with resumable checkpoints, evaluation, outputs."""
import os
import pathlib
import time

import keras
import numpy as np
import tensorflow as tf

from dvrnn_tf import faults
from dvrnn_tf.data import open_source
from dvrnn_tf.models.registry import get_family
from dvrnn_tf.objectives import get_likelihood
from dvrnn_tf.training import distribute
from dvrnn_tf.training.callbacks import (AtomicBackupAndRestore, AtomicModelCheckpoint,
                                         NonFiniteGuard)
from dvrnn_tf.training.factory import build_model, check_model
from dvrnn_tf.objectives.optimizers import FusedAdam
from dvrnn_tf.training.phase_timer import PhaseTimer, Stopwatch, timing_report
from dvrnn_tf.training.progress import progress_callbacks
from dvrnn_tf.training.run_dir import RunDir, write_json_atomic

# Images in the figure batch (held out, fixed).
FIGURE_BATCH = 8


def open_data(config):
    """The run's sequence source: its data binarized when the model's likelihood says so."""
    likelihood = get_likelihood(config.model_settings.get("likelihood", "bernoulli"))
    return open_source(config.dataset, config.data_settings, seed=config.seed,
                       binarize=likelihood.binarize)


def make_samplers(source, held_out="validation"):
    """(train split, held-out split) of a run's source (`open_data`): the model trains on
    train and is validated (val_ curves, metrics.json) on validation; test is for reported
    numbers (`dvrnn_tf.evaluate`)."""
    return source.split("train"), source.split(held_out)


def learning_rate(config, steps_per_epoch):
    """--learning_rate, or a cosine decay of it over --lr_decay_epochs (a function of the
    optimizer's step, so a resumed run continues it where it stopped)."""
    if not config.lr_decay_epochs:
        return config.learning_rate
    return keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=config.lr_decay_epochs * steps_per_epoch,
        alpha=config.lr_final_fraction)


def _jit(config):
    return {"auto": "auto", "true": True, "false": False}[config.jit_compile]


def _callbacks(config, run, sampler, figure_x):
    cbs = [
        sampler.epoch_callback(),
        *faults.callbacks(),  # none unless a reliability test asks for them
        # First: a non-finite term or weight stops the run before the two below save it.
        NonFiniteGuard(resume_hint=f"Rerunning the command resumes from {run.backup}; to "
                       "avoid the divergence, lower --learning_rate or --clip_norm."),
        # Like keras's BackupAndRestore(delete_checkpoint=False), but safe against a kill at
        # any instant; kept at the end: rerunning a finished command resumes at its end.
        # (A non-chief worker writes its own, temporary, backup; it resumes from the chief's.)
        distribute.backup_callback(AtomicBackupAndRestore, run.backup,
                                   RunDir(_abspath(config.run_dir)).backup,
                                   every=config.checkpoint_every),
        AtomicModelCheckpoint(str(run.checkpoints / "last.keras"), every=config.checkpoint_every),
        keras.callbacks.TensorBoard(str(run.logs), write_graph=False),
    ]
    if config.figures:
        from dvrnn_tf.figures import FigureCallback
        # About ten snapshots per run: figures are drawn eagerly and cost seconds each.
        cbs.append(FigureCallback(figure_x, str(run.logs), every=max(1, config.epochs // 10)))
    return cbs


def train(config, callbacks=(), verbose="auto", started=None):
    """Train as `config` says into `config.run_dir`; returns the metrics.json payload.

    The payload's "timing" says where the wall time went (`phase_timer`); `started`, a
    `time.perf_counter()` value from before the caller's imports, adds their "startup" phase.

    Rerunning the same config after an interruption resumes from the last finished epoch
    (BackupAndRestore; the data of epoch e depends only on (seed, e)), so the result equals
    an uninterrupted run's when `config.deterministic`.
    """
    watch = Stopwatch()
    if started is not None:
        watch.seconds["startup"] = time.perf_counter() - started
    timer = PhaseTimer()
    with watch("setup"):
        keras.utils.set_random_seed(config.seed)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        strategy = distribute.make_strategy(config)  # first: it may split the CPU into devices
        source = open_data(config)
        # Before the run directory is touched, and before the data is prepared where the
        # source knows its shapes and labels without it (Sprites: ~20 s).
        spec = source.spec()
        check_model(config, spec)
        train_sampler, eval_sampler = make_samplers(source)  # outside strategy.scope()
        run = RunDir(_abspath(config.run_dir))
    # A non-chief worker writes to a temporary directory; the dtype policy holds inside.
    with distribute.task_run_dir(config, strategy, run) as run, run.claim(config):
        with watch("setup"):
            steps = config.steps_per_epoch or train_sampler.steps_per_epoch(config.batch_size)
            model = _compiled_model(config, spec, strategy, steps)
            train_ds = train_sampler.dataset(config.batch_size, training=True, steps=steps)
            eval_ds = eval_sampler.dataset(config.batch_size, training=False)
            figure_x = tf.constant(eval_sampler.examples(FIGURE_BATCH)[0])

        with watch("fit"):
            # The timer last: its epoch end comes after every other callback's.
            model.fit(train_ds, epochs=config.epochs, validation_data=eval_ds,
                      verbose=verbose, validation_freq=config.validation_freq,
                      shuffle=False,  # the sampler already draws each epoch afresh
                      callbacks=(_callbacks(config, run, train_sampler, figure_x)
                                 + list(callbacks) + [timer]
                                 + progress_callbacks(verbose, callbacks)))
        train_seconds = watch.seconds["fit"]

        with watch("evaluation"):
            held_out = model.evaluate(eval_ds, return_dict=True, verbose=0)
        payload = _metrics_payload(config, model, held_out, eval_sampler, train_seconds)
        write_json_atomic(run.metrics, payload)
        if config.figures:
            with watch("figures"):
                payload.update(_figures(config, model, figure_x, run,
                                        (train_sampler, eval_sampler)))
        if config.export:
            from dvrnn_tf.export import export_saved_model
            with watch("export"):
                payload["endpoints"] = export_saved_model(model, str(run.saved_model))
        payload["timing"] = timing_report(watch, timer)
        write_json_atomic(run.metrics, payload)
    return payload


def _compiled_model(config, spec, strategy, steps_per_epoch):
    """The family's model for `config`, built and compiled under `strategy`."""
    with strategy.scope():
        model = build_model(config, spec)
        model.compile(optimizer=FusedAdam(learning_rate(config, steps_per_epoch)),
                      jit_compile=_jit(config), steps_per_execution=config.steps_per_execution)
    return model


def _figures(config, model, figure_x, run, samplers) -> dict:
    """{"figures": {name: path}} of the run's figures, and what the family's own analyses of
    the trained model add (`ModelFamily.analyses`, given the train and held-out samplers)."""
    out = {"figures": _write_figures(model, figure_x, run)}
    analyses = get_family(config.model).analyses
    extra = analyses and analyses(model, *samplers, str(run.figures), config.seed)
    if extra:
        out["figures"].update(extra.pop("figures", {}))
        out.update(extra)
    return out


def _metrics_payload(config, model, held_out, eval_sampler, train_seconds):
    terms = {k: float(v) for k, v in held_out.items()}
    kls = [v for k, v in terms.items() if k.startswith("kl_")]
    neg_elbo = terms["nll"] + sum(kls)
    return {
        "model": config.model, "dataset": config.dataset, "likelihood": model.likelihood.name,
        "data_settings": dict(config.data_settings), "seed": config.seed,
        "split": "validation",
        "num_sequences": eval_sampler.num_sequences, "seq_len": model.seq_len,
        "per_image_nats": terms,
        # -ELBO whatever the betas: the bound itself, comparable across models.
        "neg_elbo_per_image": neg_elbo,
        "bits_per_dim": neg_elbo / (model.x_dim * np.log(2.0)),
        "optimizer_steps": int(model.optimizer.iterations.numpy()),
        "train_seconds_this_process": train_seconds,
        "units": "per_image_nats: nats per frame (image), each sequence's total divided by T",
    }


def _write_figures(model, figure_x, run):
    """samples.png (data, reconstructions, prior samples), the model's own figures."""
    from dvrnn_tf import figures

    paths = {"samples": str(run.root / "samples.png")}
    figures.save_png(figures.sample_and_reconstruction_grid(model, figure_x), paths["samples"])
    if figures.has_disentanglement(model):
        paths.update(figures.disentanglement_figures(model, figure_x, str(run.figures)))
    return paths


def _abspath(path):
    return pathlib.Path(os.path.abspath(path))
