"""The tables and the plot of a set of runs: mean ± std over seeds, markdown, Pareto plot.

`results` (what `dvrnn_tf.experiments.runs_cli.main` collects): {"dataset", "seeds",
"eval_options", "command", "generated", "configs": {name: {"label", "betas", "flagfile",
"overrides", "seeds": {seed: {"summary": dvrnn_tf.metrics.evaluation.summarize(eval.json), ...}},
"aggregate": aggregate(...)}}}.
"""
from __future__ import annotations

import math
import os
import pathlib

# Where the field's protocol's columns go (`_protocol_columns`: their factors are the data's).
PROTOCOL = ("protocol", None, None, None)
# (summary key, column header, scale, digits); scale turns shares into percent.
COLUMNS = [
    ("nll_iwae", "NLL ≤ (IWAE)", 1, 2),
    ("neg_elbo", "−ELBO", 1, 2),
    ("kl_f_per_sequence", "KL_f /seq", 1, 2),
    ("kl_z_per_sequence", "KL_z /seq", 1, 2),
    ("active_f", "active f", None, 0),
    ("active_z", "active z", None, 0),
    ("swap_accuracy", "swap acc %", 100, 1),
    ("swap_first_step", "swap t=1 %", 100, 1),
    PROTOCOL,  # the field's protocol, one column per factor the runs were judged on
    ("label_preservation", "label pres %", 100, 1),
    ("probe_z", "leak: probe z %", 100, 1),
    ("probe_f", "probe f %", 100, 1),
    ("style_r2_by_style", "style R² by style", 1, 2),
    ("style_r2_by_class", "style R² by class", 1, 2),
    ("slant_r2_by_style", "slant R² style", 1, 2),
    ("slant_r2_by_class", "slant R² class", 1, 2),
    ("thickness_r2_by_style", "thickness R² style", 1, 2),
    ("thickness_r2_by_class", "thickness R² class", 1, 2),
    ("thickness_r2_reconstruction", "thickness R² recon", 1, 2),
    ("knn_accuracy", "kNN acc %", 100, 1),
    ("cluster_accuracy", "cluster acc % (f)", 100, 1),
    ("cluster_nmi", "NMI (f)", 1, 2),
    ("cluster_accuracy_kmeans", "k-means acc % (f)", 100, 1),
    ("train_minutes", "train min", 1, 1),
]


def _number(value):
    """A float for numeric cells; "a/b" active-unit counts become a."""
    if isinstance(value, str) and "/" in value:
        return float(value.split("/")[0])
    if isinstance(value, (int, float)) and value is not None and math.isfinite(value):
        return float(value)
    return None


def aggregate(per_seed: dict) -> dict:
    """{key: {"mean", "std", "n"}} over seeds for every numeric summary key."""
    keys = sorted({k for s in per_seed.values() for k in s})
    out = {}
    for k in keys:
        values = [_number(s.get(k)) for s in per_seed.values()]
        values = [v for v in values if v is not None]
        if not values:
            continue
        mean = sum(values) / len(values)
        std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
               if len(values) > 1 else float("nan"))
        out[k] = {"mean": mean, "std": std, "n": len(values)}
    for k in ("active_f", "active_z"):  # keep the denominators for the table
        dims = {str(s[k]).split("/")[1] for s in per_seed.values() if s.get(k)}
        if k in out and len(dims) == 1:
            out[k]["of"] = int(dims.pop())
    return out


def _row_cells(row: dict, cols: list) -> list:
    """A row's cells; a figure fewer of its seeds measured says how many (e.g. a metric the
    package gained after some runs were evaluated)."""
    cells = []
    for key, _, scale, digits in cols:
        stats = row["aggregate"].get(key)
        text = _cell(stats, scale, digits)
        if stats is not None and stats.get("n", 0) < len(row["seeds"]):
            text += f" (n={stats['n']})"
        cells.append(text)
    return cells


def _cell(stats, scale, digits):
    if stats is None:
        return "–"
    # A single seed's std is NaN, which JSON stores as null.
    mean, std = stats["mean"], math.nan if stats["std"] is None else stats["std"]
    if scale is None:  # active units: a count of units
        text = f"{mean:.1f}" if mean != int(mean) else f"{int(mean)}"
        if math.isfinite(std) and std > 0:
            text += f" ± {std:.1f}"
        return text + (f"/{stats['of']}" if "of" in stats else "")
    mean, std = mean * scale, std * scale
    text = f"{mean:.{digits}f}"
    return text + (f" ± {std:.{digits}f}" if math.isfinite(std) else "")


def _protocol_columns(keys) -> list:
    """Columns of the protocol's summary keys (`dvrnn_tf.metrics.protocol.summary`) among
    `keys`: fixed dynamics (accuracy, IS, H(y|x)), fixed content, the swap, then the judged
    reconstructions (the ceiling), per factor."""
    heads = {"fixed_dynamics": ("fixed dyn.: {} %", 100, 1), "fixed_dynamics_is": ("IS", 1, 2),
             # \\| keeps the markdown cell whole
             "fixed_dynamics_h_y_given_x": ("H(y\\|x)", 1, 3),
             "fixed_content": ("fixed content: {} %", 100, 1),
             "factor_swap": ("swap: {} %", 100, 1),
             "reconstruction": ("recon.: {} %", 100, 1)}
    cols = []
    for test, (head, scale, digits) in heads.items():
        for key in keys:
            if key.startswith(test + "[") and key.endswith("]"):
                cols.append((key, head.format(key[len(test) + 1:-1]), scale, digits))
    return cols


def _summary_keys(results: dict) -> list:
    """Every summary key some row has, in the rows' order."""
    return list(dict.fromkeys(k for r in results["configs"].values() for k in r["aggregate"]))


def protocol_table(results: dict) -> list:
    """The field's protocol alone, a row per configuration (the table README quotes): seeds,
    the protocol's columns and the training time; [] when no row was judged."""
    keys = _summary_keys(results)
    cols = _protocol_columns(keys)
    if not cols:
        return []
    cols.append(("train_minutes", "train min", 1, 1))
    rows = ["| model | seeds | " + " | ".join(c[1] for c in cols) + " |",
            "|" + "---|" * (2 + len(cols))]
    for r in results["configs"].values():
        cells = _row_cells(r, cols)
        rows.append(f"| {r['label']} | {len(r['seeds'])} | " + " | ".join(cells) + " |")
    return rows


def _kept_runs(results: dict) -> list:
    return [f"{name}-s{seed}" for name, r in results["configs"].items()
            for seed, run in r["seeds"].items() if run.get("kept_from_record")]


def _columns(results: dict) -> list:
    """The COLUMNS some row has a value for (the protocol's expanded per factor)."""
    keys = _summary_keys(results)
    cols = []
    for c in COLUMNS:
        if c is PROTOCOL:
            cols += _protocol_columns(keys)
        elif c[0] in keys:
            cols.append(c)
    return cols


def _table(results: dict, cols: list) -> list:
    """The markdown table's lines: head, rule, one row per configuration."""
    head = "| model | KL weights | flags | seeds | " + " | ".join(c[1] for c in cols) + " |"
    rows = [head, "|" + "---|" * (4 + len(cols))]
    for r in results["configs"].values():
        cells = _row_cells(r, cols)
        flags = " ".join([r["flagfile"], *r.get("overrides", [])])
        rows.append(f"| {r['label']} | {r['betas']} | `{flags}` | {len(r['seeds'])} | "
                    + " | ".join(cells) + " |")
    return rows


def _chance_text(results: dict) -> str:
    chance = {}
    for r in results["configs"].values():
        for key in ("probe_chance", "style_r2_by_style_chance", "style_r2_by_class_chance",
                    "cluster_accuracy_chance"):
            if key in r["aggregate"]:
                chance[key] = r["aggregate"][key]["mean"]
    return ", ".join(f"{k} {v:.3f}" for k, v in chance.items()) or "n/a"


def _column_notes(ev: dict, protocol: bool) -> list:
    """What each column means, under the evaluation options `ev` (protocol: whether the
    table has the field's protocol's columns)."""
    split = ev.get("split", "test")
    return [
        f"Columns (held-out split: `{split}`"
        + (" - the split settings are chosen on; test is read only for reported numbers"
           if split == "validation" else "")
        + "; nats per frame under each run's likelihood (a Bernoulli one on the "
        f"{split} set binarized once)):",
        f"- **NLL ≤ (IWAE)**: the importance-weighted bound with K = {ev.get('iwae_k')} samples "
        "of f and z jointly per sequence (per frame for the β-VAE), "
        + (f"on the first {ev['iwae_sequences']} held-out sequences" if ev.get("iwae_sequences")
           else "on every held-out sequence")
        + ". **−ELBO**: one posterior sample, analytic KLs.",
        "- **KL_f, KL_z /seq**: nats per sequence (KL_z summed over its T steps); **active**: "
        "units whose mean KL exceeds 0.01 nats (eval.json also has Burda's variance count).",
        "- **swap acc**: content of sequence A decoded with the style z_{1:T} of a sequence of "
        "another class, judged as A's class by the judge CNN (t=1: the first frame only). "
        "**label pres**: a sequence's content decoded with fresh prior styles, judged as its "
        "class.",
        "- **leak: probe z / probe f**: accuracy of a linear probe (logistic regression) that "
        "predicts the class from posterior *samples* of z_{1:T} / f (fitted on the train split; "
        "β-VAE: of one frame's z).",
        "- **style R² by style / by class**: share of the variance of Morpho-MNIST measures "
        "(slant, thickness, width, height) of images decoded from one style source with every "
        "class's content, explained by the style source (want ≈ 1) and by the class "
        "(want ≈ 0).",
        "- **kNN acc**: 5-NN class accuracy of the β-VAE's latent means.",
        "- **cluster acc (f), NMI (f)**: the posterior means of f clustered without labels "
        "(k-means, one cluster per class, for a Gaussian f; the argmax component for a code on "
        "the simplex), Hungarian-matched to the classes; NMI of the same clusters; **k-means "
        "acc**: k-means on f for every prior.",
        "- **train min**: the training process's fit time.",
    ] + ([
        "- **fixed dyn., fixed content, swap** (the field's protocol, docs/sprites.md): "
        "generations with one code kept from a held-out sequence and the other drawn from its "
        "prior or lent by another sequence, judged per factor by the source's sequence judge; "
        "**recon.**: the judge on the reconstructions (neither code replaced), the ceiling of "
        "the tests; – where a run was evaluated before the package measured it.",
        "- **(n=k)** after a figure: the mean of the k seeds of the row that measured it.",
    ] if protocol else [])


def write_table(results: dict, out_md: pathlib.Path):
    lines = [
        f"# {results.get('title', 'Results').rstrip('.')} ({results['dataset']})",
        "",
        f"Generated by `{results['command']}` on {results['generated']}. Every cell is the mean ± "
        f"standard deviation over the row's training seeds (the `seeds` column counts them; "
        f"seeds used: {', '.join(map(str, results['seeds']))}); "
        "each run's numbers, with the seed, split, K and sample counts that produced them, are "
        f"in `{results.get('out_json', 'results.json')}` and in the run's `eval.json`.",
        "",
        *_table(results, _columns(results)),
        "",
        *([f"The field's protocol alone ({results['eval_options'].get('split', 'test')} "
           "split, this package's judge; README quotes it):", "", *short, ""]
          if (short := protocol_table(results)) else []),
        *([f"Not measured yet (rerun the command to train and evaluate them): "
           f"{', '.join(results['missing_runs'])}.", ""] if results.get("missing_runs") else []),
        *([f"Kept as an earlier invocation recorded them (`--keep_recorded`: same settings and "
           f"evaluation options, run directories not in this checkout): {', '.join(kept)}.", ""]
          if (kept := _kept_runs(results)) else []),
        *([f"![Pareto plot]({os.path.relpath(results['pareto_png'], out_md.parent)})", ""]
          if results.get("pareto_png") else []),
        *_column_notes(results["eval_options"], bool(short)),
        "",
        f"Chance levels: {_chance_text(results)}.",
        "",
    ]
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text("\n".join(lines))


# ---- the Pareto plot -----------------------------------------------------------------------

def pareto_front(points):
    """The points no other point beats or ties on both coordinates (higher is better),
    sorted by the first: [(x, y), ...]."""
    points = [tuple(p) for p in points]
    return sorted({p for p in points
                   if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points)})


def pareto_plot(results: dict, path, x="swap_accuracy", y="style_r2_by_style",
                color="nll_iwae"):
    """Each variant at (mean x, mean y) with ±std bars, coloured by its NLL bound; the
    variants no other beats on both axes are joined (the Pareto front)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.lines

    points = []
    for name, r in results["configs"].items():
        agg = r["aggregate"]
        if x in agg and y in agg:
            points.append((r["label"], agg[x], agg[y], agg.get(color, {}).get("mean")))
    if not points:
        raise ValueError(f"no variant has both {x} and {y}: nothing to plot")
    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=120)
    colors = [p[3] for p in points]
    known = [c for c in colors if c is not None]
    norm = matplotlib.colors.Normalize(min(known), max(known)) if known else None
    cmap = matplotlib.colormaps["viridis"]
    handles = []
    for number, (label, px, py, c) in enumerate(points, 1):
        color_ = cmap(norm(c)) if c is not None and norm else "grey"
        ax.errorbar(px["mean"], py["mean"], xerr=_finite_or_zero(px["std"]),
                    yerr=_finite_or_zero(py["std"]), fmt="o", ms=7, color=color_, capsize=3)
        ax.annotate(str(number), (px["mean"], py["mean"]), textcoords="offset points",
                    xytext=(4 + 9 * (number % 2), 4 - 9 * (number % 3 == 0)), fontsize=7)
        handles.append(matplotlib.lines.Line2D(
            [], [], ls="", marker="o", color=color_,
            label=f"{number}. {label}" + (f" (NLL {c:.1f})" if c is not None else "")))
    front = pareto_front([(px["mean"], py["mean"]) for _, px, py, _ in points])
    handles.append(ax.plot(*zip(*front), "--", color="black", lw=0.8, label="Pareto front")[0])
    if norm:
        fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax,
                     label="NLL bound (IWAE), nats per image")
    ax.set_xlabel("swap accuracy (content of A, style of B, judged as A's class)")
    ax.set_ylabel("style preservation: R² by style source")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.25, 1.0), fontsize=7,
              frameon=False)
    ax.set_title(f"{results['dataset']}: mean ± std over seeds")
    fig.tight_layout()
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def _finite_or_zero(v):
    return v if v is not None and math.isfinite(v) else 0.0
