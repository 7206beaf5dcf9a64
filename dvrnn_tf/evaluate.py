"""Measure a trained run: `python -m dvrnn_tf.evaluate --run_dir=runs/factorized_mnist`.

Loads the run's `checkpoints/last.keras` and `config.json`, computes every metric of DESIGN 4
that applies to its model on the held-out split, and writes `eval.json` (each figure with the
seed, split, K and sample counts that produced it) and a one-page `report.png` beside them.

Metrics (``--metrics``, comma-separated, default all that apply to the run's model and data;
each model family and each data source declares which):
  likelihood          -ELBO, IWAE bound (K = --iwae_k), KL_f, KL_z, active units; every model
  judge               the judge's accuracy on held-out frames and on the model's reconstructions
  swap                swap accuracy, overall and per time step      (models with f and z)
  label_preservation  fixed content, varied style                   (models with f and z)
  probes              linear probes on posterior samples of f and z against every factor
                      label of the data, static and per frame (was: style_leakage)
  style_preservation  morphometric variance shares                  (models with f and z)
  knn                 kNN class accuracy of latent means            (beta_vae)
  concepts            clustering accuracy (Hungarian) and NMI of f's posterior means against
                      the class, without labels (models with f; data with a class label)
  fixed_dynamics      the field's protocol (DESIGN 6), on sources that declare content and
  fixed_content       dynamics labels (sprites): a sequence judge's accuracy, IS, H(y|x), H(y)
  factor_swap         of generations with z kept / f kept / f of A with z of B, mean and std
                      over --protocol_draws draws                   (models with f and z)

The library (`evaluate_run`, `EvalOptions`, `summarize`, ...) is `dvrnn_tf.metrics.evaluation`,
re-exported here; this module's flags are defined only when it runs as the program (so that
importing it never clashes with `dvrnn_tf.train`'s flags).
"""
from __future__ import annotations

import dataclasses
import json
import sys

from dvrnn_tf.console import quiet_tensorflow  # noqa: E402

quiet_tensorflow()  # before TensorFlow loads; DVRNN_TF_LOGS=1 shows its own log

from dvrnn_tf.metrics.evaluation import (  # noqa: E402  # the library, re-exported
    METRICS, EvalOptions, EvaluationError, _finite, _select_metrics, applies_to, evaluate_run,
    load_run, summarize)

__all__ = ["METRICS", "EvalOptions", "EvaluationError", "_finite", "applies_to",
           "_select_metrics", "evaluate_run", "load_run", "main", "summarize", "define_flags"]


# ---- the program --------------------------------------------------------------------------

def define_flags(flag_values=None):
    """Define the program's flags in `flag_values` (absl's global FLAGS by default; a test
    passes its own `flags.FlagValues()`)."""
    from absl import flags

    fv = dict(flag_values=flags.FLAGS if flag_values is None else flag_values)
    flags.DEFINE_string("run_dir", None, "The training run directory to evaluate.",
                        required=True, **fv)
    for f in dataclasses.fields(EvalOptions):
        help_text = EvalOptions.HELP[f.name]
        if isinstance(f.default, bool):
            flags.DEFINE_bool(f.name, f.default, help_text, **fv)
        elif isinstance(f.default, int):
            flags.DEFINE_integer(f.name, f.default, help_text, **fv)
        elif f.name == "split":
            from dvrnn_tf.data.registry import SPLITS
            flags.DEFINE_enum(f.name, f.default, list(SPLITS), help_text, **fv)
        else:
            flags.DEFINE_string(f.name, f.default, help_text, **fv)


def main(argv):
    from absl import app, flags, logging

    flag_values = flags.FLAGS
    if not flag_values["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    options = EvalOptions(**{f.name: flag_values[f.name].value
                             for f in dataclasses.fields(EvalOptions)})
    from dvrnn_tf.data import DataUnavailableError
    try:
        result = evaluate_run(flag_values.run_dir, options)
    except (EvaluationError, DataUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(_finite(result["summary"]), indent=2))
    print(f"wrote {result['eval_json']}" + (f" and {result['report_png']}"
                                           if "report_png" in result else ""))
    return 0


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
