"""Building blocks: feature MLPs and layers whose outputs parameterize `tfd` distributions."""
from dvrnn_tf.layers.distributions import GaussianHead, diag_gaussian
from dvrnn_tf.layers.mlp import MLP, mlp

__all__ = ["MLP", "GaussianHead", "diag_gaussian", "mlp"]
