"""Hypothesis drives every SavedModel endpoint with generated inputs (1,000 in all, derandomized
so CI is reproducible): nothing crashes, each input is either served (finite outputs of the
right shape, images in [0, 1]) or refused with a clear error, and which of the two happens is
exactly what the input deserves (the oracle below, computed from the input alone)."""
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dvrnn_tf.checks import MAX_ABS_CODE, MAX_BATCH

T, H, W, C, F_DIM, Z_DIM = 8, 8, 8, 1, 4, 2  # the tiny run (conftest.tiny_run)
REFUSED = (tf.errors.InvalidArgumentError, TypeError, ValueError)
# numpy inputs such as 1e300 overflow to Inf when TF converts them to float32 (then refused).
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")


def fuzz(n):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def saved(tiny_run):
    run_dir, _ = tiny_run
    return tf.saved_model.load(str(run_dir / "saved_model"))


# ---- inputs ---------------------------------------------------------------------------------

# Good values, and bad ones at the edges: NaN, +-Inf, just outside [0, 1], huge.
GOOD_PIXELS = st.floats(0, 1, width=32)
PIXELS = st.one_of(GOOD_PIXELS, st.sampled_from(
    [0.0, -0.0, 1.0, np.nextafter(np.float32(1), np.float32(2)), -1e-30, 1.5, -3.0, 255.0,
     np.nan, np.inf, -np.inf, 3e38, 1e300]))
GOOD_CODES = st.floats(-5, 5, width=32)
CODES = st.one_of(GOOD_CODES, st.sampled_from(
    [0.0, MAX_ABS_CODE, -MAX_ABS_CODE, 2 * MAX_ABS_CODE, -1e30, np.nan, np.inf, -np.inf]))


@st.composite
def arrays(draw, good_shape, values, good_values, batch=st.integers(0, 4), good=None,
           always_good=False):
    """An array or tensor: half the time a good one (float32, `good_shape` with a batch of
    1..4, values from `good_values`; `good` fixes its shape), else anything: another shape or
    rank, float64, int32 or uint8, values from `values`; numpy or a tf.Tensor."""
    if always_good or draw(st.booleans()):
        shape = list(good) if good is not None else [draw(st.integers(1, 4)), *good_shape]
        x = draw(hnp.arrays(np.float32, shape, elements=good_values,
                            fill=st.sampled_from([0.0, 0.5, 1.0]) | good_values))
        return tf.constant(x) if draw(st.booleans()) else x
    shape = [draw(batch), *good_shape]
    kind = draw(st.sampled_from(["good"] * 3 + ["resize", "drop", "add"]))
    if kind == "resize":
        i = draw(st.integers(0, len(shape) - 1))
        shape[i] = draw(st.sampled_from([0, 1, 3, 5, 28]))
    elif kind == "drop":
        del shape[draw(st.integers(0, len(shape) - 1))]
    elif kind == "add":
        shape.insert(draw(st.integers(0, len(shape))), draw(st.integers(1, 2)))
    dtype = draw(st.sampled_from(["float32"] * 3 + ["float64", "int32", "uint8"]))
    x = draw(hnp.arrays(np.float64, shape, elements=values,
                        fill=st.sampled_from([0.0, 0.25, 1.0]) | values))
    with np.errstate(invalid="ignore", over="ignore"):
        if dtype in ("int32", "uint8"):
            x = np.nan_to_num(x, posinf=0, neginf=0).clip(-1e6, 1e6)
        x = x.astype(dtype)
    return tf.constant(x) if draw(st.booleans()) else x


def _as_served(x, shape):
    """x as the endpoint will see it (float32), or None if its type or shape is refused."""
    if isinstance(x, tf.Tensor) and x.dtype != tf.float32:
        return None  # a tensor is never cast by the signature
    if list(x.shape)[1:] != list(shape[1:]) or (shape[0] is not None and x.shape[0] != shape[0]):
        return None
    with np.errstate(over="ignore"):
        return np.asarray(x, np.float32)  # numpy inputs are converted


def _images_ok(v):
    return v is not None and 1 <= len(v) <= MAX_BATCH and np.isfinite(v).all() and (
        v.min(initial=0) >= 0 and v.max(initial=0) <= 1)


def _codes_ok(v):
    return v is not None and 1 <= len(v) <= MAX_BATCH and np.isfinite(v).all() and (
        np.abs(v).max(initial=0) <= MAX_ABS_CODE)


def _check(call, ok, check_output):
    """Run call(); served iff ok; served outputs pass check_output; refusals have a message."""
    try:
        out = call()
    except REFUSED as e:
        event(f"refused: {type(e).__name__}")
        assert not ok, f"a good input was refused: {e}"
        message = getattr(e, "message", None) or str(e)
        assert message.strip(), "refused without a message"
        return
    event("served")
    assert ok, "a bad input was served"
    check_output(out)


def _images_out(n):
    def check(out):
        out = np.asarray(out)
        assert out.shape == (n, T, H, W, C)
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    return check


IMAGES = [T, H, W, C]


# ---- endpoints ------------------------------------------------------------------------------

@fuzz(250)
@given(x=arrays(IMAGES, PIXELS, GOOD_PIXELS))
def test_fuzz_reconstruct(saved, x):
    v = _as_served(x, [None, *IMAGES])
    _check(lambda: saved.reconstruct(x), _images_ok(v), _images_out(len(x)))


@fuzz(150)
@given(x=arrays(IMAGES, PIXELS, GOOD_PIXELS))
def test_fuzz_encode(saved, x):
    v = _as_served(x, [None, *IMAGES])

    def check(out):
        b = len(v)
        for k, shape in {"f": (b, F_DIM), "z": (b, T, Z_DIM)}.items():
            for part in ("loc", "scale", "sample"):
                value = out[f"{k}_{part}"].numpy()
                assert value.shape == shape and np.isfinite(value).all()
            assert (out[f"{k}_scale"].numpy() > 0).all()
    _check(lambda: saved.encode(x), _images_ok(v), check)


@st.composite
def pairs(draw, first, second):
    """(a, b): half the time b is good and shaped like a (the good case needs the same batch)."""
    a = draw(first)
    if draw(st.booleans()):
        return a, draw(second(list(a.shape), True))
    return a, draw(second(None, False))


@fuzz(150)
@given(ab=pairs(arrays(IMAGES, PIXELS, GOOD_PIXELS),
                lambda shape, good: arrays(IMAGES, PIXELS, GOOD_PIXELS, good=shape,
                                           always_good=good)))
def test_fuzz_swap(saved, ab):
    a, b = ab
    va, vb = _as_served(a, [None, *IMAGES]), _as_served(b, [None, *IMAGES])
    ok = _images_ok(va) and _images_ok(vb) and len(va) == len(vb)
    _check(lambda: saved.swap(a, b), ok, _images_out(len(a)))


ONE_OR_NOT = st.sampled_from([1, 0, 2])  # interpolate takes one sequence each


@fuzz(150)
@given(a=arrays(IMAGES, PIXELS, GOOD_PIXELS, batch=ONE_OR_NOT, good=[1, *IMAGES]),
       b=arrays(IMAGES, PIXELS, GOOD_PIXELS, batch=ONE_OR_NOT, good=[1, *IMAGES]),
       code=st.sampled_from(["f", "z"]))
def test_fuzz_interpolate(saved, a, b, code):
    va, vb = _as_served(a, [1, *IMAGES]), _as_served(b, [1, *IMAGES])
    _check(lambda: getattr(saved, f"interpolate_{code}")(a, b),
           _images_ok(va) and _images_ok(vb), _images_out(8))


COUNTS = st.one_of(st.integers(-3, 6), st.sampled_from(
    [0, MAX_BATCH, MAX_BATCH + 1, 2 ** 31 - 1, -2 ** 31, 2 ** 40]))


@fuzz(150)
@given(n=COUNTS, form=st.sampled_from(["python", "int32", "int32", "int64", "float", "vector"]),
       endpoint=st.sampled_from(["generate", "generate_fixed_content", "generate_fixed_style"]))
def test_fuzz_generate(saved, n, form, endpoint):
    in_int32 = -2 ** 31 <= n < 2 ** 31
    value = {"python": n, "int32": tf.constant(n, tf.int32) if in_int32 else n,
             "int64": tf.constant(n, tf.int64), "float": float(n) + 0.5,
             "vector": tf.constant([n % 7])}[form]
    ok = form in ("python", "int32") and in_int32 and 1 <= n <= MAX_BATCH
    if n == MAX_BATCH and ok:  # served, but a large batch: checked once, by shape only
        out = getattr(saved, endpoint)(value)
        assert out.shape == (MAX_BATCH, T, H, W, C)
        return
    _check(lambda: getattr(saved, endpoint)(value), ok, _images_out(n))


@fuzz(150)
@given(fz=pairs(arrays([F_DIM], CODES, GOOD_CODES),
                lambda shape, good: arrays([T, Z_DIM], CODES, GOOD_CODES, always_good=good,
                                           good=shape and [shape[0], T, Z_DIM])))
def test_fuzz_decode(saved, fz):
    f, z = fz
    vf, vz = _as_served(f, [None, F_DIM]), _as_served(z, [None, T, Z_DIM])
    ok = _codes_ok(vf) and _codes_ok(vz) and len(vf) == len(vz)
    _check(lambda: saved.decode(f, z), ok, _images_out(len(f)))
