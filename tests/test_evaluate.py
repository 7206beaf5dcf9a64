"""The evaluate binary end to end on tiny digits runs, its errors, and the results script."""
import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from config_helpers import config_for
from dvrnn_tf.metrics.evaluation import EvaluationError, EvalOptions, evaluate_run
from dvrnn_tf.training import TrainConfig, train

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = dict(dataset="digits", hidden_dim=16, rnn_dim=16, epochs=1, steps_per_epoch=2,
            export=False, figures=False)
# Small but complete: every metric runs, on few samples.
FAST = dict(iwae_k=8, iwae_chunk=8, eval_sequences=40, probe_sequences=80, style_sources=3,
            judge_epochs=4)


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("judges"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny trained run directory per model, made once for the module."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for model in ("factorized", "vrnn", "beta_vae"):
        run_dir = root / model
        train(config_for(model, run_dir=str(run_dir), **TINY), verbose=0)
        out[model] = run_dir
    return out


def test_evaluate_binary_end_to_end(runs, judge_dir, tmp_path):
    args = [f"--{k}={v}" for k, v in FAST.items()]
    proc = subprocess.run([sys.executable, "-m", "dvrnn_tf.evaluate",
                           f"--run_dir={runs['factorized']}", f"--judge_dir={judge_dir}",
                           f"--output_dir={tmp_path}", *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert result["model"] == "factorized" and result["split"] == "test"
    assert result["likelihood"]["iwae"]["k"] == 8
    assert result["likelihood"]["num_sequences"] == result["held_out_sequences"] == 45
    assert result["likelihood"]["iwae"]["nats_per_image"] <= (
        result["likelihood"]["neg_elbo"]["nats_per_image"] + 1.0)
    for metric in ("swap", "label_preservation", "probes", "style_preservation", "judge"):
        assert metric in result, metric
        assert result[metric].get("seed", result["eval_seed"]) == 0
    assert len(result["swap"]["per_step"]) == 8
    assert result["swap"]["num_pairs"] == 40
    assert "knn" in result["skipped"]
    assert set(result["summary"]) >= {"nll_iwae", "neg_elbo", "swap_accuracy", "probe_z",
                                      "probe_f", "style_r2_by_style", "label_preservation"}
    assert "nll_iwae" in proc.stdout, proc.stdout


@pytest.mark.parametrize("model, present, skipped", [
    ("vrnn", ["likelihood", "probes", "judge"], ["swap", "knn", "style_preservation"]),
    ("beta_vae", ["likelihood", "knn", "probes"], ["swap", "label_preservation"]),
])
def test_every_model_gets_the_metrics_that_apply(runs, judge_dir, tmp_path, model, present,
                                                 skipped):
    result = evaluate_run(runs[model], EvalOptions(**FAST), judge_dir=judge_dir,
                          output_dir=str(tmp_path))
    for m in present:
        assert m in result, m
    for m in skipped:
        assert m in result["skipped"] and m not in result
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["summary"].keys() == result["summary"].keys()
    if model == "beta_vae":
        assert 0.0 <= result["knn"]["accuracy"] <= 1.0
        assert result["likelihood"]["iwae"]["proposal"] == "q(z|x) per frame"
        assert "f" not in result["probes"]


def _fake_run(path, config=None, checkpoint=False):
    path.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if checkpoint:
        (path / "checkpoints").mkdir(exist_ok=True)
        (path / "checkpoints" / "last.keras").write_bytes(b"not a keras file")
    return path


def test_clear_errors_for_run_directories_that_lack_something(tmp_path, runs):
    cases = [
        (tmp_path / "nowhere", "is not a directory"),
        (_fake_run(tmp_path / "empty"), "config.json is missing"),
        (_fake_run(tmp_path / "bad_json", "{not json"), "cannot be read as JSON"),
        (_fake_run(tmp_path / "unknown", {"model": "gan"}), "model 'gan'.*known models"),
        (_fake_run(tmp_path / "no_ckpt", {"model": "vrnn", "dataset": "digits"}),
         "last.keras is missing.*no checkpoint"),
        (_fake_run(tmp_path / "bad_ckpt", {"model": "vrnn", "dataset": "digits"}, True),
         "last.keras cannot be loaded"),
    ]
    for run_dir, message in cases:
        with pytest.raises(EvaluationError, match=message):
            evaluate_run(run_dir)
    with pytest.raises(EvaluationError, match="unknown metric.*no_such"):
        evaluate_run(runs["vrnn"], metrics="likelihood,no_such")
    with pytest.raises(EvaluationError,
                       match="'swap' cannot be measured.*content_style, full, factorized, not vrnn"):
        evaluate_run(runs["vrnn"], metrics="swap")
    with pytest.raises(EvaluationError, match="--iwae_chunk must be >= 1"):
        evaluate_run(runs["vrnn"], iwae_chunk=0)


def test_binary_reports_a_missing_checkpoint_and_exits_nonzero(tmp_path):
    run_dir = _fake_run(tmp_path / "run", {"model": "factorized", "dataset": "digits"})
    proc = subprocess.run([sys.executable, "-m", "dvrnn_tf.evaluate", f"--run_dir={run_dir}",
                           "--split=validation"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "no checkpoint" in proc.stderr, proc.stderr[-2000:]
    assert not (run_dir / "eval.json").exists()


def test_results_script_on_tiny_settings_is_resumable(tmp_path, judge_dir):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import results
    finally:
        sys.path.pop(0)
    out_md, out_json = tmp_path / "results.md", tmp_path / "results.json"
    args = ["--dataset=digits", "--configs=factorized", "--seeds=0,1",
            "--override=--epochs=1", "--override=--steps_per_epoch=2",
            "--override=--hidden_dim=16", "--override=--rnn_dim=16", "--override=--nofigures",
            "--iwae_k=4", "--eval_sequences=24", "--probe_sequences=48",
            "--metrics=likelihood,swap",  # what is resumed, not what is measured, is tested
            f"--runs_root={tmp_path / 'runs'}", f"--out_md={out_md}", f"--out_json={out_json}",
            f"--judge_dir={judge_dir}", "--in_process"]
    assert results.main(args) == 0
    data = json.loads(out_json.read_text())
    assert set(data["configs"]) == {"factorized"}
    fact = data["configs"]["factorized"]
    assert set(fact["seeds"]) == {"0", "1"}
    assert fact["aggregate"]["swap_accuracy"]["n"] == 2
    assert fact["aggregate"]["nll_iwae"]["std"] >= 0
    table = out_md.read_text()
    assert "| factorized (paper β) |" in table and "swap acc" in table
    assert " ± " in table
    stamps = {p: p.stat().st_mtime for p in (tmp_path / "runs").glob("*/eval.json")}
    assert len(stamps) == 2
    assert results.main(args) == 0  # resumes: nothing is trained or evaluated again
    assert {p: p.stat().st_mtime for p in stamps} == stamps
    # Nor when only where the data are read from is spelled differently.
    moved = [a for a in args if not a.startswith("--judge_dir")] + [
        f"--judge_dir={judge_dir}/.", f"--data_dir={tmp_path / 'elsewhere'}"]
    assert results.main(moved) == 0
    assert {p: p.stat().st_mtime for p in stamps} == stamps
    # --table_only tabulates what is there and names what is not.
    partial = [a.replace("--seeds=0,1", "--seeds=0,1,2") for a in args] + ["--table_only"]
    assert results.main(partial) == 0
    assert {p: p.stat().st_mtime for p in stamps} == stamps
    assert json.loads(out_json.read_text())["missing_runs"] == ["factorized-s2"]
    assert "Not measured yet" in out_md.read_text() and "factorized-s2" in out_md.read_text()
    # A measured option: the runs asked for are evaluated again, the others left as they are.
    seed0 = [a.replace("--seeds=0,1", "--seeds=0") for a in args] + ["--eval_seed=1"]
    assert results.main(seed0) == 0
    again = {p.parent.name: p.stat().st_mtime > stamps[p] for p in stamps}
    assert again == {"factorized-s0": True, "factorized-s1": False}, again
    # A table filled elsewhere: seed 1's directory is gone, the table records it.
    assert results.main(args) == 0  # the table as the 2 runs' default options measure them
    recorded = json.loads(out_json.read_text())["configs"]["factorized"]["seeds"]["1"]
    shutil.rmtree(tmp_path / "runs" / "factorized-s1")
    assert results.main(args + ["--table_only", "--keep_recorded"]) == 0
    kept = json.loads(out_json.read_text())
    assert kept["missing_runs"] == []
    assert kept["configs"]["factorized"]["seeds"]["1"]["summary"] == recorded["summary"]
    assert kept["configs"]["factorized"]["seeds"]["1"]["kept_from_record"] is True
    assert "Kept as an earlier invocation recorded them" in out_md.read_text()
    assert "factorized-s1." in out_md.read_text()
    # Other training settings are not the recorded run (seed 0's directory is still here).
    other = args + ["--table_only", "--keep_recorded", "--override=--hidden_dim=8"]
    assert results.main(other) == 0
    assert json.loads(out_json.read_text())["missing_runs"] == ["factorized-s1"]
    assert results.main(args + ["--table_only", "--keep_recorded"]) == 0  # that table lost it
    assert json.loads(out_json.read_text())["missing_runs"] == ["factorized-s1"]


def test_results_flag_parsing():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import results
    finally:
        sys.path.pop(0)
    values = results.parse_flag_lines(["# c", "--model=full", "--noexport", "--figures", ""])
    assert values == {"model": "full", "export": "false", "figures": "true"}
    config = results.config_from_flags({**values, "beta_z": "25", "epochs": "3"})
    assert (config.model_settings.beta_z, config.epochs, config.export) == (25.0, 3, False)
    with pytest.raises(ValueError, match="unknown setting --no_such"):
        results.config_from_flags({"no_such": "1"})
    for name in results.CONFIGS:
        assert (ROOT / "flags" / f"{name}.flags").is_file(), name


def test_a_model_no_metric_applies_to_is_refused():
    from dvrnn_tf.data import open_source
    from dvrnn_tf.metrics.evaluation import _select_metrics

    with pytest.raises(EvaluationError, match="no metric.*'cvae'.*measures"):
        _select_metrics("all", "cvae", open_source("digits"))
    chosen, skipped = _select_metrics("all", "factorized", open_source("digits", {"layout": "rows"}))
    assert chosen == ["likelihood", "probes", "concepts"] and "layout=rows" in skipped["swap"]


def test_sweep_of_variants_writes_one_table(tmp_path, judge_dir):
    from dvrnn_tf.experiments import sweep

    variants = tmp_path / "variants.txt"
    variants.write_text(
        "# name | label | flag file | extra flags\n"
        "fact | factorized b1 | factorized | --beta_f=1 --beta_z=1 --hidden_dim=16 --rnn_dim=16\n"
        "cs | content/style | disentangled | --hidden_dim=16 --kl_z_free_bits=0.5 | 0,1\n")
    out = tmp_path / "out"
    args = [f"--variants={variants}", "--dataset=digits", "--seeds=0",
            "--override=--epochs=1", "--override=--steps_per_epoch=2", "--override=--nofigures",
            "--iwae_k=4", "--eval_sequences=24", "--probe_sequences=48",
            "--metrics=likelihood,swap,style_preservation",
            f"--runs_root={tmp_path / 'runs'}", f"--out_md={out / 't.md'}",
            f"--out_json={out / 't.json'}", f"--pareto_png={out / 'p.png'}",
            f"--judge_dir={judge_dir}", "--in_process"]
    assert sweep.main(args) == 0
    data = json.loads((out / "t.json").read_text())
    assert set(data["configs"]) == {"fact", "cs"}
    assert data["configs"]["cs"]["overrides"] == ["--hidden_dim=16", "--kl_z_free_bits=0.5"]
    assert data["configs"]["fact"]["aggregate"]["swap_accuracy"]["n"] == 1
    assert data["configs"]["cs"]["aggregate"]["swap_accuracy"]["n"] == 2  # its own seeds
    table = (out / "t.md").read_text()
    assert "| content/style |" in table and "--kl_z_free_bits=0.5" in table
    # A sweep chooses settings on validation; test stays unread.
    assert data["eval_options"]["split"] == "validation" and "`validation`" in table
    run = tmp_path / "runs" / "cs-s1"
    assert json.loads((run / "eval-validation" / "eval.json").read_text())["split"] == \
        "validation"
    assert not (run / "eval.json").exists()
    # Tiny untrained models draw blank images: no morphometrics, so no plot, but the table.
    assert "style_r2_by_style" in data["pareto_skipped"]


def test_pareto_front_and_plot(tmp_path):
    from dvrnn_tf.experiments.tables import pareto_front, pareto_plot, write_table

    assert pareto_front([(0.9, 0.2), (0.5, 0.5), (0.4, 0.4), (0.9, 0.1), (0.2, 0.6)]) == [
        (0.2, 0.6), (0.5, 0.5), (0.9, 0.2)]

    def stats(m, s=0.01):
        return {"mean": m, "std": s, "n": 3}
    results = {"dataset": "mnist", "seeds": [0, 1, 2], "command": "c", "generated": "now",
               "eval_options": {"iwae_k": 100}, "configs": {
                   name: {"label": name, "betas": "β_z=1", "flagfile": "flags/x.flags",
                          "seeds": {"0": {}}, "aggregate": {
                              "swap_accuracy": stats(x), "style_r2_by_style": stats(y),
                              "nll_iwae": stats(nll)}}
                   for name, x, y, nll in [("a", 0.99, 0.5, 120.0), ("b", 0.6, 0.7, 110.0),
                                           ("c", 0.5, 0.4, 150.0)]}}
    path = pareto_plot(results, tmp_path / "p.png")
    from PIL import Image
    assert Image.open(path).size[0] > 400
    results["pareto_png"] = path
    write_table(results, tmp_path / "t.md")
    table = (tmp_path / "t.md").read_text()
    assert "![Pareto plot](p.png)" in table and "| b | β_z=1 |" in table
    assert "99.0 ± 1.0" in table  # swap accuracy in percent


def test_the_protocol_table_has_a_row_per_model_in_percent():
    from dvrnn_tf.experiments.tables import protocol_table

    def stats(m, s):
        return {"mean": m, "std": s, "n": 1 if s is None else 2}
    configs = {"a": {"label": "model a", "seeds": {"0": {}, "1": {}}, "aggregate": {
        "fixed_dynamics[motion]": stats(0.9, 0.1), "fixed_dynamics_is[motion]": stats(8.5, 0.25),
        "fixed_content[hair]": stats(0.5, 0.0), "reconstruction[hair]": stats(0.75, 0.05),
        "train_minutes": stats(20.0, 2.0)}},
        # one seed: JSON stores its NaN std as null
        "b": {"label": "model b", "seeds": {"0": {}}, "aggregate": {
            "fixed_dynamics[motion]": stats(0.125, None), "nll_iwae": stats(1.0, None)}}}
    rows = protocol_table({"configs": configs})
    assert rows[0] == ("| model | seeds | fixed dyn.: motion % | IS | fixed content: hair % "
                       "| recon.: hair % | train min |")
    assert rows[2] == ("| model a | 2 | 90.0 ± 10.0 | 8.50 ± 0.25 | 50.0 ± 0.0 | 75.0 ± 5.0 "
                       "| 20.0 ± 2.0 |")
    assert rows[3] == "| model b | 1 | 12.5 | – | – | – | – |"
    configs["b"]["seeds"]["1"] = {}  # a figure one of two seeds has says so
    assert protocol_table({"configs": configs})[3].startswith(
        "| model b | 2 | 12.5 (n=1) | – |")
    assert protocol_table({"configs": {"b": {**configs["b"], "aggregate": {
        "nll_iwae": stats(1.0, None)}}}}) == []  # nothing judged: no table


def test_the_readme_quotes_the_sprites_table():
    """README's Sprites rows are the recorded table's (docs/sprites_table.json), not a copy
    that drifted from it."""
    from dvrnn_tf.experiments.tables import protocol_table

    rows = protocol_table(json.loads((ROOT / "docs" / "sprites_table.json").read_text()))
    readme = (ROOT / "README.md").read_text()
    assert rows and [r for r in rows if r not in readme] == []


@pytest.mark.parametrize("line, match", [
    ("just a name", "expected `name"),
    ("a | b | factorized | beta_z=3", "must look like --name=value"),
    ("a | b | factorized\na | c | full", "unique"),
    ("a | b | factorized | | 0,x", "seeds must be comma-separated integers"),
])
def test_bad_variant_files_are_refused(tmp_path, line, match):
    from dvrnn_tf.experiments.runs_table import read_variants

    path = tmp_path / "v.txt"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=match):
        read_variants(path)


def test_the_binary_takes_every_split_and_refuses_others(tmp_path):
    """--split takes every split of the data (validation chooses, test reports)."""
    from absl import flags

    from dvrnn_tf.data.registry import SPLITS
    from dvrnn_tf.evaluate import define_flags

    for split in SPLITS:
        fv = flags.FlagValues()
        define_flags(fv)
        fv(["evaluate", f"--run_dir={tmp_path}", f"--split={split}"])
        assert fv.split == split
    fv = flags.FlagValues()
    define_flags(fv)
    with pytest.raises(flags.IllegalFlagValueError, match="validation"):
        fv(["evaluate", f"--run_dir={tmp_path}", "--split=dev"])


def test_recorded_runs_are_kept_only_for_the_same_evaluation(tmp_path):
    from dvrnn_tf.experiments.runs_cli import _recorded

    options = {"iwae_k": 100, "split": "test", "seed": 0, "data_dir": "/here"}
    table = {"eval_options": {**options, "data_dir": "/elsewhere"},
             "configs": {"row": {"seeds": {"1": {"summary": {"nll_iwae": -3.0}}}}}}
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    assert _recorded(path, options) == {("row", "1"): {"summary": {"nll_iwae": -3.0}}}
    assert _recorded(path, {**options, "iwae_k": 10}) == {}
    assert _recorded(tmp_path / "absent.json", options) == {}


def test_a_run_made_before_a_setting_existed_keeps_its_directory_and_record(tmp_path):
    """A setting the package gains later, at its default, neither disowns a run directory
    whose config.json lacks it nor changes a recorded run's fingerprint."""
    from dvrnn_tf.experiments.runs_cli import config_sha
    from dvrnn_tf.training import RunDir
    from dvrnn_tf.training.run_dir import RunDirError

    config = config_for("content_style", "digits", run_dir=str(tmp_path), epochs=3)
    run = RunDir(tmp_path)
    with run.claim(config):
        (tmp_path / "backup" / "state.json").write_text("{}")
    older = json.loads(run.config.read_text())
    del older["decoder_refine_layers"]  # as written before that setting existed
    run.config.write_text(json.dumps(older))
    with run.claim(config):
        pass
    assert (tmp_path / "backup" / "state.json").read_text() == "{}"  # resumed, not reset
    with pytest.raises(RunDirError, match=r"other flags \(decoder_refine_layers\)"):
        with run.claim(config.replace(decoder_refine_layers=1)):
            pass
    assert "decoder_refine_layers" not in config.identity_beyond_defaults()
    deeper = config.replace(decoder_refine_layers=1)
    assert deeper.identity_beyond_defaults()["decoder_refine_layers"] == 1
    assert config_sha(deeper) != config_sha(config)


def test_a_recorded_run_is_known_by_its_settings_and_length_not_its_paths():
    from dvrnn_tf.experiments.runs_cli import config_sha

    base = config_for("factorized", "digits", run_dir="/a", epochs=3)
    assert config_sha(base) == config_sha(base.replace(run_dir="/b", data_dir="/c",
                                                       validation_freq=7))
    assert config_sha(base) != config_sha(base.replace(epochs=4))
    assert config_sha(base) != config_sha(base.replace(seed=1))
