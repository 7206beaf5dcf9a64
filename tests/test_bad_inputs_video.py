"""Bad video data and bad settings of the video models, through the training binary.

Part of the catalogue of bad inputs (what every case must show: reliability_helpers.py): each
case runs `dvrnn_tf.train` in this process and must exit non-zero with ONE error line naming
the problem, before any run directory exists (the run directory stays absent).
"""
import json
import pathlib
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from reliability_helpers import refused
from shared_data import SPRITES_DIR

SPRITES = SPRITES_DIR
BASE = ["--epochs=1", "--steps_per_epoch=1", "--batch_size=4", "--nofigures", "--noexport"]
# The model unless a case names its own.
MODEL = ["--model=content_style", "--hidden_dim=8", "--f_dim=2", "--z_dim=2"]


def _sprites_copy(tmp_path, change):
    """The sprites folder copied (sheets and licences), then damaged by `change`."""
    dst = tmp_path / "sprites"
    shutil.copytree(SPRITES, dst, copy_function=shutil.copyfile)
    change(dst / "sheets", dst)
    return dst


def _remove(path):
    path.unlink()


def _arrays(tmp_path, filename="data.npz", x=None, **labels):
    x = np.random.default_rng(0).integers(0, 256, (12, 4, 8, 8, 1), np.uint8) if x is None else x
    path = tmp_path / filename
    if filename.endswith(".npy"):
        np.save(path, x)
    else:
        np.savez(path, x=x, **labels)
    return f"--dataset=arrays:{path}"


def _frames(tmp_path, lengths=(3, 3, 3, 3), sizes=None, modes=None, labels=None, empty=False):
    root = tmp_path / "clips"
    root.mkdir()
    if empty:
        return f"--dataset=frames:{root}"
    rng = np.random.default_rng(0)
    for i, t in enumerate(lengths):
        clip = root / f"clip{i}"
        clip.mkdir()
        for step in range(t):
            size = (sizes or {}).get((i, step), (8, 8))
            mode = (modes or {}).get((i, step), "L")
            shape = size[::-1] + ((3,) if mode == "RGB" else ())
            Image.fromarray(rng.integers(0, 256, shape, np.uint8), mode).save(
                clip / f"{step}.png")
    if labels is not None:
        (root / "labels.json").write_text(json.dumps(labels))
    return f"--dataset=frames:{root}"


def _truncated_npz(tmp_path):
    good = _arrays(tmp_path, "good.npz").split(":", 1)[1]
    data = pathlib.Path(good).read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    return f"--dataset=arrays:{tmp_path / 'cut.npz'}"


def _corrupt_image(tmp_path):
    arg = _frames(tmp_path)
    (tmp_path / "clips" / "clip2" / "1.png").write_bytes(b"not an image at all")
    return arg


def _sheet(name, content):
    def change(sheets, _):
        path = sheets / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            Image.new("RGBA", content).save(path)
    return change


RNG = np.random.default_rng(1)
CASES = {
    # Sprites: the sheets and their licence
    "sprites-without-manual_dir": (lambda t: ["--dataset=sprites"],
                                   ["--dataset=sprites", "--manual_dir"]),
    "sprites-folder-missing": (lambda t: ["--dataset=sprites", f"--manual_dir={t}/nowhere"],
                               ["nowhere", "does not exist"]),
    "sprites-sheet-missing": (
        lambda t: ["--dataset=sprites", f"--manual_dir={_sprites_copy(t, lambda s, _: _remove(s / 'hair' / '3.png'))}"],
        ["hair/3.png", "missing"]),
    "sprites-sheet-wrong-size": (
        lambda t: ["--dataset=sprites", f"--manual_dir={_sprites_copy(t, _sheet('body/2.png', (832, 1300)))}"],
        ["body/2.png", "832x1344"]),
    "sprites-sheet-not-a-png": (
        lambda t: ["--dataset=sprites", f"--manual_dir={_sprites_copy(t, _sheet('topwear/0.png', b'GIF89a...'))}"],
        ["topwear/0.png"]),
    "sprites-licence-missing": (
        lambda t: ["--dataset=sprites", f"--manual_dir={_sprites_copy(t, lambda _, d: _remove(d / 'GNU-GPL-3.0-LICENSE'))}",
                   f"--data_dir={t}/cache"],
        ["GNU-GPL-3.0-LICENSE"]),
    "sprites-validation-all-train": (
        lambda t: ["--dataset=sprites", f"--manual_dir={SPRITES}",
                   "--sprites_validation_characters=1000"],
        ["--sprites_validation_characters", "999"]),
    "sprites-seq_len": (lambda t: ["--dataset=sprites", f"--manual_dir={SPRITES}", "--seq_len=6"],
                        ["--seq_len applies to --dataset=", "not --dataset=sprites"]),
    "cvae-on-sprites-has-no-class": (
        lambda t: ["--dataset=sprites", f"--manual_dir={SPRITES}", "--model=cvae"],
        ["--model=cvae needs data with a 'class' label", "motion"]),
    # Arrays
    "arrays-without-a-path": (lambda t: ["--dataset=arrays:"], ["arrays:<path>"]),
    "arrays-file-missing": (lambda t: [f"--dataset=arrays:{t}/none.npz"],
                            ["none.npz", "does not exist"]),
    "arrays-truncated-npz": (lambda t: [_truncated_npz(t)], ["cut.npz"]),
    "arrays-not-a-zip": (lambda t: [(t.joinpath("junk.npz").write_bytes(b"junk" * 100),
                                     f"--dataset=arrays:{t}/junk.npz")[1]], ["junk.npz"]),
    "arrays-rank-4": (lambda t: [_arrays(t, "r4.npy", x=np.zeros((5, 4, 8, 8), np.uint8))],
                      ["r4.npy", "4-D", "x[..., None]"]),
    "arrays-no-x-key": (lambda t: [(np.savez(t / "nox.npz", frames=np.zeros((2, 2, 8, 8, 1))),
                                    f"--dataset=arrays:{t}/nox.npz")[1]], ["'x'"]),
    "arrays-nan-pixels": (lambda t: [_arrays(t, x=np.full((6, 3, 8, 8, 1), np.nan, np.float32))],
                          ["NaN"]),
    "arrays-pixels-above-1": (lambda t: [_arrays(t, x=np.full((6, 3, 8, 8, 1), 1.5, np.float32))],
                              ["[0, 1]"]),
    "arrays-two-channels": (lambda t: [_arrays(t, x=np.zeros((6, 3, 8, 8, 2), np.uint8))],
                            ["C", "1", "3"]),
    "arrays-bool-pixels": (lambda t: [_arrays(t, x=np.zeros((6, 3, 8, 8, 1), bool))], ["bool"]),
    "arrays-labels-length": (lambda t: [_arrays(t, digit=np.zeros(11, np.int64))],
                             ["digit", "11", "12"]),
    "arrays-labels-wrong-steps": (lambda t: [_arrays(t, step=np.zeros((12, 5), np.int64))],
                                  ["step"]),
    "arrays-negative-labels": (lambda t: [_arrays(t, digit=-np.ones(12, np.int64))],
                               ["digit", ">= 0"]),
    "arrays-string-labels": (lambda t: [_arrays(t, name=np.array(["a"] * 12))], ["name"]),
    "arrays-split-fractions-too-large": (
        lambda t: [_arrays(t), "--validation_fraction=0.6", "--test_fraction=0.5"],
        ["fraction"]),
    # Frame folders
    "frames-folder-empty": (lambda t: [_frames(t, empty=True)], ["clips", "no"]),
    "frames-empty-sequence": (lambda t: [_frames(t, lengths=(3, 0, 3))], ["clip1"]),
    "frames-mixed-lengths": (lambda t: [_frames(t, lengths=(3, 3, 4))], ["clip", "4", "3"]),
    "frames-different-sizes": (lambda t: [_frames(t, sizes={(2, 1): (8, 6)})], ["1.png", "8"]),
    "frames-corrupt-image": (lambda t: [_corrupt_image(t)], ["clip2", "1.png"]),
    "frames-grey-and-colour": (lambda t: [_frames(t, modes={(1, 0): "RGB"})], ["clip1", "0.png"]),
    "frames-labels-unknown-sequence": (
        lambda t: [_frames(t, labels={"clip9": {"kind": 1}})], ["labels.json", "clip9"]),
    # The video models' settings
    "conv-stack-does-not-divide": (
        lambda t: [_arrays(t, x=np.zeros((12, 3, 20, 20, 1), np.uint8)), "--network=conv",
                   "--conv_layers=3"],
        ["--conv_layers=3", "divisible by 8", "20x20", "--conv_layers=2"]),
    "conv-too-deep": (lambda t: [_arrays(t), "--network=conv", "--conv_layers=9"],
                      ["--conv_layers", "9"]),
    "conv-no-channels": (lambda t: [_arrays(t), "--network=conv", "--conv_channels=0"],
                         ["--conv_channels"]),
    "gaussian-scale-zero": (lambda t: [_arrays(t), "--likelihood=gaussian_fixed",
                                       "--gaussian_scale=0"], ["--gaussian_scale"]),
    "unknown-style-prior": (lambda t: [_arrays(t), "--style_prior=lstm"],
                            ["--style_prior", "recurrent"]),
    "moving-mnist-three-digits": (lambda t: ["--dataset=moving_mnist", "--moving_mnist_digits=3"],
                                  ["--moving_mnist_digits", "3"]),
}


@pytest.mark.parametrize("make, words", CASES.values(), ids=CASES.keys())
def test_bad_video_input(tmp_path, capsys, make, words):
    run_dir = tmp_path / "run"
    case = make(tmp_path)
    model = [] if any(a.startswith("--model=") for a in case) else MODEL
    args = [*BASE, *model, *case, f"--run_dir={run_dir}"]
    if not any(a.startswith("--data_dir") for a in args):
        args.append(f"--data_dir={tmp_path / 'cache'}")
    err = refused(capsys, run_dir, args, words)
    # absl adds its own hint after a flag's error ("Pass --helpshort or --helpfull ...").
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("Pass --help")]
    assert len(lines) == 1, f"not one line: {err[-2000:]}"
    assert not run_dir.exists(), "a refused run made its run directory"


def test_truncated_sequence_zip_member_is_a_one_line_error(tmp_path):
    """A .npz whose x member is cut (the zip directory intact): named, one line."""
    from dvrnn_tf.data.builders.user_sequences import SequenceFileError, load_arrays

    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((4, 2, 8, 8, 1), np.uint8))
    with zipfile.ZipFile(path) as z:
        data = z.read("x.npy")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", data[:len(data) // 3])
    with pytest.raises(SequenceFileError) as err:
        load_arrays(path)
    assert "data.npz" in str(err.value) and "\n" not in str(err.value)
