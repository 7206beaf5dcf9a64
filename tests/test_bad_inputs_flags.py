"""Bad flags and flag files, and the real binary.

Part of the catalogue of bad inputs (what every case must show: reliability_helpers.py).

The command-line cases run the binary in this process against a finished run
(`cli_in_process`, `refused`).
`test_the_binary_exits_non_zero` checks a case of each way out of the binary (absl's flag
parsing, `main`'s handler) in real subprocesses.
"""
import subprocess
import sys

import pytest
from reliability_helpers import ROOT, cli_env, refused, snapshot


# ---- flags ----------------------------------------------------------------------------------

def _flagfile(tmp_path, text):
    path = tmp_path / "bad.flags"
    path.write_text(text)
    return f"--flagfile={path}"


def _below(flag, kind):
    """A value under the flag's bound; absl names the flag, the value and the bound."""
    return [flag], [flag, f"not a {kind}"]


FLAG_CASES = {
    # unknown names
    "unknown-model": (["--model=no_such_model"], ["--model", "no_such_model", "factorized"]),
    "unknown-likelihood": (["--likelihood=poisson"], ["--likelihood", "bernoulli"]),
    "unknown-layout": (["--layout=columns"], ["--layout", "rows"]),
    "unknown-kl-schedule": (["--kl_z_schedule=cosine"], ["--kl_z_schedule", "constant"]),
    "unknown-jit-choice": (["--jit_compile=maybe"], ["--jit_compile", "auto"]),
    "unknown-flag": (["--no_such_flag=1"], ["no_such_flag"]),
    "stray-positional-argument": (["factorized"], ["Unexpected arguments: factorized"]),
    # sizes that must be positive
    "hidden_dim-zero": _below("--hidden_dim=0", "positive integer"),
    "hidden_dim-negative": _below("--hidden_dim=-16", "positive integer"),
    "rnn_dim-zero": _below("--rnn_dim=0", "positive integer"),
    "z_dim-zero": _below("--z_dim=0", "positive integer"),
    "f_dim-zero": _below("--f_dim=0", "positive integer"),
    "seq_len-negative": _below("--seq_len=-3", "non-negative"),
    "batch_size-zero": _below("--batch_size=0", "positive integer"),
    "epochs-zero": _below("--epochs=0", "positive integer"),
    # counts that must not be negative
    "steps_per_epoch-negative": _below("--steps_per_epoch=-1", "non-negative"),
    "seed-negative": _below("--seed=-1", "non-negative"),
    "warmup_steps-negative": _below("--warmup_steps=-5", "non-negative"),
    # weights and rates
    "beta_z-negative": _below("--beta_z=-1", "non-negative"),
    "beta_f-negative": _below("--beta_f=-0.5", "non-negative"),
    "capacity_gamma-negative": _below("--capacity_gamma=-1", "non-negative"),
    "clip_norm-negative": _below("--clip_norm=-10", "non-negative"),
    "learning_rate-zero": (["--learning_rate=0"], ["--learning_rate", "> 0"]),
    "learning_rate-negative": _below("--learning_rate=-0.001", "non-negative"),
    "beta_z-nan": (["--beta_z=nan"], ["--beta_z=nan", "finite"]),
    "beta_f-inf": (["--beta_f=inf"], ["--beta_f=inf", "finite"]),
    "learning_rate-inf": (["--learning_rate=inf"], ["--learning_rate=inf", "finite"]),
    # not numbers at all
    "batch_size-not-an-integer": (["--batch_size=lots"], ["--batch_size", "lots"]),
    "beta_z-not-a-number": (["--beta_z=high"], ["--beta_z", "high"]),
    # contradictions
    "kl_f_schedule-for-vrnn": (["--model=vrnn", "--kl_f_schedule=warmup"],
                               ["--kl_f_schedule", "--model=vrnn"]),
    "kl_f_schedule-for-beta_vae": (["--model=beta_vae", "--kl_f_schedule=capacity"],
                                   ["--kl_f_schedule", "--model=beta_vae"]),
    "deterministic-with-xla": (["--deterministic", "--jit_compile=true"],
                               ["--deterministic", "--jit_compile=true"]),
    "rows-layout-with-seq_len": (["--layout=rows", "--seq_len=5"],
                                 ["--seq_len=5 contradicts --layout=rows", "8 rows"]),
    "seq_len-longer-than-the-data": (["--seq_len=5000"], ["seq_len=5000", "leaves no sequence"]),
    # flag files
    "flagfile-missing": (["--flagfile={tmp}/no_such.flags"], ["no_such.flags"]),
    "flagfile-with-unknown-flag": (["{flagfile:--model=vrnn\n--no_such_flag=3\n}"],
                                   ["no_such_flag"]),
    "flagfile-with-bad-value": (["{flagfile:--model=vrnn\n--z_dim=0\n}"],
                                ["--z_dim=0", "not a positive integer"]),
}


def _expand(args, tmp_path):
    out = []
    for a in args:
        if a.startswith("{flagfile:"):
            out.append(_flagfile(tmp_path, a[len("{flagfile:"):-1]))
        else:
            out.append(a.replace("{tmp}", str(tmp_path)))
    return out


@pytest.mark.parametrize("args, words", FLAG_CASES.values(), ids=FLAG_CASES.keys())
def test_bad_flags(tiny_run, tmp_path, capsys, args, words):
    run_dir, good = tiny_run
    refused(capsys, run_dir, [*good, *_expand(args, tmp_path), f"--run_dir={run_dir}"], words)


# ---- the real binary ------------------------------------------------------------------------

@pytest.mark.slow  # subprocesses
def test_the_binary_exits_non_zero(tiny_run, tmp_path):
    """A case of each path out through `python -m dvrnn_tf.train` itself, both at once: exit 1,
    the problem named, no traceback; the previous run untouched, a new --run_dir not made. A
    flag's error leaves through absl's parsing, every other (run directory, data: the
    catalogue's in-process cases) through `main`'s one handler."""
    run_dir, good = tiny_run
    before = snapshot(run_dir)
    cases = {  # name: (flags, words, run directory)
        "flag": ([_flagfile(tmp_path, "--z_dim=0\n")], "--z_dim=0", tmp_path / "new"),
        "run-dir": (["--z_dim=3"], "other flags (z_dim)", run_dir),
    }
    procs = {k: subprocess.Popen([sys.executable, "-m", "dvrnn_tf.train", *good, *args,
                                  f"--run_dir={where}"], cwd=ROOT, env=cli_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, (args, _, where) in cases.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, (name, err[-2000:])
        assert cases[name][1] in err, (name, err[-2000:])
        assert "Traceback" not in err, (name, err[-2000:])
    assert snapshot(run_dir) == before
    assert not (tmp_path / "new").exists(), "a rejected command made its run directory"
