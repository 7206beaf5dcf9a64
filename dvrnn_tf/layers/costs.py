"""The arithmetic of one training step, counted from layer sizes (what `dvrnn_tf.bench` times).

Each `Dense` (and each GRU projection) of the forward pass is a matmul [m, k] @ [k, n]; the
backward pass adds two of the same size: dW = x^T dy ([k, m] @ [m, n]) and dx = dy W^T
([m, n] @ [n, k]), the latter left out where x is data (no gradient flows into the images)
or a constant (the GRUs' zero initial state). So a step is about 3x its forward FLOPs.
Elementwise work, reductions and the optimizer are not counted (O(size), not O(size * width)).

A model's `step_costs(batch_size)` lists these records for its own step, so the count sits
beside the code it describes.
"""
from __future__ import annotations

import dataclasses


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


def with_backward(name, m, k, n, count=1, input_grad=True) -> list[MatMul]:
    """A forward matmul [m, k] @ [k, n] and the two of its gradient (dW, and dx unless
    `input_grad` is False)."""
    out = [MatMul(name, m, k, n, count),
           MatMul(name, k, m, n, count, transpose_a=True, pass_="grad_weights")]
    if input_grad:
        out.append(MatMul(name, m, n, k, count, transpose_b=True, pass_="grad_inputs"))
    return out


def recurrent(name, b, k, n, steps) -> list[MatMul]:
    """A per-step matmul of the state h_{t-1}, skipped at t = 0 (h_0 = 0)."""
    return with_backward(name, b, k, n, count=steps - 1)


def mlp_costs(name, rows, widths, input_grad=True) -> list[MatMul]:
    """Dense layers of `widths` [d_in, h1, h2, ...] applied to `rows` rows."""
    out = []
    for i, (k, n) in enumerate(zip(widths[:-1], widths[1:])):
        out += with_backward(f"{name}.dense{i}", rows, k, n, input_grad=input_grad or i > 0)
    return out
