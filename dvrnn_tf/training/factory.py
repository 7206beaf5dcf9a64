"""A model from a `TrainConfig`, for the data it will see (its family builds it)."""
from dvrnn_tf.models import registry


def check_model(config, data) -> None:
    """ValueError (one line) when `config.model` cannot be built for `data` (e.g. a stride-2
    stack that does not divide the frames, or a class-conditional model on unlabelled data):
    asked before a run directory is touched."""
    family = registry.get_family(config.model)
    if family.check is not None:
        family.check(config.model, config.model_settings, data)


def build_model(config, data):
    """The model of `config.model` with its model settings, for `data` (a
    `dvrnn_tf.data.DataSpec`: frame shape, T, factor labels)."""
    check_model(config, data)
    return registry.build_model(config.model, config.model_settings, data, seed=config.seed,
                                clip_norm=config.clip_norm)
