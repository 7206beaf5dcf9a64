"""Sprites (Li & Mandt 2018): 8-frame 64x64 RGB sequences of 1296 cartoon characters,
generated offline from the Liberated Pixel Cup sheets by DESIGN section 6's recipe.

The reference is PIL: a character is an opaque black 832x1344 RGBA canvas alpha-composited
(`Image.alpha_composite`) with its body, bottomwear, topwear and hair sheets, then
`shoes/1.png` (`character_sheet`). `generate` gives the same bytes without PIL per character:
it composites only the 63 cells the recipe reads, shares each prefix's composite (body, body +
bottomwear, ...) among the characters that extend it, and reproduces Pillow's integer
arithmetic (libImaging/AlphaComposite.c). `prepare` caches the three splits as `.npy` files
beside the sheets' licences and attribution; `load` memory-maps one split.
"""
from __future__ import annotations

import hashlib
import pathlib

import numpy as np
from PIL import Image, UnidentifiedImageError

from dvrnn_tf.data import sequence_cache

ACTIONS = ("walk", "spellcast", "slash")
DIRECTIONS = ("front", "left", "right")
STATIC_FACTORS = ("body", "bottomwear", "topwear", "hair")
LABELS = STATIC_FACTORS + ("action", "direction", "motion", "character")
SPLITS = ("train", "validation", "test")
NUM_CHARACTERS = 1296
FRAMES = 8
CELL = 64
VARIANTS = 6  # each static factor takes variants 0..5 of its sheets
MOTIONS = len(ACTIONS) * len(DIRECTIONS)
SHEET_SIZE = (832, 1344)  # W x H: 13 x 21 cells
RECIPE_VERSION = 1
SPLIT_SEED = 423
TRAIN_CHARACTERS = 1000  # the first 1000 of the seeded permutation; the other 296 are test
LICENCE_FILES = ("CC-BY-SA-3.0-LICENSE", "GNU-GPL-3.0-LICENSE")
ATTRIBUTION = (
    "The sprite sheets these frames are drawn from are the Liberated Pixel Cup art "
    "(lpc.opengameart.org) and the Universal-LPC-spritesheet project, dual-licensed CC-BY-SA 3.0 "
    "and GPL 3.0; both licence texts are beside this file (CC-BY-SA-3.0-LICENSE, "
    "GNU-GPL-3.0-LICENSE). The generated data is a derivative of that art under the same "
    "licences: whoever ships it keeps this attribution and the licence texts beside it.")

# First cell (row * 13 + column) of each action's row, per direction.
_START = {"walk": {"left": 118, "front": 131, "right": 144},
          "spellcast": {"left": 13, "front": 26, "right": 39},
          "slash": {"left": 169, "front": 182, "right": 195}}


class SpritesError(ValueError):
    """The sheets, the cache or an argument is not what the Sprites recipe needs."""


def _short(value) -> str:
    return " ".join(repr(value).split())[:80]


def _choice(value, names, arg) -> str:
    if isinstance(value, str) and value in names:
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) \
            and 0 <= value < len(names):
        return names[value]
    raise SpritesError(f"`{arg}` must be one of {names} or its index 0..{len(names) - 1}, "
                       f"got {_short(value)}")


def frame_cells(action, direction) -> list[int]:
    """The 8 sheet cells of one motion, frame by frame (`action`, `direction`: name or label)."""
    action, direction = _choice(action, ACTIONS, "action"), _choice(direction, DIRECTIONS,
                                                                    "direction")
    s = _START[action][direction]
    if action == "walk":  # the cycle starts from its last step; column 0 (standing) unused
        return [s + 7] + [s + i for i in range(7)]
    head = [s + i for i in range(6)]
    return head + ([s + 4, s + 6] if action == "spellcast" else [s + 4, s])


# The cells any motion reads (63 of 273), and each motion's frames as indices into them [9, 8].
_CELLS = sorted({c for a in ACTIONS for d in DIRECTIONS for c in frame_cells(a, d)})
_MOTION_FRAMES = np.array([[_CELLS.index(c) for c in frame_cells(a, d)]
                           for a in ACTIONS for d in DIRECTIONS])
_PIXELS = len(_CELLS) * CELL * CELL


# ---- sheets ---------------------------------------------------------------------------

def _root(sheets_dir) -> pathlib.Path:
    """The sheets folder: `sheets_dir` itself, or its `sheets/` sub-folder (the shared layout:
    README, licences and sheets/ side by side)."""
    root = pathlib.Path(sheets_dir)
    if (root / "sheets").is_dir():
        root = root / "sheets"
    if not root.is_dir():
        raise SpritesError(f"sprites sheets folder {root} does not exist (expected the folder "
                           f"holding body/, bottomwear/, topwear/, hair/ and shoes/)")
    return root


def _sheet_paths(root: pathlib.Path) -> dict:
    """{(part, variant): path} of the 25 sheets the recipe reads, in compositing order."""
    paths = {(p, v): root / p / f"{v}.png" for p in STATIC_FACTORS for v in range(VARIANTS)}
    paths[("shoes", 1)] = root / "shoes" / "1.png"
    return paths


def _open_sheet(path: pathlib.Path) -> Image.Image:
    expected = f"expected a {SHEET_SIZE[0]}x{SHEET_SIZE[1]} (W x H) PNG"
    if not path.is_file():
        raise SpritesError(f"sprites sheet {path} is missing ({expected})")
    try:
        image = Image.open(path, formats=["PNG"])
    except (UnidentifiedImageError, OSError):
        raise SpritesError(f"sprites sheet {path} is not a PNG ({expected})") from None
    if image.size != SHEET_SIZE:
        image.close()
        raise SpritesError(f"sprites sheet {path} is {image.size[0]}x{image.size[1]} ({expected})")
    return image


def _rgba(path: pathlib.Path) -> Image.Image:
    with _open_sheet(path) as image:
        try:
            return image.convert("RGBA")  # most sheets are palette ("P") images
        except (OSError, ValueError, SyntaxError):
            raise SpritesError(f"sprites sheet {path} could not be decoded "
                               f"(a damaged PNG?)") from None


def check_sheets(sheets_dir) -> None:
    """Raise SpritesError unless every sheet the recipe reads is an 832x1344 PNG."""
    for path in _sheet_paths(_root(sheets_dir)).values():
        _open_sheet(path).close()


def _check_parts(parts) -> tuple:
    for name, value in zip(STATIC_FACTORS, parts):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) \
                or not 0 <= value < VARIANTS:
            raise SpritesError(f"`{name}` must be an integer in [0, {VARIANTS - 1}], "
                               f"got {_short(value)}")
    return tuple(int(v) for v in parts)


def character_sheet(sheets_dir, body, bottomwear, topwear, hair) -> np.ndarray:
    """The reference composite, uint8 [1344, 832, 4], by PIL exactly as the original script."""
    parts = _check_parts((body, bottomwear, topwear, hair))
    paths = _sheet_paths(_root(sheets_dir))
    canvas = Image.new("RGBA", SHEET_SIZE, "black")
    for key in [*zip(STATIC_FACTORS, parts), ("shoes", 1)]:
        canvas = Image.alpha_composite(canvas, _rgba(paths[key]))
    return np.asarray(canvas)


def _load_cells(root: pathlib.Path) -> dict:
    """{(part, variant): uint8 [63 * 64 * 64, 4]}: the used cells of every sheet."""
    check_sheets(root)
    cells = {}
    for key, path in _sheet_paths(root).items():
        sheet = np.asarray(_rgba(path))
        grid = sheet.reshape(SHEET_SIZE[1] // CELL, CELL, SHEET_SIZE[0] // CELL, CELL, 4)
        grid = grid.transpose(0, 2, 1, 3, 4).reshape(-1, CELL, CELL, 4)
        cells[key] = np.ascontiguousarray(grid[_CELLS]).reshape(_PIXELS, 4)
    return cells


# ---- compositing ----------------------------------------------------------------------

def _composite_pixels(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """`Image.alpha_composite(dst, src)` on uint8 pixels [..., 4], with Pillow's integers.

    libImaging/AlphaComposite.c: 7 extra bits of precision, and x / 255 rounded as
    ((x >> 8) + x) >> 8 after adding half; a transparent source pixel leaves dst untouched.
    """
    d, s = dst.astype(np.uint32), src.astype(np.uint32)
    sa, da = s[..., 3:], d[..., 3:]
    outa255 = sa * 255 + da * (255 - sa)
    coef1 = sa * (255 * 255 << 7) // np.maximum(outa255, 1)  # < 2**32: fits as in C
    coef2 = (255 << 7) - coef1
    tmp = s[..., :3] * coef1 + d[..., :3] * coef2 + (0x80 << 7)
    rgb = (((tmp >> 8) + tmp) >> 8) >> 7
    a = outa255 + 0x80
    a = ((a >> 8) + a) >> 8
    out = np.concatenate([rgb, a], axis=-1).astype(np.uint8)
    return np.where(sa == 0, dst, out)


def _over(images: np.ndarray, src: np.ndarray) -> None:
    """Composite `src` [P, 4] in place over each opaque image of `images` [K, P, 3].

    Over an opaque destination the result stays opaque, an opaque source pixel replaces the
    destination and a transparent one keeps it; only the few partly transparent pixels need
    Pillow's arithmetic.
    """
    alpha = src[:, 3]
    partial = np.flatnonzero((alpha > 0) & (alpha < 255))
    if partial.size:
        under = images[:, partial]
        opaque = np.concatenate([under, np.full(under.shape[:-1] + (1,), 255, np.uint8)], -1)
        images[:, partial] = _composite_pixels(opaque, src[partial])[..., :3]
    covered = np.flatnonzero(alpha == 255)
    images[:, covered] = src[covered, :3]


def _composite(cells: dict, parts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The used cells of characters `parts` int [K, 4] -> (uint8 [U, P, 3], row of each in it).

    Level by level, each distinct prefix (body; body + bottomwear; ...) is composited once
    over a copy of its parent's composite: K characters cost about 2 K composites (hair and
    shoes), not 5 K.
    Prefixes are ordered by their newest part first, so those sharing a sheet are one slice.
    """
    images = np.zeros((1, _PIXELS, 3), np.uint8)  # the opaque black canvas
    parent = np.zeros(len(parts), np.int64)  # row of each character's prefix in `images`
    for level, name in enumerate(STATIC_FACTORS):
        keys, first, inverse = np.unique(parts[:, [level, *range(level)]], axis=0,
                                         return_index=True, return_inverse=True)
        images = images[parent[first]]
        variants, starts = np.unique(keys[:, 0], return_index=True)
        for variant, lo, hi in zip(variants, starts, [*starts[1:], len(keys)]):
            _over(images[lo:hi], cells[(name, int(variant))])
        parent = inverse.reshape(-1)
    _over(images, cells[("shoes", 1)])
    return images, parent


def _check_characters(characters) -> np.ndarray:
    if characters is None:
        return np.arange(NUM_CHARACTERS, dtype=np.int64)
    c = np.asarray(characters)
    if c.ndim != 1 or c.size == 0 or not np.issubdtype(c.dtype, np.integer) \
            or c.min() < 0 or c.max() >= NUM_CHARACTERS:
        raise SpritesError(f"`characters` must be a non-empty 1-D sequence of integers in "
                           f"[0, {NUM_CHARACTERS - 1}], got {_short(characters)}")
    return c.astype(np.int64)


def _parts(characters: np.ndarray) -> np.ndarray:
    """Character index -> [N, 4] (body, bottomwear, topwear, hair); index = b*216+m*36+t*6+h."""
    return np.stack([characters // VARIANTS ** (3 - i) % VARIANTS for i in range(4)], axis=1)


def _labels(characters: np.ndarray) -> dict:
    character = np.repeat(characters, MOTIONS)
    motion = np.tile(np.arange(MOTIONS, dtype=np.int64), len(characters))
    parts = _parts(character)
    labels = {name: parts[:, i] for i, name in enumerate(STATIC_FACTORS)}
    labels.update(action=motion // len(DIRECTIONS), direction=motion % len(DIRECTIONS),
                  motion=motion, character=character)
    return {name: np.ascontiguousarray(labels[name], dtype=np.int64) for name in LABELS}


def _generate(cells: dict, characters: np.ndarray) -> np.ndarray:
    """uint8 [N * 9, 8, 64, 64, 3], one body at a time to bound memory (~0.6 GB a body)."""
    x = np.empty((len(characters) * MOTIONS, FRAMES, CELL, CELL, 3), np.uint8)
    by_character = x.reshape(len(characters), MOTIONS, FRAMES, CELL, CELL, 3)
    bodies = _parts(characters)[:, 0]
    for body in np.unique(bodies):
        where = np.flatnonzero(bodies == body)
        images, row = _composite(cells, _parts(characters[where]))
        cells_of = images.reshape(len(images), len(_CELLS), CELL, CELL, 3)
        by_character[where] = cells_of[row[:, None, None], _MOTION_FRAMES]
    return x


def generate(sheets_dir, characters=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(x uint8 [N, 8, 64, 64, 3] RGB, labels {name: int64 [N]}) of `characters` (default all
    1296), N = 9 * len(characters): per character in the given order, its 9 motions, motion =
    3 * action + direction. Labels: body, bottomwear, topwear, hair, action, direction, motion,
    character."""
    characters = _check_characters(characters)
    return _generate(_load_cells(_root(sheets_dir)), characters), _labels(characters)


def _check_validation(validation_characters) -> int:
    v = validation_characters
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) \
            or not 1 <= v < TRAIN_CHARACTERS:
        raise SpritesError(f"`validation_characters` must be an integer in "
                           f"[1, {TRAIN_CHARACTERS - 1}], got {_short(v)}")
    return int(v)


def split_characters(validation_characters=100) -> dict[str, np.ndarray]:
    """{"train", "validation", "test"}: character indices, int64, in the seeded order.

    The original script's split: `np.random.seed(423); np.random.permutation(1296)`, first
    1000 train, the rest test. Validation is the last `validation_characters` of those 1000.
    This reseeds NumPy's global random state, as the original did, and leaves it reseeded.
    """
    v = _check_validation(validation_characters)
    np.random.seed(SPLIT_SEED)
    order = np.random.permutation(NUM_CHARACTERS).astype(np.int64)
    return {"train": order[:TRAIN_CHARACTERS - v],
            "validation": order[TRAIN_CHARACTERS - v:TRAIN_CHARACTERS],
            "test": order[TRAIN_CHARACTERS:]}


# ---- cache ----------------------------------------------------------------------------

def _licences(root: pathlib.Path) -> list[pathlib.Path]:
    """The licence texts, beside the sheets or in their parent folder (the shared layout)."""
    found = []
    for name in LICENCE_FILES:
        candidates = [root / name, root.parent / name]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise SpritesError(f"licence file {name} is in neither {root} nor {root.parent}: "
                               f"the generated data must ship with it")
        found.append(path)
    return found


def cache_key(sheets_dir, validation_characters=100) -> str:
    """Short hash of the recipe version, `validation_characters` and every used sheet's bytes."""
    v = _check_validation(validation_characters)
    root = _root(sheets_dir)
    check_sheets(root)
    h = hashlib.sha256(f"sprites\0{RECIPE_VERSION}\0{v}\n".encode())
    for (name, variant), path in sorted(_sheet_paths(root).items()):
        h.update(f"{name}/{variant}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def _readme(key: str, v: int, counts: dict) -> bytes:
    text = ", ".join(f"{s} {len(c)} characters / {MOTIONS * len(c)} sequences"
                     for s, c in counts.items())
    return (f"# Sprites sequences (generated)\n\nGenerated by `dvrnn_tf.data.builders.sprites` "
            f"(recipe version {RECIPE_VERSION}, key {key}, validation_characters {v}) from the "
            f"LPC character sheets by Li & Mandt's (2018) recipe: {text}. `{{split}}-x.npy`: "
            f"uint8 [N, 8, 64, 64, 3] RGB; `{{split}}-labels.npz`: int64 [N] each of "
            f"{', '.join(LABELS)}.\n\n## Origin and licence\n\n{ATTRIBUTION}\n").encode()


def prepare(sheets_dir, cache_root, validation_characters=100) -> pathlib.Path:
    """The cache folder `cache_root/sprites-<key>/` of all three splits, generated if needed.

    Holds {split}-x.npy, {split}-labels.npz, meta.json (`dvrnn_tf.data.sequence_cache`), the
    two licence texts and a README with the attribution. `key` (`cache_key`) changes with the
    recipe, `validation_characters` or any used sheet's bytes; an entry found whole is
    returned at once, a damaged one rebuilt.
    """
    v = _check_validation(validation_characters)
    root = _root(sheets_dir)
    licences = _licences(root)
    key = cache_key(root, v)
    splits = split_characters(v)
    cells = {}

    def make_split(split):
        if not cells:
            cells.update(cells=_load_cells(root))
        return _generate(cells["cells"], splits[split]), _labels(splits[split])

    meta = {"source": "sprites", "recipe_version": RECIPE_VERSION, "key": key,
            "validation_characters": v, "labels": LABELS,
            "characters": {s: len(c) for s, c in splits.items()}}
    extra = {path.name: path.read_bytes() for path in licences}
    extra["README.md"] = _readme(key, v, splits)
    return sequence_cache.ensure(pathlib.Path(cache_root) / f"sprites-{key}", make_split, meta,
                                 extra)


def load(sheets_dir, cache_root, split, validation_characters=100) \
        -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(x uint8 [N, 8, 64, 64, 3] memory-mapped read-only, labels {name: int64 [N]}) of `split`."""
    if split not in SPLITS:
        raise SpritesError(f"`split` must be one of {SPLITS}, got {_short(split)}")
    return sequence_cache.load(prepare(sheets_dir, cache_root, validation_characters), split)
