"""Experiments: the second paper's framework.

`framework` (settings, data, training, figures), `grid_experiments` (bias, layer_split,
competition), `regression` (Fig. 3), `scoring` (grid scores, the win decision, intervals),
`win_rates` (the resumable many-seed table) and `shu` (the command-line binary).
"""
