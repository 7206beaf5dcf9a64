"""The second paper's framework (DESIGN 3): scoring, the win decision, intervals, and every
experiment end to end on tiny settings (digits, tiny nets, few steps, a stub judge)."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from scipy import ndimage
from sklearn.datasets import load_digits

from dvrnn_tf.experiments import framework, grid_experiments, regression, scoring, win_rates
from dvrnn_tf.models.families.cvae import label_transforms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = framework.Settings(dataset="digits", hidden_dim=16, z_dim=2, num_hidden=3, steps=15,
                          batch_size=32, num_styles=5, morph_scale=2, regression_steps=30,
                          regression_images=300)


# ---- constructed decoders ----------------------------------------------------------------

@pytest.fixture(scope="module")
def templates():
    """One blurry template per digit class (sklearn digits class means, 24x24)."""
    d = load_digits()
    t = np.stack([ndimage.zoom(d.images[d.target == k].mean(0) / 16.0, 3, order=1)
                  for k in range(10)])
    return np.clip(t / t.max(axis=(1, 2), keepdims=True), 0, 1)


def styled(template, z):
    """A style given by z: slant (shear) from z0, stroke weight from z1, width from z2."""
    shear, sx = 0.45 * np.tanh(z[0]), 1 + 0.35 * np.tanh(z[2])
    c = np.array(template.shape) / 2
    m = np.array([[1.0, 0.0], [shear, 1.0 / sx]])
    out = ndimage.affine_transform(template, m, offset=c - m @ c, order=1)
    if z[1] > 0:
        out = ndimage.grey_dilation(out, size=(2, 2))
    return np.clip(out, 0, 1)[..., None]


def constructed_grid(templates, z, transforms=None):
    """mu_p(i, z_j) of the style-preserving decoder; with transforms, of its twin
    mu_p(i, T_i z_j)."""
    return np.stack([[styled(templates[i], z_j if transforms is None else transforms[i] @ z_j)
                      for z_j in z] for i in range(10)])


class OracleJudge:
    """Knows each cell's row: the judge interface (`__call__` -> logits, `output_shape`)
    for a grid of `rows` rows and `cols` columns, optionally wrong on a share of the cells."""
    output_shape = (None, 10)

    def __init__(self, cols, wrong_share=0.0):
        self.cols, self.wrong_share = cols, wrong_share

    def __call__(self, x, training=False):
        rows = np.arange(len(x)) // self.cols
        wrong = np.arange(len(x)) % self.cols < round(self.wrong_share * self.cols)
        return np.eye(10, dtype=np.float32)[np.where(wrong, (rows + 1) % 10, rows)]


def test_win_decision_on_constructed_decoders(templates):
    z = np.random.default_rng(0).standard_normal((20, 3))
    judge = OracleJudge(20)
    style = scoring.score_grid(constructed_grid(templates, z), judge)
    assert style["label_preservation"] == 1.0
    assert style["disentangled"], style
    assert style["style_r2"] > 2 * style["style_chance"]
    for kind in ("rotation", "reflection"):
        twin = scoring.score_grid(
            constructed_grid(templates, z, label_transforms(kind, 10, 3, seed=1)), judge)
        assert not twin["disentangled"], (kind, twin)
        assert twin["style_excess"] < 0.1
        # mu_p style-preserving, mu'_p its transformed twin: the decoder wins; and reversed.
        assert scoring.decide_winner(style, twin) == "decoder"
        assert scoring.decide_winner(twin, style) == "encoder"
        assert scoring.decide_winner(twin, twin) == "tie"
    assert scoring.decide_winner(style, style) == "tie"
    # A grid that loses its labels is not disentangled, whatever its style.
    mislabelled = scoring.score_grid(constructed_grid(templates, z), OracleJudge(20, 0.5))
    assert mislabelled["label_preservation"] == 0.5 and not mislabelled["disentangled"]


def test_wilson_interval_and_mean_interval():
    rate, low, high = scoring.wilson_interval(0, 20)
    assert rate == 0 and low == 0 and high == pytest.approx(0.1611, abs=1e-3)
    rate, low, high = scoring.wilson_interval(10, 20)
    assert rate == 0.5 and low == pytest.approx(0.2993, abs=1e-3)
    assert high == pytest.approx(0.7007, abs=1e-3)
    mean, low, high = scoring.mean_interval([1.0, 2.0, 3.0, None])
    assert mean == 2.0 and low == pytest.approx(2 - 4.303 / np.sqrt(3), abs=1e-3)


def test_steps_to_reach_the_same_loss():
    t = np.arange(1, 2001)
    fast, slow = 1 + 10 * np.exp(-t / 100), 1 + 10 * np.exp(-t / 300)
    cmp = regression.compare_curves(fast, slow, window=1)
    # Both reach 90% of the way to the worse final loss; the slow one takes 3x the steps.
    assert cmp["ratio"] == pytest.approx(3.0, rel=0.02)
    assert regression.steps_to_reach([5, 4, 3], 3.5) == 3
    assert regression.steps_to_reach([5, 4], 1) is None
    np.testing.assert_allclose(regression.smooth([1, 3, 5, 7], window=2), [1, 2, 4, 6])


# ---- end to end (tiny) --------------------------------------------------------------------

@pytest.fixture(scope="module")
def data():
    return framework.load_data(TINY)


def stub_judge():
    """A tiny, untrained CNN judge: exercises the judge code path only."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(10)])


def _png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_regression_runs_every_step_in_chunks_as_step_by_step_adam():
    """`_fit_regression` runs its steps 100 per graph call: the same losses as one Keras Adam
    step at a time from the same initial weights on the same batches (130 steps: a partial
    last chunk)."""
    import dataclasses

    import tensorflow as tf

    settings = dataclasses.replace(TINY, regression_steps=130, hidden_dim=8, num_hidden=1,
                                   batch_size=16)
    rng = np.random.default_rng(0)
    x = rng.random((200, 5)).astype(np.float32)
    targets = x @ rng.random((5, 2)).astype(np.float32)
    losses = regression._fit_regression("encoder", x, targets, settings, seed=3)
    assert losses.shape == (130,)

    net = regression._mlp([8], 2, "encoder", 3)
    net.build((None, 5))
    opt = keras.optimizers.Adam(settings.learning_rate)
    reference = []
    for idx in np.random.default_rng([3, 9]).integers(0, 200, (130, 16)):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.reduce_sum(tf.square(net(x[idx]) - targets[idx]), -1))
        opt.apply(tape.gradient(loss, net.trainable_variables), net.trainable_variables)
        reference.append(float(loss))
    np.testing.assert_allclose(losses, reference, rtol=1e-4)
    assert losses[-10:].mean() < 0.5 * losses[:10].mean()


def test_bias_and_layer_split_end_to_end(data, tmp_path):
    judge = stub_judge()
    result = grid_experiments.bias(TINY, 0, judge, str(tmp_path), data=data)
    assert set(result["runs"]) == set(grid_experiments.BIAS_CONFIGS)
    for run in result["runs"].values():
        assert 0 <= run["score"]["label_preservation"] <= 1
        # 15 steps leave the cells nearly alike: an R^2 may be NaN (no variance), not absent.
        assert isinstance(run["score"]["style_r2"], float) and _png(run["grid_png"])
    assert _png(tmp_path / "bias.png")
    assert json.loads((tmp_path / "bias.json").read_text())["seed"] == 0

    shallow = framework.Settings(**{**TINY.to_dict(), "num_hidden": 1})  # 2 layers per net
    result = grid_experiments.layer_split(shallow, 0, judge, str(tmp_path), data=data)
    assert list(result["encoder_split"]) == ["decoder_l+0", "decoder_l+1"]
    assert [r["encoder_layer"] for r in result["decoder_split"].values()] == [1, 0]
    assert result["encoder_split"]["decoder_l+1"]["train"]["model"]["split_decoder"] == [1]
    assert _png(tmp_path / "layer_split.png")


def test_competition_conditions_and_regression(data, tmp_path):
    assert grid_experiments.condition_kwargs("encoder_split", 3) == {"split_encoder": [0]}
    assert grid_experiments.condition_kwargs("decoder_split", 3) == {"split_decoder": [3]}
    conditions = ("masked", "encoder_split", "decoder_split")  # standard: the binary's test
    result = grid_experiments.competition(TINY, 1, None, str(tmp_path), data=data,
                                          conditions=conditions, transforms=("reflection",))
    assert list(result["runs"]) == [f"reflection/{c}" for c in conditions]
    masked = result["runs"]["reflection/masked"]
    assert masked["train"]["model"]["mask_label"] and masked["transform"] == "reflection"
    for run in result["runs"].values():
        assert run["winner"] in scoring.OUTCOMES
        assert run["winner"] == scoring.decide_winner(run["score_mu_p"], run["score_mu_p_prime"])
        assert _png(run["figure"])

    result = regression.regression(TINY, 0, out_dir=str(tmp_path), data=data, judge=stub_judge())
    assert 0 <= result["base_model_score"]["label_preservation"] <= 1
    for kind in ("encoder", "decoder"):
        assert len(result["curves"][f"{kind}_entangled"]) == TINY.regression_steps
        assert result[kind]["steps_disentangled"] and result[kind]["steps_entangled"]
    assert _png(tmp_path / "regression.png")


def _stub_judge_dir(tmp_path):
    """A judge cache holding a stub judge under the real loading code's name and sidecar."""
    from dvrnn_tf.metrics.judge import RECIPE_VERSION, cache_key_for, judge_path

    key, _, _ = cache_key_for("digits", seed=0)
    path = judge_path("digits", 0, str(tmp_path / "judges"), key)
    path.parent.mkdir(parents=True)
    stub_judge().save(str(path))
    path.with_suffix(".json").write_text(json.dumps({"recipe_version": RECIPE_VERSION,
                                                     "key": key, "test_accuracy": None}))
    return str(tmp_path / "judges")


def test_win_rates_binary_runs_and_resumes(tmp_path, monkeypatch):
    run_dir, md = tmp_path / "wr", tmp_path / "docs" / "win_rates.md"
    flags = dict(dataset="digits", hidden_dim=16, z_dim=2, steps=10, num_styles=4,
                 morph_scale=2, regression_steps=20, regression_images=200)
    cmd = [sys.executable, "-m", "dvrnn_tf.experiments.shu", "--experiment=win_rates",
           f"--run_dir={run_dir}", f"--markdown={md}", "--seeds=1", "--conditions=standard",
           "--transforms=rotation", f"--judge_dir={_stub_judge_dir(tmp_path)}",
           *[f"--{k}={v}" for k, v in flags.items()]]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    table = json.loads((run_dir / "win_rates.json").read_text())
    assert [(r["transform"], r["condition"], r["seeds"]) for r in table["rows"]] == [
        ("rotation", "standard", 1)]
    assert sum(table["rows"][0]["counts"].values()) == 1
    assert table["cpu_seconds"] > 0 and table["regression"]["encoder"]["seeds"] == 1
    assert "| rotation | standard | 1 |" in md.read_text()
    assert sorted(os.listdir(run_dir / "runs")) == [
        "competition-rotation-standard-seed0.json", "regression-seed0.json"]

    # Resumed with the same settings: nothing is trained again, the table is rebuilt.
    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(grid_experiments, "competition_run", must_not_run)
    monkeypatch.setattr(regression, "regression", must_not_run)
    settings = framework.Settings(**flags)
    again = win_rates.run_all(settings, [0], str(run_dir), None, data=(None, None),
                              conditions=["standard"], transforms=["rotation"])
    assert again["rows"] == table["rows"]
    # Other settings are other runs: they are not mixed into the table.
    other = win_rates.table(str(run_dir), framework.Settings(**{**flags, "steps": 11}), [0],
                            ["standard"], ["rotation"])
    assert other["rows"][0]["seeds"] == 0
