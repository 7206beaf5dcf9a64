"""Recurrent pieces: the VRNN's step as a Keras RNN cell (run over time by `keras.layers.RNN`,
or fused), and the dynamics prior p(z_t | z_<t) over style codes."""
from dvrnn_tf.cells.style_prior import RecurrentStylePrior
from dvrnn_tf.cells.vrnn_cell import VRNNCell

__all__ = ["RecurrentStylePrior", "VRNNCell"]
