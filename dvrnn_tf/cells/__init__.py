"""Recurrent cells, run over time by `keras.layers.RNN`."""
from dvrnn_tf.cells.vrnn_cell import VRNNCell

__all__ = ["VRNNCell"]
