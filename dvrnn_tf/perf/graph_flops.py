"""FLOPs of the matmuls and convolutions in a traced TensorFlow graph: the check of the
analytic records (`dvrnn_tf.layers.costs`, `dvrnn_tf.perf.flops`).

Only live ops are counted: those the graph's outputs depend on. Gradient functions emit
ops nobody reads, and TensorFlow prunes them before running: Conv2D's gradient always builds
the input gradient (`Conv2DBackpropInput`), even for a first layer that reads the images.
An op is "backward" when its name is under a gradient scope (`gradient_tape/...`).
Ops inside nested functions (a while loop's body) are not counted.
"""
from __future__ import annotations

import collections
import math

MATMUL_OPS = ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "_FusedMatMul")
CONV_OPS = ("Conv2D", "Conv2DBackpropFilter", "Conv2DBackpropInput")


def _dims(tensor_shape, what, op):
    dims = tensor_shape.as_list() if tensor_shape.rank is not None else None
    if dims is None or None in dims:
        raise ValueError(f"{op.type} {op.name!r}: the {what}'s shape {tensor_shape} is not "
                         "fully known; trace with a fixed batch size")
    return dims


def matmul_flops(op) -> int:
    """2 * batch * m * k * n of a MatMul/BatchMatMul op."""
    import numpy as np

    a, b = (_dims(t.shape, "operand", op) for t in op.inputs[:2])
    if op.type.startswith("BatchMatMul"):
        ta, tb = op.get_attr("adj_x"), op.get_attr("adj_y")
    else:
        ta, tb = op.get_attr("transpose_a"), op.get_attr("transpose_b")
    m, k = (a[-1], a[-2]) if ta else (a[-2], a[-1])
    n = b[-2] if tb else b[-1]
    batch = int(np.prod(np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2])) or (1,)))
    return 2 * batch * m * k * n


def conv_flops(op) -> int:
    """2 * N * h * w * kh * kw * c_in * c_out of a Conv2D/Conv2DBackprop* op, with [N, h, w]
    the smaller image: the forward convolution's output (Conv2D) or the gradient it
    receives (out_backprop) - see `dvrnn_tf.layers.costs`."""
    if op.type == "Conv2D":
        small, kernel = op.outputs[0].shape, op.inputs[1].shape
    elif op.type == "Conv2DBackpropInput":
        small, kernel = op.inputs[2].shape, op.inputs[1].shape
    else:  # Conv2DBackpropFilter: the kernel's gradient has the kernel's shape
        small, kernel = op.inputs[2].shape, op.outputs[0].shape
    small = _dims(small, "smaller image", op)
    if op.get_attr("data_format") == b"NCHW":
        small = [small[0], small[2], small[3], small[1]]
    kh, kw, c_in, c_out = _dims(kernel, "kernel", op)
    return 2 * math.prod(small[:3]) * kh * kw * c_in * c_out


def live_ops(graph) -> set:
    """Names of the ops that graph.outputs (and its control outputs) depend on."""
    stack = [t.op for t in graph.outputs] + list(getattr(graph, "control_outputs", []))
    seen = set()
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return seen


def graph_flops(graph) -> dict:
    """{"matmul": {"forward": n, "backward": n}, "conv": {...}} over the graph's live ops."""
    live = live_ops(graph)
    out = {"matmul": collections.Counter(), "conv": collections.Counter()}
    for op in graph.get_operations():
        if op.name not in live:
            continue
        where = "backward" if "gradient" in op.name.lower() else "forward"
        if op.type in MATMUL_OPS:
            out["matmul"][where] += matmul_flops(op)
        elif op.type in CONV_OPS:
            out["conv"][where] += conv_flops(op)
    return {kind: {"forward": c["forward"], "backward": c["backward"]}
            for kind, c in out.items()}


def loss_gradient_graph(model, batch_size: int):
    """The graph of one loss-and-gradient computation of `model` (what `train_step` runs
    before the optimizer) on [batch_size, T, H, W, C] inputs."""
    import tensorflow as tf

    shape = [batch_size, model.seq_len, *model.image_shape]

    @tf.function(autograph=False)
    def loss_and_gradients(x):
        with tf.GradientTape() as tape:
            terms = {k: tf.cast(v, tf.float32)
                     for k, v in model.compute_terms(x, training=True).items()}
            loss = model.total_loss(terms, 0)
        return tape.gradient(loss, model.trainable_variables)

    return loss_and_gradients.get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
