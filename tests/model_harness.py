"""One harness that any `LatentVariableModel` runs through (after keras-hub's `TestCase`).

Give it a factory (no arguments -> a fresh, uncompiled model) and a small batch (what the
model's dataset yields: x, or a tuple such as (x, y)), and it checks:

  (a) `check_config_round_trip`: `get_config` -> `from_config` (and Keras's registered
      (de)serialization) give the same class and config, and the same output shapes;
  (b) `check_fit_step`: one `fit` step runs, reports every name in `model.metric_names`
      (finite), changes every trainable weight, and `test_step` reports the same names;
  (c) `check_saving`: `.keras` save -> `keras.models.load_model` gives equal weights, equal
      deterministic outputs, the optimizer state (iterations and slots) restored, and `fit`
      continues exactly as the original model does.

`run_model_harness` runs all three sharing one trained model. `ModelHarnessTests` is the same
as a pytest base class: subclass it, define `make_model` and `make_data`, and collect it.

The deterministic output defaults to `model.reconstruct(x)`; pass `outputs=` (a function of
(model, data) returning a tensor or a nest of tensors) for models that need more, e.g. labels.
"""
import os

import keras
import numpy as np
import tensorflow as tf

from dvrnn_tf.models.base import images_from_data


def default_outputs(model, data):
    """The deterministic output compared across config and saving round trips."""
    return model.reconstruct(images_from_data(data))


def batch_size_of(data):
    return int(tf.nest.flatten(data)[0].shape[0])


def one_batch_dataset(data):
    """A dataset yielding `data` as one batch, structure kept (x, or (x, y, ...))."""
    data = tf.nest.map_structure(lambda a: tf.convert_to_tensor(a), data)
    return tf.data.Dataset.from_tensor_slices(data).batch(batch_size_of(data))


def compile_model(model, optimizer=None, run_eagerly=False):
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3), run_eagerly=run_eagerly)
    return model


def _numpy_nest(outputs):
    return tf.nest.map_structure(lambda t: np.asarray(t), outputs)


def _shapes(outputs):
    return tf.nest.map_structure(lambda t: tuple(np.shape(t)), outputs)


def _values(variables):
    return [np.array(v.numpy()) for v in variables]


def _seed_states(model):
    """The states of the model's `SeedGenerator`s, deduplicated, in a fixed order."""
    seen, states = set(), []
    for v in model.variables:
        if "seed_generator_state" in v.path and id(v) not in seen:
            seen.add(id(v))
            states.append(v)
    return states


def copy_seed_state(source, target):
    """Give `target` the noise state of `source` (the state is not part of `.keras` files)."""
    for s, t in zip(_seed_states(source), _seed_states(target), strict=True):
        t.assign(s.value)


def fit_once(model, data):
    """One optimizer step on `data`; returns the history dict (one value per metric)."""
    history = model.fit(one_batch_dataset(data), epochs=1, verbose=0, shuffle=False)
    return {k: v[-1] for k, v in history.history.items()}


def assert_same_variables(a, b, what, atol=0.0):
    assert len(a) == len(b), f"{what}: {len(a)} vs {len(b)} variables"
    for va, vb in zip(a, b):
        assert va.path == vb.path, f"{what}: variable {va.path!r} vs {vb.path!r}"
        np.testing.assert_allclose(
            va.numpy(), vb.numpy(), atol=atol, rtol=0, err_msg=f"{what}: {va.path}")


# ---- (a) config ----------------------------------------------------------------------------


def check_config_round_trip(make_model, data, outputs=default_outputs):
    model = make_model()
    config = model.get_config()
    clone = type(model).from_config(config)
    assert type(clone) is type(model)
    assert clone.get_config() == config

    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert type(revived) is type(model), "class not registered with keras.saving"
    assert revived.get_config() == config

    assert _shapes(outputs(clone, data)) == _shapes(outputs(model, data))
    assert [tuple(v.shape) for v in clone.weights] == [tuple(v.shape) for v in model.weights]
    return model


# ---- (b) fit -------------------------------------------------------------------------------


def check_fit_step(make_model, data, model=None, run_eagerly=False):
    """One fit step: every metric reported and finite, every trainable weight moved."""
    model = model if model is not None else compile_model(make_model(), run_eagerly=run_eagerly)
    before = _values(model.trainable_variables)
    logs = fit_once(model, data)

    names = list(model.metric_names)
    missing = set(names) - set(logs)
    assert not missing, f"fit did not report {sorted(missing)}; got {sorted(logs)}"
    for name in names:
        assert np.isfinite(logs[name]), f"{name} = {logs[name]}"
    assert int(model.optimizer.iterations) == 1

    unchanged = [v.path for v, b in zip(model.trainable_variables, before)
                 if np.array_equal(v.numpy(), b)]
    assert not unchanged, f"fit did not change {unchanged}"

    # `test_step` called eagerly: tracing `evaluate`'s function would cost as much again.
    for metric in model.metrics:
        metric.reset_state()
    evaluated = model.test_step(next(iter(one_batch_dataset(data))))
    assert set(names) <= set(evaluated), f"test_step reported {sorted(evaluated)}"
    assert all(np.isfinite(float(evaluated[name])) for name in names)
    return model, logs


# ---- (c) saving ----------------------------------------------------------------------------


def check_saving(make_model, data, directory, model=None, outputs=default_outputs,
                 run_eagerly=False, resume_eagerly=True, compare_continuation=True):
    """`.keras` round trip of a model that has taken a step; training continues identically.

    resume_eagerly: run the reloaded model's step eagerly, which spares a second trace of
      the train function (seconds for a recurrent model); the original's step stays traced.
    compare_continuation: also take the step with the original model and require the same
      weights after it (the optimizer's slots and the noise state were restored).
    """
    if model is None:
        model = compile_model(make_model(), run_eagerly=run_eagerly)
        fit_once(model, data)
    path = os.path.join(str(directory), "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)

    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    assert_same_variables(model.weights, loaded.weights, "weights")
    tf.nest.map_structure(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=0),
        _numpy_nest(outputs(model, data)), _numpy_nest(outputs(loaded, data)))

    assert loaded.optimizer is not None, "optimizer not restored"
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) > 0
    assert_same_variables(model.optimizer.variables, loaded.optimizer.variables, "optimizer")

    # Training continues: same noise, same data -> the same step as the original model's.
    copy_seed_state(model, loaded)
    loaded.run_eagerly = bool(resume_eagerly or model.run_eagerly)
    step = int(model.optimizer.iterations)
    before = _values(loaded.trainable_variables)
    logs = fit_once(loaded, data)
    assert int(loaded.optimizer.iterations) == step + 1
    assert all(np.isfinite(logs[name]) for name in model.metric_names)
    assert any(not np.array_equal(v.numpy(), b) for v, b in zip(loaded.trainable_variables, before))
    if compare_continuation:
        fit_once(model, data)
        assert_same_variables(model.trainable_variables, loaded.trainable_variables,
                              "weights after a further step", atol=1e-5)
    return loaded


def run_model_harness(make_model, data, directory, outputs=default_outputs, run_eagerly=False):
    """(a), (b) and (c); the fitted model of (b) is the one saved in (c).

    run_eagerly=True skips tracing `train_step`/`test_step` (fast; use it for the variants
    of a model whose traced step another case already covers).
    """
    check_config_round_trip(make_model, data, outputs=outputs)
    model, _ = check_fit_step(make_model, data, run_eagerly=run_eagerly)
    # An eager original would pay a full extra step to compare the continuation; the traced
    # cases compare it.
    return check_saving(make_model, data, directory, model=model, outputs=outputs,
                        compare_continuation=not run_eagerly)


class ModelHarnessTests:
    """pytest base class: subclass (named Test*) with `make_model` and `make_data`."""

    def make_model(self):
        raise NotImplementedError

    def make_data(self):
        raise NotImplementedError

    run_eagerly = False

    def outputs(self, model, data):
        return default_outputs(model, data)

    def test_model_harness(self, tmp_path):
        run_model_harness(self.make_model, self.make_data(), tmp_path, outputs=self.outputs,
                          run_eagerly=self.run_eagerly)
