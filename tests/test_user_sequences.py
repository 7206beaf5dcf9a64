"""The user's own sequences: .npy/.npz arrays, folders of frames, seeded splits."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from dvrnn_tf.data.builders import user_sequences
from dvrnn_tf.data.builders.user_sequences import (SequenceFileError, load_arrays, load_frames,
                                          seeded_split)

RNG = np.random.default_rng(7)
X = RNG.integers(0, 256, size=(6, 4, 5, 7, 1), dtype=np.uint8)  # N=6, T=4, H=5, W=7, C=1


def _raises_one_line(error_type, fn, *needles):
    """Calls fn, asserts error_type with a one-line message containing every needle."""
    with pytest.raises(error_type) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


# ------------------------------------------------------------------------------- arrays: good


def test_npz_round_trip_uint8_with_static_per_frame_and_float_labels(tmp_path):
    digit = np.array([3, 1, 4, 1, 5, 9], np.int32)
    per_frame = RNG.integers(0, 3, size=(6, 4)).astype(np.uint16)
    position = RNG.uniform(size=(6, 4, 2))
    flag = np.array([True, False, True, True, False, False])
    path = tmp_path / "seqs.npz"
    np.savez_compressed(path, x=X, digit=digit, action=per_frame, position=position, flag=flag)
    x, labels = load_arrays(path)
    assert x.dtype == np.uint8 and np.array_equal(x, X)
    assert sorted(labels) == ["action", "digit", "flag", "position"]
    assert labels["digit"].dtype == np.int64 and labels["digit"].tolist() == digit.tolist()
    assert labels["action"].dtype == np.int64 and np.array_equal(labels["action"], per_frame)
    assert labels["flag"].tolist() == [1, 0, 1, 1, 0, 0]
    assert labels["position"].dtype == np.float32
    np.testing.assert_array_equal(labels["position"], position.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_round_trip_becomes_float32(tmp_path, dtype):
    values = RNG.uniform(size=X.shape).astype(dtype)
    values[0, 0, 0, 0, 0], values[1, 1, 1, 1, 0] = 0.0, 1.0  # the bounds are allowed
    np.save(tmp_path / "x.npy", values)
    x, labels = load_arrays(tmp_path / "x.npy")
    assert labels == {} and x.dtype == np.float32
    np.testing.assert_array_equal(x, values.astype(np.float32))


def test_npy_is_memory_mapped_read_only(tmp_path):
    np.save(tmp_path / "x.npy", X)
    x, _ = load_arrays(str(tmp_path / "x.npy"))
    assert np.array_equal(x, X) and not x.flags.writeable
    assert not x.flags.owndata  # a view of the mapped file, not a copy in memory


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint16, np.int64])
def test_other_integer_pixels_in_0_255_become_uint8(tmp_path, dtype):
    values = RNG.integers(0, 128 if dtype == np.int8 else 256, size=X.shape).astype(dtype)
    np.savez(tmp_path / "x.npz", x=values)
    x, _ = load_arrays(tmp_path / "x.npz")
    assert x.dtype == np.uint8 and np.array_equal(x, values.astype(np.uint8))


def test_checks_walk_big_arrays_in_chunks(tmp_path, monkeypatch):
    # One sequence per chunk: the bad values sit in different chunks and all are counted.
    monkeypatch.setattr(user_sequences, "_CHUNK_BYTES", X[0].nbytes)
    values = RNG.uniform(size=X.shape).astype(np.float64)
    values[0, 0, 0, 0, 0], values[3, 1, 2, 3, 0], values[5, 3, 4, 6, 0] = np.nan, np.inf, -0.25
    np.save(tmp_path / "x.npy", values)
    _raises_one_line(SequenceFileError, lambda: load_arrays(tmp_path / "x.npy"),
                     "2 NaN/Inf values and 1 values outside [0, 1]", "finite range -0.25..")
    wide = (X.astype(np.int32) + 0)
    wide[4, 0, 0, 0, 0] = 300
    np.save(tmp_path / "w.npy", wide)
    _raises_one_line(SequenceFileError, lambda: load_arrays(tmp_path / "w.npy"), "..300")
    values = np.clip(values, 0, 1)
    values[~np.isfinite(values)] = 0.5
    np.save(tmp_path / "ok.npy", values)
    np.testing.assert_array_equal(load_arrays(tmp_path / "ok.npy")[0], values.astype(np.float32))


# -------------------------------------------------------------------------------- arrays: bad


def _npz(**arrays):
    return lambda p: np.savez(p, **arrays)


def _raw(data: bytes):
    return lambda p: open(p, "wb").write(data)


def _truncated_npz(p):
    np.savez(p, x=X)
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])


def _bad_crc_npz(p):
    np.savez(p, x=X)  # stored uncompressed: flipping a data byte breaks only the CRC
    data = bytearray(open(p, "rb").read())
    data[200] ^= 0xFF
    open(p, "wb").write(bytes(data))


def _truncated_npy(p):
    np.save(p, X)
    data = open(p, "rb").read()
    open(p, "wb").write(data[:200])


def _nan_x(p):
    values = np.full(X.shape, 0.5, np.float32)
    values[0, 0, 0, 0, 0], values[1, 0, 0, 0, 0] = np.nan, -np.inf
    np.save(p, values)


def _object_npy(p):
    np.save(p, np.array([1, "a"], dtype=object), allow_pickle=True)


ARRAY_CASES = {
    "missing": ("x.npy", None, ["no such file"]),
    "folder": ("dir.npz", lambda p: os.mkdir(p), ["is not a file"]),
    "extension": ("x.txt", _raw(b"1 2 3"), ["unknown file type '.txt'", ".npy", ".npz"]),
    "empty npy": ("x.npy", _raw(b""), ["is empty"]),
    "not npy": ("x.npy", _raw(b"hello, world" * 10), ["not a NumPy .npy file"]),
    "truncated npy": ("x.npy", _truncated_npy, ["truncated or corrupt"]),
    "truncated npz": ("x.npz", _truncated_npz, ["truncated or corrupt .npz", "BadZipFile"]),
    "bad crc npz": ("x.npz", _bad_crc_npz, ["[key 'x']", "truncated or corrupt member"]),
    "npz without x": ("x.npz", lambda p: np.savez(p, X), ["no key 'x'", "arr_0", "x=x"]),
    "object npy": ("x.npy", _object_npy, ["Python objects"]),
    "object label": ("x.npz", _npz(x=X, name=np.array([1, "a"] * 3, object)),
                     ["[key 'name']", "Python objects"]),
    "string label": ("x.npz", _npz(x=X, name=np.array(list("abcdef"))),
                     ["labels 'name'", "no strings"]),
    "rank 4": ("x.npy", lambda p: np.save(p, X[..., 0]), ["add a channel axis: x[..., None]"]),
    "rank 3": ("x.npy", lambda p: np.save(p, X[..., 0, 0]), ["3 axes", "[N, T, H, W, C]"]),
    "no sequences": ("x.npy", lambda p: np.save(p, X[:0]), ["N = 0"]),
    "no frames": ("x.npy", lambda p: np.save(p, X[:, :0]), ["T = 0"]),
    "four channels": ("x.npy", lambda p: np.save(p, np.repeat(X, 4, -1)),
                      ["C = 4", "1 (grey) or 3 (RGB)", "x[..., :3]"]),
    "two channels": ("x.npy", lambda p: np.save(p, np.repeat(X, 2, -1)),
                     ["C = 2", "1 (grey) or 3 (RGB)"]),
    "bool pixels": ("x.npy", lambda p: np.save(p, X > 128), ["bool", "uint8"]),
    "complex pixels": ("x.npy", lambda p: np.save(p, X.astype(np.complex64)),
                       ["dtype complex64", "allowed"]),
    "nan pixels": ("x.npy", _nan_x, ["has 2 NaN/Inf values (finite range 0.5..0.5)"]),
    "pixels above 1": ("x.npy", lambda p: np.save(p, X / 100.0),
                       [f"has {(X > 100).sum()} values outside [0, 1] (finite range "
                        f"{X.min() / 100:g}..{X.max() / 100:g})"]),
    "int pixels out of range": ("x.npy", lambda p: np.save(p, X.astype(np.int16) - 3),
                                ["int16", f"{int(X.min()) - 3}..{int(X.max()) - 3}", "0..255"]),
    "label rows": ("x.npz", _npz(x=X, digit=np.arange(5)),
                   ["labels 'digit' has 5 rows, x has 6 sequences"]),
    "label frames": ("x.npz", _npz(x=X, action=np.zeros((6, 3), np.int64)),
                     ["'action'", "[6, 3]", "T = 4", "[N, T] = [6, 4]"]),
    "label rank 3": ("x.npz", _npz(x=X, action=np.zeros((6, 4, 2), np.int64)),
                     ["'action'", "[6, 4, 2]", "must be [N]"]),
    "negative label": ("x.npz", _npz(x=X, digit=np.array([0, -1, 2, -3, 1, 1])),
                       ["'digit'", "2 negative values (min -3)", ">= 0"]),
    "nan label": ("x.npz", _npz(x=X, pos=np.array([0.5, np.nan, 1, 2, 3, 4])),
                  ["'pos'", "1 NaN/Inf"]),
    "scalar label": ("x.npz", _npz(x=X, digit=np.int64(3)), ["'digit'", "no first axis"]),
    "bad key": ("x.npz", lambda p: np.savez(p, **{"x": X, "my-digit": np.arange(6)}),
                ["[key 'my-digit']", "identifiers"]),
}


@pytest.mark.parametrize("case", sorted(ARRAY_CASES))
def test_bad_array_file(tmp_path, case):
    name, write, needles = ARRAY_CASES[case]
    path = tmp_path / name
    if write is not None:
        write(path)
    message = _raises_one_line(SequenceFileError, lambda: load_arrays(path), *needles)
    assert message.startswith(str(path)), message  # every message names the file first
    assert isinstance(SequenceFileError(message), ValueError)


# ------------------------------------------------------------------------------ frames: good


def _write_sequence(folder, frames, suffix=".png", names=None):
    os.makedirs(folder, exist_ok=True)
    for t, frame in enumerate(frames):
        name = names[t] if names else f"{t}{suffix}"
        Image.fromarray(frame.squeeze(-1) if frame.shape[-1] == 1 else frame).save(
            os.path.join(folder, name))


def test_grey_png_folders_exact_pixels_natural_order_and_labels(tmp_path):
    frames = RNG.integers(0, 256, size=(3, 11, 5, 7, 1), dtype=np.uint8)
    names = ["seq10", "seq2", "seq1"]  # natural order: seq1, seq2, seq10
    file_names = [f"f{t}.png" for t in range(11)]  # natural order: f2 before f10
    for name, seq in zip(names, frames):
        _write_sequence(tmp_path / name, seq, names=file_names)
    (tmp_path / "seq1" / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "labels.json").write_text(json.dumps(
        {"seq1": {"digit": 4, "style": 0}, "seq2": {"digit": 7, "style": 1},
         "seq10": {"digit": 0, "style": 2}}))
    x, labels = load_frames(tmp_path)
    assert x.dtype == np.uint8 and x.shape == (3, 11, 5, 7, 1)
    for i, source in enumerate([2, 1, 0]):
        np.testing.assert_array_equal(x[i], frames[source])
    assert labels["digit"].dtype == np.int64
    assert labels["digit"].tolist() == [4, 7, 0] and labels["style"].tolist() == [0, 1, 2]


def test_colour_modes_drop_alpha_and_read_palettes(tmp_path):
    rgb = RNG.integers(0, 256, size=(2, 6, 4, 3), dtype=np.uint8)
    alpha = RNG.integers(0, 256, size=(2, 6, 4, 1), dtype=np.uint8)
    _write_sequence(tmp_path / "a_rgb", rgb)
    _write_sequence(tmp_path / "b_rgba", np.concatenate([rgb, alpha], -1))
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], np.uint8)
    index = RNG.integers(0, 4, size=(2, 6, 4))
    os.makedirs(tmp_path / "c_palette")
    for t in range(2):
        im = Image.new("P", (4, 6))
        im.putpalette(colours.reshape(-1).tolist())
        im.putdata(index[t].reshape(-1).tolist())
        im.save(tmp_path / "c_palette" / f"{t}.png")
    _write_sequence(tmp_path / "d_bmp", rgb, suffix=".bmp")
    x, labels = load_frames(tmp_path)
    assert labels == {} and x.shape == (4, 2, 6, 4, 3)
    np.testing.assert_array_equal(x[0], rgb)
    np.testing.assert_array_equal(x[1], rgb)  # alpha dropped, not composited
    np.testing.assert_array_equal(x[2], colours[index])
    np.testing.assert_array_equal(x[3], rgb)


def test_gif_gives_its_first_frame(tmp_path):
    first = (np.arange(48, dtype=np.uint8) * 5).reshape(6, 8)
    os.makedirs(tmp_path / "s")
    Image.fromarray(first).save(tmp_path / "s" / "0.gif", save_all=True,
                                append_images=[Image.fromarray(255 - first)])
    x, _ = load_frames(tmp_path)
    assert x.shape == (1, 1, 6, 8, 3)  # a GIF is a palette ("P") image: colour
    for channel in range(3):
        np.testing.assert_array_equal(x[0, 0, ..., channel], first)


# ------------------------------------------------------------------------------- frames: bad


def _grey(h=5, w=7, value=None):
    frame = RNG.integers(0, 256, size=(h, w), dtype=np.uint8)
    return frame if value is None else np.full((h, w), value, np.uint8)


def _folders(spec):
    """spec: {"seq": [frame arrays or raw bytes, ...]} -> a writer of that tree."""
    def write(root):
        root.mkdir()
        for name, frames in spec.items():
            (root / name).mkdir()
            for t, frame in enumerate(frames):
                target = root / name / f"{t}.png"
                if isinstance(frame, bytes):
                    target.write_bytes(frame)
                else:
                    Image.fromarray(frame).save(target)
    return write


def _with_labels(spec, labels_text):
    def write(root):
        _folders(spec)(root)
        (root / "labels.json").write_text(labels_text)
    return write


def _truncated_png(root):
    _folders({"a": [_grey(), _grey()]})(root)
    data = (root / "a" / "1.png").read_bytes()
    (root / "a" / "1.png").write_bytes(data[: len(data) // 2])  # header whole, pixels cut


TWO = {"a": [_grey(), _grey()], "b": [_grey(), _grey()]}
FRAME_CASES = {
    "missing": (None, ["no such folder"]),
    "a file": (lambda root: root.write_bytes(b"x"), ["is not a folder", "load_arrays"]),
    "no sub-folders": (lambda root: (root.mkdir(), (root / "f.png").write_bytes(b"")),
                       ["has no sub-folders"]),
    "empty sequence": (_folders({"a": [_grey()], "b": []}), ["sequence 'b' has no frames"]),
    "lengths": (_folders({"a": [_grey()] * 3, "b": [_grey()] * 3, "c": [_grey()] * 2}),
                ["'a' has 3 frames, 'c' has 2"]),
    "sizes": (_folders({"a": [_grey(), _grey()], "b": [_grey(), _grey(6, 7)]}),
              ["1.png", "7x6 (width x height)", "expected 7x5", "0.png"]),
    "corrupt image": (_folders({"a": [_grey(), b"not a png at all"]}),
                      ["1.png", "cannot read this image"]),
    "truncated image": (_truncated_png, ["1.png", "cannot read this image", "truncated"]),
    "mixed": (_folders({"a": [_grey(), _grey()],
                        "b": [_grey(), RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)]}),
              ["b/1.png", "colour frame among grey frames", "a/0.png"]),
    "16-bit": (_folders({"a": [_grey().astype(np.uint16) * 200]}),
               ["0.png", "'I;16'", "not supported"]),
    "json syntax": (_with_labels(TWO, '{"a": {"digit": 1},'), ["labels.json", "not valid JSON"]),
    "json structure": (_with_labels(TWO, "[1, 2]"), ["labels.json", "wrong structure"]),
    "json unknown sequence": (_with_labels(TWO, '{"a": {"d": 1}, "b": {"d": 2}, "zz": {"d": 3}}'),
                              ["unknown sequence", "'zz'"]),
    "json missing factor": (_with_labels(TWO, '{"a": {"d": 1, "e": 0}, "b": {"d": 2}}'),
                            ["sequence 'b' has no 'e' label"]),
    "json missing sequence": (_with_labels(TWO, '{"a": {"d": 1}}'),
                              ["sequence 'b' has no 'd' label"]),
    "json value": (_with_labels(TWO, '{"a": {"d": 1}, "b": {"d": 2.5}}'),
                   ["sequence 'b'", "'d' is 2.5", "integers >= 0"]),
    "json factor name": (_with_labels(TWO, '{"a": {"my d": 1}, "b": {"my d": 2}}'),
                         ["'my d'", "identifier"]),
}


@pytest.mark.parametrize("case", sorted(FRAME_CASES))
def test_bad_frame_folder(tmp_path, case):
    write, needles = FRAME_CASES[case]
    root = tmp_path / "data"
    if write is not None:
        write(root)
    _raises_one_line(SequenceFileError, lambda: load_frames(root), *needles)


# -------------------------------------------------------------------------------- splits


def test_seeded_split_is_a_deterministic_partition():
    split = seeded_split(100, seed=5)
    assert [len(split[k]) for k in ("train", "validation", "test")] == [80, 10, 10]
    together = np.concatenate(list(split.values()))
    assert sorted(together.tolist()) == list(range(100))  # disjoint and covering
    for indices in split.values():
        assert indices.dtype == np.int64 and np.all(np.diff(indices) > 0)  # sorted
    again = seeded_split(100, seed=5)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    other = seeded_split(100, seed=6)
    assert not np.array_equal(split["test"], other["test"])
    # Test depends on (n, seed, test_fraction) only: tuning validation never moves it.
    wider = seeded_split(100, seed=5, validation_fraction=0.3)
    assert np.array_equal(wider["test"], split["test"]) and len(wider["validation"]) == 30


@pytest.mark.parametrize("n, fractions, sizes", [
    (3, (0.1, 0.1), (1, 1, 1)),       # rounding gives 0: at least one each
    (3, (0.45, 0.45), (1, 1, 1)),
    (4, (0.49, 0.49), (1, 2, 1)),     # 2 + 2 would leave train empty: test gives one back
    (25, (0.1, 0.1), (19, 3, 3)),     # 2.5 rounds up
    (1000, (0.05, 0.2), (750, 50, 200)),
])
def test_seeded_split_sizes(n, fractions, sizes):
    split = seeded_split(n, 0, *fractions)
    assert (len(split["train"]), len(split["validation"]), len(split["test"])) == sizes
    assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(n))


@pytest.mark.parametrize("args, needle", [
    ((2, 0), "n must be an integer >= 3"),
    ((True, 0), "n must be"),
    ((10, -1), "seed must be an integer >= 0"),
    ((10, 0, 0.0, 0.1), "validation_fraction must be a number in (0, 1)"),
    ((10, 0, 0.1, 1.0), "test_fraction must be a number in (0, 1)"),
    ((10, 0, 0.5, 0.5), "must be < 1"),
])
def test_seeded_split_bad_arguments(args, needle):
    _raises_one_line(ValueError, lambda: seeded_split(*args), needle)


def test_error_message_is_always_one_line():
    error = SequenceFileError("a\nb\r\n  c")
    assert str(error) == "a b c"
