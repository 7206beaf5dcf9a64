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



def evaluate_run(run_dir, options: EvalOptions | None = None, **overrides) -> dict:
    """Measure the run in `run_dir`; writes eval.json (and report.png); returns eval.json's data.

    options: an `EvalOptions` (fields may also be given as keyword arguments).
    Raises EvaluationError for a run directory that lacks what is needed (no config, no
    checkpoint, unknown model) or a metric that does not apply; DataUnavailableError when the
    data set cannot be loaded.
    """
    from dvrnn_tf.data import open_source
    from dvrnn_tf.metrics.measures import MEASURES, NEEDS_JUDGE, Held
    from dvrnn_tf.training import RunDir, write_json_atomic

    opts = _checked(dataclasses.replace(options or EvalOptions(), **overrides))
    config, model = load_run(run_dir)
    data_settings = dict(config.data_settings)
    for name in ("data_dir", "manual_dir"):
        if getattr(opts, name) and name in data_settings:
            data_settings[name] = getattr(opts, name)
    source = open_source(config.dataset, data_settings, seed=config.seed,
                         binarize=model.likelihood.binarize)
    chosen, skipped = _select_metrics(opts.metrics, config.model, source)
    run = RunDir(pathlib.Path(os.path.abspath(os.fspath(run_dir))))
    out_dir = pathlib.Path(os.path.abspath(opts.output_dir)) if opts.output_dir else run.root
    out_dir.mkdir(parents=True, exist_ok=True)
    held_out = source.split(opts.split)
    result = _header(run, config, model, opts, held_out, data_settings, skipped)

    x, labels = held_out.examples(opts.eval_sequences)
    y = labels["class"].astype("int64") if "class" in labels else None
    held = Held(model, source, held_out, x, labels, y, opts)
    if any(m in chosen for m in NEEDS_JUDGE):
        start = time.perf_counter()
        held.judge, held.judge_info = _image_judge(config.dataset, opts, data_settings)
        result["judge"] = {"info": held.judge_info}
        result["seconds"]["judge_load_or_train"] = time.perf_counter() - start
    _protocol(held, chosen, result)
    for m in chosen:
        if m in MEASURES:
            start = time.perf_counter()
            result[m] = MEASURES[m](held)
            result["seconds"][m] = time.perf_counter() - start
    result["summary"] = summarize(result)
    if opts.report:
        result["report_png"] = str(out_dir / "report.png")
        from dvrnn_tf.metrics.report import write_report
        write_report(model, result, x, y, held.extras, result["report_png"], seed=opts.seed)
    write_json_atomic(out_dir / "eval.json", _finite(result))
    result["eval_json"] = str(out_dir / "eval.json")
    return result


def _checked(opts: EvalOptions) -> EvalOptions:
    if opts.split not in ("train", "validation", "test"):
        _fail(f"--split must be train, validation or test, got {opts.split!r}")
    for name in ("iwae_k", "iwae_sequences", "eval_sequences", "probe_sequences", "seed",
                 "judge_seed", "judge_epochs", "protocol_sequences"):
        if getattr(opts, name) < 0:
            _fail(f"--{name} must be >= 0, got {getattr(opts, name)}")
    for name in ("iwae_chunk", "num_styles", "style_sources", "protocol_draws"):
        if getattr(opts, name) < 1:
            _fail(f"--{name} must be >= 1, got {getattr(opts, name)}")
    return opts


def _header(run, config, model, opts, held_out, data_settings, skipped) -> dict:
    """eval.json's description of what was measured: the run, its data and the options."""
    result = {
        "run_dir": str(run.root), "checkpoint": str(run.checkpoints / "last.keras"),
        "model": config.model, "dataset": config.dataset, "data_settings": data_settings,
        "observation_model": model.likelihood.name, "split": opts.split,
        "seq_len": held_out.seq_len, "data_seed": config.seed, "eval_seed": opts.seed,
        "held_out_sequences": held_out.num_sequences,
        "independent_frames": bool(getattr(model, "independent_frames", False)),
        "inputs": ("binarized once with the data seed" if model.likelihood.binarize
                   else "grey levels"),
        "options": dataclasses.asdict(opts),
        "config": config.to_dict(), "skipped": skipped, "seconds": {},
    }
    try:
        trained = json.loads(run.metrics.read_text())
        result["training"] = {k: trained.get(k) for k in (
            "train_seconds_this_process", "optimizer_steps", "neg_elbo_per_image",
            "per_image_nats")}
    except (OSError, ValueError):
        result["training"] = None
    return result


def _image_judge(dataset, opts, data_settings):
    """(judge, info) of the data set's image judge: cached, or trained here; EvaluationError
    when it is not accurate enough to judge."""
    from dvrnn_tf.metrics import judge as judge_lib
    from dvrnn_tf.metrics.judge_cache import JudgeNotGoodEnough

    try:
        return judge_lib.load_or_train_judge(
            dataset, seed=opts.judge_seed, judge_dir=opts.judge_dir or None,
            epochs=opts.judge_epochs or judge_lib.DEFAULT_EPOCHS,
            data_dir=data_settings.get("data_dir") or None,
            manual_dir=data_settings.get("manual_dir") or None)
    except JudgeNotGoodEnough as e:
        _fail(str(e))


def _protocol(held, chosen, result) -> None:
    """The field's protocol tests among `chosen`, on one sequence judge and one set of codes."""
    from dvrnn_tf.metrics import protocol
    from dvrnn_tf.metrics.judge_cache import JudgeNotGoodEnough

    tests = [m for m in chosen if m in protocol.METRICS]
    if not tests:
        return
    opts, start = held.opts, time.perf_counter()
    try:
        result.update(protocol.measure(
            held.model, held.source, held.held_out, tests, split=opts.split,
            judge_dir=opts.judge_dir or None, judge_seed=opts.judge_seed,
            judge_epochs=opts.judge_epochs, sequences=opts.protocol_sequences,
            draws=opts.protocol_draws, seed=opts.seed))
    except (protocol.ProtocolError, JudgeNotGoodEnough) as e:
        _fail(str(e))
    result["seconds"]["protocol"] = time.perf_counter() - start
    if opts.report:  # the report's grids only
        held.extras["protocol"] = protocol.figure_sequences(held.model, held.x, seed=opts.seed)
