"""SavedModel export with named endpoints and fixed signatures (DESIGN 5).

`export_saved_model(model, path)` writes a SavedModel that `tf.saved_model.load` serves in a
process that has TensorFlow and nothing of this package. Endpoints are added for whatever the
model has (the VRNN, both Disentangled VRNNs, the beta-VAE):

  reconstruct(x)                      x [None, T, H, W, C] float32 in [0, 1]
  encode(x)                           -> dict of tensors (z_loc, z_scale, z_sample, f_...)
  generate(n), generate_fixed_content(n), generate_fixed_style(n)    n: int32 scalar >= 1
  swap(x_content, x_style)            the same batch size
  interpolate_f(x_a, x_b), interpolate_z(x_a, x_b)   x_a, x_b [1, T, H, W, C]; 8 steps
  decode(<code>, ...)                 one argument per code of `model.decode` that `encode`
                                      reports a `<code>_loc` for, e.g. decode(f, z)

Inputs are checked in the graph: non-finite values, values outside [0, 1], an empty batch,
n < 1 and mismatched batch sizes raise `tf.errors.InvalidArgumentError`. Wrong rank, shape
or dtype never reach the graph: the fixed signatures reject them on the call.

The random endpoints draw from the model's `SeedGenerator`, whose state variable is saved in
the archive, so a loaded archive gives fresh samples on every call.
"""
import inspect
import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

INTERPOLATION_STEPS = 8
COUNT_ENDPOINTS = ("generate", "generate_fixed_content", "generate_fixed_style")


# ---- in-graph checks ------------------------------------------------------------------------

def _after(checks, x):
    """x, computed only once `checks` have passed: the model never sees an unchecked input,
    so the error raised is the check's, not whatever the model would stumble on."""
    with tf.control_dependencies(checks):
        return tf.identity(x)


def check_images(x, name="x"):
    """Assert that x has a non-empty batch and finite values in [0, 1]; returns x."""
    nonempty = tf.debugging.assert_positive(tf.shape(x)[0], message=f"`{name}`: empty batch")
    x = tf.debugging.check_numerics(_after([nonempty], x),
                                    f"`{name}` must be finite (found NaN or Inf)")
    return _after([
        tf.debugging.assert_greater_equal(x, tf.zeros([], x.dtype),
                                          message=f"`{name}`: values must be in [0, 1]"),
        tf.debugging.assert_less_equal(x, tf.ones([], x.dtype),
                                       message=f"`{name}`: values must be in [0, 1]")], x)


def check_codes(c, name):
    nonempty = tf.debugging.assert_positive(tf.shape(c)[0], message=f"`{name}`: empty batch")
    return tf.debugging.check_numerics(_after([nonempty], c),
                                       f"`{name}` must be finite (found NaN or Inf)")


def check_count(n, name="n"):
    return _after([tf.debugging.assert_greater_equal(
        n, tf.constant(1, n.dtype), message=f"`{name}` must be >= 1")], n)


def check_same_batch(a, b, names):
    return tf.debugging.assert_equal(
        tf.shape(a)[0], tf.shape(b)[0],
        message=f"`{names[0]}` and `{names[1]}` need the same batch size")


# ---- endpoints ------------------------------------------------------------------------------

def _has(model, name):
    return callable(getattr(model, name, None))


def _code_specs(model, image_spec):
    """{code: spec without batch size} for each `<code>_loc` that `model.encode` returns.

    Traced, never run: the model's seed state is left as it is.
    """
    outputs = tf.function(model.encode).get_concrete_function(image_spec).structured_outputs
    if not isinstance(outputs, dict):
        return {}
    return {k[:-4]: tf.TensorSpec([None, *v.shape[1:]], v.dtype)
            for k, v in outputs.items() if k.endswith("_loc")}


def build_endpoints(model):
    """{name: (fn, {argument name: spec})} for the endpoints `model` supports."""
    T, (H, W, C) = int(model.seq_len), model.image_shape
    images = tf.TensorSpec([None, T, H, W, C], tf.float32)
    single = tf.TensorSpec([1, T, H, W, C], tf.float32)
    count = tf.TensorSpec([], tf.int32)
    eps = {}

    if _has(model, "reconstruct"):
        eps["reconstruct"] = (lambda x: model.reconstruct(check_images(x)), {"x": images})
    if _has(model, "encode"):
        eps["encode"] = (lambda x: dict(model.encode(check_images(x))), {"x": images})
    for name in COUNT_ENDPOINTS:
        if _has(model, name):
            fn = (lambda f: lambda n: f(check_count(n)))(getattr(model, name))
            eps[name] = (fn, {"n": count})
    if _has(model, "swap"):
        def swap(x_content, x_style):
            same = check_same_batch(x_content, x_style, ("x_content", "x_style"))
            return model.swap(_after([same], check_images(x_content, "x_content")),
                              _after([same], check_images(x_style, "x_style")))
        eps["swap"] = (swap, {"x_content": images, "x_style": images})

    codes = _code_specs(model, images) if _has(model, "encode") else {}
    if _has(model, "interpolate") and "code" in inspect.signature(model.interpolate).parameters:
        for code in codes:
            def interpolate(x_a, x_b, code=code):
                return model.interpolate(check_images(x_a, "x_a"), check_images(x_b, "x_b"),
                                         steps=INTERPOLATION_STEPS, code=code)
            eps[f"interpolate_{code}"] = (interpolate, {"x_a": single, "x_b": single})
    if _has(model, "decode"):
        args = [p for p in inspect.signature(model.decode).parameters if p in codes]
        if args:
            def decode(*cs):
                cs = [check_codes(c, a) for c, a in zip(cs, args)]
                same = [check_same_batch(cs[0], c, (args[0], a))
                        for c, a in zip(cs[1:], args[1:])]
                return model.decode(**{a: _after(same, c) for a, c in zip(args, cs)})
            eps["decode"] = (decode, {a: tf.TensorSpec(codes[a].shape, codes[a].dtype, name=a)
                                      for a in args})
    return eps


# ---- writing --------------------------------------------------------------------------------

def export_saved_model(model, path):
    """Export `model`'s endpoints to a SavedModel directory at `path`; returns their names.

    The archive is written to a temporary sibling directory and then moved over `path`, so a
    failure part-way leaves a previous export at `path` as it was. `path/endpoints.json`
    lists each endpoint's input specs.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    endpoints = build_endpoints(model)
    if not endpoints:
        raise ValueError(f"{type(model).__name__} has none of the exportable endpoints")

    archive = keras.export.ExportArchive()
    archive.track(model)
    # The seed state is used by the random endpoints; tracked explicitly so that it is saved
    # (and reachable as `loaded.seed_state`) whatever the endpoints' variable discovery does.
    seed_generator = getattr(model, "seed_generator", None)
    if seed_generator is not None:
        archive.add_variable_collection("seed_state", [seed_generator.state])
    manifest = {"model": type(model).__name__, "seq_len": int(model.seq_len),
                "image_shape": list(model.image_shape), "endpoints": {}}
    for name, (fn, inputs) in endpoints.items():
        archive.add_endpoint(name, fn, input_signature=list(inputs.values()))
        manifest["endpoints"][name] = {
            arg: {"shape": spec.shape.as_list(), "dtype": spec.dtype.name}
            for arg, spec in inputs.items()}

    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        archive.write_out(tmp, verbose=False)
        with open(os.path.join(tmp, "endpoints.json"), "w") as f:
            json.dump(manifest, f, indent=2)
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return list(endpoints)


def _replace_dir(src, dst):
    """Move directory `src` to `dst`, replacing `dst` if it exists.

    POSIX cannot rename over a non-empty directory: the old `dst` is first moved aside and
    put back if the second rename fails; it is removed once the new one is in place.
    """
    if not os.path.exists(dst):
        os.rename(src, dst)
        return
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.old-", dir=os.path.dirname(dst))
    os.rmdir(old)
    os.rename(dst, old)
    try:
        os.rename(src, dst)
    except BaseException:
        os.rename(old, dst)
        raise
    shutil.rmtree(old, ignore_errors=True)
