"""ContentAttention (issue 15): the style path's state attends over the content encoder's states."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from dvrnn_tf.layers.content_attention import ContentAttention

B, T, R, C = 3, 5, 6, 7


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    query = tf.constant(rng.normal(size=(B, T, R)), tf.float32)
    states = tf.constant(rng.normal(size=(B, T, C)), tf.float32)
    return query, states


@pytest.mark.parametrize("heads", [1, 2])
def test_weights_are_distributions_over_the_content_states(heads):
    layer = ContentAttention(8, heads=heads)
    query, states = _inputs()
    context, weights = layer(query, states)
    assert tuple(context.shape) == (B, T, 8) and tuple(weights.shape) == (B, T, T)
    assert float(tf.reduce_min(weights)) >= 0
    np.testing.assert_allclose(tf.reduce_sum(weights, -1).numpy(), 1.0, atol=1e-6)
    assert float(tf.math.reduce_std(weights)) > 1e-3  # not uniform: the query matters
    # One step ([B, r]) is the same computation as that step's row of the sequence call.
    step_context, step_weights = layer(query[:, 2], states)
    assert tuple(step_context.shape) == (B, 8) and tuple(step_weights.shape) == (B, T)
    np.testing.assert_allclose(step_context.numpy(), context[:, 2].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(step_weights.numpy(), weights[:, 2].numpy(), rtol=1e-5, atol=1e-7)
    assert layer.compute_output_shape((B, T, R), (B, T, C)) == ((B, T, 8), (B, T, T))


def test_gradients_reach_the_content_encoder():
    encoder = keras.layers.GRU(C, return_sequences=True)
    layer = ContentAttention(8)
    query, _ = _inputs()
    frames = tf.constant(np.random.default_rng(1).normal(size=(B, T, 4)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        states = encoder(frames)
        tape.watch(query)
        context, weights = layer(query, states)
        loss = tf.reduce_sum(tf.square(context))
        first_state_weight = tf.reduce_sum(weights[:, :, 0] * tf.range(1.0, T + 1))
    grads = tape.gradient(loss, encoder.trainable_weights + [query])
    assert all(np.all(np.isfinite(g.numpy())) and float(tf.norm(g)) > 0 for g in grads)
    # ... through the weights too, not only through the values.
    weight_grads = tape.gradient(first_state_weight, encoder.trainable_weights)
    assert all(float(tf.norm(g)) > 0 for g in weight_grads)


def test_content_mask_is_respected():
    layer = ContentAttention(8, heads=2)
    query, states = _inputs(2)
    mask = np.ones((B, T), bool)
    mask[0, 3:] = False
    mask[2, :2] = False
    context, weights = layer(query, states, content_mask=mask)
    np.testing.assert_array_equal(weights.numpy()[~np.repeat(mask[:, None], T, 1)], 0.0)
    np.testing.assert_allclose(tf.reduce_sum(weights, -1).numpy(), 1.0, atol=1e-6)
    # What is masked can change without changing the context, and gets no gradient.
    noise = tf.constant(100 * (~mask)[..., None] * np.ones((1, 1, C)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(states)
        changed, _ = layer(query, states + noise, content_mask=mask)
        grad = tape.gradient(tf.reduce_sum(changed), states)
    np.testing.assert_allclose(changed.numpy(), context.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(grad.numpy()[~mask], 0.0)
    # Per-query masks [B, T, T_c], e.g. causal with a null state first: step t sees s < t.
    null_first = tf.concat([tf.zeros([B, 1, C]), states], 1)  # T_c = T + 1
    causal = np.tril(np.ones((T, T + 1), bool))  # row t allows states 0..t (c_0 .. c_{t})
    _, w = layer(query, null_first, content_mask=np.broadcast_to(causal, (B, T, T + 1)))
    np.testing.assert_array_equal(w.numpy()[:, ~causal], 0.0)
    np.testing.assert_allclose(w.numpy()[:, 0, 0], 1.0, rtol=1e-6)


def test_config_and_keras_file_round_trip(tmp_path):
    layer = ContentAttention(8, heads=2, key_dim=3, dropout=0.1, name="content_attention")
    clone = ContentAttention.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    q_in, s_in = keras.Input((T, R)), keras.Input((T, C))
    model = keras.Model([q_in, s_in], layer(q_in, s_in))
    query, states = _inputs(3)
    expected = model([query, states])
    model.save(tmp_path / "attention.keras")
    loaded = keras.saving.load_model(tmp_path / "attention.keras")
    for a, b in zip(expected, loaded([query, states])):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    for kwargs, name in (({"units": 0}, "units"), ({"units": 5, "heads": 2}, "heads"),
                         ({"units": 4, "dropout": 1.0}, "dropout"),
                         ({"units": 4, "key_dim": 0}, "key_dim")):
        with pytest.raises(ValueError, match=name):
            ContentAttention(**kwargs)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision(policy):
    query, states = _inputs(4)
    full = ContentAttention(8, heads=2)
    reference = full(query, states)
    mixed = ContentAttention(8, heads=2, dtype=policy)
    mixed(query, states)
    mixed.set_weights(full.get_weights())
    context, weights = mixed(query, states)
    compute = policy.split("_")[1]
    assert context.dtype == compute and weights.dtype == compute
    assert all(w.dtype == "float32" for w in mixed.weights)  # variables stay float32
    weights32 = tf.cast(weights, tf.float32).numpy()
    np.testing.assert_allclose(weights32.sum(-1), 1.0, atol=2e-2)
    np.testing.assert_allclose(weights32, reference[1].numpy(), atol=3e-2)
    np.testing.assert_allclose(tf.cast(context, tf.float32).numpy(), reference[0].numpy(),
                               atol=5e-2 * float(tf.reduce_max(tf.abs(reference[0]))))
