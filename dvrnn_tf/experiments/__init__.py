"""Experiments: the second paper's framework.

`framework` (the experiments), `scoring` (grid scores, the win decision, intervals),
`win_rates` (the resumable many-seed table) and `shu` (the command-line binary).
"""
