"""The disentanglement sweep: model variants and KL settings, one table and a Pareto plot.

    python -m dvrnn_tf.experiments.sweep --variants=flags/sweeps/disentanglement.txt \\
        --seeds=0,1,2 --iwae_k=100 --iwae_sequences=250

Each line of the variants file is `name | label | flag file | --flag=value ...`; every
(variant, seed) is trained, evaluated (`dvrnn_tf.evaluate`, on the validation split: a sweep
chooses settings; `--eval_split=test` for reported numbers) and tabulated, mean ± std over
seeds, in --out_md / --out_json, and drawn in --pareto_png: swap accuracy against style
preservation (R² of the morphometrics by style source), coloured by the NLL bound.
Resumable, like `scripts/results.py` (the same engine: `dvrnn_tf.experiments.runs_table`).
"""
import sys

from dvrnn_tf.console import quiet_tensorflow  # noqa: E402

quiet_tensorflow()  # before TensorFlow loads; DVRNN_TF_LOGS=1 shows its own log

from dvrnn_tf.experiments.runs_cli import main as _main  # noqa: E402
from dvrnn_tf.experiments.runs_table import ROOT  # noqa: E402

DEFAULTS = {
    "variants": str(ROOT / "flags" / "sweeps" / "disentanglement.txt"),
    "runs_root": str(ROOT / "runs" / "sweep"),
    "out_md": str(ROOT / "docs" / "disentanglement.md"),
    "out_json": str(ROOT / "docs" / "disentanglement.json"),
    "pareto_png": str(ROOT / "docs" / "figures" / "pareto.png"),
    # A sweep chooses settings: it measures validation (test is for the reported numbers).
    "eval_split": "validation",
}


def main(argv=None):
    return _main(argv, description=__doc__.split("\n\n")[0], default_variants=[],
                 defaults=DEFAULTS, prog="python -m dvrnn_tf.experiments.sweep")


if __name__ == "__main__":
    sys.exit(main())
