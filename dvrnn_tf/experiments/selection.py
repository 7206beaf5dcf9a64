"""Choosing a flag file on the validation split: the row of a sweep table that meets the most
of the disentanglement targets, ties to the lower NLL bound (the rule that chose
`flags/disentangled.flags`; flags/sweeps/disentanglement_selection.txt).

    python -m dvrnn_tf.experiments.selection --table=docs/disentanglement_validation.json

The table is a sweep's JSON (`python -m dvrnn_tf.experiments.sweep --eval_split=validation`);
it must have been measured on validation: a choice made on test would be reported on the data
it was chosen on, and is refused.
"""
from __future__ import annotations

import json
import math
import operator
import sys
from dataclasses import dataclass

from absl import app, flags


@dataclass(frozen=True)
class Target:
    key: str      # a summary key of eval.json (metrics/summary.py)
    at_least: bool
    value: float
    per_frame: bool = False  # the key is per sequence; the target is per frame

    def met(self, measured: float, seq_len: int) -> bool:
        if self.per_frame:
            measured = measured / seq_len
        return (operator.ge if self.at_least else operator.le)(measured, self.value)

    def __str__(self):
        unit = " per frame" if self.per_frame else ""
        return f"{self.key}{unit} {'>=' if self.at_least else '<='} {self.value:g}"


# The README's targets for a disentangling model on MNIST ("Content in f, style in z").
TARGETS = (
    Target("swap_accuracy", True, 0.95),
    Target("kl_z_per_sequence", True, 1.0, per_frame=True),
    Target("label_preservation", True, 0.97),
    Target("probe_z", False, 0.20),
    Target("probe_f", True, 0.95),
    Target("slant_r2_by_style", True, 0.8),
    Target("slant_r2_by_class", False, 0.1),
    Target("thickness_r2_by_style", True, 0.8),
    Target("thickness_r2_by_class", False, 0.1),
)


def _seq_len(config: dict) -> int:
    for seed in config.get("seeds", {}).values():
        with open(seed["eval_json"]) as f:
            return int(json.load(f)["seq_len"])
    raise ValueError(f"row {config.get('label')!r} has no measured seed")


def rank(table: dict, targets=TARGETS) -> list[dict]:
    """The table's rows, best first: each {name, label, met, missed, nll}.

    table: a sweep's JSON (`configs` -> {label, aggregate: {key: {mean}}, seeds}); rows with a
    target's key missing count it as missed. ValueError unless it was measured on validation.
    """
    split = table.get("eval_options", {}).get("split")
    if split != "validation":
        where = "does not say its split" if split is None else f"was measured on {split!r}"
        raise ValueError(f"the table {where}: choose on 'validation' (test is read only for "
                         "the numbers reported)")
    rows = []
    for name, config in table["configs"].items():
        means = {k: v["mean"] for k, v in config.get("aggregate", {}).items()}
        if not means:
            continue
        seq_len = _seq_len(config)
        ok = {t: t.key in means and t.met(means[t.key], seq_len) for t in targets}
        rows.append({"name": name, "label": config["label"],
                     "met": [str(t) for t in targets if ok[t]],
                     "missed": [str(t) for t in targets if not ok[t]],
                     "nll": means.get("nll_iwae", math.inf)})
    return sorted(rows, key=lambda r: (-len(r["met"]), r["nll"]))


def markdown(rows: list[dict], targets=TARGETS) -> str:
    lines = [f"| row | targets met (of {len(targets)}) | NLL ≤ (IWAE) | missed |",
             "|---|---|---|---|"]
    for i, r in enumerate(rows):
        label = f"**{r['label']}** (chosen)" if i == 0 else r["label"]
        lines.append(f"| {label} | {len(r['met'])} | {r['nll']:.2f} | "
                     f"{'; '.join(r['missed']) or '-'} |")
    return "\n".join(lines)


FLAGS = flags.FLAGS


def main(argv):
    del argv
    with open(FLAGS.table) as f:
        table = json.load(f)
    try:
        rows = rank(table)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    flags.DEFINE_string("table", None, "A sweep's JSON measured on validation.", required=True)
    app.run(main)
