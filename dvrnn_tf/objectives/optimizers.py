"""Adam as one fused kernel per variable.

`keras.optimizers.Adam.update_step` is about thirty small TensorFlow ops per variable
(casts, powers, moment updates, the step); at the first paper's sizes (38 variables, ~26 ms
steps on 2 CPU cores) their dispatch costs milliseconds per step, more than the arithmetic.
TensorFlow's `ResourceApplyAdam` does the same update in one kernel (and XLA compiles it).
"""
import keras
import tensorflow as tf
from tensorflow.python.distribute import values as distribute_values


def _plain_resource_variable(variable):
    """The tf.Variable under a Keras variable, if it is a plain (not distributed) resource
    variable whose handle a raw op can update; else None."""
    value = getattr(variable, "value", variable) if isinstance(variable, keras.Variable) \
        else variable
    if isinstance(value, distribute_values.DistributedValues):
        return None
    if isinstance(value, tf.Variable) and hasattr(value, "handle"):
        return value
    return None


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` with the update of each variable done by `ResourceApplyAdam`.

    The same arithmetic as Keras's Adam (bias-corrected step size
    lr * sqrt(1 - beta_2^t) / (1 - beta_1^t), epsilon added to sqrt(v)), so a run trains
    as with `keras.optimizers.Adam` up to float rounding; the same config, slots and
    serialization. Falls back to Keras's update where the raw kernel does not apply
    (amsgrad; variables a distribution strategy mirrors, whose per-device components Keras
    updates itself).
    """

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        var = _plain_resource_variable(variable)
        m = _plain_resource_variable(self._momentums[index])
        v = _plain_resource_variable(self._velocities[index])
        if self.amsgrad or var is None or m is None or v is None:
            return super().update_step(gradient, variable, learning_rate)
        dtype = var.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=var.handle, m=m.handle, v=v.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype),
            use_locking=False, use_nesterov=False)
