"""Evaluating a trained run, as a library: the program is `python -m dvrnn_tf.evaluate`.

`evaluate_run` loads a run directory's `checkpoints/last.keras` and `config.json`, computes every
metric of DESIGN 4 that applies to its model and data (the family's and the source's declared metrics; `EvalOptions` says how), writes
`eval.json` and `report.png`, and returns eval.json's data; `summarize` gives its headline
numbers (the results table's columns). `dvrnn_tf.evaluate` documents the metrics and turns
`EvalOptions`' fields into flags.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time

from dvrnn_tf.metrics.summary import finite as _finite, summarize  # noqa: F401 (re-exported)

METRICS = ("likelihood", "judge", "swap", "label_preservation", "probes",
           "style_preservation", "knn", "concepts",
           "fixed_dynamics", "fixed_content", "factor_swap")
# Former metric names, still accepted by --metrics.
ALIASES = {"style_leakage": "probes"}


def applies_to(metric: str) -> tuple:
    """The `--model` values whose family lists `metric` (`ModelFamily.metrics`)."""
    from dvrnn_tf.models import registry
    return tuple(name for name in registry.model_names()
                 if metric in registry.get_family(name).metrics)


class EvaluationError(RuntimeError):
    """A run directory, or a request, that cannot be evaluated; the message says why."""


@dataclasses.dataclass
class EvalOptions:
    """What `evaluate_run` measures and how; the program's flags are these fields."""

    metrics: str = "all"
    split: str = "test"
    iwae_k: int = 1000
    iwae_chunk: int = 100
    iwae_sequences: int = 0
    eval_sequences: int = 1000
    probe_sequences: int = 5000
    num_styles: int = 4
    style_sources: int = 20
    seed: int = 0
    judge_dir: str = ""
    judge_seed: int = 0
    judge_epochs: int = 0
    protocol_sequences: int = 0
    protocol_draws: int = 5
    data_dir: str = ""
    manual_dir: str = ""
    output_dir: str = ""
    report: bool = True

    HELP = {
        "metrics": "Comma-separated metrics, or `all` (every one that applies). Choices: "
                   + ", ".join(METRICS) + ".",
        "split": "The split measured: `test` for reported numbers, `validation` to choose "
                 "settings, `train`.",
        "iwae_k": "K, importance samples per sequence (per frame for beta_vae) of the IWAE "
                  "bound; 0 skips the bound.",
        "iwae_chunk": "Samples drawn at once (memory: chunk x batch x T frames).",
        "iwae_sequences": "Held-out sequences in the likelihood bounds; 0: all.",
        "eval_sequences": "Held-out sequences for swap, label preservation and probes; 0: all.",
        "probe_sequences": "Train-split sequences the linear probes are fitted on; 0: all.",
        "num_styles": "Styles drawn per content (label preservation).",
        "style_sources": "Style sequences decoded with every class's content (morphometrics).",
        "seed": "Seeds every draw of the evaluation (latent noise, pairs, probes).",
        "judge_dir": "Where judges are cached (default $DVRNN_CACHE_DIR/judges or "
                     "~/.cache/dvrnn_tf/judges).",
        "judge_seed": "Seed of the judge (the cache key is data set and seed).",
        "judge_epochs": "Epochs of a judge trained here; 0: the judge module's default.",
        "protocol_sequences": "Held-out sequences in the field's protocol (fixed_dynamics, "
                              "fixed_content, factor_swap); 0: all of the split.",
        "protocol_draws": "Draws of the prior samples (the swap: of the pairing) each "
                          "protocol figure is the mean and std of.",
        "data_dir": "Overrides the run's --data_dir.",
        "manual_dir": "Overrides the run's --manual_dir.",
        "output_dir": "Where eval.json and report.png go (default: the run directory).",
        "report": "Write report.png.",
    }


def _fail(message):
    raise EvaluationError(message)


def load_run(run_dir):
    """(TrainConfig, model) of a run directory, or EvaluationError saying what is missing."""
    from dvrnn_tf.models import registry
    from dvrnn_tf.training import RunDir, TrainConfig

    root = pathlib.Path(os.path.abspath(os.path.expanduser(os.fspath(run_dir))))
    run = RunDir(root)
    if not root.is_dir():
        _fail(f"--run_dir={root} is not a directory: train a run there first "
              f"(python -m dvrnn_tf.train --run_dir={root} ...)")
    if not run.config.is_file():
        _fail(f"{run.config} is missing: {root} is not a training run directory (no config).")
    try:
        raw = json.loads(run.config.read_text())
    except (OSError, ValueError) as e:
        _fail(f"{run.config} cannot be read as JSON ({e}).")
    if not isinstance(raw, dict):
        _fail(f"{run.config} does not hold a configuration object.")
    model_name = raw.get("model")
    try:
        registry.canonical_name(model_name)
    except ValueError:
        _fail(f"{run.config} names model {model_name!r}, which this package cannot evaluate "
              f"(known models: {', '.join(registry.model_names())}).")
    try:
        config = TrainConfig.from_dict(raw)
    except (TypeError, ValueError) as e:
        _fail(f"{run.config} holds an invalid configuration: {e}")
    checkpoint = run.checkpoints / "last.keras"
    if not checkpoint.is_file():
        _fail(f"{checkpoint} is missing: the run has not finished an epoch (no checkpoint). "
              f"Train it (rerunning its command resumes it) before evaluating.")
    import keras

    import dvrnn_tf.models  # noqa: F401  # registers the classes load_model needs
    try:
        model = keras.models.load_model(str(checkpoint), compile=False)
    except Exception as e:  # pylint: disable=broad-except  # any unreadable file
        _fail(f"{checkpoint} cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0]}).")
    return config, model


def _select_metrics(requested: str, model_name: str, source):
    """(metrics to run, {skipped: reason}); explicit requests that cannot run are errors.

    A metric runs when the model's family lists it and the source's data supports it."""
    from dvrnn_tf.models.registry import get_family

    family_metrics = get_family(model_name).metrics
    data_metrics = source.applicable_metrics()
    names = [ALIASES.get(m.strip(), m.strip()) for m in requested.split(",") if m.strip()]
    names = names or ["all"]
    explicit = names != ["all"]
    if explicit:
        unknown = [m for m in names if m not in METRICS]
        if unknown:
            _fail(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)} "
                  "or all")
    chosen, skipped = [], {}
    for m in (names if explicit else METRICS):
        if m not in family_metrics:
            reason = f"applies to {', '.join(applies_to(m))}, not {model_name}"
        elif m not in data_metrics:
            from dvrnn_tf.metrics import protocol
            reason = protocol.why_not(source) if m in protocol.METRICS else source.why_not(m)
        else:
            chosen.append(m)
            continue
        if explicit:
            _fail(f"metric {m!r} cannot be measured on this run: it {reason}.")
        skipped[m] = reason
    if not chosen:
        measured = sorted({name for m in METRICS for name in applies_to(m)})
        _fail(f"no metric of dvrnn_tf.evaluate applies to a {model_name!r} run on "
              f"{source.dataset} (it measures {', '.join(measured)} runs).")
    return chosen, skipped


def _sequences(split, limit):
    """`limit` evaluation sequences of a split (0: all), spread over it: (x, labels) numpy."""
    return split.examples(limit)


def evaluate_run(run_dir, options: EvalOptions | None = None, **overrides) -> dict:
    """Measure the run in `run_dir`; writes eval.json (and report.png); returns eval.json's data.

    options: an `EvalOptions` (fields may also be given as keyword arguments).
    Raises EvaluationError for a run directory that lacks what is needed (no config, no
    checkpoint, unknown model) or a metric that does not apply; DataUnavailableError when the
    data set cannot be loaded.
    """
    opts = dataclasses.replace(options or EvalOptions(), **overrides)
    if opts.split not in ("train", "validation", "test"):
        _fail(f"--split must be train, validation or test, got {opts.split!r}")
    for name in ("iwae_k", "iwae_sequences", "eval_sequences", "probe_sequences", "seed",
                 "judge_seed", "judge_epochs", "protocol_sequences"):
        if getattr(opts, name) < 0:
            _fail(f"--{name} must be >= 0, got {getattr(opts, name)}")
    for name in ("iwae_chunk", "num_styles", "style_sources", "protocol_draws"):
        if getattr(opts, name) < 1:
            _fail(f"--{name} must be >= 1, got {getattr(opts, name)}")
    config, model = load_run(run_dir)
    data_settings = dict(config.data_settings)
    for name in ("data_dir", "manual_dir"):
        if getattr(opts, name) and name in data_settings:
            data_settings[name] = getattr(opts, name)
    from dvrnn_tf.data import open_source
    source = open_source(config.dataset, data_settings, seed=config.seed,
                         binarize=model.likelihood.binarize)
    chosen, skipped = _select_metrics(opts.metrics, config.model, source)

    import numpy as np
    from dvrnn_tf.metrics import disentanglement as dis
    from dvrnn_tf.metrics import judge as judge_lib
    from dvrnn_tf.metrics import likelihood as lik
    from dvrnn_tf.metrics import protocol
    from dvrnn_tf.metrics.judge_cache import JudgeNotGoodEnough
    from dvrnn_tf.training import RunDir, write_json_atomic

    run = RunDir(pathlib.Path(os.path.abspath(os.fspath(run_dir))))
    out_dir = pathlib.Path(os.path.abspath(opts.output_dir)) if opts.output_dir else run.root
    out_dir.mkdir(parents=True, exist_ok=True)
    load = dict(data_dir=data_settings.get("data_dir") or None,
                manual_dir=data_settings.get("manual_dir") or None)
    held_out = source.split(opts.split)
    result = {
        "run_dir": str(run.root), "checkpoint": str(run.checkpoints / "last.keras"),
        "model": config.model, "dataset": config.dataset, "data_settings": data_settings,
        "observation_model": model.likelihood.name, "split": opts.split,
        "seq_len": held_out.seq_len, "data_seed": config.seed, "eval_seed": opts.seed,
        "held_out_sequences": held_out.num_sequences,
        "independent_frames": bool(getattr(model, "independent_frames", False)),
        "inputs": ("binarized once with the data seed" if model.likelihood.binarize
                   else "grey levels"),
        "options": {k: v for k, v in dataclasses.asdict(opts).items()},
        "config": config.to_dict(), "skipped": skipped, "seconds": {},
    }
    try:
        trained = json.loads(run.metrics.read_text())
        result["training"] = {k: trained.get(k) for k in (
            "train_seconds_this_process", "optimizer_steps", "neg_elbo_per_image",
            "per_image_nats")}
    except (OSError, ValueError):
        result["training"] = None

    x, labels = _sequences(held_out, opts.eval_sequences)
    y = labels["class"].astype("int64") if "class" in labels else None
    judge = None
    if any(m in chosen for m in ("judge", "swap", "label_preservation")):
        start = time.perf_counter()
        try:
            judge, info = judge_lib.load_or_train_judge(
                config.dataset, seed=opts.judge_seed, judge_dir=opts.judge_dir or None,
                epochs=opts.judge_epochs or judge_lib.DEFAULT_EPOCHS, **load)
        except JudgeNotGoodEnough as e:
            _fail(str(e))
        result["judge"] = {"info": info}
        result["seconds"]["judge_load_or_train"] = time.perf_counter() - start

    def timed(name, fn):
        start = time.perf_counter()
        value = fn()
        result["seconds"][name] = time.perf_counter() - start
        return value

    extras = {}
    tests = [m for m in chosen if m in protocol.METRICS]
    if tests:  # the field's protocol: one sequence judge, every test on the same codes
        try:
            result.update(timed("protocol", lambda: protocol.measure(
                model, source, held_out, tests, split=opts.split,
                judge_dir=opts.judge_dir or None, judge_seed=opts.judge_seed,
                judge_epochs=opts.judge_epochs, sequences=opts.protocol_sequences,
                draws=opts.protocol_draws, seed=opts.seed)))
        except (protocol.ProtocolError, JudgeNotGoodEnough) as e:
            _fail(str(e))
        if opts.report:  # the report's grids only
            extras["protocol"] = protocol.figure_sequences(model, x, seed=opts.seed)
    for m in chosen:
        if m == "likelihood":
            limit = opts.iwae_sequences or None
            # About 25,600 frames per chunk of samples: ~100 MB per MNIST-sized tensor.
            batch = max(1, min(64, 25_600 // (opts.iwae_chunk * held_out.seq_len)))
            result[m] = timed(m, lambda: lik.likelihood_report(
                model, held_out.dataset(batch, training=False), num_samples=opts.iwae_k,
                chunk_size=opts.iwae_chunk, seed=opts.seed, max_sequences=limit))
            result[m]["split"] = opts.split
        elif m == "judge":
            def judge_metrics():
                frames = judge_lib.predict(judge, x)
                recon = dis._batched(lambda a, b: dis._np(model.reconstruct(x[a:b])), len(x), 256)
                extras["reconstructions"] = recon[:8]
                return {**result["judge"],
                        "held_out_frames_accuracy": float(np.mean(frames == y[:, None])),
                        "reconstruction_accuracy": float(np.mean(
                            judge_lib.predict(judge, recon) == y[:, None])),
                        "num_sequences": int(len(y)), "split": opts.split,
                        "note": "held-out frames as the model sees them (binarized for "
                                "bernoulli); reconstructions are decoded means"}
            result[m] = timed(m, judge_metrics)
        elif m == "swap":
            result[m] = timed(m, lambda: dis.swap_accuracy(model, judge, x, y, seed=opts.seed))
        elif m == "label_preservation":
            result[m] = timed(m, lambda: dis.label_preservation(
                model, judge, x, y, num_styles=opts.num_styles, seed=opts.seed))
        elif m == "probes":
            result[m] = timed(m, lambda: _probes(model, source, held_out, x, labels, opts))
        elif m == "style_preservation":
            value = timed(m, lambda: dis.style_preservation(
                model, x, y, num_styles=opts.style_sources, seed=opts.seed))
            extras["style_images"] = value.pop("images")
            extras["measures"] = value.pop("measures")
            # Beside it, how well plain reconstructions keep each measure (its yardstick).
            value["reconstruction_fidelity"] = dis.reconstruction_fidelity(
                model, x[:opts.style_sources * 5])
            result[m] = value
        elif m == "knn":
            train_set, test_set = source.image_set("train"), source.image_set(opts.split)
            rng = np.random.default_rng(opts.seed)
            tr = rng.permutation(len(train_set))[:10000]
            te = rng.permutation(len(test_set))[:10000]
            result[m] = timed(m, lambda: dis.knn_latent_accuracy(
                model, train_set.as_float()[tr], train_set.labels[tr],
                test_set.as_float()[te], test_set.labels[te]))
            result[m].update(seed=opts.seed, train_split="train", test_split=opts.split,
                             inputs="grey levels")
        elif m == "concepts":
            result[m] = timed(m, lambda: _concepts(model, source, held_out, x, y, opts))
    result["summary"] = summarize(result)
    if opts.report:
        result["report_png"] = str(out_dir / "report.png")
        from dvrnn_tf.metrics.report import write_report
        write_report(model, result, x, y, extras, result["report_png"], seed=opts.seed)
    write_json_atomic(out_dir / "eval.json", _finite(result))
    result["eval_json"] = str(out_dir / "eval.json")
    return result


def _probes(model, source, held_out, x, labels, opts):
    """Probes of every factor of the source; a "class" factor's also flat, as DESIGN 4's
    style-leakage numbers (probe_z, probe_f in the summary)."""
    from dvrnn_tf.metrics.probes import factor_probes

    train_x, train_labels = _sequences(source.split("train"), opts.probe_sequences)
    out = factor_probes(model, train_x, train_labels, x, labels, held_out.factors,
                        seed=opts.seed)
    if "class" in out["factors"]:
        out.update({k: v for k, v in out["factors"]["class"].items()
                    if k not in ("kind", "metric")})
    out["train_split"], out["test_split"] = "train", opts.split
    return out


def _concepts(model, source, held_out, x, y, opts):
    """Does f cluster by class without labels (issue 15; `dvrnn_tf.metrics.clustering`)?
    Clusters of the posterior means of f fitted on train-split sequences (k-means with one
    cluster per class for a Gaussian f; the argmax component for a code on the simplex),
    scored on the held-out ones: Hungarian-matched accuracy and NMI, with chance levels."""
    from dvrnn_tf.metrics.clustering import concept_report
    from dvrnn_tf.metrics.disentanglement import _codes, seeded

    train_x, train_labels = _sequences(source.split("train"), opts.probe_sequences)
    with seeded(model, opts.seed):
        f_train, f_test = (_codes(model, v, False, 256)["f_loc"] for v in (train_x, x))
    # Slot codes [N, S, K] (content_attention): their mean, on the simplex if they are.
    f_train, f_test = (f.mean(axis=1) if f.ndim == 3 else f for f in (f_train, f_test))
    factor = next((f for f in held_out.factors if f.name == "class"), None)
    num_classes = factor.num_classes if factor is not None else int(y.max()) + 1
    kind = getattr(model, "content_prior_kind", "gaussian")
    out = concept_report(f_train, f_test, y, kind, num_classes, seed=opts.seed)
    # Beside the corners of the simplex, k-means on the same codes: whether the classes
    # separate in f at all, by one method for every prior.
    kmeans = out if kind == "gaussian" else concept_report(
        f_train, f_test, y, "gaussian", num_classes, seed=opts.seed)
    out["kmeans"] = {k: kmeans[k] for k in ("accuracy", "nmi", "chance_accuracy", "chance_nmi")}
    out.update(train_split="train", test_split=opts.split, codes="posterior means of f")
    return out
