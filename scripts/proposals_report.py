"""The table and the figure of docs/proposals.md from the study's two sweep tables.

    python scripts/proposals_report.py [--validation=docs/proposals_validation.json]
        [--test=docs/proposals_test.json] [--page=docs/proposals.md]
        [--figure=docs/figures/proposals.png]

Reads what `python -m dvrnn_tf.experiments.sweep` wrote for the validation split (where the
settings are chosen) and the test split (the numbers reported); selects, per model, the row
with the best validation clustering accuracy of f; writes the figure (clustering accuracy of
f against swap accuracy, and clustering accuracy and NMI per row) and replaces the block
between `<!-- proposals-table -->` and `<!-- /proposals-table -->` in the page.
"""
import argparse
import json
import math
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- proposals-table -->", "<!-- /proposals-table -->"
# (summary key, header, scale, digits)
COLUMNS = [
    ("nll_iwae", "NLL ≤ (IWAE K=100)", 1, 1),
    ("neg_elbo", "−ELBO", 1, 1),
    ("kl_f_per_sequence", "KL_f /seq", 1, 1),
    ("kl_z_per_sequence", "KL_z /seq", 1, 1),
    ("swap_accuracy", "swap %", 100, 1),
    ("label_preservation", "label pres %", 100, 1),
    ("probe_z", "probe z %", 100, 1),
    ("style_r2_by_style", "style R² (4 measures)", 1, 2),
    ("cluster_accuracy", "cluster acc f %", 100, 1),
    ("cluster_nmi", "NMI f", 1, 2),
    ("cluster_accuracy_kmeans", "k-means acc f %", 100, 1),
]
FAMILIES = {"dv": "Disentangled VRNN (factorized)", "cs": "content/style model"}


def _load(path):
    return json.loads(pathlib.Path(path).read_text())


def _stat(entry, key):
    return entry.get("aggregate", {}).get(key)


def _cell(stats, scale, digits):
    if not stats:
        return "–"
    text = f"{stats['mean'] * scale:.{digits}f}"
    std = stats.get("std")  # None with one seed
    if std is None or not math.isfinite(std):
        return text
    return text + f" ± {std * scale:.{digits}f}"


def select(validation):
    """{family prefix: the row name with the best mean validation clustering accuracy}."""
    best = {}
    for name, entry in validation["configs"].items():
        family = name.split("_")[0]
        acc = _stat(entry, "cluster_accuracy")
        if acc and (family not in best or acc["mean"] > best[family][1]):
            best[family] = (name, acc["mean"])
    return {family: name for family, (name, _) in best.items()}


def table(test, validation, chosen):
    head = ("| row | seeds | " + " | ".join(c[1] for c in COLUMNS)
            + " | val. cluster acc % | val. swap % |")
    rule = "|" + "---|" * (len(COLUMNS) + 4)
    lines = [head, rule]
    for name, entry in test["configs"].items():
        val = validation["configs"].get(name, {})
        mark = " **(selected)**" if name in chosen.values() else ""
        cells = [_cell(_stat(entry, k), s, d) for k, _, s, d in COLUMNS]
        cells += [_cell(_stat(val, "cluster_accuracy"), 100, 1),
                  _cell(_stat(val, "swap_accuracy"), 100, 1)]
        lines.append(f"| {entry['label']}{mark} | {len(entry['seeds'])} | "
                     + " | ".join(cells) + " |")
    chance = [_stat(e, "cluster_accuracy_chance") for e in test["configs"].values()]
    chance = [c["mean"] for c in chance if c]
    if chance:
        lines += ["", f"Chance level of the clustering accuracy (the same clusters against "
                      f"shuffled labels): {100 * min(chance):.1f}-{100 * max(chance):.1f} %; "
                      "of the probes: the majority class, about 11 %."]
    return "\n".join(lines)


def figure(test, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6.5), dpi=120)
    colors = {"gauss": "tab:blue", "dir": "tab:orange", "sb": "tab:green"}
    names, accs, nmis, acc_err, nmi_err = [], [], [], [], []
    for name, entry in test["configs"].items():
        parts = name.split("_")
        family, prior, attention = parts[0], parts[1], parts[-1] == "att"
        acc, swap = _stat(entry, "cluster_accuracy"), _stat(entry, "swap_accuracy")
        nmi = _stat(entry, "cluster_nmi")
        if not (acc and swap and nmi):
            continue
        marker = "s" if family == "cs" else ("^" if attention else "o")
        left.errorbar(swap["mean"], acc["mean"], xerr=_finite(swap["std"]),
                      yerr=_finite(acc["std"]), fmt=marker, ms=8, capsize=3,
                      color=colors[prior], mfc=colors[prior] if not attention else "white",
                      label=entry["label"])
        names.append(entry["label"].replace(", ", "\n", 1))
        accs.append(acc["mean"])
        nmis.append(nmi["mean"])
        acc_err.append(_finite(acc["std"]))
        nmi_err.append(_finite(nmi["std"]))
    left.set_xlabel("swap accuracy (content of A, style of B, judged as A's class)")
    left.set_ylabel("clustering accuracy of f (no labels, Hungarian-matched)")
    left.set_xlim(-0.02, 1.02)
    left.set_ylim(0, 1.02)
    left.grid(alpha=0.3)
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    seeds = max(len(e["seeds"]) for e in test["configs"].values())
    left.set_title(f"test split, {seeds} seed(s) a row: mean ± std")
    x = range(len(names))
    right.bar([i - 0.2 for i in x], accs, 0.4, yerr=acc_err, label="clustering accuracy",
              capsize=2)
    right.bar([i + 0.2 for i in x], nmis, 0.4, yerr=nmi_err, label="NMI", capsize=2)
    right.set_xticks(list(x))
    right.set_xticklabels(names, rotation=70, fontsize=6, ha="right")
    right.set_ylim(0, 1)
    right.legend(fontsize=8)
    right.set_title("concepts in f, per row (test)")
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _finite(v):
    return v if v is not None and math.isfinite(v) else 0.0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--validation", default=str(ROOT / "docs" / "proposals_validation.json"))
    p.add_argument("--test", default=str(ROOT / "docs" / "proposals_test.json"))
    p.add_argument("--page", default=str(ROOT / "docs" / "proposals.md"))
    p.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "proposals.png"))
    args = p.parse_args(argv)
    validation, test = _load(args.validation), _load(args.test)
    chosen = select(validation)
    block = table(test, validation, chosen)
    page = pathlib.Path(args.page)
    text = page.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{page} has no {BEGIN} ... {END} block to fill")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    page.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}")
    figure(test, args.figure)
    print(f"selected on validation: {chosen}; wrote {page} and {args.figure}")


if __name__ == "__main__":
    main()
