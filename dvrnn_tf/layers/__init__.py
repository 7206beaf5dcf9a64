"""Building blocks: feature MLPs, frame encoders/decoders (MLP or convolutional), and layers
whose outputs parameterize `tfd` distributions."""
from dvrnn_tf.layers.distributions import GaussianHead, diag_gaussian, kl_diag_gaussians
from dvrnn_tf.layers.frame_networks import (
    NETWORKS, ConvFrameDecoder, ConvFrameEncoder, DenseFrameDecoder, MLPFrameEncoder,
    check_conv_shape, frame_decoder, frame_encoder)
from dvrnn_tf.layers.mlp import MLP, mlp, on_rows
from dvrnn_tf.layers.split import SplitDense

__all__ = ["MLP", "NETWORKS", "ConvFrameDecoder", "ConvFrameEncoder", "DenseFrameDecoder",
           "GaussianHead", "MLPFrameEncoder", "SplitDense", "check_conv_shape", "diag_gaussian",
           "frame_decoder", "frame_encoder", "kl_diag_gaussians", "mlp", "on_rows"]
