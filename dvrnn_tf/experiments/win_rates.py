"""The win rates the second paper left open (DESIGN 3): every competition condition under the
rotation and the reflection over many seeds, and the regression step ratio over seeds.

Resumable: each (seed, transform, condition) competition and each seed's regression is written
to `<out_dir>/runs/<name>.json` when it finishes, and a rerun skips what is there (so a killed
or extended run only does what is missing). The table is then rebuilt from every run file that
matches the settings: win rates with 95% Wilson intervals, the step ratio with a 95% Student-t
interval over seeds, and the CPU time the runs took (summed from the run files, so it counts
the work of earlier, resumed processes too).
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from dvrnn_tf.experiments import framework, grid_experiments, scoring
from dvrnn_tf.experiments import regression as regression_experiment
from dvrnn_tf.experiments.framework import CONDITIONS, TRANSFORM_KINDS, Settings, _write_json


def run_name(seed, transform=None, condition=None):
    if transform is None:
        return f"regression-seed{seed}"
    return f"competition-{transform}-{condition}-seed{seed}"


def _load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run_all(settings: Settings, seeds, out_dir, judge, data=None, conditions=CONDITIONS,
            transforms=TRANSFORM_KINDS, regression=True, log=print) -> dict:
    """Run what is missing for `seeds`, then write the table; -> the table dict."""
    runs_dir = os.path.join(out_dir, "runs")
    os.makedirs(runs_dir, exist_ok=True)
    data = data or framework.load_data(settings)
    expected = settings.to_dict()
    for seed in seeds:
        for transform in transforms:
            for condition in conditions:
                path = os.path.join(runs_dir, run_name(seed, transform, condition) + ".json")
                done = _load(path)
                if done is not None and done.get("settings") == expected:
                    continue
                run = grid_experiments.competition_run(settings, seed, judge, condition,
                                                       transform, data=data)
                run["settings"] = expected
                _write_json(path, run)
                log(f"seed {seed} {transform:10s} {condition:13s} winner {run['winner']:8s} "
                    f"({run['cpu_seconds']:.0f} CPU s, {run['seconds']:.0f} s)")
        if regression:
            path = os.path.join(runs_dir, run_name(seed) + ".json")
            done = _load(path)
            if done is None or done.get("settings") != expected:
                run = regression_experiment.regression(settings, seed, data=data, judge=judge)
                run.pop("curves", None)  # kept small: the curves are in `--experiment=regression`
                _write_json(path, run)
                log(f"seed {seed} regression: encoder ratio {run['encoder']['ratio']}, decoder "
                    f"ratio {run['decoder']['ratio']} ({run['cpu_seconds']:.0f} CPU s)")
    return table(out_dir, settings, seeds, conditions, transforms, regression)


def table(out_dir, settings: Settings, seeds, conditions=CONDITIONS,
          transforms=TRANSFORM_KINDS, regression=True) -> dict:
    """The win-rate table from the run files of `seeds` (runs of other settings ignored)."""
    runs_dir = os.path.join(out_dir, "runs")
    expected = settings.to_dict()
    rows, cpu, wall = [], 0.0, 0.0
    for transform in transforms:
        for condition in conditions:
            winners = []
            for seed in seeds:
                run = _load(os.path.join(runs_dir, run_name(seed, transform, condition) + ".json"))
                if run is None or run.get("settings") != expected:
                    continue
                winners.append(run["winner"])
                cpu += run.get("cpu_seconds", 0.0)
                wall += run.get("seconds", 0.0)
            n = len(winners)
            row = {"transform": transform, "condition": condition, "seeds": n,
                   "counts": {o: winners.count(o) for o in scoring.OUTCOMES}}
            for outcome in scoring.OUTCOMES:
                rate, low, high = scoring.wilson_interval(winners.count(outcome), n)
                row[outcome] = {"rate": rate, "ci95": [low, high]}
            rows.append(row)
    result = {"settings": expected, "seeds": list(seeds), "rows": rows,
              "thresholds": {"label": scoring.LABEL_THRESHOLD, "style": scoring.STYLE_THRESHOLD},
              "interval": "95% Wilson score interval (scipy.stats.binomtest)"}
    if regression:
        ratios = {"encoder": [], "decoder": []}
        for seed in seeds:
            run = _load(os.path.join(runs_dir, run_name(seed) + ".json"))
            if run is None or run.get("settings") != expected:
                continue
            cpu += run.get("cpu_seconds", 0.0)
            wall += run.get("seconds", 0.0)
            for kind in ratios:
                ratios[kind].append(run[kind]["ratio"])
        result["regression"] = {}
        for kind, values in ratios.items():
            mean, low, high = scoring.mean_interval(values)
            result["regression"][kind] = {
                "ratio_mean": mean, "ci95": [low, high], "seeds": len(values),
                "ratios": values,
                "median": float(np.median([v for v in values if v is not None]))
                if any(v is not None for v in values) else None}
    result["cpu_seconds"] = cpu
    result["wall_seconds"] = wall
    return result


def _fmt_rate(cell):
    rate, (low, high) = cell["rate"], cell["ci95"]
    if not np.isfinite(rate):
        return "-"
    return f"{rate:.2f} [{low:.2f}, {high:.2f}]"


def markdown(result, command: str = "") -> str:
    """The table as Markdown."""
    s = result["settings"]
    lines = [
        "# Encoder vs decoder: win rates (second paper, appendix B)",
        "",
        "Generated by `python -m dvrnn_tf.experiments.shu --experiment=win_rates` "
        "(`dvrnn_tf/experiments/win_rates.py`); do not edit by hand.",
        "",
        f"Seeds: {len(result['seeds'])} ({', '.join(map(str, result['seeds']))}). Data set: "
        f"{s['dataset']}. Each run: a CVAE (MLP, {s['num_hidden']} hidden layers of "
        f"{s['hidden_dim']}, z_dim {s['z_dim']}) trained {s['steps']} steps of "
        f"{s['batch_size']} images, x -> omega_q -> T_y -> omega_p; grids of "
        f"{s['num_styles']} prior samples per class.",
        "",
        "Who wins is decided by code (`dvrnn_tf/experiments/scoring.py`): a grid is "
        f"*disentangled* when the judge labels >= {result['thresholds']['label']:.0%} of its "
        "cells as their row's class and the style source (the column) explains the "
        "Morpho-MNIST measures (slant, thickness, width, height) at least "
        f"{result['thresholds']['style']:.2f} of the way from chance to 1 "
        "((R2_style - chance) / (1 - chance)). The decoder wins when mu_p's grid is "
        "disentangled and mu'_p = mu_p(y, T_y(z))'s is not; the encoder wins in the reverse "
        "case; otherwise a tie.",
        "",
        "Rates with 95% Wilson intervals:",
        "",
        "| transform | condition | seeds | encoder wins | decoder wins | tie |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['transform']} | {row['condition']} | {row['seeds']} | "
                     f"{_fmt_rate(row['encoder'])} | {_fmt_rate(row['decoder'])} | "
                     f"{_fmt_rate(row['tie'])} |")
    if "regression" in result:
        lines += ["", "Regression (Fig. 3): steps a fresh network needs to reach the same "
                  "training loss on the entangled problem (targets T_y(z)) over the "
                  "disentangled one (targets z); > 1: the disentangled problem is learned "
                  "faster. Mean over seeds with a 95% Student-t interval:", "",
                  "| network | seeds | ratio (mean) | 95% interval | median |",
                  "| --- | --- | --- | --- | --- |"]
        for kind, r in result["regression"].items():
            low, high = r["ci95"]
            med = "-" if r["median"] is None else f"{r['median']:.2f}"
            lines.append(f"| {kind} | {r['seeds']} | {r['ratio_mean']:.2f} | "
                         f"[{low:.2f}, {high:.2f}] | {med} |")
    lines += ["", f"CPU time of the runs: {result['cpu_seconds']:.0f} s "
              f"({result['cpu_seconds'] / 3600:.2f} CPU hours; wall {result['wall_seconds']:.0f} s"
              " summed over runs).", ""]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    return "\n".join(lines)


def write(result, out_dir, markdown_path=None, command=""):
    """win_rates.json in out_dir and the Markdown (at markdown_path, else out_dir)."""
    _write_json(os.path.join(out_dir, "win_rates.json"), result)
    path = markdown_path or os.path.join(out_dir, "win_rates.md")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(markdown(result, command))
    return path


def timed(fn, *args, **kwargs):
    start, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start, time.process_time() - cpu
