"""Building blocks: feature MLPs and layers whose outputs parameterize `tfd` distributions."""
from dvrnn_tf.layers.distributions import GaussianHead, diag_gaussian, kl_diag_gaussians
from dvrnn_tf.layers.mlp import MLP, mlp, on_rows
from dvrnn_tf.layers.split import SplitDense

__all__ = ["MLP", "GaussianHead", "SplitDense", "diag_gaussian", "kl_diag_gaussians", "mlp", "on_rows"]
