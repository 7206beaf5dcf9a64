"""The VRNN cell: sizes, initial state, argument checks, config, and the recurrence it runs
under `keras.layers.RNN`."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from dvrnn_tf.cells import VRNNCell

from vrnn_helpers import assert_close


def make_cell(**kwargs):
    return VRNNCell(**{"rnn_dim": 5, "z_dim": 2, "feature_dim": 4, "hidden_dim": 6,
                       "cond_dim": 3, **kwargs})


def test_cell_sizes_are_integers():
    cell = make_cell()
    assert type(cell.state_size) is int and cell.state_size == 5
    assert type(cell.output_size) is int and cell.output_size == 5 + 3 * 2 + 4
    assert cell.input_dim == 4 + 2 + 3


def test_cell_initial_state_is_zeros():
    state = make_cell().get_initial_state(batch_size=7)
    assert len(state) == 1
    assert tuple(state[0].shape) == (7, 5)
    assert not np.any(state[0].numpy())


def test_cell_rejects_bad_input_width_naming_the_widths():
    with pytest.raises(ValueError, match=r"= 9, got input shape \(None, 8\)"):
        make_cell().build((None, 8))
    # Through keras.layers.RNN, which builds the cell for one step: [B, width].
    with pytest.raises(ValueError, match=r"feature_dim \+ z_dim \+ cond_dim = 9, got input shape \(2, 8\)"):
        keras.layers.RNN(make_cell())(tf.zeros([2, 3, 8]))


@pytest.mark.parametrize("argument", ["rnn_dim", "z_dim", "feature_dim", "hidden_dim"])
def test_cell_rejects_non_positive_sizes(argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        make_cell(**{argument: 0})
    with pytest.raises(ValueError, match="`cond_dim`"):
        make_cell(cond_dim=-1)


def test_cell_config_round_trip():
    cell = make_cell(name="cell")
    clone = VRNNCell.from_config(cell.get_config())
    assert clone.get_config() == cell.get_config()
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cell))
    assert type(revived) is VRNNCell and revived.get_config() == cell.get_config()


def test_cell_outputs_under_rnn():
    cell = make_cell()
    rng = np.random.default_rng(0)
    inputs = tf.constant(rng.normal(size=(2, 6, cell.input_dim)), tf.float32)
    outputs, final = keras.layers.RNN(cell, return_sequences=True, return_state=True)(inputs)
    assert tuple(outputs.shape) == (2, 6, cell.output_size)
    parts = cell.split_output(outputs)
    assert {k: tuple(v.shape) for k, v in parts.items()} == {
        "h_prev": (2, 6, 5), "z": (2, 6, 2), "loc": (2, 6, 2), "scale": (2, 6, 2), "phi_z": (2, 6, 4)}
    assert not np.any(parts["h_prev"][:, 0].numpy())  # h_0 = 0
    eps = inputs[..., 4:6]
    assert_close(parts["z"], parts["loc"] + parts["scale"] * eps, atol=1e-5)
    assert float(tf.reduce_min(parts["scale"])) > 0
    # The state after step t is the h_prev of step t + 1; the final state closes the chain.
    h_next = tf.concat([parts["h_prev"][:, 1:], final[:, None]], axis=1)
    for t in range(6):
        expected = cell.transition(inputs[:, t, :4], parts["phi_z"][:, t], inputs[:, t, 6:],
                                   parts["h_prev"][:, t])
        assert_close(h_next[:, t], expected, atol=1e-5)
