"""Moving MNIST: deterministic, byte-identical to tfds's mover, digits intact, motion, labels."""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_datasets.video.moving_sequence import image_as_moving_sequence

from dvrnn_tf.data import load_split
from dvrnn_tf.data.builders.moving_mnist import make_moving_mnist, moving_digits

M = 300  # MNIST train images used: enough variety, quick to search
FREE = 64 - 28  # how far a 28 x 28 digit can move on the default 64 x 64 canvas


@pytest.fixture(scope="module")
def digits(mnist_dirs):
    data_dir, manual_dir = mnist_dirs
    train = load_split("mnist", "train", data_dir=data_dir, manual_dir=manual_dir)
    return np.array(train.images[:M]), np.array(train.labels[:M])


def _crops(x_seq, path, h=28, w=28, size=64):
    """The H x W window of every frame at the digit's pixel position: [T, H, W, C]."""
    offsets = np.round(path * np.array([size - h, size - w])).astype(int)
    return np.stack([frame[r:r + h, c:c + w] for frame, (r, c) in zip(x_seq, offsets)]), offsets


def test_same_seed_same_bytes_other_seed_other_bytes(digits):
    x, labels = make_moving_mnist(*digits, num_sequences=20, seq_len=6, seed=11)
    again_x, again_labels = make_moving_mnist(*digits, num_sequences=20, seq_len=6, seed=11)
    assert x.dtype == np.uint8 and x.shape == (20, 6, 64, 64, 1)
    assert x.tobytes() == again_x.tobytes()
    assert sorted(labels) == ["digit_0", "digit_1", "position_0", "position_1"]
    assert labels["digit_0"].dtype == np.int64 and labels["position_0"].dtype == np.float32
    assert labels["position_1"].shape == (20, 6, 2)
    for key in labels:
        assert labels[key].tobytes() == again_labels[key].tobytes()
    other_x, other_labels = make_moving_mnist(*digits, num_sequences=20, seq_len=6, seed=12)
    assert other_x.tobytes() != x.tobytes()
    assert not np.array_equal(other_labels["position_0"], labels["position_0"])


@pytest.mark.parametrize("num_digits, size, speed, seq_len, crop", [
    (2, 64, 0.1, 20, False),
    (1, 40, 0.37, 9, False),   # fast: several bounces, some two in one sequence
    (2, 50, 0.25, 12, True),   # digits 20 x 28: rows and columns have different ranges
])
def test_bytes_equal_tfds_image_as_moving_sequence(digits, num_digits, size, speed, seq_len,
                                                   crop):
    images = digits[0][:, 4:24] if crop else digits[0]
    rng = np.random.default_rng(num_digits * 100 + size)
    n = 8
    which = rng.integers(0, M, size=(n, num_digits))
    start = rng.uniform(size=(n, num_digits, 2)).astype(np.float32)
    start[0, 0] = [0.0, 1.0]  # on the walls
    angle = rng.uniform(0, 2 * np.pi, size=(n, num_digits))
    velocity = (speed * np.stack([np.cos(angle), np.sin(angle)], -1)).astype(np.float32)
    x, positions = moving_digits(images, which, start, velocity, seq_len, size)
    for i in range(n):
        frames = []
        for k in range(num_digits):
            moving = image_as_moving_sequence(
                images[which[i, k]], sequence_length=seq_len, output_size=(size, size),
                velocity=tf.constant(velocity[i, k]), start_position=tf.constant(start[i, k]))
            assert moving.trajectory.numpy().tobytes() == positions[i, k].tobytes()
            frames.append(moving.image_sequence.numpy())
        assert np.max(frames, axis=0).tobytes() == x[i].tobytes(), i


def test_one_digit_frames_are_the_digit_shifted_and_labelled(digits):
    images, classes = digits
    x, labels = make_moving_mnist(images, classes, num_sequences=30, num_digits=1, seed=4)
    assert sorted(labels) == ["digit_0", "position_0"]
    for i in range(30):
        crops, _ = _crops(x[i], labels["position_0"][i])
        found = _find(images, crops[0])
        assert found.size, i
        assert (classes[found] == labels["digit_0"][i]).all()
        digit = images[found[0]]
        for t in range(x.shape[1]):
            np.testing.assert_array_equal(crops[t], digit)  # the whole digit, unaltered
            assert x[i, t].max() == digit.max()
            # Nothing but the digit on the canvas: the frame's sum is the digit's.
            assert x[i, t].sum(dtype=np.int64) == digit.sum(dtype=np.int64)


def _find(images, crop):
    return np.flatnonzero((images == crop[None]).all(axis=(1, 2, 3)))


def test_two_digit_labels_name_digits_present_in_every_frame(digits):
    images, classes = digits
    x, labels = make_moving_mnist(images, classes, num_sequences=20, seq_len=10, seed=9)
    for i in range(20):
        for k in range(2):
            crops, _ = _crops(x[i], labels[f"position_{k}"][i])
            # Images whose every pixel is covered in every frame (the other digit may add ink).
            covered = np.flatnonzero((crops[:, None] >= images[None]).all(axis=(0, 2, 3, 4)))
            assert labels[f"digit_{k}"][i] in classes[covered], (i, k)


@pytest.mark.parametrize("speed", [0.1, 0.23])
def test_digits_move_speed_pixels_per_step_until_a_bounce(digits, speed):
    x, labels = make_moving_mnist(*digits, num_sequences=40, num_digits=1, seed=2, speed=speed)
    paths = labels["position_0"]  # [N, T, 2]
    assert paths.min() >= 0 and paths.max() <= 1
    full_steps = 0
    for i in range(40):
        path = paths[i]
        steps = np.diff(path, axis=0)  # [T-1, 2]
        # A reflection only shortens a step: the velocity is the largest step on each axis.
        v = np.abs(steps).max(axis=0)
        np.testing.assert_allclose(np.hypot(*v) * FREE, speed * FREE, rtol=1e-5)
        full = np.isclose(np.abs(steps), v, atol=1e-5)  # [T-1, 2] no bounce inside the step
        both = full.all(axis=1)
        np.testing.assert_allclose(np.hypot(*steps[both].T) * FREE, speed * FREE, rtol=1e-4)
        full_steps += both.sum()
        for axis in range(2):
            for t in range(len(steps) - 1):
                turned = np.sign(steps[t, axis]) != np.sign(steps[t + 1, axis])
                at_wall = min(path[t + 1, axis], 1 - path[t + 1, axis]) < 1e-5
                # The direction holds until a bounce: inside a step, or exactly on a wall.
                assert not turned or not (full[t, axis] and full[t + 1, axis]) or at_wall
        # The digit sits at round(position * FREE) in every frame, inside the canvas.
        crops, offsets = _crops(x[i], path)
        assert offsets.min() >= 0 and offsets.max() <= FREE
        assert (crops.sum(axis=(1, 2, 3), dtype=np.int64)
                == x[i].sum(axis=(1, 2, 3), dtype=np.int64)).all()
    assert full_steps > 0.6 * 40 * 19  # most steps are full ones, so the check above bites


def test_colour_digits_move_like_grey_ones(digits):
    images, classes = digits
    grey, _ = make_moving_mnist(images, classes, num_sequences=4, seq_len=5, seed=1)
    colour, _ = make_moving_mnist(np.repeat(images, 3, -1), classes, 4, seq_len=5, seed=1)
    assert colour.shape == (4, 5, 64, 64, 3)
    assert all(np.array_equal(colour[..., c:c + 1], grey) for c in range(3))


def test_speed_zero_holds_the_digits_still(digits):
    x, labels = make_moving_mnist(*digits, num_sequences=3, seq_len=5, seed=0, speed=0)
    assert (x == x[:, :1]).all() and (labels["position_0"] == labels["position_0"][:, :1]).all()


@pytest.mark.parametrize("change, needle", [
    (dict(num_digits=3), "num_digits must be 1 or 2, got 3"),
    (dict(num_digits=0), "num_digits must be 1 or 2"),
    (dict(seq_len=0), "seq_len must be an integer >= 1, got 0"),
    (dict(num_sequences=0), "num_sequences must be an integer >= 1"),
    (dict(size=20), "size must be at least the digit's height and width [28, 28], got 20"),
    (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(speed=-0.1), "speed must be a finite number >= 0"),
    (dict(speed=float("nan")), "speed must be a finite number >= 0"),
    (dict(images="float"), "images must be uint8 [M, H, W, C]"),
    (dict(images="rank3"), "images must be uint8 [M, H, W, C]"),
    (dict(labels="short"), "labels must be integer [M] with M = 300"),
    (dict(labels="float"), "labels must be integer [M]"),
])
def test_bad_arguments(digits, change, needle):
    images, classes = digits
    kwargs = dict(images=images, labels=classes, num_sequences=2, seq_len=3)
    kwargs.update(change)
    kwargs["images"] = {"float": images / 255.0, "rank3": images[..., 0]}.get(
        kwargs["images"] if isinstance(kwargs["images"], str) else "", kwargs["images"])
    kwargs["labels"] = {"short": classes[:-1], "float": classes.astype(float)}.get(
        kwargs["labels"] if isinstance(kwargs["labels"], str) else "", kwargs["labels"])
    with pytest.raises(ValueError) as info:
        make_moving_mnist(**kwargs)
    assert "\n" not in str(info.value) and needle in str(info.value), str(info.value)
