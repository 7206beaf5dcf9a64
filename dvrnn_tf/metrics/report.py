"""The one-page `report.png` of an evaluation: numbers, grids, probes, morphometric spread.

Drawn on a `matplotlib.figure.Figure` with the Agg canvas (no pyplot, no display).
"""
from __future__ import annotations

import os

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _fmt(v, digits=3):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if np.isfinite(v) else "nan"
    return str(v)


def _text_lines(result):
    s = result.get("summary", {})
    settings = ", ".join(f"{k}={v}" for k, v in result.get("data_settings", {}).items()
                         if k not in ("data_dir", "manual_dir"))
    lines = [f"{result['model']} on {result['dataset']} ({settings + ', ' if settings else ''}"
             f"{result['observation_model']}), split={result['split']}, data seed "
             f"{result['data_seed']}, eval seed {result['eval_seed']}",
             f"run: {result['run_dir']}"]
    lik = result.get("likelihood")
    if lik:
        iwae = lik.get("iwae")
        lines.append(f"-ELBO {_fmt(lik['neg_elbo']['nats_per_image'], 2)} nats/frame "
                     f"({_fmt(lik['neg_elbo']['bits_per_dim'], 4)} bits/dim)"
                     + (f";  IWAE NLL bound (K={iwae['k']}) {_fmt(iwae['nats_per_image'], 2)} "
                        f"({_fmt(iwae['bits_per_dim'], 4)} bits/dim)" if iwae else "")
                     + f";  {lik['num_sequences']} sequences x T={lik['seq_len']}")
        au = lik["active_units"]
        lines.append(f"KL_z {_fmt(lik['kl_z']['nats_per_sequence'], 2)} nats/sequence, active "
                     f"z units {au['z']['kl']}/{au['z']['dims']} (KL>0.01), "
                     f"{au['z']['burda']}/{au['z']['dims']} (Burda)"
                     + (f";  KL_f {_fmt(lik['kl_f']['nats_per_sequence'], 2)} nats/sequence, "
                        f"active f units {au['f']['kl']}/{au['f']['dims']} (KL), "
                        f"{au['f']['burda']}/{au['f']['dims']} (Burda)" if "f" in au else ""))
    parts = []
    for key, label in (("swap_accuracy", "swap acc"), ("label_preservation", "label pres"),
                       ("probe_z", "probe z"), ("probe_f", "probe f"),
                       ("probe_chance", "chance"), ("knn_accuracy", "kNN acc"),
                       ("judge_reconstruction_accuracy", "judge on recon")):
        if key in s:
            parts.append(f"{label} {_fmt(s[key])}")
    if parts:
        lines.append(";  ".join(parts))
    if "style_r2_by_style" in s:
        lines.append(f"style preservation R^2: by style source {_fmt(s['style_r2_by_style'])} "
                     f"(chance {_fmt(s['style_r2_by_style_chance'])}), by content class "
                     f"{_fmt(s['style_r2_by_class'])} (chance "
                     f"{_fmt(s['style_r2_by_class_chance'])})")
    if result.get("skipped"):
        lines.append("skipped: " + "; ".join(f"{k} ({v})" for k, v in result["skipped"].items()))
    return lines


def _show_grid(ax, grid, title):
    ax.imshow(grid)
    ax.set_title(title, fontsize="small")
    ax.set_xticks([])
    ax.set_yticks([])


def write_report(model, result, x, y, extras, path, seed=0):
    """Draw the report of `result` (evaluate_run's dict) for `model` and write it to `path`."""
    from dvrnn_tf import figures
    from dvrnn_tf.metrics.disentanglement import seeded

    from dvrnn_tf.metrics import protocol_report

    protocol = protocol_report.has_protocol(result)
    fig = Figure(figsize=(15, 17 + (8 if protocol else 0)))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(7 if protocol else 5, 3, height_ratios=[0.3, 0.6, 1.1, 0.9, 0.9]
                            + ([1.1, 0.9] if protocol else []))
    ax = fig.add_subplot(grid[0, :])
    ax.axis("off")
    ax.text(0.0, 1.0, "\n".join(_text_lines(result)), va="top", ha="left", family="monospace",
            fontsize=9, wrap=True)
    images_ok = model.image_shape[0] > 1  # not one row of an image (layout=rows)
    n = min(6, len(x))
    with seeded(model, seed):
        recon = figures.sample_and_reconstruction_grid(model, x[:n], n=n)
        if figures.has_disentanglement(model) and images_ok and n >= 2:
            _show_grid(fig.add_subplot(grid[1, :]),
                       figures.sequences_grid(figures.swap_grid(model, x[:5])),
                       "swap: row = content sequence, column block = style sequence "
                       "(top row: style sources, left block: content sources)")
            _show_grid(fig.add_subplot(grid[2, 0]),
                       figures.sequences_grid(model.generate_fixed_content(n)),
                       "fixed content (one f ~ p(f)), fresh style per row")
            _show_grid(fig.add_subplot(grid[2, 1]), recon,
                       "data / reconstruction pairs, then prior samples")
        else:
            _show_grid(fig.add_subplot(grid[1:3, 1]), recon,
                       "data / reconstruction pairs, then prior samples")
            if getattr(model, "independent_frames", False) and y is not None:  # by class
                _latent_scatter(fig.add_subplot(grid[1:3, 0]), model, x, y)
    _kl_bars(fig.add_subplot(grid[2, 2]), result)
    _probe_bars(fig.add_subplot(grid[3, 0]), result)
    _swap_steps(fig.add_subplot(grid[3, 1]), result)
    if "measures" in extras:
        sp = result["style_preservation"]
        _share_bars(fig.add_subplot(grid[3, 2]), sp)
        for i, name in enumerate(("slant", "thickness", "width")):
            _morph_spread(fig.add_subplot(grid[4, i]), np.asarray(extras["measures"][name]),
                          name, sp)
    else:
        ax = fig.add_subplot(grid[4, :])
        ax.axis("off")
        ax.text(0.5, 0.5, "no morphometrics (style preservation was not measured on this run)",
                ha="center", va="center", fontsize=9)
    if protocol:
        protocol_report.draw(fig, grid[5, :], grid[6, :], result, extras.get("protocol"))
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


def _latent_scatter(ax, model, x, y):
    codes = np.asarray(model.encode(x)["z_loc"])  # [N, T, z]
    labels = np.repeat(y, codes.shape[1])
    codes = codes.reshape(-1, codes.shape[-1])
    # The two dimensions whose means vary most (inactive units would show a blob).
    dims = np.argsort(-codes.var(axis=0))[:2].tolist()
    dims = dims if len(dims) == 2 else dims * 2
    cmap = matplotlib.colormaps["tab10"]
    for c in np.unique(labels):
        sel = labels == c
        ax.scatter(codes[sel, dims[0]], codes[sel, dims[1]], s=3, alpha=0.5,
                   color=cmap(int(c) % 10), label=str(c))
    ax.set_xlabel(f"z[{dims[0]}]")
    ax.set_ylabel(f"z[{dims[1]}]")
    ax.set_title("held-out latent means (the two most varying dims)", fontsize="small")
    ax.legend(fontsize="x-small", markerscale=3, ncol=2)


def _probe_bars(ax, result):
    leak = result.get("probes")
    if not leak:
        ax.axis("off")
        return
    if "chance" not in leak:  # no class label: every factor's f and z probes
        _factor_probe_bars(ax, leak["factors"])
        return
    keys = [k for k in ("z_sequence", "z_frame", "f", "z_means", "f_means") if k in leak]
    values = [leak[k] for k in keys]
    colors = ["tab:blue" if "means" not in k else "tab:gray" for k in keys]
    ax.bar(range(len(keys)), values, color=colors)
    ax.set_xticks(range(len(keys)), keys, fontsize="x-small")
    ax.axhline(leak["chance"], color="red", linestyle="--", label="chance")
    judge = (result.get("judge") or {}).get("held_out_frames_accuracy")
    if judge is not None:
        ax.axhline(judge, color="green", linestyle=":", label="judge on frames")
    ax.set_ylim(0, 1.05)
    ax.set_title("linear probes: class from posterior samples\n(grey: from means, misleading)",
                 fontsize="small")
    ax.legend(fontsize="x-small")


def _factor_probe_bars(ax, factors):
    """Per factor: the probe from f and from z (sequence, else frame), chance as a tick."""
    names = list(factors)
    for i, name in enumerate(names):
        probes = factors[name]
        z = probes.get("z_sequence", probes.get("z_frame"))
        ax.bar(i - 0.2, probes.get("f", 0.0), width=0.4, color="tab:orange",
               label="from f" if i == 0 else None)
        ax.bar(i + 0.2, z, width=0.4, color="tab:blue", label="from z" if i == 0 else None)
        ax.plot([i - 0.4, i + 0.4], [probes["chance"]] * 2, color="red",
                label="chance" if i == 0 else None)
    ax.set_xticks(range(len(names)), names, fontsize="x-small", rotation=30)
    ax.set_ylim(min(0.0, *(p.get("f", 0.0) for p in factors.values())), 1.05)
    ax.set_title("linear probes on posterior samples, per factor\n(accuracy; R^2 for "
                 "continuous factors)", fontsize="small")
    ax.legend(fontsize="x-small")


def _swap_steps(ax, result):
    swap = result.get("swap")
    lp = result.get("label_preservation")
    if not swap and not lp:
        knn = result.get("knn")
        if knn:
            ax.bar([0, 1], [knn["accuracy"], knn["chance"]], color=["tab:blue", "tab:red"])
            ax.set_xticks([0, 1], ["kNN accuracy", "chance"])
            ax.set_ylim(0, 1.05)
            ax.set_title(f"kNN (k={knn['k']}) class accuracy of latent means", fontsize="small")
        else:
            ax.axis("off")
        return
    if swap:
        t = np.arange(1, len(swap["per_step"]) + 1)
        ax.plot(t, swap["per_step"], "o-", label="swap: judged as content class")
        ax.plot(t, swap["style_class_share_per_step"], "s--", label="swap: judged as style's class")
    if lp:
        t = np.arange(1, len(lp["posterior_f"]["per_step"]) + 1)
        ax.plot(t, lp["posterior_f"]["per_step"], "^-", label="label preservation")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("time step")
    ax.set_title("accuracy per time step", fontsize="small")
    ax.legend(fontsize="x-small")


def _kl_bars(ax, result):
    lik = result.get("likelihood")
    if not lik:
        ax.axis("off")
        return
    au = lik["active_units"]
    labels, values = [], []
    for code, key in (("z", "kl_per_unit_per_step"), ("f", "kl_per_unit")):
        if code in au:
            for i, v in enumerate(au[code][key]):
                labels.append(f"{code}{i}")
                values.append(v)
    ax.bar(range(len(values)), values, color="tab:purple")
    ax.set_xticks(range(len(values)), labels, fontsize="xx-small", rotation=90)
    ax.set_yscale("symlog", linthresh=0.01)
    ax.axhline(0.01, color="red", linestyle="--", linewidth=1)
    ax.set_title("KL per latent unit (nats; z per step), active above 0.01", fontsize="small")


def _share_bars(ax, shares):
    """R^2 per measure by style source and by content class, with their chance levels."""
    names = list(shares["style_source"]["per_measure"])
    pos = np.arange(len(names))
    for offset, key, color in ((-0.2, "style_source", "tab:blue"),
                               (0.2, "content_class", "tab:orange")):
        values = [shares[key]["per_measure"][m] for m in names]
        ax.bar(pos + offset, np.nan_to_num(values), width=0.4, color=color,
               label=f"by {key.replace('_', ' ')}")
        ax.axhline(shares[key]["chance"], color=color, linestyle="--", linewidth=1)
    ax.set_xticks(pos, names, fontsize="x-small")
    ax.set_ylim(0, 1.05)
    ax.set_title("style preservation: R^2 of morphometrics\n(dashed: chance levels)",
                 fontsize="small")
    ax.legend(fontsize="x-small")


def _morph_spread(ax, values, name, shares):
    """values [S, C, T]: one column per style source (first 8), dots coloured by class."""
    s, c, t = values.shape
    sources = values.transpose(0, 2, 1).reshape(s * t, c)[:8 * t][:16]  # [sources, classes]
    cmap = matplotlib.colormaps["tab10"]
    for j in range(c):
        ax.scatter(np.arange(len(sources)), sources[:, j], s=10, color=cmap(j % 10),
                   label=str(j) if name == "slant" else None)
    r2s = shares["style_source"]["per_measure"].get(name)
    r2c = shares["content_class"]["per_measure"].get(name)
    ax.set_title(f"{name} per style source (dots: classes)\nR^2 by style {_fmt(r2s, 2)}, "
                 f"by class {_fmt(r2c, 2)}", fontsize="small")
    ax.set_xlabel("style source (sequence, step)")
    if name == "slant":
        ax.legend(fontsize="xx-small", ncol=2, title="class")
