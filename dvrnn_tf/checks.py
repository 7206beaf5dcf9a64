"""Input checks shared by the SavedModel endpoints (`dvrnn_tf.export`) and `model(x)` /
`model.predict` (`LatentVariableModel.check_inputs`).

Values are checked in the graph (they are only known when the function runs) and raise
`tf.errors.InvalidArgumentError` naming the argument and the problem: an empty batch, a
batch above `MAX_BATCH`, NaN or Inf, images outside [0, 1], codes beyond `MAX_ABS_CODE`,
counts below 1 or above `MAX_BATCH`. Each check runs before the model sees the input, so the
error raised is the check's, never whatever the model would stumble on. (XLA drops
assertions: a function compiled with `jit_compile=True` serves unchecked values.)

What a client reads. Called eagerly, a check raises its sentence alone ("`n` must be >= 1,
got 0"). From a graph (a loaded SavedModel, `predict`) TensorFlow's Python side rewrites every
error raised inside a function as "Graph execution error:\\n\\n" + a "Detected at node <name>
defined at ..." block per node it can parse + the op's message (TF 2.21,
`atomic_function.InterpolateRuntimeError`); the exporting side cannot change that first line.
`refuse_unless` names its ops `<argument>>refused`: `>` is legal in an op name but not in the
node names that rewrite parses, so the block is left out and the line after TF's prefix is
the check's: "assertion failed: [`x` must be finite ...; values that are NaN or Inf:] [3]".
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
    """x, computed only once `checks` (ops, or None for a check already done eagerly) have
    passed."""
    with tf.control_dependencies([c for c in checks if c is not None]):
        return tf.identity(x)


def refuse_unless(ok, message, detail=None, name="input"):
    """Raise InvalidArgumentError("<message> <detail>") when the scalar bool `ok` is False.

    message: one line naming the argument and what is allowed (a Python str).
    detail: None or a function returning a small tensor shown after the message (a count, the
      offending values); it is computed only when the check fails.
    name: the argument's name, for the op's name (see the module docstring).
    Eagerly, raises at once (returns None); in a graph, returns the op to depend on.
    """
    if tf.executing_eagerly():
        if not bool(ok):
            shown = "" if detail is None else f" {detail().numpy()}"
            raise tf.errors.InvalidArgumentError(None, None, message + shown)
        return None

    def refuse():
        data = [tf.constant(message)] + ([] if detail is None else [detail()])
        return tf.raw_ops.Assert(condition=tf.constant(False), data=data, summarize=8)

    with tf.name_scope(f"{name}>refused"):
        return tf.cond(ok, tf.no_op, refuse).op


def check_batch(x, name="x"):
    """Assert that x's batch (first) dimension is in 1..MAX_BATCH; returns x."""
    b = tf.shape(x)[0]
    return after([
        refuse_unless(b > 0, f"`{name}`: empty batch; a call takes 1 to {MAX_BATCH} sequences",
                      name=name),
        refuse_unless(b <= MAX_BATCH,
                      f"`{name}`: batch larger than MAX_BATCH={MAX_BATCH} sequences per call "
                      "(split it into smaller batches), got", lambda: b, name=name)], x)


def _check_finite(x, message, name):
    finite = tf.math.is_finite(x)
    return after([refuse_unless(
        tf.reduce_all(finite), message + "; values that are NaN or Inf:",
        lambda: tf.math.count_nonzero(tf.logical_not(finite)), name=name)], x)


def check_images(x, name="x"):
    """Assert that x has a batch of 1..MAX_BATCH and finite values in [0, 1]; returns x."""
    x = _check_finite(check_batch(x, name), f"`{name}` must be finite (images are floats in "
                      "[0, 1])", name)
    # After the finiteness check: NaN fails both, and NaN is the better report.
    in_range = tf.logical_and(x >= tf.zeros([], x.dtype), x <= tf.ones([], x.dtype))
    return after([refuse_unless(
        tf.reduce_all(in_range), f"`{name}`: values must be in [0, 1] (0..255 pixels: divide by "
        "255), got min and max", lambda: tf.stack([tf.reduce_min(x), tf.reduce_max(x)]),
        name=name)], x)


def check_codes(c, name):
    """Assert that latent codes c have a batch of 1..MAX_BATCH and finite values of magnitude
    at most MAX_ABS_CODE; returns c."""
    c = _check_finite(check_batch(c, name), f"`{name}` must be finite (latent codes)", name)
    largest = tf.reduce_max(tf.abs(c))
    return after([refuse_unless(
        largest <= tf.constant(MAX_ABS_CODE, c.dtype),
        f"`{name}`: codes must lie within +-{MAX_ABS_CODE:g}, got largest magnitude",
        lambda: largest, name=name)], c)


def check_count(n, name="n"):
    """Assert that the count n is in 1..MAX_BATCH; returns n."""
    return after([
        refuse_unless(n >= tf.constant(1, n.dtype), f"`{name}` must be >= 1, got", lambda: n,
                      name=name),
        refuse_unless(n <= tf.constant(MAX_BATCH, n.dtype),
                      f"`{name}` must be <= MAX_BATCH={MAX_BATCH} (generate in chunks), got",
                      lambda: n, name=name)], n)


def check_labels(y, num_classes, name="y"):
    """Assert that the class labels y are in 0..num_classes-1; returns y."""
    ok = tf.logical_and(y >= 0, y < num_classes)
    return after([refuse_unless(
        tf.reduce_all(ok), f"`{name}`: labels must be in 0..{num_classes - 1}, got min and max",
        lambda: tf.stack([tf.reduce_min(y), tf.reduce_max(y)]), name=name)], y)


def check_same_batch(a, b, names):
    sizes = tf.stack([tf.shape(a)[0], tf.shape(b)[0]])
    return refuse_unless(sizes[0] == sizes[1],
                         f"`{names[0]}` and `{names[1]}` need the same batch size, got",
                         lambda: sizes, name=names[1])


def check_outputs(outputs, endpoint):
    """Assert that every output tensor is finite: an endpoint never hands out NaN or Inf."""
    def finite(t):
        return after([refuse_unless(
            tf.reduce_all(tf.math.is_finite(t)),
            f"`{endpoint}` produced a non-finite output (NaN or Inf)", name=endpoint)], t)
    return tf.nest.map_structure(finite, outputs)
