"""FusedAdam: Keras's Adam in one kernel per variable; same numbers, fewer ops."""
import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

from dvrnn_tf.models import DisentangledVRNN
from dvrnn_tf.objectives.optimizers import FusedAdam


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("clip", [None, 0.5])
def test_updates_equal_keras_adam(jit, clip):
    rng = np.random.default_rng(0)
    w0 = [rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=(3,)).astype("float32")]
    grads = [[rng.normal(size=w.shape).astype("float32") for w in w0] for _ in range(25)]
    final = []
    for cls in (keras.optimizers.Adam, FusedAdam):
        variables = [keras.Variable(w) for w in w0]
        opt = cls(learning_rate=1e-2, beta_1=0.8, epsilon=1e-6, global_clipnorm=clip)
        opt.build(variables)
        step = tf.function(lambda g: opt.apply(g, variables), jit_compile=jit)
        for g in grads:
            step([tf.constant(x) for x in g])
        final.append([v.numpy() for v in variables])
        assert int(opt.iterations.numpy()) == 25
    for keras_w, fused_w, start in zip(*final, w0, strict=True):
        assert np.abs(keras_w - start).max() > 0.05  # the updates did something
        np.testing.assert_allclose(fused_w, keras_w, rtol=1e-5, atol=1e-6)


def _model_and_data():
    keras.utils.set_random_seed(0)  # the same initial weights every time
    model = DisentangledVRNN((8, 8, 1), hidden_dim=16, rnn_dim=16, z_dim=2, f_dim=3, seed=0)
    x = (np.random.default_rng(1).uniform(size=(16, 4, 8, 8, 1)) < 0.3).astype("float32")
    return model, tf.constant(x)


def _train_step_ops(optimizer):
    model, x = _model_and_data()
    model.compile(optimizer)
    model.optimizer.build(model.trainable_variables)
    graph = tf.function(model.train_step).get_concrete_function(x).graph
    return collections.Counter(op.type for op in graph.get_operations())


def test_training_matches_keras_adam_with_far_fewer_ops():
    losses = {}
    for name, make in [("keras", lambda: keras.optimizers.Adam(3e-3)),
                       ("fused", lambda: FusedAdam(3e-3))]:
        model, x = _model_and_data()
        model.compile(make())
        losses[name] = [float(model.train_step(x)["loss"]) for _ in range(6)]
    np.testing.assert_allclose(losses["fused"], losses["keras"], rtol=1e-5)
    assert losses["fused"][-1] < losses["fused"][0]
    keras_ops, fused_ops = _train_step_ops(keras.optimizers.Adam()), _train_step_ops(FusedAdam())
    n_vars = len(_model_and_data()[0].trainable_variables)
    assert fused_ops["ResourceApplyAdam"] == n_vars and keras_ops["ResourceApplyAdam"] == 0
    # Keras's update is ~30 ops per variable; the fused one a handful.
    assert sum(keras_ops.values()) - sum(fused_ops.values()) > 15 * n_vars


def test_is_the_default_and_survives_a_keras_round_trip(tmp_path):
    model, x = _model_and_data()
    model.compile()  # "adam"
    assert isinstance(model.optimizer, FusedAdam) and model.optimizer.global_clipnorm == 10.0
    model.train_step(x)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, FusedAdam)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_falls_back_to_keras_for_amsgrad():
    rng = np.random.default_rng(2)
    w0 = rng.normal(size=(4,)).astype("float32")
    out = []
    for cls in (keras.optimizers.Adam, FusedAdam):
        v = keras.Variable(w0)
        opt = cls(1e-2, amsgrad=True)
        opt.build([v])
        for i in range(5):
            opt.apply([tf.constant(rng.normal(size=4).astype("float32") * 0 + i)], [v])
        out.append(v.numpy())
    np.testing.assert_allclose(out[1], out[0], rtol=1e-6)


def test_a_saved_model_loads_with_only_the_models_imported(tmp_path):
    """FusedAdam is registered by `dvrnn_tf.models` itself (what a user imports to load)."""
    model, x = _model_and_data()
    model.compile()
    model.train_step(x)
    model.save(tmp_path / "m.keras")
    code = ("import keras, dvrnn_tf.models, sys; "
            f"m = keras.models.load_model({str(tmp_path / 'm.keras')!r}); "
            "print(type(m.optimizer).__name__)")
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("FusedAdam")


def test_fit_traces_the_train_step_once(monkeypatch):
    """The optimizer is built before the train function's first trace: keras would build it
    inside, and tf.function traces a function that creates variables a second time."""
    from dvrnn_tf.models.base import LatentVariableModel

    traces, original = [], LatentVariableModel.train_step

    @tf.autograph.experimental.do_not_convert
    def counted(self, data):
        traces.append(data)  # runs once per trace, never per step
        return original(self, data)

    monkeypatch.setattr(LatentVariableModel, "train_step", counted)
    model, x = _model_and_data()
    model.compile(optimizer="adam")
    model.fit(tf.data.Dataset.from_tensor_slices(x).batch(4), epochs=2, verbose=0, shuffle=False)
    assert int(model.optimizer.iterations.numpy()) == 8
    assert len(traces) == 1
