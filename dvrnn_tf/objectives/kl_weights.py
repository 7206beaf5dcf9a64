"""How a KL term enters the loss as training proceeds (DESIGN 2.2, "KL schedules").

Each schedule maps (kl, step) to the penalty added to the loss; `kl` is the batch mean per
image in nats, `step` the optimizer's iteration count. Schedules are plain serializable
objects so that a model's config carries them.
"""
import keras
import tensorflow as tf


class KLWeight:
    """Base class: `penalty(kl, step)` and, for reporting, `target(step)` (None if unused)."""

    name = "kl_weight"

    def penalty(self, kl, step):
        raise NotImplementedError

    def target(self, step):
        return None

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _ramp(step, steps):
    """0 -> 1 linearly over `steps` optimizer steps (1 at once when steps == 0)."""
    if steps == 0:
        return tf.constant(1.0)
    return tf.minimum(1.0, tf.cast(step, tf.float32) / float(steps))


def _check_non_negative(**values):
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"`{name}` must be >= 0, got {value}")


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class Constant(KLWeight):
    """beta * KL."""

    def __init__(self, beta: float = 1.0):
        _check_non_negative(beta=beta)
        self.beta = float(beta)

    def penalty(self, kl, step):
        return self.beta * kl

    def get_config(self):
        return {"beta": self.beta}


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class LinearWarmup(KLWeight):
    """beta * min(1, step / warmup_steps) * KL."""

    def __init__(self, beta: float = 1.0, warmup_steps: int = 1000):
        _check_non_negative(beta=beta, warmup_steps=warmup_steps)
        self.beta = float(beta)
        self.warmup_steps = int(warmup_steps)

    def penalty(self, kl, step):
        return self.beta * _ramp(step, self.warmup_steps) * kl

    def get_config(self):
        return {"beta": self.beta, "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class Capacity(KLWeight):
    """gamma * |KL - C| with C raised linearly from 0 to c_max nats per image (Burgess et al. 2018)."""

    def __init__(self, gamma: float = 100.0, c_max: float = 25.0, capacity_steps: int = 10000):
        _check_non_negative(gamma=gamma, c_max=c_max, capacity_steps=capacity_steps)
        self.gamma = float(gamma)
        self.c_max = float(c_max)
        self.capacity_steps = int(capacity_steps)

    def target(self, step):
        return self.c_max * _ramp(step, self.capacity_steps)

    def penalty(self, kl, step):
        return self.gamma * tf.abs(kl - self.target(step))

    def get_config(self):
        return {"gamma": self.gamma, "c_max": self.c_max, "capacity_steps": self.capacity_steps}


SCHEDULES = {"constant": Constant, "warmup": LinearWarmup, "capacity": Capacity}


def kl_weight_from_flags(schedule: str, beta: float, warmup_steps: int = 0,
                         gamma: float = 100.0, c_max: float = 25.0,
                         capacity_steps: int = 10000) -> KLWeight:
    """The schedule named by a flag value, from the flags that parameterize it."""
    if schedule == "constant":
        return Constant(beta)
    if schedule == "warmup":
        return LinearWarmup(beta, warmup_steps)
    if schedule == "capacity":
        return Capacity(gamma, c_max, capacity_steps)
    raise ValueError(f"Unknown KL schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")


def serialize(weight: KLWeight) -> dict:
    return {"class_name": type(weight).__name__, "config": weight.get_config()}


def deserialize(config) -> KLWeight:
    if isinstance(config, KLWeight):
        return config
    if isinstance(config, (int, float)):
        return Constant(float(config))
    classes = {cls.__name__: cls for cls in SCHEDULES.values()}
    try:
        cls = classes[config["class_name"]]
    except (KeyError, TypeError):
        raise ValueError(f"Not a KL schedule config: {config!r}") from None
    return cls.from_config(config["config"])
