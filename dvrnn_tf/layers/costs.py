"""FLOP records of the products a training step runs, so that layers can declare their own cost.

A `MatMul` is a Dense layer's (or a GRU projection's) [m, k] @ [k, n]; a `Conv` is one 2-D
convolution, plain or transposed. Backward passes are listed as records of their own, with
the shape of the op TensorFlow's gradient runs (`with_backward`, `conv_with_backward`):

* Dense y = x W: forward [m, k] @ [k, n]; dW = x^T dy ([k, m] @ [m, n]); dx = dy W^T
  ([m, n] @ [n, k]).
* Conv y = conv(x, W): forward Conv2D; dW = Conv2DBackpropFilter; dx = Conv2DBackpropInput.
* Transposed conv y = conv_transpose(x, W) is the input gradient of the conv that maps y's
  shape to x's: forward Conv2DBackpropInput; dW = Conv2DBackpropFilter; dx = Conv2D.

All three ops of one (transposed) convolution do the same multiply-adds: one per (pixel of the
smaller image, kernel tap, input channel, output channel). Padding taps ("same" padding at
the borders) are counted: the kernels multiply them too. The input gradient is left out where
the input is data (no gradient flows into the images) or a constant.

A model's `step_costs(batch_size)` lists these records for its own step (its layers' own
`step_costs` included), so the count sits beside the code it describes; `dvrnn_tf.bench`
times them (`dvrnn_tf.perf.roofline`).
"""
from __future__ import annotations

import dataclasses

PASSES = ("forward", "grad_weights", "grad_inputs")
# What `Conv.shape` names: the TensorFlow op the roofline times for each pass.
_CONV_OPS = {False: {"forward": "Conv2D", "grad_weights": "Conv2DBackpropFilter",
                     "grad_inputs": "Conv2DBackpropInput"},
             True: {"forward": "Conv2DBackpropInput", "grad_weights": "Conv2DBackpropFilter",
                    "grad_inputs": "Conv2D"}}


@dataclasses.dataclass(frozen=True)
class MatMul:
    """`count` products [m, k] @ [k, n] (transposes as in `tf.linalg.matmul`)."""

    name: str
    m: int
    k: int
    n: int
    count: int = 1
    transpose_a: bool = False
    transpose_b: bool = False
    pass_: str = "forward"  # forward, grad_weights or grad_inputs

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n * self.count

    @property
    def shape(self) -> tuple:
        """What `roofline` times: (m, k, n, transpose_a, transpose_b)."""
        return (self.m, self.k, self.n, self.transpose_a, self.transpose_b)


@dataclasses.dataclass(frozen=True)
class Conv:
    """`count` runs of one pass of a 2-D convolution with "same" padding, channels last.

    The layer's forward input is [batch, in_h, in_w, in_c] and its output has out_c channels:
    [batch, ceil(in_h / stride), ceil(in_w / stride), out_c] for a convolution,
    [batch, in_h * stride, in_w * stride, out_c] for a transposed one (`transpose`). The
    kernel is [kernel, kernel, in_c, out_c] (stored [kernel, kernel, out_c, in_c] by a
    transposed conv).
    """

    name: str
    batch: int
    in_h: int
    in_w: int
    in_c: int
    out_c: int
    kernel: int
    stride: int
    transpose: bool = False
    pass_: str = "forward"  # forward, grad_weights or grad_inputs
    count: int = 1

    def __post_init__(self):
        if self.pass_ not in PASSES:
            raise ValueError(f"`pass_` must be one of {PASSES}, got {self.pass_!r}")

    def _big_small(self):
        """(big_h, big_w, big_c, small_h, small_w, small_c): the equivalent forward
        convolution maps the big image to the small one (stride > 1 shrinks)."""
        s = self.stride
        if self.transpose:
            return (self.in_h * s, self.in_w * s, self.out_c,
                    self.in_h, self.in_w, self.in_c)
        return (self.in_h, self.in_w, self.in_c,
                -(-self.in_h // s), -(-self.in_w // s), self.out_c)

    @property
    def flops(self) -> int:
        """2 * batch * (pixels of the smaller image) * kernel^2 * in_c * out_c * count: for a
        convolution the smaller image is its output, for a transposed one its input (each
        input pixel scatters kernel^2 * out_c products), the same for all three passes."""
        _, _, _, small_h, small_w, _ = self._big_small()
        return (2 * self.batch * small_h * small_w * self.kernel ** 2
                * self.in_c * self.out_c * self.count)

    @property
    def shape(self) -> tuple:
        """What `roofline` times: (op, batch, big_h, big_w, big_c, small_c, kernel, stride),
        op the TensorFlow op of this pass, in the geometry of the equivalent forward
        convolution: input [batch, big_h, big_w, big_c], filter [kernel, kernel, big_c,
        small_c], stride `stride`, "SAME" padding."""
        big_h, big_w, big_c, _, _, small_c = self._big_small()
        return (_CONV_OPS[self.transpose][self.pass_], self.batch, big_h, big_w, big_c,
                small_c, self.kernel, self.stride)


def with_backward(name, m, k, n, count=1, input_grad=True) -> list[MatMul]:
    """A Dense layer's forward matmul and its gradients' (dx left out if not `input_grad`)."""
    out = [MatMul(name, m, k, n, count),
           MatMul(name, k, m, n, count, transpose_a=True, pass_="grad_weights")]
    if input_grad:
        out.append(MatMul(name, m, n, k, count, transpose_b=True, pass_="grad_inputs"))
    return out


def conv_with_backward(name, batch, in_h, in_w, in_c, out_c, kernel, stride, transpose=False,
                       count=1, input_grad=True) -> list[Conv]:
    """A (transposed) convolution's forward pass and its gradients' (dx left out if not
    `input_grad`)."""
    passes = PASSES if input_grad else PASSES[:2]
    return [Conv(name, batch, in_h, in_w, in_c, out_c, kernel, stride, transpose, p, count)
            for p in passes]


def recurrent(name, b, k, n, steps) -> list[MatMul]:
    """A per-step matmul of the state h_{t-1}, skipped at t = 0 (h_0 = 0)."""
    return with_backward(name, b, k, n, count=steps - 1)


def mlp_costs(name, rows, widths, input_grad=True) -> list[MatMul]:
    """Dense layers of `widths` [d_in, h1, h2, ...] applied to `rows` rows."""
    out = []
    for i, (k, n) in enumerate(zip(widths[:-1], widths[1:])):
        out += with_backward(f"{name}.dense{i}", rows, k, n, input_grad=input_grad or i > 0)
    return out
