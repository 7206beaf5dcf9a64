"""Analyses of trained models that produce figures and metrics (no absl: usable from notebooks)."""
from dvrnn_tf.analysis.latent_space import (analyze, encode_means, knn_accuracy,
                                            nearest_latent_decodes, scatter_by_class)

__all__ = ["analyze", "encode_means", "knn_accuracy", "nearest_latent_decodes",
           "scatter_by_class"]
