"""The command line of `scripts/results.py` and `python -m dvrnn_tf.experiments.sweep`: the
rows and seeds asked for become jobs (`dvrnn_tf.experiments.runs_table`), each trained and
evaluated unless already done, then one table (markdown, JSON, optionally a Pareto plot)."""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import pathlib
import sys
import time

from dvrnn_tf.experiments.runs_table import (EVAL_LOCATIONS, ROOT, Job, Variant, _log, betas,
                                             eval_dir, eval_is_current, evaluate_job,
                                             read_variants, train_job)
from dvrnn_tf.experiments.tables import aggregate, pareto_plot, write_table


def main(argv, *, description, default_variants, defaults, prog):
    """Runs the command line `argv` (`prog`: how the table says it was made).

    default_variants: the rows when neither --configs nor --variants is given; defaults:
    argparse defaults (runs_root, out_md, out_json, pareto_png, ...)."""
    p = _parser(description)
    p.set_defaults(**defaults)
    args = p.parse_args(argv)
    jobs, variants = _jobs(p, args, default_variants)
    eval_options = _eval_options(args)
    if args.dry_run:
        for job in jobs:
            print("python -m dvrnn_tf.train " + " ".join(job.flag_args()))
        return 0
    # Paths inside the repository are shown relative to it: the command reruns from a clone.
    shown = [a.replace(str(ROOT) + os.sep, "").replace(str(ROOT), ".")
             for a in (sys.argv[1:] if argv is None else list(argv))]
    results = {"title": description, "dataset": args.dataset,
               "out_json": os.path.basename(args.out_json),
               "seeds": sorted({j.seed for j in jobs}), "eval_options": eval_options,
               "command": " ".join([prog, *shown]),
               "generated": datetime.datetime.now().isoformat(timespec="seconds"), "configs": {}}
    start = time.perf_counter()
    _collect(results, jobs, {v.name: v for v in variants}, eval_options, args)
    results["seconds_this_invocation"] = time.perf_counter() - start
    _write(results, args)
    return 0


def _parser(description) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--configs", default="",
                   help="Comma-separated flag-file names (flags/<name>.flags), one row each.")
    p.add_argument("--variants", default="",
                   help="A file of `name | label | flag file | --flag=value ...` lines.")
    p.add_argument("--seeds", default="0,1,2", help="Comma-separated training seeds.")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data_dir", default=str(ROOT / ".cache" / "tensorflow_datasets"))
    p.add_argument("--manual_dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    p.add_argument("--flags_dir", default=str(ROOT / "flags"))
    p.add_argument("--runs_root", default=str(ROOT / "runs" / "sweep"),
                   help="Where the runs go, <variant>-s<seed> each (results and sweep share it).")
    p.add_argument("--out_md", default=str(ROOT / "docs" / "results.md"))
    p.add_argument("--out_json", default=str(ROOT / "docs" / "results.json"))
    p.add_argument("--pareto_png", default="",
                   help="Also draw swap accuracy against style preservation here.")
    p.add_argument("--override", action="append", default=[],
                   help="An extra training flag for every run (repeatable), "
                        "e.g. --override=--epochs=1")
    p.add_argument("--export", action="store_true", help="Also write each run's SavedModel.")
    p.add_argument("--iwae_k", type=int, default=1000)
    p.add_argument("--iwae_sequences", type=int, default=0)
    p.add_argument("--eval_sequences", type=int, default=1000)
    p.add_argument("--probe_sequences", type=int, default=5000)
    p.add_argument("--eval_seed", type=int, default=0)
    p.add_argument("--eval_split", default="test", choices=("validation", "test"),
                   help="The split measured: validation to choose settings (a sweep), test "
                        "for the numbers a table reports.")
    p.add_argument("--metrics", default="all",
                   help="The metrics each run is evaluated on (dvrnn_tf.evaluate --metrics): "
                        "e.g. only those a sweep selects by, on validation.")
    p.add_argument("--judge_dir", default="")
    p.add_argument("--in_process", action="store_true",
                   help="Train and evaluate in this process (tests); default: a subprocess each.")
    p.add_argument("--dry_run", action="store_true", help="Print the jobs and stop.")
    p.add_argument("--table_only", action="store_true",
                   help="Train and evaluate nothing: tabulate the runs already trained and "
                        "evaluated with these options (the others are listed as missing).")
    p.add_argument("--keep_recorded", action="store_true",
                   help="A run whose directory is not here but which --out_json already "
                        "records, with these evaluation options and the same training "
                        "settings, is kept as recorded instead of trained again (a table "
                        "filled over several sessions or machines).")
    return p


def _variants(p, args, default_variants) -> list[Variant]:
    if args.configs and args.variants:
        p.error("--configs and --variants are alternatives: give one")
    if args.variants:
        try:
            return read_variants(args.variants)
        except (OSError, ValueError) as e:
            p.error(f"--variants: {e}")
    if args.configs:
        labels = {v.name: v.label for v in default_variants}
        return [Variant(c.strip(), labels.get(c.strip(), c.strip()), c.strip())
                for c in args.configs.split(",") if c.strip()]
    return list(default_variants)


def _jobs(p, args, default_variants) -> tuple[list[Job], list[Variant]]:
    """(one Job per variant and seed, the variants); every flag is checked before anything
    runs (argparse's error otherwise)."""
    variants = _variants(p, args, default_variants)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    flags_dir = pathlib.Path(args.flags_dir)
    common = [f"--dataset={args.dataset}", f"--data_dir={args.data_dir}"]
    if args.manual_dir and args.dataset != "digits":
        common.append(f"--manual_dir={args.manual_dir}")
    if not args.export:
        common.append("--noexport")
    jobs = []
    for variant in variants:
        flagfile = flags_dir / f"{variant.flagfile}.flags"
        if not flagfile.is_file():
            p.error(f"no flag file {flagfile} for {variant.name!r}")
        for seed in variant.seeds or seeds:
            run_dir = pathlib.Path(args.runs_root).resolve() / f"{variant.name}-s{seed}"
            job = Job(variant.name, seed, flagfile, run_dir,
                      common + list(variant.overrides) + list(args.override))
            try:
                job.train_config()
            except ValueError as e:
                p.error(f"{variant.name}: {e}")
            jobs.append(job)
    return jobs, variants


def _eval_options(args) -> dict:
    options = {"iwae_k": args.iwae_k, "iwae_sequences": args.iwae_sequences,
               "eval_sequences": args.eval_sequences, "probe_sequences": args.probe_sequences,
               "seed": args.eval_seed, "split": args.eval_split, "metrics": args.metrics,
               "data_dir": args.data_dir,
               "manual_dir": args.manual_dir if args.dataset != "digits" else ""}
    if args.judge_dir:
        options["judge_dir"] = args.judge_dir
    return options


def _collect(results, jobs, by_name, eval_options, args) -> None:
    """Trains and evaluates each job (unless done, or --table_only), and files its summary
    under its variant in results["configs"]; the jobs left out in results["missing_runs"]."""
    from dvrnn_tf.metrics.evaluation import summarize

    missing = []
    recorded = _recorded(args.out_json, eval_options) if args.keep_recorded else {}
    for job in jobs:
        kept = recorded.get((job.config_name, str(job.seed)))
        if (kept is not None and not (job.run_dir / "metrics.json").is_file()
                and kept.get("config_sha") == config_sha(job.train_config())):
            _file(results, by_name[job.config_name], job, dict(kept, kept_from_record=True))
            continue
        if args.table_only:
            if not ((job.run_dir / "metrics.json").is_file()
                    and eval_is_current(job, eval_options)):
                missing.append(job.name)
                continue
        else:
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
        _file(results, by_name[job.config_name], job, {
            "run_dir": str(job.run_dir), "summary": summary, "timing": timing,
            "eval_json": str(eval_dir(job, eval_options) / "eval.json"),
            "config_sha": config_sha(job.train_config())})
    results["missing_runs"] = missing
    if missing:
        _log(f"not in the table (not trained or not evaluated yet): {', '.join(missing)}")
    for entry in results["configs"].values():
        entry["aggregate"] = aggregate({s: v["summary"] for s, v in entry["seeds"].items()})


def _file(results, variant, job, run: dict) -> None:
    """Files one run's record under its variant's row of results["configs"]."""
    entry = results["configs"].setdefault(job.config_name, {
        "label": variant.label, "betas": betas(job.train_config()),
        "flagfile": os.path.relpath(job.flagfile, ROOT) if job.flagfile.is_relative_to(ROOT)
        else str(job.flagfile), "overrides": variant.overrides, "seeds": {}})
    entry["seeds"][str(job.seed)] = run


def config_sha(config) -> str:
    """A fingerprint of what defines a finished run (TrainConfig.identity, which leaves out
    where it reads or writes and how often it reports, and its length), so that a recorded
    run is only reused for the same settings. Settings at their defaults are left out, so a
    setting the package gains later does not disown the runs recorded before it."""
    text = json.dumps({**config.identity_beyond_defaults(), "epochs": config.epochs},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _recorded(out_json, eval_options) -> dict:
    """{(variant, seed): run record} from an earlier table at out_json, if it was evaluated
    with the same options (where the data and judge were read from aside); else {}."""
    try:
        earlier = json.loads(pathlib.Path(out_json).read_text())
    except (OSError, ValueError):
        return {}
    done = earlier.get("eval_options", {})
    if any(done.get(k) != v for k, v in eval_options.items() if k not in EVAL_LOCATIONS):
        _log(f"{out_json} was evaluated with other options: none of its runs is kept")
        return {}
    return {(name, seed): run for name, entry in earlier.get("configs", {}).items()
            for seed, run in entry.get("seeds", {}).items()}


def _write(results, args) -> None:
    from dvrnn_tf.metrics.evaluation import _finite

    out_json = pathlib.Path(args.out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    if args.pareto_png:
        try:
            results["pareto_png"] = pareto_plot(results, args.pareto_png)
        except ValueError as e:  # e.g. no run could be measured: keep the table
            results["pareto_skipped"] = str(e)
            _log(f"no Pareto plot: {e}")
    out_json.write_text(json.dumps(_finite(results), indent=2, sort_keys=True) + "\n")
    write_table(results, pathlib.Path(args.out_md))
    _log(f"wrote {args.out_md} and {args.out_json}"
         + (f" and {args.pareto_png}" if args.pareto_png else ""))
