"""The measured results table: every configuration trained for each seed, evaluated, tabulated.

    make results          # = python scripts/results.py --manual_dir=../shared/data/mnist ...

For each config (a flag file in flags/) and seed, trains into `<runs_root>/<config>-s<seed>`
with `python -m dvrnn_tf.train --flagfile=flags/<config>.flags --seed=<seed> ...`, evaluates it
with `dvrnn_tf.evaluate`, and writes `docs/results.md` (mean +- std over seeds) and
`docs/results.json` (every seed's numbers, and how they were produced). Resumable: rerun the
same command after an interruption (`dvrnn_tf.experiments.runs_table` does the work).

Test it on tiny settings, e.g.:
    python scripts/results.py --dataset=digits --configs=vrnn,factorized --seeds=0,1 \
        --override=--epochs=1 --override=--hidden_dim=16 --iwae_k=10 \
        --runs_root=/tmp/r --out_md=/tmp/r/results.md --out_json=/tmp/r/results.json
"""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dvrnn_tf.experiments.runs_cli import main as _main  # noqa: E402
from dvrnn_tf.experiments.runs_table import (Variant, config_from_flags,  # noqa: E402,F401
                                             parse_flag_lines)

# (config name, label in the table); each config is flags/<name>.flags.
CONFIGS = {
    "vrnn": "VRNN",
    "full": "full (paper β)",
    "factorized": "factorized (paper β)",
    "seed_code": "factorized (public-code β)",
    "disentangled": "disentangled (this package)",
    "beta_vae_b1": "β-VAE β=1",
    "beta_vae_b5": "β-VAE β=5",
    "beta_vae_b10": "β-VAE β=10",
    "beta_vae_b20": "β-VAE β=20",
    "beta_vae_capacity": "β-VAE capacity",
}


# The likelihood code's sanity check (issue: IWAE <= 90 nats): one seed, 100 epochs.
ANCHOR = Variant("anchor_vae", "anchor: MLP VAE β=1, 100 epochs", "anchor_vae", seeds=[0])


def main(argv=None):
    return _main(argv, description=__doc__.split("\n\n")[0],
                 default_variants=[Variant(n, label, n) for n, label in CONFIGS.items()]
                 + [ANCHOR],
                 defaults={}, prog="python scripts/results.py")


if __name__ == "__main__":
    sys.exit(main())
