"""FLOPs of one training step: what the models declare (`step_costs`), and a check of it.

A model lists the matmuls and convolutions of its own step (`dvrnn_tf.layers.costs`: each
forward product with those of its gradient); this module sums them and, as a check, counts the
products of a traced graph of the same step.
"""
from __future__ import annotations

import collections

from dvrnn_tf.layers.costs import MatMul, with_backward  # noqa: F401  # re-exported


def step_matmuls(model, batch_size: int) -> list:
    """Every matmul of one train step of `model` on `batch_size` sequences of model.seq_len."""
    step_costs = getattr(model, "step_costs", None)
    if not callable(step_costs):
        raise TypeError(f"no FLOP model for {type(model).__name__}: it has no `step_costs`")
    return step_costs(batch_size)


def total_flops(matmuls) -> int:
    return sum(m.flops for m in matmuls)


def by_pass(matmuls) -> dict:
    """FLOPs per pass: forward, grad_weights, grad_inputs."""
    out = collections.Counter()
    for m in matmuls:
        out[m.pass_] += m.flops
    return dict(out)


def traced_flops(model, batch_size: int) -> dict:
    """{"matmul": {"forward", "backward"}, "conv": {...}}: the FLOPs of the live matmuls and
    convolutions in the traced graph of one loss-and-gradient computation (what `train_step`
    runs before the optimizer), the check of `step_matmuls` (`dvrnn_tf.perf.graph_flops`).
    Ops inside nested functions (a while loop's body) are not counted: the models'
    recurrences are unrolled."""
    from dvrnn_tf.perf.graph_flops import graph_flops, loss_gradient_graph

    return graph_flops(loss_gradient_graph(model, batch_size))


def traced_matmul_flops(model, batch_size: int) -> dict:
    """The matmul part of `traced_flops`: {"forward": n, "backward": n}."""
    return traced_flops(model, batch_size)["matmul"]


def traced_conv_flops(model, batch_size: int) -> dict:
    """The convolution part of `traced_flops`: {"forward": n, "backward": n}."""
    return traced_flops(model, batch_size)["conv"]
