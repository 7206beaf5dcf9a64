"""Sprites: DESIGN 6's recipe, bit-exact against PIL, the split, the cache and bad input.

The sheets are read from ``$DVRNN_SPRITES_DIR`` (default ``../shared/data/sprites``); the tests
fail, never skip, without them. One session fixture prepares the full data set once (two
threads at once, to exercise the lock); the truncation test rebuilds it once more.
"""
import hashlib
import json
import os
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image

from dvrnn_tf.data.builders import sprites as S
from dvrnn_tf.data.folder_cache import ensure_folder

import shared_data

PARTS = ("body", "bottomwear", "topwear", "hair")


def _index(body, bottomwear, topwear, hair):
    return body * 216 + bottomwear * 36 + topwear * 6 + hair


@pytest.fixture(scope="session")
def sprites_dir():
    return shared_data.sprites_dir()


@pytest.fixture(scope="session")
def sheets(sprites_dir):
    return sprites_dir / "sheets"


@pytest.fixture
def sheets_copy(sprites_dir, tmp_path):
    """A writable copy of the sprites folder (sheets and licences) under tmp_path."""
    dst = tmp_path / "sprites"
    shutil.copytree(sprites_dir, dst, copy_function=shutil.copyfile)
    for folder, dirs, files in os.walk(dst):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    return dst / "sheets"


def _one_line_error(fn, *words):
    with pytest.raises(S.SpritesError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert str(word) in message, message
    return message


def _cell(sheet, k):
    r, c = divmod(k, 13)
    return sheet[r * 64:(r + 1) * 64, c * 64:(c + 1) * 64]


# ---- the recipe -----------------------------------------------------------------------

EXPECTED_CELLS = {
    ("walk", "front"): [138, 131, 132, 133, 134, 135, 136, 137],
    ("walk", "left"): [125, 118, 119, 120, 121, 122, 123, 124],
    ("walk", "right"): [151, 144, 145, 146, 147, 148, 149, 150],
    ("spellcast", "front"): [26, 27, 28, 29, 30, 31, 30, 32],
    ("spellcast", "left"): [13, 14, 15, 16, 17, 18, 17, 19],
    ("spellcast", "right"): [39, 40, 41, 42, 43, 44, 43, 45],
    ("slash", "front"): [182, 183, 184, 185, 186, 187, 186, 182],
    ("slash", "left"): [169, 170, 171, 172, 173, 174, 173, 169],
    ("slash", "right"): [195, 196, 197, 198, 199, 200, 199, 195],
}


def test_frame_cells_follow_design():
    for (action, direction), cells in EXPECTED_CELLS.items():
        assert S.frame_cells(action, direction) == cells
        assert S.frame_cells(S.ACTIONS.index(action), S.DIRECTIONS.index(direction)) == cells
    _one_line_error(lambda: S.frame_cells("run", "front"), "`action`", "run")
    _one_line_error(lambda: S.frame_cells("walk", 3), "`direction`", "3")


def test_labels_follow_character_index(sheets):
    characters = [7, 1295, 216, _index(2, 3, 4, 5)]
    x, labels = S.generate(sheets, characters)
    assert x.shape == (36, 8, 64, 64, 3) and x.dtype == np.uint8
    assert sorted(labels) == sorted(S.LABELS)
    parts = [(0, 0, 1, 1), (5, 5, 5, 5), (1, 0, 0, 0), (2, 3, 4, 5)]
    for i, (character, part) in enumerate(zip(characters, parts)):
        rows = slice(9 * i, 9 * i + 9)
        assert (labels["character"][rows] == character).all()
        for name, value in zip(PARTS, part):
            assert (labels[name][rows] == value).all()
        np.testing.assert_array_equal(labels["motion"][rows], np.arange(9))
    np.testing.assert_array_equal(labels["motion"], 3 * labels["action"] + labels["direction"])
    assert all(v.dtype == np.int64 and v.shape == (36,) for v in labels.values())


def test_alpha_arithmetic_equals_pillow():
    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, (256, 256, 4), dtype=np.uint8)
    src[..., 3] = np.arange(256, dtype=np.uint8)[:, None]  # every alpha, 256 colours each
    dst = rng.integers(0, 256, (256, 256, 4), dtype=np.uint8)
    dst[::3, :, 3] = 255
    dst[1::7, :, 3] = 0
    reference = np.asarray(Image.alpha_composite(Image.fromarray(dst, "RGBA"),
                                                 Image.fromarray(src, "RGBA")))
    np.testing.assert_array_equal(S._composite_pixels(dst, src), reference)
    # the fast path over opaque images, as generate uses it
    dst[..., 3] = 255
    reference = np.asarray(Image.alpha_composite(Image.fromarray(dst, "RGBA"),
                                                 Image.fromarray(src, "RGBA")))
    assert (reference[..., 3] == 255).all()
    images = dst[..., :3].reshape(1, -1, 3).copy()
    S._over(images, src.reshape(-1, 4))
    np.testing.assert_array_equal(images[0], reference[..., :3].reshape(-1, 3))


def test_generate_equals_pil_reference(sheets):
    # topwear/3 is the one used sheet with partly transparent pixels in the recipe's cells
    topwear3 = np.asarray(Image.open(sheets / "topwear" / "3.png").convert("RGBA"))
    used = {k for cells in EXPECTED_CELLS.values() for k in cells}
    alpha = np.stack([_cell(topwear3, k)[..., 3] for k in used])
    assert ((alpha > 0) & (alpha < 255)).sum() > 0
    parts = [(3, 4, 3, 5), (0, 0, 3, 0), (5, 5, 5, 5), (0, 4, 4, 2), (0, 0, 3, 0)]
    x, labels = S.generate(sheets, [_index(*p) for p in parts])  # unsorted, one repeated
    for i, part in enumerate(parts):
        sheet = S.character_sheet(sheets, *part)
        assert sheet.shape == (1344, 832, 4) and (sheet[..., 3] == 255).all()
        for motion, (action, direction) in enumerate((a, d) for a in S.ACTIONS
                                                      for d in S.DIRECTIONS):
            expected = np.stack([_cell(sheet, k)[..., :3] for k in EXPECTED_CELLS[action,
                                                                                direction]])
            np.testing.assert_array_equal(x[9 * i + motion], expected,
                                          err_msg=f"{part} {action} {direction}")


def test_generate_rejects_bad_characters(sheets):
    for bad in ([1296], [-1], [], [[1, 2]], ["a"], [True], [1.5]):
        _one_line_error(lambda: S.generate(sheets, bad), "`characters`")
    _one_line_error(lambda: S.character_sheet(sheets, 6, 0, 0, 0), "`body`", "6")
    _one_line_error(lambda: S.character_sheet(sheets, 0, 0, 0, -1), "`hair`", "-1")


# ---- the split ------------------------------------------------------------------------

def test_split_characters_reproduce_seeded_permutation():
    order = np.random.RandomState(423).permutation(1296)
    for v in (100, 1, 999):
        split = S.split_characters(v)
        assert {k: len(c) for k, c in split.items()} == {"train": 1000 - v,
                                                         "validation": v, "test": 296}
        np.testing.assert_array_equal(np.concatenate([split["train"], split["validation"]]),
                                      order[:1000])
        np.testing.assert_array_equal(split["test"], order[1000:])
        everything = np.concatenate(list(split.values()))
        assert len(set(everything.tolist())) == 1296 == len(everything)
    # documented: NumPy's global state is left reseeded as the original script left it
    reference = np.random.RandomState(423)
    reference.permutation(1296)
    assert np.random.random() == reference.random_sample()


def test_validation_characters_out_of_range(sheets, tmp_path):
    for bad in (0, 1000, -5, 2.5, True, "100"):
        _one_line_error(lambda: S.split_characters(bad), "`validation_characters`")
        _one_line_error(lambda: S.prepare(sheets, tmp_path, bad), "`validation_characters`")
    assert list(tmp_path.iterdir()) == []


# ---- bad sheets -----------------------------------------------------------------------

def _damage(sheets, case):
    """Damage the copied sheets one way; returns (sheets_dir, words the error must name)."""
    if case == "folder missing":
        return sheets.parent / "nowhere", ["nowhere", "does not exist"]
    path = {"sheet missing": "topwear/2.png", "wrong size": "hair/3.png",
            "not a PNG": "body/1.png", "a JPEG": "shoes/1.png"}[case]
    target = sheets / path
    if case == "sheet missing":
        target.unlink()
    elif case == "wrong size":
        Image.new("RGBA", (64, 32)).save(target)
    elif case == "not a PNG":
        target.write_bytes(b"not an image at all\n")
    else:
        Image.new("RGB", (832, 1344)).save(target, format="JPEG")
    what = {"sheet missing": "missing", "wrong size": "64x32"}.get(case, "not a PNG")
    return sheets, [path, what, "832x1344"]


@pytest.mark.parametrize("case", ["folder missing", "sheet missing", "wrong size",
                                  "not a PNG", "a JPEG"])
def test_bad_sheets_are_named(sheets_copy, tmp_path, case):
    sheets, words = _damage(sheets_copy, case)
    cache = tmp_path / "cache"
    _one_line_error(lambda: S.check_sheets(sheets), *words)
    _one_line_error(lambda: S.prepare(sheets, cache), *words)
    _one_line_error(lambda: S.generate(sheets, [0]), *words)
    assert not cache.exists() or not any(cache.glob("*sprites-*"))


def test_damaged_png_and_missing_licence(sheets_copy, tmp_path):
    path = sheets_copy / "hair" / "4.png"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # the header (and size) intact, the pixels cut
    S.check_sheets(sheets_copy)  # only headers are read here
    _one_line_error(lambda: S.generate(sheets_copy, [4]), "hair/4.png", "decoded")
    path.write_bytes(data)
    (sheets_copy.parent / "GNU-GPL-3.0-LICENSE").unlink()
    _one_line_error(lambda: S.prepare(sheets_copy, tmp_path / "cache"), "GNU-GPL-3.0-LICENSE")
    assert not (tmp_path / "cache").exists()


def test_unknown_split_is_refused_before_preparing(sheets, tmp_path):
    _one_line_error(lambda: S.load(sheets, tmp_path / "cache", "dev"), "`split`", "dev")
    assert not (tmp_path / "cache").exists()


def test_key_follows_sheet_bytes(sheets, sheets_copy, monkeypatch):
    key = S.cache_key(sheets)
    assert S.cache_key(sheets_copy) == key  # the bytes, not the folder, make the key
    assert S.cache_key(sheets, 99) != key
    Image.new("RGB", (1, 1)).save(sheets_copy / "eyes" / "0.png")  # not in the recipe
    assert S.cache_key(sheets_copy) == key
    image = Image.open(sheets_copy / "hair" / "2.png").convert("RGBA")
    image.putpixel((0, 0), (1, 2, 3, 255))
    image.save(sheets_copy / "hair" / "2.png")
    assert S.cache_key(sheets_copy) not in (key, S.cache_key(sheets, 99))
    monkeypatch.setattr(S, "RECIPE_VERSION", S.RECIPE_VERSION + 1)
    assert S.cache_key(sheets) != key


# ---- the cache ------------------------------------------------------------------------

def test_ensure_builds_once_under_concurrency(tmp_path):
    entry = tmp_path / "sprites-toy"
    builds = []

    def build(folder):
        builds.append(folder)
        time.sleep(0.3)
        (folder / "done").write_text("whole")

    def failing(folder):
        (folder / "half").write_text("half")
        raise KeyboardInterrupt  # as if killed mid-build

    valid = lambda e: (e / "done").is_file()  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        ensure_folder(entry, failing, valid)
    assert not entry.exists() and not list(tmp_path.glob(".sprites-toy.tmp-*"))
    (tmp_path / ".sprites-toy.tmp-stale").mkdir()  # a killed build's leftover
    results = []
    work = lambda: results.append(ensure_folder(entry, build, valid))  # noqa: E731
    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [entry] * 3 and len(builds) == 1
    assert (entry / "done").read_text() == "whole"
    assert not list(tmp_path.glob(".sprites-toy.tmp-*"))


@pytest.fixture(scope="session")
def full_cache(sheets, tmp_path_factory):
    """The full data set prepared once, by two threads at once (one builds, one waits)."""
    root = tmp_path_factory.mktemp("sprites_cache")
    builds, original = [], S._load_cells  # read once per build
    S._load_cells = lambda *a: (builds.append(a), original(*a))[1]
    results, start = [], time.perf_counter()
    try:
        threads = [threading.Thread(target=lambda: results.append(S.prepare(sheets, root)))
                   for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        S._load_cells = original
    seconds = time.perf_counter() - start
    yield {"root": root, "entries": results, "builds": len(builds), "seconds": seconds}
    shutil.rmtree(root, ignore_errors=True)  # 1.1 GB: not kept among pytest's last runs


def test_prepare_full_data_set(sheets, full_cache):
    entry = full_cache["entries"][0]
    assert full_cache["entries"] == [entry, entry] and full_cache["builds"] == 1
    assert full_cache["seconds"] < 60
    split = S.split_characters()
    sizes = {"train": 8100, "validation": 900, "test": 2664}
    for name, n in sizes.items():
        x, labels = S.load(sheets, full_cache["root"], name)
        assert isinstance(x, np.memmap) and x.shape == (n, 8, 64, 64, 3) and x.dtype == np.uint8
        np.testing.assert_array_equal(labels["character"], np.repeat(split[name], 9))
        np.testing.assert_array_equal(labels["motion"], np.tile(np.arange(9), n // 9))
        pairs = set(zip(labels["character"].tolist(), labels["motion"].tolist()))
        assert len(pairs) == n  # every character in all 9 motions, once
        for i, factor in enumerate(PARTS):
            np.testing.assert_array_equal(labels[factor],
                                          labels["character"] // 6 ** (3 - i) % 6)
    # the cache holds what generate gives, at the split's positions
    x, _ = S.load(sheets, full_cache["root"], "test")
    picks = [0, 137, 295]
    fresh, _ = S.generate(sheets, split["test"][picks])
    for j, i in enumerate(picks):
        np.testing.assert_array_equal(x[9 * i:9 * i + 9], fresh[9 * j:9 * j + 9])


def test_prepare_reuses_and_ships_licence(sheets, sprites_dir, full_cache):
    entry = full_cache["entries"][0]
    mtimes = {p.name: p.stat().st_mtime_ns for p in entry.iterdir()}
    start = time.perf_counter()
    assert S.prepare(sheets, full_cache["root"]) == entry
    assert time.perf_counter() - start < 1.0
    assert {p.name: p.stat().st_mtime_ns for p in entry.iterdir()} == mtimes
    assert entry.name == f"sprites-{S.cache_key(sheets)}"
    for name in S.LICENCE_FILES:
        assert (entry / name).read_bytes() == (sprites_dir / name).read_bytes()
    readme = (entry / "README.md").read_text()
    for words in ("lpc.opengameart.org", "Universal-LPC-spritesheet", "CC-BY-SA 3.0",
                  "GPL 3.0", "CC-BY-SA-3.0-LICENSE", "GNU-GPL-3.0-LICENSE"):
        assert words in readme
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["characters"] == {"train": 900, "validation": 100, "test": 296}
    assert meta["sequences"] == {"train": 8100, "validation": 900, "test": 2664}
    assert meta["key"] == S.cache_key(sheets) and meta["recipe_version"] == S.RECIPE_VERSION
    assert 0 < meta["seconds"] < 60


def test_truncated_cache_is_rebuilt(sheets, full_cache, tmp_path, monkeypatch):
    entry = full_cache["entries"][0]
    copy = tmp_path / entry.name
    copy.mkdir()
    for path in entry.iterdir():  # hard links: the shared entry stays untouched
        if path.name != "test-x.npy":
            os.link(path, copy / path.name)
    data = (entry / "test-x.npy").read_bytes()
    (copy / "test-x.npy").write_bytes(data[:-4096])
    builds, original = [], S._load_cells
    monkeypatch.setattr(S, "_load_cells", lambda *a: (builds.append(1), original(*a))[1])
    try:
        x, _ = S.load(sheets, tmp_path, "test")
        assert len(builds) == 1 and x.shape == (2664, 8, 64, 64, 3)
        rebuilt = (copy / "test-x.npy").read_bytes()
        assert hashlib.sha256(rebuilt).digest() == hashlib.sha256(data).digest()  # deterministic
        assert not list(tmp_path.glob(f".{entry.name}.*-*"))
    finally:
        shutil.rmtree(copy, ignore_errors=True)  # 1.1 GB: not kept among pytest's last runs
