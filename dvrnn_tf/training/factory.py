"""A model from a `TrainConfig`, for the data it will see (its family builds it)."""
from dvrnn_tf.models import registry


def build_model(config, data):
    """The model of `config.model` with its model settings, for `data` (a
    `dvrnn_tf.data.DataSpec`: frame shape, T, factor labels)."""
    family = registry.get_family(config.model)
    if family.check is not None:
        family.check(config.model, config.model_settings, data)
    return registry.build_model(config.model, config.model_settings, data, seed=config.seed,
                                clip_norm=config.clip_norm)
