"""Input checks shared by the SavedModel endpoints (`dvrnn_tf.export`) and `model(x)` /
`model.predict` (`LatentVariableModel.check_inputs`).

Values are checked in the graph (they are only known when the function runs) and raise
`tf.errors.InvalidArgumentError` naming the argument and the problem: an empty batch, a
batch above `MAX_BATCH`, NaN or Inf, images outside [0, 1], codes beyond `MAX_ABS_CODE`,
counts below 1 or above `MAX_BATCH`. Each check runs before the model sees the input, so the
error raised is the check's, never whatever the model would stumble on. (XLA drops
assertions: a function compiled with `jit_compile=True` serves unchecked values.)
"""
import tensorflow as tf

# The most sequences (or codes, or generated samples) one call may take. Larger requests are
# refused before any work instead of exhausting memory part-way: split them into chunks
# (`model.predict` does so by itself, `batch_size` at a time).
MAX_BATCH = 4096
# Latent codes are about N(0, I); a code this large is not one the model can decode (its
# layers would overflow float32 into NaN), so `decode` refuses it.
MAX_ABS_CODE = 1e6


def after(checks, x):
    """x, computed only once `checks` have passed."""
    with tf.control_dependencies(checks):
        return tf.identity(x)


def check_batch(x, name="x"):
    """Assert that x's batch (first) dimension is in 1..MAX_BATCH; returns x."""
    b = tf.shape(x)[0]
    return after([
        tf.debugging.assert_positive(b, message=f"`{name}`: empty batch"),
        tf.debugging.assert_less_equal(
            b, tf.constant(MAX_BATCH, b.dtype),
            message=f"`{name}`: batch larger than MAX_BATCH={MAX_BATCH} sequences per call; "
                    "split it into smaller batches")], x)


def check_images(x, name="x"):
    """Assert that x has a batch of 1..MAX_BATCH and finite values in [0, 1]; returns x."""
    x = tf.debugging.check_numerics(check_batch(x, name),
                                    f"`{name}` must be finite (found NaN or Inf)")
    return after([
        tf.debugging.assert_greater_equal(x, tf.zeros([], x.dtype),
                                          message=f"`{name}`: values must be in [0, 1]"),
        tf.debugging.assert_less_equal(x, tf.ones([], x.dtype),
                                       message=f"`{name}`: values must be in [0, 1]")], x)


def check_codes(c, name):
    """Assert that latent codes c have a batch of 1..MAX_BATCH and finite values of magnitude
    at most MAX_ABS_CODE; returns c."""
    c = tf.debugging.check_numerics(check_batch(c, name),
                                    f"`{name}` must be finite (found NaN or Inf)")
    return after([tf.debugging.assert_less_equal(
        tf.abs(c), tf.constant(MAX_ABS_CODE, c.dtype),
        message=f"`{name}`: codes must lie within +-{MAX_ABS_CODE:g}")], c)


def check_count(n, name="n"):
    """Assert that the count n is in 1..MAX_BATCH; returns n."""
    return after([
        tf.debugging.assert_greater_equal(n, tf.constant(1, n.dtype),
                                          message=f"`{name}` must be >= 1"),
        tf.debugging.assert_less_equal(
            n, tf.constant(MAX_BATCH, n.dtype),
            message=f"`{name}` must be <= MAX_BATCH={MAX_BATCH}; generate in chunks")], n)


def check_same_batch(a, b, names):
    return tf.debugging.assert_equal(
        tf.shape(a)[0], tf.shape(b)[0],
        message=f"`{names[0]}` and `{names[1]}` need the same batch size")


def check_outputs(outputs, endpoint):
    """Assert that every output tensor is finite: an endpoint never hands out NaN or Inf."""
    return tf.nest.map_structure(
        lambda t: tf.debugging.check_numerics(
            t, f"`{endpoint}` produced a non-finite output (NaN or Inf)"), outputs)
