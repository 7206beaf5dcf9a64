"""The rule that chooses a flag file on validation (dvrnn_tf.experiments.selection)."""
import json

import pytest

from dvrnn_tf.experiments import selection

GOOD = dict(swap_accuracy=0.99, kl_z_per_sequence=16.0, label_preservation=0.99, probe_z=0.15,
            probe_f=1.0, slant_r2_by_style=0.85, slant_r2_by_class=0.05,
            thickness_r2_by_style=0.85, thickness_r2_by_class=0.05)


def _table(tmp_path, rows, split="validation", seq_len=8):
    eval_json = tmp_path / "eval.json"
    eval_json.write_text(json.dumps({"seq_len": seq_len}))
    configs = {name: {"label": name, "seeds": {"0": {"eval_json": str(eval_json)}},
                      "aggregate": {k: {"mean": v} for k, v in means.items()}}
               for name, means in rows.items()}
    return {"eval_options": {"split": split}, "configs": configs}


def test_most_targets_met_wins_and_ties_go_to_the_lower_bound(tmp_path):
    rows = {"all_but_thickness": {**GOOD, "thickness_r2_by_style": 0.7, "nll_iwae": 116.0},
            "leaky": {**GOOD, "swap_accuracy": 0.9, "probe_z": 0.4, "nll_iwae": 100.0},
            "tied_worse_bound": {**GOOD, "slant_r2_by_style": 0.5, "nll_iwae": 117.0},
            # KL_z is per frame: 7 nats over 8 frames is below 1 nat a frame.
            "collapsed_style": {**GOOD, "kl_z_per_sequence": 7.0, "nll_iwae": 90.0}}
    ranked = selection.rank(_table(tmp_path, rows))
    assert [r["name"] for r in ranked] == [
        "collapsed_style", "all_but_thickness", "tied_worse_bound", "leaky"]
    assert ranked[0]["missed"] == ["kl_z_per_sequence per frame >= 1"]
    assert len(ranked[-1]["met"]) == 7
    table = selection.markdown(ranked)
    assert "| **collapsed_style** (chosen) | 8 | 90.00 |" in table


def test_a_missing_measure_counts_as_missed(tmp_path):
    partial = {k: v for k, v in GOOD.items() if k != "probe_f"}
    (row,) = selection.rank(_table(tmp_path, {"p": {**partial, "nll_iwae": 1.0}}))
    assert row["missed"] == ["probe_f >= 0.95"]


@pytest.mark.parametrize("split, said", [("test", "measured on 'test'"),
                                         (None, "does not say its split")])
def test_a_table_not_measured_on_validation_is_refused(tmp_path, split, said):
    with pytest.raises(ValueError, match=f"{said}: choose on 'validation'"):
        selection.rank(_table(tmp_path, {"a": GOOD}, split=split))
