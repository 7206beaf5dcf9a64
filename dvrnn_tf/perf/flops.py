"""The matrix multiplies of one training step, counted analytically from a model's sizes.

Each `Dense` (and each GRU projection) of the forward pass is a matmul [m, k] @ [k, n]; the
backward pass adds two of the same size: dW = x^T dy ([k, m] @ [m, n]) and dx = dy W^T
([m, n] @ [n, k]), the latter left out where x is data (no gradient flows into the images)
or a constant (the GRUs' zero initial state). So a step is about 3x its forward FLOPs.

The list follows what the models run (`VRNNCell.run_sequence`, `gru_last_state`): e.g. the
posterior MLP's and the GRU's projections of phi_x are one matmul over all B*T rows outside
the recurrence, and h_{t-1} meets both recurrent weights in one matmul per step. Elementwise
work, reductions and the optimizer are not counted (they are O(size), not O(size * width)).
"""
from __future__ import annotations

import collections

# MatMul and with_backward live with the layers, which declare their own costs.
from dvrnn_tf.layers.costs import MatMul  # noqa: F401 (public here too)
from dvrnn_tf.layers.costs import with_backward as _with_backward


def _recurrent(name, b, k, n, steps):
    """A per-step matmul of the state h_{t-1}, skipped at t = 0 (h_0 = 0)."""
    return _with_backward(name, b, k, n, count=steps - 1)


def step_matmuls(model, batch_size: int) -> list[MatMul]:
    """Every matmul of one train step of `model` on `batch_size` sequences of model.seq_len."""
    from dvrnn_tf.models import VRNN, BetaVAE, ContentStyleVAE, DisentangledVRNN

    b, t = int(batch_size), model.seq_len
    rows = b * t
    d = model.x_dim
    out_width = d * model.likelihood.params_per_pixel
    h, z = model.hidden_dim, model.z_dim
    mm = []
    if isinstance(model, BetaVAE):
        mm += _with_backward("encoder_net.dense0", rows, d, h, input_grad=False)
        mm += _with_backward("encoder_net.dense1", rows, h, h)
        mm += _with_backward("posterior loc|scale", rows, h, 2 * z)
        mm += _with_backward("decoder_net.dense0", rows, z, h)
        mm += _with_backward("decoder_net.dense1", rows, h, h)
        mm += _with_backward("decoder_out", rows, h, out_width)
        return mm
    if isinstance(model, ContentStyleVAE):
        f = model.f_dim
        style_in = 2 * h if model.style_sees_content else h
        mm += _with_backward("phi_x.dense0", rows, d, h, input_grad=False)
        mm += _with_backward("phi_x.dense1", rows, h, h)
        # Content: the mean of the frames' features, one row per sequence.
        mm += _with_backward("content_net.dense0", b, h, h)
        mm += _with_backward("content loc|scale", b, h, 2 * f)
        mm += _with_backward("phi_f", b, f, h)
        # Style per frame from [phi_x(x_t), phi_f(f)]; decoder from [phi_z(z_t), phi_f(f)].
        mm += _with_backward("style_net.dense0", rows, style_in, h)
        mm += _with_backward("style loc|scale", rows, h, 2 * z)
        mm += _with_backward("phi_z", rows, z, h)
        mm += _with_backward("decoder_net.dense0", rows, 2 * h, h)
        mm += _with_backward("decoder_net.dense1", rows, h, h)
        mm += _with_backward("decoder_out", rows, h, out_width)
        return mm
    if not isinstance(model, (VRNN, DisentangledVRNN)):
        raise TypeError(f"no FLOP model for {type(model).__name__}")
    r = model.rnn_dim
    disentangled = isinstance(model, DisentangledVRNN)
    full = disentangled and model.variant == "full"
    mm += _with_backward("phi_x.dense0", rows, d, h, input_grad=False)
    mm += _with_backward("phi_x.dense1", rows, h, h)
    # The style recurrence (VRNNCell.run_sequence).
    mm += _with_backward("style: phi_x @ [posterior | gru input]", rows, h, h + 3 * r)
    if full:
        mm += _with_backward("style: phi_f @ gru input", b, h, 3 * r)
    mm += _recurrent("style: h @ [posterior | gru recurrent]", b, r, h + 3 * r, t)
    mm += _with_backward("style: posterior_net.dense1", b, h, h, count=t)
    mm += _with_backward("style: posterior loc|scale", b, h, 2 * z, count=t)
    mm += _with_backward("style: phi_z", b, z, h, count=t)
    # The last step's transition is skipped: h_T feeds nothing.
    mm += _with_backward("style: phi_z @ gru input", b, h, 3 * r, count=t - 1)
    mm += _with_backward("prior_net.dense0", rows, r, h)
    mm += _with_backward("prior loc|scale", rows, h, 2 * z)
    # [phi_z, h_{t-1}] per step; the Disentangled VRNN's phi_f(f) once per sequence.
    mm += _with_backward("decoder_net.dense0", rows, h + r, h)
    if disentangled:
        mm += _with_backward("decoder_net.dense0 (phi_f)", b, h, h)
    mm += _with_backward("decoder_net.dense1", rows, h, h)
    mm += _with_backward("decoder_out", rows, h, out_width)
    if disentangled:
        f = model.f_dim
        mm += _with_backward("content: phi_x @ gru input", rows, h, 3 * r)
        mm += _recurrent("content: h @ gru recurrent", b, r, 3 * r, t)
        mm += _with_backward("content loc|scale", b, r, 2 * f)
        mm += _with_backward("phi_f", b, f, h)
    return mm


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


def traced_conv_flops(model, batch_size: int) -> dict:
    """FLOPs of the convolutions (Conv2D, Conv2DBackpropFilter, Conv2DBackpropInput) in the
    traced graph of one loss-and-gradient computation, as {"forward", "backward"}: the check
    of the `Conv` records. Only live ops count (`dvrnn_tf.perf.graph_flops`)."""
    from dvrnn_tf.perf.graph_flops import graph_flops, loss_gradient_graph

    return graph_flops(loss_gradient_graph(model, batch_size))["conv"]
