"""Performance tooling behind `python -m dvrnn_tf.bench`: analytic FLOPs, a measured matmul and
convolution roofline, train-step and input-pipeline timing (docs/performance.md has the numbers)."""
from dvrnn_tf.perf.flops import MatMul, step_matmuls, total_flops
from dvrnn_tf.perf.roofline import roofline, time_conv, time_matmul

__all__ = ["MatMul", "roofline", "step_matmuls", "time_conv", "time_matmul", "total_flops"]
