"""A video run end to end on the user's own arrays: conv model with a dynamics prior trains,
resumes exactly, and evaluates its probes against every factor of the data."""
import json

import keras
import numpy as np
import pytest

from dvrnn_tf.metrics.evaluation import evaluate_run
from dvrnn_tf.training import TrainConfig, train
from test_train import Interrupt, _weights

VIDEO = dict(model="content_style", network="conv", conv_channels=4, conv_layers=2,
             hidden_dim=16, f_dim=4, z_dim=2, style_prior="recurrent",
             likelihood="gaussian_fixed", gaussian_scale=0.3, batch_size=8, epochs=3,
             steps_per_epoch=2, deterministic=True, seed=2, figures=False, export=False)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """40 clips of a bright square moving right or left over a coloured background."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    x = np.zeros((40, 4, 8, 8, 3), np.uint8)
    colour, direction = rng.integers(0, 3, 40), rng.integers(0, 2, 40)
    for i in range(40):
        x[i, ..., colour[i]] = 60
        for t in range(4):
            col = 2 + t if direction[i] else 5 - t
            x[i, t, 3:5, col:col + 2] = 255
    np.savez(root / "clips.npz", x=x, colour=colour, direction=direction)
    return {"dataset": f"arrays:{root / 'clips.npz'}", "data_dir": str(root / "cache")}


def test_a_video_run_resumes_exactly(tmp_path, clips):
    # The MLP frame networks: the conv ones resume alike (the same callbacks and state) and
    # cost a minute more of tracing here.
    config = {**VIDEO, **clips, "network": "mlp"}
    train(TrainConfig(run_dir=str(tmp_path / "straight"), **config), verbose=0)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(run_dir=str(tmp_path / "resumed"), **config), verbose=0,
              callbacks=[Interrupt(2)])
    train(TrainConfig(run_dir=str(tmp_path / "resumed"), **config), verbose=0)
    for a, b in zip(_weights(tmp_path / "straight"), _weights(tmp_path / "resumed")):
        np.testing.assert_array_equal(a, b)
    metrics = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["num_sequences"] == 4
    assert metrics["data_settings"]["validation_fraction"] == 0.1


def test_a_video_run_is_evaluated_against_every_factor(tmp_path, clips):
    run_dir = tmp_path / "run"
    train(TrainConfig(run_dir=str(run_dir), **{**VIDEO, **clips, "epochs": 1}), verbose=0)
    result = evaluate_run(run_dir, iwae_k=4, iwae_chunk=4, probe_sequences=32, report=True)
    assert set(result["probes"]["factors"]) == {"colour", "direction"}
    for name, probes in result["probes"]["factors"].items():
        assert probes["metric"] == "accuracy" and 0 <= probes["f"] <= 1, name
    assert {"likelihood", "probes"} <= set(result) and "swap" in result["skipped"]
    assert result["likelihood"]["iwae"]["proposal"].startswith("q(f|x)")
    assert (run_dir / "report.png").stat().st_size > 0
    assert keras.models.load_model(run_dir / "checkpoints" / "last.keras").style_prior == \
        "recurrent"
