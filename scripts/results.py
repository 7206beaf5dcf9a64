"""The measured results table: train every (config, seed), evaluate each, write the table.

    make results          # = python scripts/results.py --manual_dir=../shared/data/mnist ...

For each config (a flag file in flags/) and seed, trains into `<runs_root>/<config>-s<seed>`
with `python -m dvrnn_tf.train --flagfile=flags/<config>.flags --seed=<seed> ...`, evaluates it
with `dvrnn_tf.evaluate`, and writes `docs/results.md` (mean +- std over seeds) and
`docs/results.json` (every seed's numbers, and how they were produced).

Resumable: a run whose metrics.json exists is not trained again (an interrupted run resumes
from its last epoch: the training binary does that), and a run whose eval.json is newer than
its checkpoint and was made with the same evaluation options is not evaluated again. Rerun the
same command after an interruption.

Test it on tiny settings, e.g.:
    python scripts/results.py --dataset=digits --configs=vrnn,factorized --seeds=0,1 \
        --override=--epochs=1 --override=--hidden_dim=16 --iwae_k=10 \
        --runs_root=/tmp/r --out_md=/tmp/r/results.md --out_json=/tmp/r/results.json
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (config name, label in the table); each config is flags/<name>.flags.
CONFIGS = {
    "vrnn": "VRNN",
    "full": "full (paper β)",
    "factorized": "factorized (paper β)",
    "seed_code": "factorized (public-code β)",
    "beta_vae_b1": "β-VAE β=1",
    "beta_vae_b5": "β-VAE β=5",
    "beta_vae_b10": "β-VAE β=10",
    "beta_vae_b20": "β-VAE β=20",
    "beta_vae_capacity": "β-VAE capacity",
}

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
    ("label_preservation", "label pres %", 100, 1),
    ("probe_z", "leak: probe z %", 100, 1),
    ("probe_f", "probe f %", 100, 1),
    ("style_r2_by_style", "style R² by style", 1, 2),
    ("style_r2_by_class", "style R² by class", 1, 2),
    ("knn_accuracy", "kNN acc %", 100, 1),
    ("train_minutes", "train min", 1, 1),
]


def parse_flag_lines(lines):
    """{name: raw value} from `--name=value`, `--name` and `--noname` lines (comments skipped)."""
    out = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("--"):
            raise ValueError(f"not a flag: {line!r}")
        body = line[2:]
        if "=" in body:
            name, value = body.split("=", 1)
        elif body.startswith("no"):
            name, value = body[2:], "false"
        else:
            name, value = body, "true"
        out[name] = value
    return out


def config_from_flags(flag_values: dict):
    """A TrainConfig from raw flag values (types from the dataclass), validated."""
    from dvrnn_tf.training import TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    kwargs = {}
    for name, raw in flag_values.items():
        if name not in fields:
            raise ValueError(f"--{name} is not a training flag")
        default = fields[name].default
        if isinstance(default, bool):
            kwargs[name] = str(raw).lower() in ("1", "true", "yes")
        elif isinstance(default, int):
            kwargs[name] = int(raw)
        elif isinstance(default, float):
            kwargs[name] = float(raw)
        else:
            kwargs[name] = str(raw)
    return TrainConfig(**kwargs)


@dataclasses.dataclass
class Job:
    config_name: str
    seed: int
    flagfile: pathlib.Path
    run_dir: pathlib.Path
    overrides: list

    @property
    def name(self):
        return f"{self.config_name}-s{self.seed}"

    def flag_args(self):
        return [f"--flagfile={self.flagfile}", *self.overrides, f"--seed={self.seed}",
                f"--run_dir={self.run_dir}"]

    def train_config(self):
        values = parse_flag_lines(self.flagfile.read_text().splitlines())
        values.update(parse_flag_lines(self.flag_args()[1:]))
        return config_from_flags(values)


def betas(config) -> str:
    """The KL weights of a config, as the table shows them."""
    def one(name, schedule, beta, c_max):
        if schedule == "capacity":
            return f"{name}: capacity C={c_max:g}, γ={config.capacity_gamma:g}"
        if schedule != "constant":
            return f"{name}={beta:g} ({schedule}, {config.warmup_steps} steps)"
        return f"{name}={beta:g}"
    parts = []
    if config.model in ("full", "factorized"):
        parts.append(one("β_f", config.kl_f_schedule, config.beta_f, config.capacity_f))
    parts.append(one("β_z" if config.model != "beta_vae" else "β", config.kl_z_schedule,
                     config.beta_z, config.capacity_z))
    return ", ".join(parts)


def _log(message):
    print(f"[results {datetime.datetime.now():%H:%M:%S}] {message}", flush=True)


def train_job(job: Job, in_process: bool) -> dict:
    """Train (or resume) one run; returns {"wall_seconds", "trained"}."""
    metrics = job.run_dir / "metrics.json"
    if metrics.is_file():
        return {"trained": False, "wall_seconds": None}
    _log(f"training {job.name}")
    start = time.perf_counter()
    if in_process:
        from dvrnn_tf.training import train
        train(job.train_config(), verbose=0)
    else:
        proc = subprocess.run([sys.executable, "-m", "dvrnn_tf.train", *job.flag_args()],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
        (job.run_dir / "train.log").parent.mkdir(parents=True, exist_ok=True)
        (job.run_dir / "train.log").write_text(proc.stdout)
        if proc.returncode != 0:
            raise RuntimeError(f"training {job.name} failed (exit {proc.returncode}); see "
                               f"{job.run_dir / 'train.log'}:\n{proc.stdout[-2000:]}")
    seconds = time.perf_counter() - start
    _merge_json(job.run_dir / "results_timing.json", {"train_wall_seconds": seconds})
    return {"trained": True, "wall_seconds": seconds}


def _merge_json(path, values):
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data.update(values)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def eval_is_current(job: Job, eval_options: dict) -> bool:
    path, checkpoint = job.run_dir / "eval.json", job.run_dir / "checkpoints" / "last.keras"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not checkpoint.is_file() or path.stat().st_mtime < checkpoint.stat().st_mtime:
        return False
    done = data.get("options", {})
    return all(done.get(k) == v for k, v in eval_options.items())


def evaluate_job(job: Job, eval_options: dict, in_process: bool) -> dict:
    if eval_is_current(job, eval_options):
        return json.loads((job.run_dir / "eval.json").read_text())
    _log(f"evaluating {job.name}")
    start = time.perf_counter()
    if in_process:
        from dvrnn_tf.evaluate import evaluate_run
        evaluate_run(job.run_dir, **eval_options)
    else:
        args = [f"--{k}={v}" if not isinstance(v, bool) else (f"--{k}" if v else f"--no{k}")
                for k, v in eval_options.items()]
        proc = subprocess.run([sys.executable, "-m", "dvrnn_tf.evaluate",
                               f"--run_dir={job.run_dir}", *args], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        (job.run_dir / "eval.log").write_text(proc.stdout)
        if proc.returncode != 0:
            raise RuntimeError(f"evaluating {job.name} failed (exit {proc.returncode}); see "
                               f"{job.run_dir / 'eval.log'}:\n{proc.stdout[-2000:]}")
    _merge_json(job.run_dir / "results_timing.json",
                {"eval_wall_seconds": time.perf_counter() - start})
    return json.loads((job.run_dir / "eval.json").read_text())


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


def _cell(stats, scale, digits):
    if stats is None:
        return "–"
    mean, std = stats["mean"], stats["std"]
    if scale is None:  # active units: a count of units
        text = f"{mean:.1f}" if mean != int(mean) else f"{int(mean)}"
        if math.isfinite(std) and std > 0:
            text += f" ± {std:.1f}"
        return text + (f"/{stats['of']}" if "of" in stats else "")
    mean, std = mean * scale, std * scale
    text = f"{mean:.{digits}f}"
    return text + (f" ± {std:.{digits}f}" if math.isfinite(std) else "")


def write_table(results: dict, out_md: pathlib.Path):
    cols = [c for c in COLUMNS if any(c[0] in r["aggregate"] for r in results["configs"].values())]
    head = "| model | KL weights | flags | seeds | " + " | ".join(c[1] for c in cols) + " |"
    rule = "|" + "---|" * (4 + len(cols))
    rows = []
    for name, r in results["configs"].items():
        agg = r["aggregate"]
        cells = [_cell(agg.get(key), scale, digits) for key, _, scale, digits in cols]
        rows.append(f"| {r['label']} | {r['betas']} | `{r['flagfile']}` | {len(r['seeds'])} | "
                    + " | ".join(cells) + " |")
    chance = []
    for r in results["configs"].values():
        agg = r["aggregate"]
        for key in ("probe_chance", "style_r2_by_style_chance", "style_r2_by_class_chance"):
            if key in agg:
                chance.append((key, agg[key]["mean"]))
    chance_text = ", ".join(f"{k} {v:.3f}" for k, v in dict(chance).items())
    ev = results["eval_options"]
    lines = [
        f"# Results on {results['dataset']}",
        "",
        f"Generated by `{results['command']}` on {results['generated']}. Every cell is the mean ± "
        f"standard deviation over training seeds ({', '.join(map(str, results['seeds']))}); "
        "each run's numbers, with the seed, split, K and sample counts that produced them, are "
        "in `results.json` and in the run's `eval.json`.",
        "",
        head, rule, *rows,
        "",
        "Columns (held-out split: "
        f"`{ev.get('split', 'test')}`; nats per image; likelihood `bernoulli` on the test set "
        "binarized once):",
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
        "- **train min**: the training process's fit time.",
        "",
        f"Chance levels: {chance_text or 'n/a'}.",
        "",
    ]
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help="Comma-separated flag-file names (flags/<name>.flags).")
    p.add_argument("--seeds", default="0,1,2", help="Comma-separated training seeds.")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data_dir", default=str(ROOT / ".cache" / "tensorflow_datasets"))
    p.add_argument("--manual_dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    p.add_argument("--flags_dir", default=str(ROOT / "flags"))
    p.add_argument("--runs_root", default=str(ROOT / "runs" / "results"))
    p.add_argument("--out_md", default=str(ROOT / "docs" / "results.md"))
    p.add_argument("--out_json", default=str(ROOT / "docs" / "results.json"))
    p.add_argument("--override", action="append", default=[],
                   help="An extra training flag for every run (repeatable), "
                        "e.g. --override=--epochs=1")
    p.add_argument("--export", action="store_true", help="Also write each run's SavedModel.")
    p.add_argument("--iwae_k", type=int, default=1000)
    p.add_argument("--iwae_sequences", type=int, default=0)
    p.add_argument("--eval_sequences", type=int, default=1000)
    p.add_argument("--probe_sequences", type=int, default=5000)
    p.add_argument("--eval_seed", type=int, default=0)
    p.add_argument("--judge_dir", default="")
    p.add_argument("--in_process", action="store_true",
                   help="Train and evaluate in this process (tests); default: a subprocess each.")
    p.add_argument("--dry_run", action="store_true", help="Print the jobs and stop.")
    args = p.parse_args(argv)

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    flags_dir = pathlib.Path(args.flags_dir)
    jobs = []
    common = [f"--dataset={args.dataset}", f"--data_dir={args.data_dir}"]
    if args.manual_dir and args.dataset != "digits":
        common.append(f"--manual_dir={args.manual_dir}")
    if not args.export:
        common.append("--noexport")
    for name in configs:
        flagfile = flags_dir / f"{name}.flags"
        if not flagfile.is_file():
            p.error(f"no flag file {flagfile} for config {name!r}")
        for seed in seeds:
            run_dir = pathlib.Path(args.runs_root).resolve() / f"{name}-s{seed}"
            job = Job(name, seed, flagfile, run_dir, common + list(args.override))
            job.train_config()  # every flag is checked before anything runs
            jobs.append(job)
    eval_options = {"iwae_k": args.iwae_k, "iwae_sequences": args.iwae_sequences,
                    "eval_sequences": args.eval_sequences,
                    "probe_sequences": args.probe_sequences, "seed": args.eval_seed,
                    "data_dir": args.data_dir,
                    "manual_dir": args.manual_dir if args.dataset != "digits" else ""}
    if args.judge_dir:
        eval_options["judge_dir"] = args.judge_dir
    if args.dry_run:
        for job in jobs:
            print("python -m dvrnn_tf.train " + " ".join(job.flag_args()))
        return 0

    results = {"dataset": args.dataset, "seeds": seeds, "eval_options": eval_options,
               "command": "python scripts/results.py " + " ".join(
                   sys.argv[1:] if argv is None else argv),
               "generated": datetime.datetime.now().isoformat(timespec="seconds"), "configs": {}}
    from dvrnn_tf.evaluate import summarize

    start = time.perf_counter()
    for job in jobs:
        train_job(job, args.in_process)
        evaluation = evaluate_job(job, eval_options, args.in_process)
        # Recomputed from the stored metrics, so that a newer summary needs no re-evaluation.
        summary = summarize(evaluation)
        if summary.get("train_seconds") is not None:
            summary["train_minutes"] = summary["train_seconds"] / 60
        try:
            timing = json.loads((job.run_dir / "results_timing.json").read_text())
        except (OSError, ValueError):
            timing = {}
        entry = results["configs"].setdefault(job.config_name, {
            "label": CONFIGS.get(job.config_name, job.config_name),
            "betas": betas(job.train_config()),
            "flagfile": os.path.relpath(job.flagfile, ROOT) if job.flagfile.is_relative_to(ROOT)
            else str(job.flagfile), "seeds": {}})
        entry["seeds"][str(job.seed)] = {"run_dir": str(job.run_dir), "summary": summary,
                                         "timing": timing,
                                         "eval_json": str(job.run_dir / "eval.json")}
    for entry in results["configs"].values():
        entry["aggregate"] = aggregate({s: v["summary"] for s, v in entry["seeds"].items()})
    results["seconds_this_invocation"] = time.perf_counter() - start
    out_json = pathlib.Path(args.out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    from dvrnn_tf.evaluate import _finite
    out_json.write_text(json.dumps(_finite(results), indent=2, sort_keys=True) + "\n")
    write_table(results, pathlib.Path(args.out_md))
    _log(f"wrote {args.out_md} and {args.out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
