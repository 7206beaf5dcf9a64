"""Split layers (second paper, section 2): one independent copy of a layer per class.

A `SplitDense` holds ONE kernel [K, d_in, units] and ONE bias [K, units]; example n goes
through copy y_n. Examples are grouped by class (`tf.dynamic_partition`), each group is
multiplied by its own copy, and the results are put back in order (`tf.dynamic_stitch`), so a
split layer costs the flops of an unsplit one (not K times as many) and the gradient of the
loss of class i reaches only slice i of the kernel and the bias.
"""
import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class SplitDense(keras.layers.Layer):
    """Dense layer with `num_classes` independent copies, the copy chosen per example by y.

    call(inputs [..., d_in], y int [...]) -> [..., units]; y in 0..num_classes-1 (an index
    outside that range is an error). Each copy is initialized like a Glorot-uniform Dense
    kernel of its own (limit sqrt(6 / (d_in + units))) with a zero bias.
    """

    def __init__(self, units: int, num_classes: int, activation=None, **kwargs):
        super().__init__(**kwargs)
        if int(units) <= 0:
            raise ValueError(f"`units` must be a positive integer, got {units}")
        if int(num_classes) <= 0:
            raise ValueError(f"`num_classes` must be a positive integer, got {num_classes}")
        self.units, self.num_classes = int(units), int(num_classes)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        d_in = int(input_shape[-1])
        limit = float(np.sqrt(6.0 / (d_in + self.units)))
        self.kernel = self.add_weight(
            name="kernel", shape=(self.num_classes, d_in, self.units),
            initializer=keras.initializers.RandomUniform(-limit, limit))
        self.bias = self.add_weight(name="bias", shape=(self.num_classes, self.units),
                                    initializer="zeros")
        self.built = True

    def call(self, inputs, y):
        inputs = tf.convert_to_tensor(inputs)
        d_in = int(self.kernel.shape[1])
        lead = tf.shape(inputs)[:-1]
        flat = tf.reshape(inputs, [-1, d_in])
        labels = tf.reshape(tf.cast(y, tf.int32), [-1])
        # dynamic_partition itself rejects an index outside 0..num_classes-1.
        positions = tf.range(tf.shape(flat)[0])
        groups = tf.dynamic_partition(flat, labels, self.num_classes)
        where = tf.dynamic_partition(positions, labels, self.num_classes)
        # Unstacked once: the gradient of `unstack` is one `stack` of the K slices' gradients,
        # where K indexing ops would each materialize a zero tensor of the whole kernel.
        kernels = tf.unstack(tf.cast(self.kernel, flat.dtype), num=self.num_classes)
        biases = tf.unstack(tf.cast(self.bias, flat.dtype), num=self.num_classes)
        outs = [tf.matmul(g, w) + b for g, w, b in zip(groups, kernels, biases)]
        out = tf.dynamic_stitch(where, outs)
        out = tf.reshape(out, tf.concat([lead, [self.units]], 0))
        return self.activation(out)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "num_classes": self.num_classes,
                "activation": keras.activations.serialize(self.activation)}
