"""Sequences stored as a folder of frame-image folders (``load_frames``), with ``labels.json``."""
from __future__ import annotations

import json
import os
import re

import numpy as np

from dvrnn_tf.data.builders.sequence_errors import SequenceFileError, fail, first_line

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
LABELS_FILE = "labels.json"
# Pillow modes read as grey (C = 1) or colour (C = 3); alpha is dropped, never composited.
_GREY_MODES = frozenset({"L", "1", "LA", "La"})
_COLOUR_MODES = frozenset({"RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr"})


def natural_key(name: str):
    """Sort key putting ``seq2`` before ``seq10`` (ties broken by the exact name)."""
    parts = re.split(r"(\d+)", name)
    # split() alternates text and digits, so ints only ever meet ints: no str/int comparisons.
    return [int(p) if i % 2 else p.lower() for i, p in enumerate(parts)], name


def load_frames(path) -> tuple[np.ndarray, dict]:
    """Loads a folder with one sub-folder of frame images per sequence.

    Layout::

        path/
          labels.json          optional: {"<sequence folder>": {"<factor>": int >= 0, ...}, ...}
          walk_01/ 0.png 1.png ... 9.png
          walk_02/ ...

    Sequences are the sub-folders in natural order (``seq2`` before ``seq10``; hidden ones,
    starting with ``.``, are skipped); a sequence's frames are its ``.png``, ``.jpg``, ``.jpeg``,
    ``.bmp`` and ``.gif`` files (a GIF's first frame) in natural order of file name; other files
    are ignored. All sequences must have the same number of frames and all frames the same size.
    Colour: ``L`` (and bilevel ``1``, and ``LA`` without its alpha) frames give C = 1; ``RGB``,
    ``RGBA`` and ``P`` (palette) frames give C = 3, alpha dropped (not composited over a
    background); a folder mixing grey and colour frames is refused, and so are 16-bit and float
    images. ``labels.json``, if present, must give every sequence every factor that it names for
    any sequence.

    Returns:
      ``(x, labels)``: x ``uint8 [N, T, H, W, C]``, labels factor -> ``int64 [N]``.

    Raises:
      SequenceFileError: a one-line message naming the folder, sequence or frame at fault.
    """
    root = os.fspath(path)
    if not os.path.exists(root):
        raise fail(root, "no such folder; expected a folder with one sub-folder of frame images "
                         "per sequence")
    if not os.path.isdir(root):
        raise fail(root, "is not a folder; expected a folder with one sub-folder of frame "
                         "images per sequence (for .npy/.npz arrays use load_arrays)")
    names, frames = _list_sequences(root)
    labels = _read_labels_json(root, names)  # before decoding: a typo there fails in no time
    return _decode_all(frames), labels


def _list_sequences(root: str) -> tuple[list[str], list[list[str]]]:
    try:
        entries = os.listdir(root)
    except OSError as e:
        raise fail(root, f"cannot be listed ({first_line(e)})") from e
    names = sorted((e for e in entries if not e.startswith(".")
                    and os.path.isdir(os.path.join(root, e))), key=natural_key)
    if not names:
        raise fail(root, "has no sub-folders; expected one sub-folder of frame images per "
                         "sequence")
    frames = []
    for name in names:
        folder = os.path.join(root, name)
        try:
            entries = os.listdir(folder)
        except OSError as e:
            raise fail(folder, f"cannot be listed ({first_line(e)})") from e
        files = sorted((f for f in entries
                        if f.lower().endswith(FRAME_EXTENSIONS)
                        and os.path.isfile(os.path.join(folder, f))), key=natural_key)
        if not files:
            raise fail(folder, f"sequence {name!r} has no frames; allowed frame files: "
                               f"{', '.join(FRAME_EXTENSIONS)}")
        frames.append([os.path.join(folder, f) for f in files])
    for name, files in zip(names, frames):
        if len(files) != len(frames[0]):
            raise fail(root, f"sequences have different lengths: {names[0]!r} has "
                             f"{len(frames[0])} frames, {name!r} has {len(files)}; all "
                             "sequences must have the same number of frames")
    return names, frames


def _channels(mode: str) -> int | None:
    return 1 if mode in _GREY_MODES else 3 if mode in _COLOUR_MODES else None


def _decode_all(frames: list[list[str]]) -> np.ndarray:
    """Decodes every frame into ``uint8 [N, T, H, W, C]``, shaped after the first frame."""
    first = frames[0][0]
    image = _read_image(first, None)
    x = np.empty((len(frames), len(frames[0])) + image.shape, np.uint8)
    expected = (first, image.shape)
    for i, files in enumerate(frames):
        for t, file in enumerate(files):
            x[i, t] = image if (i, t) == (0, 0) else _read_image(file, expected)
    return x


def _read_image(file: str, expected) -> np.ndarray:
    """One frame as ``uint8 [H, W, C]``; checked against ``expected = (first_file, shape)``."""
    from PIL import Image

    try:
        with Image.open(file) as im:
            channels = _channels(im.mode)
            if channels is None:
                raise fail(file, f"image mode {im.mode!r} (16-bit, float or exotic) is not "
                                 "supported; save 8-bit grey (L) or colour (RGB/RGBA/P) frames")
            if expected is not None:
                _check_like(file, im.size, channels, expected)
            im.load()
            if im.mode not in ("L", "RGB"):
                im = im.convert("L" if channels == 1 else "RGB")
            array = np.asarray(im, np.uint8)
    except SequenceFileError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure means an unreadable frame
        raise fail(file, f"cannot read this image ({first_line(e)}); frames must be readable "
                         f"{'/'.join(FRAME_EXTENSIONS)} files") from e
    return array.reshape(array.shape[:2] + (channels,))


def _check_like(file: str, size: tuple[int, int], channels: int, expected) -> None:
    first, (height, width, first_channels) = expected
    if size != (width, height):
        raise fail(file, f"frame is {size[0]}x{size[1]} (width x height), expected "
                         f"{width}x{height} like the first frame {first}; all frames must "
                         "have one size")
    if channels != first_channels:
        kinds = {1: "grey", 3: "colour"}
        raise fail(file, f"{kinds[channels]} frame among {kinds[first_channels]} frames (the "
                         f"first frame {first} is {kinds[first_channels]}); all frames must be "
                         "grey or all colour")


def _read_labels_json(root: str, names: list[str]) -> dict:
    path = os.path.join(root, LABELS_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise fail(path, f"not valid JSON ({first_line(e)})") from e
    shape = 'expected {"<sequence folder>": {"<factor>": <int >= 0>, ...}, ...}'
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise fail(path, f"wrong structure; {shape}")
    unknown = sorted(set(table) - set(names), key=natural_key)
    if unknown:
        raise fail(path, f"names {len(unknown)} unknown sequence(s), first {unknown[0]!r}; the "
                         f"sequences are the {len(names)} sub-folders ({names[0]!r}, ...)")
    factors = sorted({factor for entry in table.values() for factor in entry})
    for factor in factors:
        if not factor.isidentifier():
            raise fail(path, f"factor name {factor!r} is not a Python identifier (it becomes a "
                             "factor name), e.g. 'digit' or 'hair_colour'")
    labels = {factor: np.zeros(len(names), np.int64) for factor in factors}
    for i, name in enumerate(names):
        entry = table.get(name, {})
        for factor in factors:
            if factor not in entry:
                raise fail(path, f"sequence {name!r} has no {factor!r} label; every sequence "
                                 f"needs every factor ({', '.join(factors)})")
            value = entry[factor]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
                raise fail(path, f"sequence {name!r}: factor {factor!r} is {value!r}; labels "
                                 "must be integers >= 0")
            labels[factor][i] = value
    return labels
