"""FLOPs of one training step: what the models declare (`step_costs`), and a check of it.

A model lists the matmuls of its own step (`dvrnn_tf.layers.costs`: each forward matmul with
the two of its gradient); this module sums them and, as a check, counts the matmuls of a traced
graph of the same step.
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


def traced_matmul_flops(model, batch_size: int) -> dict:
    """FLOPs of the matmuls in the traced graph of one loss-and-gradient computation.

    A check of `step_matmuls`: traces `compute_terms` and the gradient of the loss with
    respect to the trainable weights (what `train_step` does before the optimizer) on
    [batch_size, T, H, W, C] inputs, and sums 2*m*k*n over its MatMul/BatchMatMul ops,
    split into forward and backward. Matmuls inside nested functions (a while loop's body)
    are not counted: the models' recurrences are unrolled.
    """
    import numpy as np
    import tensorflow as tf

    shape = [batch_size, model.seq_len, *model.image_shape]

    @tf.function(autograph=False)
    def loss_and_gradients(x):
        with tf.GradientTape() as tape:
            terms = {k: tf.cast(v, tf.float32)
                     for k, v in model.compute_terms(x, training=True).items()}
            loss = model.total_loss(terms, 0)
        return tape.gradient(loss, model.trainable_variables)

    graph = loss_and_gradients.get_concrete_function(
        tf.TensorSpec(shape, tf.float32)).graph
    out = collections.Counter()
    for op in graph.get_operations():
        if op.type not in ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "_FusedMatMul"):
            continue
        a, b = (t.shape.as_list() for t in op.inputs[:2])
        if op.type.startswith("BatchMatMul"):
            ta, tb = op.get_attr("adj_x"), op.get_attr("adj_y")
        else:
            ta, tb = op.get_attr("transpose_a"), op.get_attr("transpose_b")
        m, k = (a[-1], a[-2]) if ta else (a[-2], a[-1])
        n = b[-2] if tb else b[-1]
        batch = int(np.prod(np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2])) or (1,)))
        where = "backward" if "gradient" in op.name.lower() else "forward"
        out[where] += 2 * batch * m * k * n
    return dict(out)
