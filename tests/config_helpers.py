"""Configs for tests that share one dict of small sizes across model families."""
from dvrnn_tf.training import TrainConfig, settings_for


def applicable(model, dataset="digits", **values):
    """`values` without the settings `--model=model --dataset=dataset` does not take."""
    taken = settings_for(model, dataset)
    return {k: v for k, v in values.items() if k in taken}


def config_for(model, dataset="digits", **values):
    """TrainConfig of `model` with those of `values` it takes (a shared dict of sizes)."""
    return TrainConfig(model=model, dataset=dataset, **applicable(model, dataset, **values))
