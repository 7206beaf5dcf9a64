"""Train and evaluate a set of variants over seeds, and tabulate them (mean ± std).

The engine of `scripts/results.py` (the README's results table) and of
`python -m dvrnn_tf.experiments.sweep` (variants, a table and a Pareto plot). A variant is a
flag file plus extra training flags; each (variant, seed) trains with
`python -m dvrnn_tf.train` into `<runs_root>/<variant>-s<seed>` and is measured by
`dvrnn_tf.evaluate`. Resumable: a run whose metrics.json exists is not trained again (an
interrupted one resumes from its last backup), and a run whose eval.json is newer than its
checkpoint and was made with the same evaluation options is not evaluated again.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
import subprocess
import sys
import time


ROOT = pathlib.Path(__file__).resolve().parents[2]

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
    """A TrainConfig from raw flag values (each setting converts its own), validated."""
    from dvrnn_tf.training import TrainConfig

    return TrainConfig(**flag_values)


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
    from dvrnn_tf.models.registry import get_family

    values = config.model_settings

    def one(label, term):
        schedule, beta = values[f"kl_{term}_schedule"], values[f"beta_{term}"]
        if schedule == "capacity":
            return (f"{label}: capacity C={values[f'capacity_{term}']:g}, "
                    f"γ={values['capacity_gamma']:g}")
        if schedule != "constant":
            return f"{label}={beta:g} ({schedule}, {values['warmup_steps']} steps)"
        return f"{label}={beta:g}"
    # A model of single frames has one code, whose weight is the beta-VAE's beta.
    single = getattr(get_family(config.model).model_class, "independent_frames", False)
    parts = [one("β_f", "f")] if "beta_f" in values else []
    return ", ".join(parts + [one("β" if single else "β_z", "z")])


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


def eval_dir(job: Job, eval_options: dict) -> pathlib.Path:
    """Where a run's evaluation on a split goes: the run directory for test (the numbers a
    table reports), `eval-<split>/` inside it for the split a sweep selects on."""
    split = eval_options.get("split", "test")
    return job.run_dir if split == "test" else job.run_dir / f"eval-{split}"


def eval_is_current(job: Job, eval_options: dict) -> bool:
    path = eval_dir(job, eval_options) / "eval.json"
    checkpoint = job.run_dir / "checkpoints" / "last.keras"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not checkpoint.is_file() or path.stat().st_mtime < checkpoint.stat().st_mtime:
        return False
    done = data.get("options", {})
    # Where the data and the judge are read from does not change what is measured.
    return all(done.get(k) == v for k, v in eval_options.items() if k not in EVAL_LOCATIONS)


EVAL_LOCATIONS = ("data_dir", "manual_dir", "judge_dir", "output_dir")


def evaluate_job(job: Job, eval_options: dict, in_process: bool) -> dict:
    out = eval_dir(job, eval_options)
    if eval_is_current(job, eval_options):
        return json.loads((out / "eval.json").read_text())
    _log(f"evaluating {job.name} on {eval_options.get('split', 'test')}")
    start = time.perf_counter()
    options = {**eval_options, "output_dir": str(out)}
    if in_process:
        from dvrnn_tf.metrics.evaluation import evaluate_run
        evaluate_run(job.run_dir, **options)
    else:
        args = [f"--{k}={v}" if not isinstance(v, bool) else (f"--{k}" if v else f"--no{k}")
                for k, v in options.items()]
        proc = subprocess.run([sys.executable, "-m", "dvrnn_tf.evaluate",
                               f"--run_dir={job.run_dir}", *args], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        (job.run_dir / "eval.log").write_text(proc.stdout)
        if proc.returncode != 0:
            raise RuntimeError(f"evaluating {job.name} failed (exit {proc.returncode}); see "
                               f"{job.run_dir / 'eval.log'}:\n{proc.stdout[-2000:]}")
    _merge_json(job.run_dir / "results_timing.json",
                {"eval_wall_seconds": time.perf_counter() - start})
    return json.loads((out / "eval.json").read_text())


# ---- variants ------------------------------------------------------------------------------

@dataclasses.dataclass
class Variant:
    """A row of the table: a flag file (flags/<flagfile>.flags) plus extra training flags;
    seeds: its own training seeds (None: the command's --seeds)."""
    name: str
    label: str
    flagfile: str
    overrides: list = dataclasses.field(default_factory=list)
    seeds: list | None = None


def read_variants(path) -> list[Variant]:
    """Variants from a file of `name | label | flag file | --flag=value ... [| seeds]` lines
    (# comments); the optional last field, e.g. `0,1,2`, overrides the command's --seeds."""
    variants = []
    for number, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) not in (3, 4, 5) or not all(parts[:3]):
            raise ValueError(f"{path}:{number}: expected `name | label | flag file | flags... "
                             f"[| seeds]`, got {line!r}")
        overrides = parts[3].split() if len(parts) >= 4 else []
        seeds = None
        if len(parts) == 5 and parts[4]:
            try:
                seeds = [int(s) for s in parts[4].split(",")]
            except ValueError:
                raise ValueError(f"{path}:{number}: seeds must be comma-separated integers, "
                                 f"got {parts[4]!r}") from None
        if any(not o.startswith("--") for o in overrides):
            raise ValueError(f"{path}:{number}: extra flags must look like --name=value, got "
                             f"{parts[3]!r}")
        variants.append(Variant(parts[0], parts[1], parts[2], overrides, seeds))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: variant names must be unique, got {names}")
    return variants


# ---- the program ---------------------------------------------------------------------------
