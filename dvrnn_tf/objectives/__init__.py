"""What the models optimize: observation likelihoods and the weights of their KL terms."""
from dvrnn_tf.objectives.likelihoods import LIKELIHOODS, Likelihood, get_likelihood
from dvrnn_tf.objectives.kl_weights import (
    SCHEDULES, Capacity, Constant, KLWeight, LinearWarmup, kl_weight_from_flags)

__all__ = [
    "LIKELIHOODS", "Likelihood", "get_likelihood",
    "SCHEDULES", "Capacity", "Constant", "KLWeight", "LinearWarmup", "kl_weight_from_flags",
]
