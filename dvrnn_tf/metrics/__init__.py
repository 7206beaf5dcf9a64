"""Measuring the models (DESIGN 4): likelihood bounds, the judge, disentanglement metrics.

* `likelihood`: -ELBO, the importance-weighted bound (IWAE, K samples of f and z jointly), KL
  per term, active units.
* `judge`: a small CNN per data set, trained once and cached, that classifies generated images.
* `disentanglement`: label preservation, swap accuracy (per time step), style leakage probes,
  style preservation by morphometrics, kNN accuracy for the beta-VAE.
* `morphometry`: Morpho-MNIST-style slant, thickness, width, height, and variance shares.
* `report`: the one-page report.png of `python -m dvrnn_tf.evaluate`.
* `evaluation`: `evaluate_run`, which measures a run directory with all of the above (the
  library of `python -m dvrnn_tf.evaluate`), and `summarize`.
"""
