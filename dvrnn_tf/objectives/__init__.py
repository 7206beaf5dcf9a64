"""What the models optimize and how: observation likelihoods, the weights of their KL terms,
and the optimizer (`FusedAdam`)."""
from dvrnn_tf.objectives.likelihoods import LIKELIHOODS, Likelihood, get_likelihood
from dvrnn_tf.objectives.kl_weights import (
    SCHEDULES, Capacity, Constant, KLWeight, LinearWarmup, kl_weight_from_flags)

__all__ = [
    "LIKELIHOODS", "Likelihood", "get_likelihood",
    "SCHEDULES", "Capacity", "Constant", "KLWeight", "LinearWarmup", "kl_weight_from_flags",
]
