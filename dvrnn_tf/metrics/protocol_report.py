"""The field's protocol on the report page: its grids (RGB sequences) and per-factor bars."""
from __future__ import annotations

import numpy as np

from dvrnn_tf.metrics.protocol import METRICS

_GRID_TITLES = {
    "fixed_dynamics": "fixed dynamics: a sequence, then its z with f ~ p(f)",
    "fixed_content": "fixed content: a sequence, then its f with z ~ style prior",
    "factor_swap": "swap: A, B, then f of A with z of B",
}


def has_protocol(result) -> bool:
    return any(t in result for t in METRICS)


def draw(fig, grid_row, bars_row, result, sequences) -> None:
    """Grids of `sequences` ({test: [R, T, H, W, C]}, `protocol.figure_sequences`) across
    `grid_row`, per-factor bars of each test across `bars_row` (two gridspec rows)."""
    from dvrnn_tf import figures

    grid_axes = grid_row.subgridspec(1, 3)
    bar_axes = bars_row.subgridspec(1, 3)
    for i, test in enumerate(METRICS):
        ax = fig.add_subplot(grid_axes[0, i])
        if test in (sequences or {}):
            ax.imshow(figures.sequences_grid(sequences[test]))
            ax.set_title(_GRID_TITLES[test], fontsize="small")
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.axis("off")
        _bars(fig.add_subplot(bar_axes[0, i]), test, result.get(test))


def _bars(ax, test, scores) -> None:
    """Accuracy (mean, std over draws) per judged factor, the judge's own test accuracy as a
    tick; the factors the kept code should not carry in grey, chance in red."""
    if not scores:
        ax.axis("off")
        return
    judge = scores.get("judge", {}).get("test_accuracy", {})
    items = [(name, s, "tab:blue") for name, s in scores["factors"].items()]
    items += [(name, s, "tab:gray") for name, s in scores["other_factors"].items()]
    for i, (name, s, color) in enumerate(items):
        acc = s["accuracy"]
        ax.bar(i, acc["mean"], yerr=acc["std"] or 0.0, color=color, capsize=3, width=0.6)
        if "other_accuracy" in s:  # the swap: judged as the sequence that lent the other code
            ax.bar(i + 0.35, s["other_accuracy"]["mean"], width=0.2, color="tab:gray")
        ax.plot([i - 0.4, i + 0.4], [s["chance"]] * 2, color="red",
                label="chance" if i == 0 else None)
        if name in judge:
            ax.plot([i - 0.4, i + 0.4], [judge[name]] * 2, color="green", linestyle=":",
                    label="judge on real" if i == 0 else None)
    ax.set_xticks(range(len(items)), [n for n, _, _ in items], fontsize="x-small", rotation=30)
    ax.set_ylim(0, 1.05)
    lines = [f"{n}: IS {_f(s['inception_score'])}, H(y|x) {_f(s['h_y_given_x'])}, "
             f"H(y) {_f(s['h_y'])}" for n, s in scores["factors"].items()
             if "inception_score" in s]
    ax.set_title(f"{test} ({scores['draws']} draws, N={scores['num_sequences']}; grey: "
                 f"should fall to chance)\n" + "\n".join(lines[:5]), fontsize="x-small")
    ax.legend(fontsize="xx-small", loc="center right")


def _f(stat) -> str:
    mean, std = stat["mean"], stat["std"]
    if mean is None or not np.isfinite(mean):
        return "n/a"
    return f"{mean:.3f}" + (f"±{std:.3f}" if std is not None else "")
